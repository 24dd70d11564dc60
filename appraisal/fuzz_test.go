package appraisal

import (
	"context"
	"testing"
)

// FuzzTDX feeds arbitrary quote bytes through the whole offline appraisal:
// it must never panic (go-tdx-guest slices without bounds checks, so our
// parser must stop what it cannot handle) and must fail with an *Error.
func FuzzTDX(f *testing.F) {
	f.Add(readTestdata(f, "cos-113-tdx-quote.dat"))
	f.Add(readTestdata(f, "tdx_prod_quote_SPR_E4.dat"))
	f.Fuzz(func(t *testing.T, quote []byte) {
		res, err := TDX(context.Background(), TDXEvidence{Quote: quote}, TDXOptions{Now: pinnedNow})
		if res == nil {
			t.Fatal("nil result")
		}
		if err == nil {
			return
		}
		if _, ok := AsError(err); !ok {
			t.Fatalf("error %T is not an *appraisal.Error: %v", err, err)
		}
	})
}
