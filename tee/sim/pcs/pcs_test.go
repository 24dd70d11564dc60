package pcs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
	tdxpcs "github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"
)

// simDir creates a PKI and parameters the way sim.Init lays them out.
func simDir(t testing.TB, params Params) (string, *pki.Authority) {
	t.Helper()
	dir := t.TempDir()
	a, err := pki.Create(filepath.Join(dir, PKIDir), pki.DefaultPlatform(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteParams(dir, params); err != nil {
		t.Fatal(err)
	}
	return dir, a
}

func quote(t testing.TB, a *pki.Authority) []byte {
	t.Helper()
	var body pki.TDQuoteBody
	body.TDAttributes = [8]byte{0, 0, 0, 0x10}
	body.MRTD[0] = 1
	var rd [64]byte
	copy(rd[:], "nonce")
	q, err := a.SignQuote(body, rd)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func options(t testing.TB, a *pki.Authority, getter any, now time.Time) *verify.Options {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(a.RootPEM()) {
		t.Fatal("no root")
	}
	o := &verify.Options{
		GetCollateral:    true,
		CheckRevocations: true,
		TrustedRoots:     roots,
		Now:              &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now},
	}
	switch g := getter.(type) {
	case *collateral.Getter:
		o.Getter = g
	case *collateral.Dir:
		o.Getter = g
	}
	return o
}

func TestCollateralOverHTTP(t *testing.T) {
	now := time.Now()
	tests := []struct {
		params  Params
		at      time.Time
		wantErr string // empty: verification passes
	}{
		{Params{TCBStatus: "UpToDate"}, now, ""},
		{Params{TCBStatus: "OutOfDate"}, now, "TCB status"},
		{Params{TCBStatus: "SWHardeningNeeded"}, now, "TCB Status is not \"UpToDate\""},
		{Params{TCBStatus: "Revoked"}, now, "TCB Status is not \"UpToDate\""},
		{Params{TCBStatus: "UpToDate", RevokePCK: true}, now, "PCK Leaf certificate in PCK certificate chain was revoked"},
		{Params{TCBStatus: "UpToDate", RevokePlatformCA: true}, now, "intermediate certificate in PCK certificate chain was revoked"},
		{Params{TCBStatus: "UpToDate", ValiditySeconds: 60}, now.Add(2 * time.Minute), "expired"},
	}
	for _, tc := range tests {
		name := tc.params.TCBStatus
		if tc.params.RevokePCK {
			name += "/revoked PCK"
		}
		if tc.params.RevokePlatformCA {
			name += "/revoked platform CA"
		}
		if tc.params.ValiditySeconds != 0 {
			name += "/expired"
		}
		t.Run(name, func(t *testing.T) {
			dir, a := simDir(t, tc.params)
			srv := httptest.NewServer(Handler(dir))
			defer srv.Close()
			g := &collateral.Getter{BaseURL: srv.URL, Client: srv.Client()}
			err := verify.RawTdxQuoteContext(context.Background(), quote(t, a), options(t, a, g, tc.at))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("verification failed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestCollateralUnderIntelRootFails(t *testing.T) {
	dir, a := simDir(t, Params{TCBStatus: "UpToDate"})
	srv := httptest.NewServer(Handler(dir))
	defer srv.Close()
	o := options(t, a, &collateral.Getter{BaseURL: srv.URL, Client: srv.Client()}, time.Now())
	o.TrustedRoots = nil // go-tdx-guest's embedded Intel root
	if err := verify.RawTdxQuote(quote(t, a), o); err == nil {
		t.Fatal("sim quote and collateral verified under the Intel root")
	}
}

func TestOfflineCollateral(t *testing.T) {
	dir, a := simDir(t, Params{TCBStatus: "UpToDate"})
	c, err := Load(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "collateral")
	if err := WriteOffline(c, out); err != nil {
		t.Fatal(err)
	}
	if err := verify.RawTdxQuote(quote(t, a), options(t, a, &collateral.Dir{Path: out}, time.Now())); err != nil {
		t.Fatalf("offline collateral: %v", err)
	}
	// A collateral directory of another sim must not vouch for this one.
	otherDir, _ := simDir(t, Params{TCBStatus: "UpToDate"})
	oc, err := Load(otherDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherOut := filepath.Join(t.TempDir(), "other")
	if err := WriteOffline(oc, otherOut); err != nil {
		t.Fatal(err)
	}
	if err := verify.RawTdxQuote(quote(t, a), options(t, a, &collateral.Dir{Path: otherOut}, time.Now())); err == nil {
		t.Fatal("another sim's collateral accepted")
	}
}

func TestHandlerResponses(t *testing.T) {
	dir, a := simDir(t, Params{TCBStatus: "UpToDate"})
	srv := httptest.NewServer(Handler(dir))
	defer srv.Close()
	fmspc := "53494d000000"
	tests := []struct {
		path   string
		method string
		status int
		header string
	}{
		{"/tdx/certification/v4/tcb?fmspc=" + fmspc, "GET", 200, "TCB-Info-Issuer-Chain"},
		{"/tdx/certification/v4/tcb?fmspc=" + strings.ToUpper(fmspc), "GET", 200, "TCB-Info-Issuer-Chain"},
		{"/tdx/certification/v4/qe/identity", "GET", 200, "SGX-Enclave-Identity-Issuer-Chain"},
		{"/sgx/certification/v4/pckcrl?ca=platform&encoding=der", "GET", 200, "SGX-PCK-CRL-Issuer-Chain"},
		{"/sgx/certification/v4/pckcrl?ca=platform", "GET", 200, "SGX-PCK-CRL-Issuer-Chain"},
		{"/IntelSGXRootCA.der", "GET", 200, ""},
		{"/tdx/certification/v4/tcb?fmspc=00606a000000", "GET", 404, ""},
		{"/tdx/certification/v4/tcb?fmspc=zz", "GET", 404, ""},
		{"/tdx/certification/v4/tcb", "GET", 404, ""},
		{"/sgx/certification/v4/pckcrl?ca=processor&encoding=der", "GET", 404, ""},
		{"/sgx/certification/v4/pckcrl?ca=platform&encoding=base64", "GET", 404, ""},
		{"/sgx/certification/v4/pckcert", "GET", 404, ""},
		{"/tdx/certification/v4/qe/identity", "POST", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.header == "" {
				return
			}
			v := resp.Header.Get(tc.header)
			chain, err := url.QueryUnescape(v)
			if err != nil || strings.Count(chain, "BEGIN CERTIFICATE") != 2 {
				t.Fatalf("%s = %q: want two URL-encoded PEM certificates", tc.header, v)
			}
			if !strings.HasSuffix(chain, string(a.RootPEM())) {
				t.Fatalf("%s does not end with the sim root", tc.header)
			}
		})
	}
	// The canonical header keys are what go-tdx-guest looks up.
	for _, k := range []string{tdxpcs.TcbInfoIssuerChainPhrase, tdxpcs.SgxQeIdentityIssuerChainPhrase, tdxpcs.SgxPckCrlIssuerChainPhrase} {
		found := false
		for _, ours := range []string{TCBInfoIssuerChainHeader, QEIdentityIssuerChainHeader, PCKCRLIssuerChainHeader} {
			found = found || http.CanonicalHeaderKey(ours) == k
		}
		if !found {
			t.Errorf("go-tdx-guest looks for %q, which the handler never sends", k)
		}
	}
}

func TestTCBInfoShape(t *testing.T) {
	dir, a := simDir(t, Params{TCBStatus: "OutOfDate"})
	c, err := Load(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var ti tdxpcs.TdxTcbInfo
	if err := json.Unmarshal(c.TCBInfo, &ti); err != nil {
		t.Fatal(err)
	}
	info := ti.TcbInfo
	if info.ID != "TDX" || info.Version != 3 || !info.NextUpdate.After(time.Now()) {
		t.Fatalf("tcbInfo id %q version %d nextUpdate %v", info.ID, info.Version, info.NextUpdate)
	}
	if len(info.TcbLevels) != 2 || info.TcbLevels[0].TcbStatus != "UpToDate" || info.TcbLevels[1].TcbStatus != "OutOfDate" {
		t.Fatalf("levels %+v", info.TcbLevels)
	}
	if !bytes.Equal(info.TdxModule.Mrsigner.Bytes, a.Platform.MRSignerSeam) {
		t.Fatal("tdxModule.mrsigner differs from the platform's MRSIGNERSEAM")
	}
	var qi tdxpcs.QeIdentity
	if err := json.Unmarshal(c.QEIdentity, &qi); err != nil {
		t.Fatal(err)
	}
	if qi.EnclaveIdentity.ID != "TD_QE" || qi.EnclaveIdentity.Version != 2 {
		t.Fatalf("QE identity id %q version %d", qi.EnclaveIdentity.ID, qi.EnclaveIdentity.Version)
	}
}

// TestEvaluationNumbersAndAdvisories: the parameters choose what verifiers
// see as the documents' evaluation data numbers and the advisories of the
// platform's level, and the defaults stay what earlier sim directories got.
func TestEvaluationNumbersAndAdvisories(t *testing.T) {
	decode := func(t *testing.T, p Params) (*tdxpcs.TcbInfo, *tdxpcs.EnclaveIdentity) {
		t.Helper()
		dir, _ := simDir(t, p)
		c, err := Load(dir, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var ti tdxpcs.TdxTcbInfo
		var qi tdxpcs.QeIdentity
		if err := json.Unmarshal(c.TCBInfo, &ti); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(c.QEIdentity, &qi); err != nil {
			t.Fatal(err)
		}
		return &ti.TcbInfo, &qi.EnclaveIdentity
	}
	last := func(ti *tdxpcs.TcbInfo) []string { return ti.TcbLevels[len(ti.TcbLevels)-1].AdvisoryIDs }

	ti, qi := decode(t, Params{TCBStatus: "UpToDate"})
	if ti.TcbEvaluationDataNumber != DefaultTCBEvaluationDataNumber || qi.TcbEvaluationDataNumber != DefaultTCBEvaluationDataNumber || len(last(ti)) != 0 {
		t.Errorf("defaults: numbers %d/%d, advisories %v", ti.TcbEvaluationDataNumber, qi.TcbEvaluationDataNumber, last(ti))
	}
	ti, _ = decode(t, Params{TCBStatus: "SWHardeningNeeded"})
	if got := last(ti); len(got) != 1 || got[0] != DefaultAdvisoryID || len(ti.TcbLevels[0].AdvisoryIDs) != 0 {
		t.Errorf("default advisories %v (UpToDate level %v)", got, ti.TcbLevels[0].AdvisoryIDs)
	}
	ti, qi = decode(t, Params{TCBStatus: "SWHardeningNeeded", TCBEvaluationDataNumber: 19, QEEvaluationDataNumber: 18,
		AdvisoryIDs: []string{"INTEL-SA-00837", "INTEL-SA-00960"}})
	if ti.TcbEvaluationDataNumber != 19 || qi.TcbEvaluationDataNumber != 18 {
		t.Errorf("numbers %d/%d, want 19/18", ti.TcbEvaluationDataNumber, qi.TcbEvaluationDataNumber)
	}
	if got := last(ti); strings.Join(got, ",") != "INTEL-SA-00837,INTEL-SA-00960" {
		t.Errorf("advisories %v", got)
	}
	ti, qi = decode(t, Params{TCBStatus: "UpToDate", TCBEvaluationDataNumber: 16})
	if ti.TcbEvaluationDataNumber != 16 || qi.TcbEvaluationDataNumber != 16 {
		t.Errorf("QE number %d does not follow the TCB info's %d", qi.TcbEvaluationDataNumber, ti.TcbEvaluationDataNumber)
	}
}

func TestRequestPath(t *testing.T) {
	good := map[string]string{
		tdxpcs.TcbInfoURL("53494d000000"): "/tdx/certification/v4/tcb?fmspc=53494d000000",
		tdxpcs.QeIdentityURL():            "/tdx/certification/v4/qe/identity",
		tdxpcs.PckCrlURL("platform"):      "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
		pki.RootCRLURL:                    "/IntelSGXRootCA.der",
	}
	for in, want := range good {
		got, err := RequestPath(in)
		if err != nil || got != want {
			t.Errorf("RequestPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"",
		"garbage",
		"http://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://evil.example/tdx/certification/v4/qe/identity",
		"https://certificates.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/IntelSGXRootCA.der",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=../../x",
		"https://user@api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity#frag",
		"https://api.trustedservices.intel.com/" + strings.Repeat("a", maxURL),
	} {
		if got, err := RequestPath(bad); err == nil {
			t.Errorf("RequestPath(%q) = %q, want an error", bad, got)
		}
	}
}

func FuzzRequestPath(f *testing.F) {
	f.Add(tdxpcs.TcbInfoURL("53494d000000"))
	f.Add(tdxpcs.QeIdentityURL())
	f.Add(tdxpcs.PckCrlURL("platform"))
	f.Add(pki.RootCRLURL)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := RequestPath(s)
		if err != nil {
			return
		}
		// Whatever is accepted maps to one of the four served paths.
		u, err := url.Parse(p)
		if err != nil {
			t.Fatalf("RequestPath(%q) = %q, which does not parse: %v", s, p, err)
		}
		if _, err := route("", u.Path, u.Query()); err != nil {
			t.Fatalf("RequestPath(%q) = %q, which the handler refuses: %v", s, p, err)
		}
	})
}

func TestParseParams(t *testing.T) {
	seed, err := os.ReadFile(filepath.Join("testdata", "pcs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ParseParams(seed); err != nil || p.TCBStatus != "OutOfDate" || !p.RevokePCK {
		t.Fatalf("ParseParams(testdata) = %+v, %v", p, err)
	}
	for name, b := range map[string][]byte{
		"empty":             nil,
		"garbage":           []byte("\xff\xfe"),
		"truncated":         seed[:len(seed)/2],
		"oversized":         bytes.Repeat([]byte(" "), maxParamsFile+1),
		"unknown status":    []byte(`{"tcb_status":"Fine"}`),
		"no status":         []byte(`{}`),
		"negative validity": []byte(`{"tcb_status":"UpToDate","validity_seconds":-1}`),
		"wrong type":        []byte(`{"tcb_status":1}`),
		"empty advisory":    []byte(`{"tcb_status":"UpToDate","advisory_ids":[""]}`),
		"long advisory":     []byte(`{"tcb_status":"UpToDate","advisory_ids":["` + strings.Repeat("A", maxAdvisoryIDLen+1) + `"]}`),
		"negative number":   []byte(`{"tcb_status":"UpToDate","tcb_evaluation_data_number":-1}`),
	} {
		if _, err := ParseParams(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseParams(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "pcs.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"tcb_status":"UpToDate"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseParams(b)
		if err == nil {
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted invalid params: %v", err)
			}
		}
	})
}

func TestServeListener(t *testing.T) {
	dir, a := simDir(t, Params{TCBStatus: "UpToDate"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, dir, ln) }()
	g := &collateral.Getter{BaseURL: "http://" + ln.Addr().String()}
	if err := verify.RawTdxQuote(quote(t, a), options(t, a, g, time.Now())); err != nil {
		t.Fatalf("verification against Serve: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not stop")
	}

	// A directory without a sim is refused before listening.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ServeListener(context.Background(), t.TempDir(), ln2); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ServeListener on an empty dir: %v", err)
	}
}
