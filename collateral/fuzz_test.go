package collateral_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tdxpcs "github.com/google/go-tdx-guest/pcs"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

// TestNextUpdateRealIntel reads the dates of real Intel responses; the
// expected values were read with python3's json module and openssl (see
// testdata/README.md).
func TestNextUpdateRealIntel(t *testing.T) {
	for file, want := range map[string]string{
		"tcbinfo.json":     "2023-07-18T08:42:58Z",
		"qe-identity.json": "2023-07-08T07:24:59Z",
		"pckcrl.der":       "2023-07-08T07:27:52Z",
		"rootcrl.der":      "2024-04-02T10:22:51Z",
	} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := collateral.NextUpdate(b)
		if err != nil || got.UTC().Format(time.RFC3339) != want {
			t.Errorf("%s: %v, %v; want %s", file, got, err, want)
		}
	}
}

func TestNextUpdateRejects(t *testing.T) {
	tcb, err := os.ReadFile(filepath.Join("testdata", "tcbinfo.json"))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := os.ReadFile(filepath.Join("testdata", "pckcrl.der"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"garbage":         []byte("\x00\x01garbage"),
		"truncated JSON":  tcb[:len(tcb)/2],
		"truncated CRL":   crl[:len(crl)/2],
		"other JSON":      []byte(`{"foo":{"nextUpdate":"2030-01-01T00:00:00Z"}}`),
		"both members":    []byte(`{"tcbInfo":{"nextUpdate":"2030-01-01T00:00:00Z"},"enclaveIdentity":{"nextUpdate":"2030-01-01T00:00:00Z"}}`),
		"bad date":        []byte(`{"tcbInfo":{"nextUpdate":"tomorrow"}}`),
		"no date":         []byte(`{"enclaveIdentity":{}}`),
		"PEM certificate": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"JSON array":      []byte(`[1,2]`),
	} {
		if got, err := collateral.NextUpdate(b); err == nil {
			t.Errorf("%s: %v, want an error", name, got)
		}
	}
}

func FuzzNextUpdate(f *testing.F) {
	for _, file := range []string{"tcbinfo.json", "qe-identity.json", "pckcrl.der", "rootcrl.der"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := collateral.NextUpdate(b)
		if err == nil && got.IsZero() {
			t.Fatal("no error and no date")
		}
	})
}

func FuzzParseIntelURL(f *testing.F) {
	f.Add(tdxpcs.TcbInfoURL("53494d000000"))
	f.Add(tdxpcs.QeIdentityURL())
	f.Add(tdxpcs.PckCrlURL("platform"))
	f.Add(tdxpcs.PckCrlURL("processor"))
	f.Add(pki.RootCRLURL)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := collateral.ParseIntelURL(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, "https://"+collateral.PCSHost+"/") && !strings.HasPrefix(s, "https://"+collateral.CertificatesHost+"/") {
			t.Fatalf("%q accepted: not on an Intel host", s)
		}
		if !strings.HasPrefix(r.RequestURI, "/") || strings.Contains(r.RequestURI, "#") {
			t.Fatalf("%q: request URI %q", s, r.RequestURI)
		}
		// Whatever is accepted names a file inside an offline directory.
		for _, name := range []string{collateral.OfflineTCBInfo(r.FMSPC), collateral.OfflinePCKCRL(r.CA)} {
			if filepath.Base(name) != name || strings.Contains(name, "..") {
				t.Fatalf("%q: offline file name %q", s, name)
			}
		}
	})
}
