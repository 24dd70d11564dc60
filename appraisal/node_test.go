package appraisal

import (
	"context"
	"strings"
	"testing"
)

func TestIsSelectorToken(t *testing.T) {
	for v, ok := range map[string]bool{"grub": true, "": false, "a b": false, strings.Repeat("x", 65): false, "systemd-boot_2.0": true} {
		if isSelectorToken(v) != ok {
			t.Errorf("isSelectorToken(%q) != %v", v, ok)
		}
	}
}

// TestTPMNeedsActivator: leaving the activator out never skips credential
// activation; only SkipActivation does, and the result then says so.
func TestTPMNeedsActivator(t *testing.T) {
	res, err := TPM(context.Background(), TPMEvidence{}, TPMOptions{})
	e, ok := AsError(err)
	if !ok || e.Check != CheckActivation || e.Code != CodeConfig {
		t.Fatalf("no activator: %v", err)
	}
	if res == nil || res.Node != nil {
		t.Fatal("a result that established something")
	}
}

// TestIMASelectorsWithheld: violations withhold ima:verified:true unless
// allowed, and say that they did.
func TestIMASelectorsWithheld(t *testing.T) {
	s, withheld := imaSelectors(imaResult{verified: true, violations: 2}, false)
	if !withheld || strings.Join(s, ",") != "ima:violations:2" {
		t.Fatalf("%v %v", s, withheld)
	}
	s, withheld = imaSelectors(imaResult{verified: true, violations: 2}, true)
	if withheld || strings.Join(s, ",") != "ima:violations:2,ima:verified:true" {
		t.Fatalf("%v %v", s, withheld)
	}
	// A suffix cannot clear the violations of the prefix a start recorded.
	if r := (imaSuffix{entries: 3}).with(&Start{IMAVerified: true, IMAViolations: 1}); !r.verified || r.violations != 1 {
		t.Fatalf("%+v", r)
	}
}
