package serververifier

import (
	"errors"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"testing"

	"google.golang.org/grpc/codes"
)

func TestCheckSelectorCount(t *testing.T) {
	sels := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("runtime:exe:sha256:%064x", i)
		}
		return s
	}
	if err := checkSelectorCount(sels(MaxSelectors)); err != nil {
		t.Fatalf("%d selectors refused: %v", MaxSelectors, err)
	}
	err := checkSelectorCount(sels(MaxSelectors + 1))
	var r *rejection
	if !errors.As(err, &r) || r.code != codes.ResourceExhausted || r.check != appraisal.CheckSelectors {
		t.Fatalf("%d selectors: %v, want ResourceExhausted from %s", MaxSelectors+1, err, appraisal.CheckSelectors)
	}
}
