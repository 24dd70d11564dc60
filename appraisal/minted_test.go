package appraisal

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"
)

func TestMintedOffline(t *testing.T) {
	p := newTestPKI(t)
	rd := bytes.Repeat([]byte{0x42}, 64)
	q := p.mintQuote(t, func(s []byte) { copy(s[568:632], rd) })
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool()}
	if _, err := TDX(context.Background(), TDXEvidence{Quote: q, ReportData: rd}, opts); err != nil {
		t.Fatalf("minted quote rejected: %v", err)
	}
	// Not trusted by default: the Intel root is.
	_, err := TDX(context.Background(), TDXEvidence{Quote: q}, TDXOptions{Now: pinnedNow})
	wantCheck(t, err, CheckPCKChain, CodeRejected)
	// Another test root.
	_, err = TDX(context.Background(), TDXEvidence{Quote: q}, TDXOptions{Now: pinnedNow, TrustedRoots: newTestPKI(t).rootPool()})
	wantCheck(t, err, CheckPCKChain, CodeRejected)
	// Certificates expired.
	_, err = TDX(context.Background(), TDXEvidence{Quote: q}, TDXOptions{Now: certNotAfter.Add(time.Hour), TrustedRoots: p.rootPool()})
	wantCheck(t, err, CheckPCKChain, CodeRejected)
	// A body byte changed after signing.
	bad := bytes.Clone(q)
	bad[424] ^= 1
	_, err = TDX(context.Background(), TDXEvidence{Quote: bad}, opts)
	wantCheck(t, err, CheckQuoteSignature, CodeRejected)
	// Another binding.
	_, err = TDX(context.Background(), TDXEvidence{Quote: q, ReportData: make([]byte, 64)}, opts)
	wantCheck(t, err, CheckReportData, CodeRejected)
}

func TestMintedDebug(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, func(s []byte) { s[168] |= 1 })
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool()}
	res, err := TDX(context.Background(), TDXEvidence{Quote: q}, opts)
	wantCheck(t, err, CheckDebug, CodeRejected, "DEBUG")
	if !res.Debug {
		t.Error("result does not say debug")
	}
	opts.AllowDebug = true
	if _, err := TDX(context.Background(), TDXEvidence{Quote: q}, opts); err != nil {
		t.Errorf("AllowDebug: %v", err)
	}
}

func TestMintedCollateral(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	qNoModule := p.mintQuote(t, func(s []byte) { s[48+1] = 0 }) // TEE_TCB_SVN[1] = 0
	other := newTestPKI(t)
	withSpec := func(f func(*collateralSpec)) collateralSpec {
		s := defaultSpec(p)
		if f != nil {
			f(&s)
		}
		return s
	}
	tests := []struct {
		name      string
		quote     []byte
		spec      collateralSpec
		accepted  []string
		revoke    bool
		mutate    func(*fakePCS)
		check     string // "" = accepted
		code      Code
		wantState string
	}{
		{name: "UpToDate", quote: q, spec: withSpec(nil), revoke: true, wantState: "UpToDate"},
		{name: "UpToDate no module identity", quote: qNoModule, spec: withSpec(func(s *collateralSpec) { s.moduleStatus = "" }), revoke: true, wantState: "UpToDate"},
		{name: "OutOfDate rejected by default", quote: q, spec: withSpec(func(s *collateralSpec) { s.platformStatus = "OutOfDate" }), check: CheckTCBStatus, code: CodeRejected},
		{name: "OutOfDate accepted when listed", quote: q, spec: withSpec(func(s *collateralSpec) { s.platformStatus = "OutOfDate" }), accepted: []string{"UpToDate", "OutOfDate"}, revoke: true, wantState: "OutOfDate"},
		{name: "SWHardeningNeeded not listed", quote: q, spec: withSpec(func(s *collateralSpec) { s.platformStatus = "SWHardeningNeeded" }), accepted: []string{"UpToDate", "OutOfDate"}, check: CheckTCBStatus, code: CodeRejected},
		{name: "module OutOfDate converges", quote: q, spec: withSpec(func(s *collateralSpec) { s.moduleStatus = "OutOfDate" }), check: CheckTCBStatus, code: CodeRejected},
		{name: "module OutOfDate accepted", quote: q, spec: withSpec(func(s *collateralSpec) { s.moduleStatus = "OutOfDate" }), accepted: []string{"OutOfDate"}, wantState: "OutOfDate"},
		{name: "QE Revoked", quote: q, spec: withSpec(func(s *collateralSpec) { s.qeStatus = "Revoked" }), accepted: []string{"UpToDate", "OutOfDate"}, check: CheckTCBStatus, code: CodeRejected},
		{name: "module identity missing", quote: q, spec: withSpec(func(s *collateralSpec) { s.moduleStatus = "" }), check: CheckTCBStatus, code: CodeRejected},
		{name: "no matching level", quote: q, spec: withSpec(func(s *collateralSpec) { s.tdxSVN2 = 8 }), check: CheckTCBStatus, code: CodeRejected},
		{name: "expired collateral", quote: q, spec: withSpec(func(s *collateralSpec) { s.nextUpdate = pinnedNow.Add(-time.Hour) }), check: CheckCollateral, code: CodeRejected},
		{name: "collateral from the future", quote: q, spec: withSpec(func(s *collateralSpec) { s.issueDate = pinnedNow.Add(time.Hour) }), check: CheckCollateral, code: CodeRejected},
		{name: "expired CRL", quote: q, spec: withSpec(func(s *collateralSpec) { s.crlNextUpdate = pinnedNow.Add(-time.Hour) }), revoke: true, check: CheckCollateral, code: CodeRejected},
		{name: "revoked PCK", quote: q, spec: withSpec(func(s *collateralSpec) { s.revokeLeaf = true }), revoke: true, check: CheckPCKChain, code: CodeRejected},
		{name: "revoked PCK unchecked", quote: q, spec: withSpec(func(s *collateralSpec) { s.revokeLeaf = true }), wantState: "UpToDate"},
		{name: "wrong FMSPC", quote: q, spec: withSpec(func(s *collateralSpec) { s.fmspc = "00906ed50000" }), check: CheckCollateral, code: CodeRejected},
		{name: "signed by a key off the chain", quote: q, spec: withSpec(func(s *collateralSpec) { s.signer = other.signKey }), check: CheckCollateral, code: CodeRejected},
		{name: "tampered TCB info", quote: q, spec: withSpec(nil), mutate: func(f *fakePCS) {
			for u, r := range f.resp {
				if bytes.Contains(r.body, []byte(`"tcbInfo"`)) {
					r.body = bytes.Replace(r.body, []byte(`"OutOfDate"`), []byte(`"UpToDate"`), 1)
					r.body = bytes.Replace(r.body, []byte(`"tcbEvaluationDataNumber":17`), []byte(`"tcbEvaluationDataNumber":18`), 1)
					f.resp[u] = r
				}
			}
		}, check: CheckCollateral, code: CodeRejected},
		{name: "signing chain from another root", quote: q, spec: withSpec(nil), mutate: func(f *fakePCS) {
			r := f.resp[tcbURL()]
			r.header = chainHeader(tcbHeader(), other.signer, other.root)
			f.resp[tcbURL()] = r
		}, check: CheckCollateral, code: CodeRejected},
		{name: "no issuer chain header", quote: q, spec: withSpec(nil), mutate: func(f *fakePCS) {
			r := f.resp[tcbURL()]
			r.header = nil
			f.resp[tcbURL()] = r
		}, check: CheckCollateral, code: CodeUnavailable},
		{name: "TCB info not JSON", quote: q, spec: withSpec(nil), mutate: func(f *fakePCS) {
			r := f.resp[tcbURL()]
			r.body = []byte("<html>maintenance</html>")
			f.resp[tcbURL()] = r
		}, check: CheckCollateral, code: CodeUnavailable},
		{name: "outage", quote: q, spec: withSpec(nil), mutate: func(f *fakePCS) {
			r := f.resp[tcbURL()]
			r.err = errOutage
			f.resp[tcbURL()] = r
		}, check: CheckCollateral, code: CodeUnavailable},
		{name: "CRL outage", quote: q, spec: withSpec(nil), revoke: true, mutate: func(f *fakePCS) { delete(f.resp, rootCRLURL) }, check: CheckCollateral, code: CodeUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := p.pcs(t, tc.spec)
			if tc.mutate != nil {
				tc.mutate(f)
			}
			opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: f, CheckRevocations: tc.revoke, AcceptedTCBStatuses: tc.accepted}
			res, err := TDX(context.Background(), TDXEvidence{Quote: tc.quote}, opts)
			if tc.check == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if res.TCBStatus != tc.wantState {
					t.Errorf("TCB status %q, want %q", res.TCBStatus, tc.wantState)
				}
				for u, n := range f.calls {
					if n != 1 {
						t.Errorf("%s fetched %d times, want once", u, n)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted with TCB status %q", res.TCBStatus)
			}
			wantCheck(t, err, tc.check, tc.code)
			t.Log(err)
		})
	}
}

// TestMintedAcceptedByLibrary guards the test PKI itself: if go-tdx-guest
// would not accept the minted quote and collateral, the tests above would
// prove little about Intel-shaped evidence.
func TestMintedAcceptedByLibrary(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	if err := verify.RawTdxQuote(q, libraryOptions(p.rootPool(), pinnedNow, p.pcs(t, defaultSpec(p)), true)); err != nil {
		t.Fatal(err)
	}
	// And it refuses it under the Intel root.
	if err := verify.RawTdxQuote(q, libraryOptions(IntelRoots(), pinnedNow, nil, false)); err == nil {
		t.Fatal("go-tdx-guest accepts the minted quote under the Intel root")
	}
}

// TestConcurrentAppraisals shares one TDXOptions (roots, getter) across
// goroutines: go-tdx-guest writes into its Options, so each call must build
// its own. Run with -race.
func TestConcurrentAppraisals(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, defaultSpec(p)), CheckRevocations: true}
	ev := cos113(t)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			if i%2 == 0 {
				_, err := TDX(context.Background(), TDXEvidence{Quote: q}, opts)
				errs <- err
				return
			}
			_, err := TDX(context.Background(), TDXEvidence{Quote: ev.quote, CCEL: ev.ccel, CCELTable: ev.table}, TDXOptions{Now: pinnedNow})
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	p := newTestPKI(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := TDX(ctx, TDXEvidence{Quote: p.mintQuote(t, nil)}, TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, defaultSpec(p))})
	wantCheck(t, err, CheckCollateral, CodeUnavailable, "context canceled")
}

// TestStricterThanLibraryOnModuleStatus documents where this package's TCB
// evaluation differs from go-tdx-guest's: with a TDX module identity in
// play, the library reports the module level's status alone, so an
// OutOfDate platform with an UpToDate module passes it; Intel's quote
// verification library converges the two and so does this package.
func TestStricterThanLibraryOnModuleStatus(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	spec := defaultSpec(p)
	spec.platformStatus = "OutOfDate"
	if err := verify.RawTdxQuote(q, libraryOptions(p.rootPool(), pinnedNow, p.pcs(t, spec), false)); err != nil {
		t.Fatalf("go-tdx-guest no longer accepts this (update the doc of evaluateTCB): %v", err)
	}
	res, err := TDX(context.Background(), TDXEvidence{Quote: q}, TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, spec)})
	wantCheck(t, err, CheckTCBStatus, CodeRejected, "platform OutOfDate")
	if res.TCBStatus != "OutOfDate" || res.TDXModuleTCBStatus != "UpToDate" {
		t.Errorf("statuses %q / module %q", res.TCBStatus, res.TDXModuleTCBStatus)
	}
}

// TestCollateralSignedUnderAnotherTrustedRoot: a server trusting two roots
// (say Intel's and a second PKI's) must rate a platform only with collateral
// of the PKI its PCK chain belongs to. TCB info and QE identity signed under
// the other trusted root are refused, even though their signer chains to a
// root in the pool.
func TestCollateralSignedUnderAnotherTrustedRoot(t *testing.T) {
	p, other := newTestPKI(t), newTestPKI(t)
	q := p.mintQuote(t, nil)
	both := p.rootPool()
	both.AddCert(other.root)
	for _, doc := range []struct {
		name, url, header string
	}{
		{"TCB info", tcbURL(), tcbHeader()},
		{"QE identity", pcs.QeIdentityURL(), pcs.SgxQeIdentityIssuerChainPhrase},
	} {
		// go-tdx-guest's cross-check runs only on UpToDate platforms, and
		// its root CRL check happens to refuse the mix; a platform whose
		// accepted status is not UpToDate, without revocation checks, relies
		// on this package alone.
		for _, status := range []string{"UpToDate", "SWHardeningNeeded"} {
			t.Run(doc.name+" "+status, func(t *testing.T) {
				spec := defaultSpec(p)
				spec.platformStatus = status
				opts := TDXOptions{Now: pinnedNow, TrustedRoots: both, Collateral: p.pcs(t, spec),
					CheckRevocations: status == "UpToDate", AcceptedTCBStatuses: []string{status}}
				if _, err := TDX(context.Background(), TDXEvidence{Quote: q}, opts); err != nil {
					t.Fatalf("genuine collateral rejected: %v", err)
				}
				// The same document for this platform, signed under the
				// other trusted PKI with its own issuer chain.
				forgedSpec := spec
				forgedSpec.signer = other.signKey
				forged := p.pcs(t, forgedSpec)
				f := p.pcs(t, spec)
				r := forged.resp[doc.url]
				r.header = chainHeader(doc.header, other.signer, other.root)
				f.resp[doc.url] = r
				opts.Collateral = f
				res, err := TDX(context.Background(), TDXEvidence{Quote: q}, opts)
				if err == nil {
					t.Fatalf("accepted with TCB status %q", res.TCBStatus)
				}
				wantCheck(t, err, CheckCollateral, CodeRejected, doc.name, "the root the PCK chain ends in")
				t.Log(err)
			})
		}
	}
}
