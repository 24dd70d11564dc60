package appraisal

import (
	"context"
	"testing"

	"github.com/google/go-tdx-guest/verify"
)

// BenchmarkAppraiseTDX is the full offline appraisal of the real cos-113
// quote with its CCEL: parse, chain, our signature checks, the library's
// offline verification and the CCEL replay with fact extraction.
func BenchmarkAppraiseTDX(b *testing.B) {
	ev := cos113(b)
	in := TDXEvidence{Quote: ev.quote, CCEL: ev.ccel, CCELTable: ev.table}
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: IntelRoots()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TDX(context.Background(), in, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGoTdxGuestVerify is go-tdx-guest's offline verification alone,
// with the fresh Options every call needs.
func BenchmarkGoTdxGuestVerify(b *testing.B) {
	q := cos113(b).quote
	roots := IntelRoots()
	b.ReportAllocs()
	for b.Loop() {
		if err := verify.RawTdxQuote(q, libraryOptions(roots, pinnedNow, nil, false)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppraiseTDXCollateral adds collateral and CRLs served from
// memory under the test PKI (our evaluation plus the library's cross-check).
func BenchmarkAppraiseTDXCollateral(b *testing.B) {
	p := newTestPKI(b)
	q := p.mintQuote(b, nil)
	f := p.pcs(b, defaultSpec(p))
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: f, CheckRevocations: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TDX(context.Background(), TDXEvidence{Quote: q}, opts); err != nil {
			b.Fatal(err)
		}
	}
}
