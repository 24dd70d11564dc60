package collateral_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/conf"
)

// dcap-qvl's real quote and the collateral Intel's PCS served for it (see
// testdata/dcap-qvl/README.md).
const dcapQVLFMSPC = "b0c06f000000"

var (
	dcapQVLUpToDate = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	dcapQVLExpired  = time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC)
)

func readDcapQVL(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "dcap-qvl", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dcapQVLDir is an offline directory holding only the dcap-qvl file, in
// its own layout.
func dcapQVLDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, collateral.OfflineBundle(dcapQVLFMSPC)), readDcapQVL(t, "tdx_quote_collateral.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// realPCS serves the dcap-qvl collateral at Intel's PCS paths on loopback,
// as Intel's PCS does: the signed JSON documents with their issuer chains
// in the response headers, the CRLs as DER.
func realPCS(t *testing.T) *httptest.Server {
	dir := &collateral.Dir{Path: dcapQVLDir(t)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := collateral.PCSHost
		if r.URL.Path == collateral.RootCRLPath {
			host = collateral.CertificatesHost
		}
		h, body, err := dir.GetContext(r.Context(), "https://"+host+r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		for k, v := range h {
			w.Header()[k] = v
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRealIntelCollateral verifies a real TDX quote with the real Intel
// collateral served for it, through the production collateral path (New:
// the PCS getter and the cache, or the offline directory) and the Intel SGX
// Root CA: UpToDate, through the TDX module identity TDX_01, while the
// collateral is current; refused, naming the expired TCB info, after its
// next update.
func TestRealIntelCollateral(t *testing.T) {
	quote := readDcapQVL(t, "tdx_quote")
	srv := realPCS(t)
	sources := map[string]conf.Collateral{
		"pcs on loopback": {Source: conf.CollateralPCS, URL: srv.URL},
		"offline bundle":  {Source: conf.CollateralOffline, OfflineDir: dcapQVLDir(t)},
	}
	for name, cfg := range sources {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				at      time.Time
				wantErr []string
			}{
				{dcapQVLUpToDate, nil},
				{dcapQVLExpired, []string{"TCB info response expired", "nextUpdate 2025-07-19T10:16:03Z", "tcb?fmspc=" + dcapQVLFMSPC}},
			} {
				now := tc.at
				c, err := collateral.New(cfg, collateral.Options{Now: func() time.Time { return now }})
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				res, err := appraisal.TDX(context.Background(), appraisal.TDXEvidence{Quote: quote},
					appraisal.TDXOptions{Now: now, Collateral: c, CheckRevocations: true})
				t.Logf("%s at %s: %v (%v)", name, now.Format(time.DateOnly), err, time.Since(start))
				if tc.wantErr == nil {
					if err != nil {
						t.Fatalf("at %s: %v", now.Format(time.DateOnly), err)
					}
					if res.TCBStatus != "UpToDate" || res.TDXModuleTCBStatus != "UpToDate" || res.QETCBStatus != "UpToDate" || res.FMSPC != dcapQVLFMSPC {
						t.Errorf("status %s (module %q, QE %q), FMSPC %s", res.TCBStatus, res.TDXModuleTCBStatus, res.QETCBStatus, res.FMSPC)
					}
					if res.TCBInfoEvaluationDataNumber != 17 || res.QEIdentityEvaluationDataNumber != 17 {
						t.Errorf("evaluation data numbers %d, %d, want 17", res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber)
					}
					continue
				}
				ae, ok := appraisal.AsError(err)
				if !ok || ae.Check != appraisal.CheckCollateral {
					t.Fatalf("at %s: %v, want a collateral failure", now.Format(time.DateOnly), err)
				}
				for _, p := range tc.wantErr {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("%q does not say %q", err, p)
					}
				}
			}
		})
	}
}

// TestRealIntelCollateralExpiredTCBInfo checks the appraisal's own date
// check on the real TCB info, without the cache (which refuses expired
// responses before the appraisal sees them): the rejection names the TCB
// info and its next update.
func TestRealIntelCollateralExpiredTCBInfo(t *testing.T) {
	_, err := appraisal.TDX(context.Background(), appraisal.TDXEvidence{Quote: readDcapQVL(t, "tdx_quote")},
		appraisal.TDXOptions{Now: dcapQVLExpired, Collateral: &collateral.Dir{Path: dcapQVLDir(t)}})
	ae, ok := appraisal.AsError(err)
	if !ok || ae.Check != appraisal.CheckCollateral || ae.Code != appraisal.CodeRejected {
		t.Fatalf("%v, want a collateral rejection", err)
	}
	if !strings.Contains(err.Error(), "TCB info expired: next update was due 2025-07-19T10:16:03Z") {
		t.Errorf("%v does not say the TCB info expired", err)
	}
}
