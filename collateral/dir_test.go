package collateral_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tdxpcs "github.com/google/go-tdx-guest/pcs"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

// offlineDir writes the sim's collateral as an offline directory, the way
// `ccnp sim` does.
func offlineDir(t *testing.T, s *simPCS) (string, *pcs.Collateral) {
	t.Helper()
	c, err := pcs.Load(s.dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "offline")
	if err := pcs.WriteOffline(c, out); err != nil {
		t.Fatal(err)
	}
	return out, c
}

func TestDirServesTheLayout(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	out, c := offlineDir(t, s)
	s.srv.Close() // no network from here on
	d := &collateral.Dir{Path: out}
	for _, tc := range []struct {
		url, header string
		body, chain []byte
	}{
		{tdxpcs.TcbInfoURL(strings.ToUpper(c.FMSPC)), tdxpcs.TcbInfoIssuerChainPhrase, c.TCBInfo, c.TCBIssuerChain},
		{tdxpcs.QeIdentityURL(), tdxpcs.SgxQeIdentityIssuerChainPhrase, c.QEIdentity, c.TCBIssuerChain},
		{tdxpcs.PckCrlURL("platform"), tdxpcs.SgxPckCrlIssuerChainPhrase, c.PCKCRL, c.PCKCRLIssuerChain},
		{"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform", tdxpcs.SgxPckCrlIssuerChainPhrase,
			pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.PCKCRL}), c.PCKCRLIssuerChain},
		{pki.RootCRLURL, "", c.RootCRL, nil},
	} {
		h, b, err := d.GetContext(context.Background(), tc.url)
		if err != nil || string(b) != string(tc.body) {
			t.Fatalf("%s: %v (body equal: %v)", tc.url, err, string(b) == string(tc.body))
		}
		if tc.header == "" {
			if len(h) != 0 {
				t.Fatalf("%s: headers %v", tc.url, h)
			}
			continue
		}
		// Intel sends the chain URL-encoded under the canonical key the
		// library looks up.
		chain, err := url.QueryUnescape(http.Header(h).Get(tc.header))
		if err != nil || chain != string(tc.chain) || len(h[tc.header]) != 1 {
			t.Fatalf("%s: %s = %q, %v", tc.url, tc.header, h[tc.header], err)
		}
	}
	if err := s.verify(t, d); err != nil {
		t.Fatalf("full verification from the offline directory: %v", err)
	}
	cache, err := collateral.New(conf.Collateral{Source: conf.CollateralOffline, OfflineDir: out}, collateral.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.verify(t, cache); err != nil {
			t.Fatalf("full verification through New(offline): %v", err)
		}
	}
	if st := cache.Stats(); st.UpstreamRequests != 4 || st.Hits != 4 {
		t.Fatalf("offline cache stats %+v", st)
	}

	// Another sim's directory must not vouch for this platform.
	other := newSimPCS(t, pcs.Params{})
	otherOut, _ := offlineDir(t, other)
	// Same FMSPC by default, so every file is found, and rejected.
	if err := s.verify(t, &collateral.Dir{Path: otherOut}); err == nil {
		t.Fatal("another sim's collateral accepted")
	}
}

func TestDirFailures(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	out, c := offlineDir(t, s)
	d := &collateral.Dir{Path: out}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := d.GetContext(ctx, tdxpcs.QeIdentityURL()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, _, err := d.Get(tdxpcs.PckCrlURL("processor")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), collateral.OfflinePCKCRL("processor")) {
		t.Errorf("missing processor CRL: %v", err)
	}
	if _, _, err := d.Get(tdxpcs.TcbInfoURL("00606a000000")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("another FMSPC: %v", err)
	}
	if _, _, err := d.Get("https://evil.example/IntelSGXRootCA.der"); err == nil {
		t.Error("non-Intel URL served")
	}
	small := &collateral.Dir{Path: out, MaxBytes: 100}
	if _, _, err := small.Get(tdxpcs.TcbInfoURL(c.FMSPC)); err == nil || !strings.Contains(err.Error(), "100-byte limit") {
		t.Errorf("oversized file: %v", err)
	}
	// A directory where a file should be.
	if err := os.Remove(filepath.Join(out, collateral.OfflineRootCRL)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(out, collateral.OfflineRootCRL), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Get(pki.RootCRLURL); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as root CRL: %v", err)
	}
	// A missing issuer chain fails the lookup.
	if err := os.Remove(filepath.Join(out, collateral.OfflineQEIdentityChain)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Get(tdxpcs.QeIdentityURL()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing chain: %v", err)
	}
}

func TestOfflineLayoutNames(t *testing.T) {
	// The names are the documented layout: written down here by hand.
	for got, want := range map[string]string{
		collateral.OfflineTCBInfo("53494D000000"):      "tcbinfo-53494d000000.json",
		collateral.OfflineTCBInfoChain("53494d000000"): "tcbinfo-53494d000000.issuer-chain.pem",
		collateral.OfflineQEIdentity:                   "qe-identity.json",
		collateral.OfflineQEIdentityChain:              "qe-identity.issuer-chain.pem",
		collateral.OfflinePCKCRL("platform"):           "pckcrl-platform.der",
		collateral.OfflinePCKCRLChain("processor"):     "pckcrl-processor.issuer-chain.pem",
		collateral.OfflineRootCRL:                      "rootcrl.der",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// TestDirBundle reads the dcap-qvl layout: each document as Intel's PCS
// serves it, split files winning over the bundle, and a broken bundle
// named in the error.
func TestDirBundle(t *testing.T) {
	dir := dcapQVLDir(t)
	d := &collateral.Dir{Path: dir}
	ctx := context.Background()
	for _, u := range []string{
		tdxpcs.TcbInfoURL(dcapQVLFMSPC), tdxpcs.QeIdentityURL(), tdxpcs.PckCrlURL("platform"),
		"https://certificates.trustedservices.intel.com/IntelSGXRootCA.der",
	} {
		if _, body, err := d.GetContext(ctx, u); err != nil || len(body) == 0 {
			t.Errorf("%s: %v", u, err)
		} else if _, err := collateral.NextUpdate(body); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	// The bundle's PCK CRL is the platform CA's: the processor CA's is missing.
	if _, _, err := d.GetContext(ctx, tdxpcs.PckCrlURL("processor")); err == nil || !strings.Contains(err.Error(), collateral.OfflinePCKCRL("processor")) {
		t.Errorf("processor CA CRL: %v", err)
	}
	// Another FMSPC's TCB info is not this bundle's.
	if _, _, err := d.GetContext(ctx, tdxpcs.TcbInfoURL("00806f050000")); err == nil {
		t.Error("TCB info of another FMSPC served")
	}
	// A split file wins.
	for name, body := range map[string]string{collateral.OfflineQEIdentity: `{"enclaveIdentity":{}}`, collateral.OfflineQEIdentityChain: "chain"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, body, err := d.GetContext(ctx, tdxpcs.QeIdentityURL()); err != nil || string(body) != `{"enclaveIdentity":{}}` {
		t.Errorf("split QE identity: %q, %v", body, err)
	}
	// A signature that is not hex cannot be spliced into the body.
	bad := bytes.Replace(readDcapQVL(t, "tdx_quote_collateral.json"), []byte(`"tcb_info_signature": "`), []byte(`"tcb_info_signature": "\"x`), 1)
	if bytes.Equal(bad, readDcapQVL(t, "tdx_quote_collateral.json")) {
		t.Fatal("the test did not change the bundle")
	}
	if err := os.WriteFile(filepath.Join(dir, collateral.OfflineBundle(dcapQVLFMSPC)), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.GetContext(ctx, tdxpcs.TcbInfoURL(dcapQVLFMSPC)); err == nil || !strings.Contains(err.Error(), "tcb_info_signature") {
		t.Errorf("non-hex signature: %v", err)
	}
}
