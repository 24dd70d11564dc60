package collateral_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	tdxpcs "github.com/google/go-tdx-guest/pcs"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

func TestParseIntelURL(t *testing.T) {
	good := []struct {
		in   string
		want collateral.Resource
	}{
		{tdxpcs.TcbInfoURL("53494D000000"), collateral.Resource{Kind: collateral.KindTCBInfo, FMSPC: "53494d000000", RequestURI: "/tdx/certification/v4/tcb?fmspc=53494D000000"}},
		{tdxpcs.QeIdentityURL(), collateral.Resource{Kind: collateral.KindQEIdentity, RequestURI: "/tdx/certification/v4/qe/identity"}},
		{tdxpcs.PckCrlURL("platform"), collateral.Resource{Kind: collateral.KindPCKCRL, CA: "platform", RequestURI: "/sgx/certification/v4/pckcrl?ca=platform&encoding=der"}},
		{tdxpcs.PckCrlURL("processor"), collateral.Resource{Kind: collateral.KindPCKCRL, CA: "processor", RequestURI: "/sgx/certification/v4/pckcrl?ca=processor&encoding=der"}},
		{"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform", collateral.Resource{Kind: collateral.KindPCKCRL, CA: "platform", PEM: true, RequestURI: "/sgx/certification/v4/pckcrl?ca=platform"}},
		{pki.RootCRLURL, collateral.Resource{Kind: collateral.KindRootCRL, RequestURI: "/IntelSGXRootCA.der"}},
	}
	for _, tc := range good {
		got, err := collateral.ParseIntelURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseIntelURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"",
		"garbage",
		"https:opaque",
		"http://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://evil.example/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com.evil.example/tdx/certification/v4/qe/identity",
		"https://certificates.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/IntelSGXRootCA.der",
		"https://certificates.trustedservices.intel.com/IntelSGXRootCA.der?x=1",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=../../x",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=53494d00000",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb",
		"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=../x&encoding=der",
		"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=base64",
		"https://api.trustedservices.intel.com/sgx/certification/v4/pckcert",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=53494d000000;x",
		"https://user@api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity#frag",
		"https://api.trustedservices.intel.com/tdx/certification/v4/../v4/qe/identity",
		"https://api.trustedservices.intel.com/" + strings.Repeat("a", 2048),
	} {
		if got, err := collateral.ParseIntelURL(bad); err == nil {
			t.Errorf("ParseIntelURL(%q) = %+v, want an error", bad, got)
		}
	}
}

// recorder is an HTTP server that records request URIs and answers with a
// fixed status and body.
type recorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	seen   []string
	status int
	body   []byte
}

func newRecorder(t *testing.T, status int, body []byte) *recorder {
	r := &recorder{status: status, body: body}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.URL.RequestURI())
		r.mu.Unlock()
		w.Header().Set("TCB-Info-Issuer-Chain", "chain")
		w.WriteHeader(r.status)
		_, _ = w.Write(r.body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func TestGetterMapsIntelURLsOntoBase(t *testing.T) {
	r := newRecorder(t, http.StatusOK, []byte("body"))
	for _, pccs := range []bool{false, true} {
		g := &collateral.Getter{BaseURL: r.srv.URL + "/prefix", Client: r.srv.Client(), PCCS: pccs}
		for in, want := range map[string]string{
			tdxpcs.TcbInfoURL("53494d000000"): "/prefix/tdx/certification/v4/tcb?fmspc=53494d000000",
			tdxpcs.QeIdentityURL():            "/prefix/tdx/certification/v4/qe/identity",
			tdxpcs.PckCrlURL("platform"):      "/prefix/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
			pki.RootCRLURL:                    map[bool]string{false: "/prefix/IntelSGXRootCA.der", true: "/prefix/sgx/certification/v4/rootcacrl"}[pccs],
		} {
			n := len(r.requests())
			h, b, err := g.GetContext(context.Background(), in)
			if err != nil || string(b) != "body" || http.Header(h).Get("TCB-Info-Issuer-Chain") != "chain" {
				t.Fatalf("PCCS=%v Get(%q) = %q, %v", pccs, in, b, err)
			}
			if got := r.requests()[n:]; len(got) != 1 || got[0] != want {
				t.Fatalf("PCCS=%v Get(%q) requested %q, want %q", pccs, in, got, want)
			}
		}
	}
	// Anything else is refused before any request.
	n := len(r.requests())
	g := &collateral.Getter{BaseURL: r.srv.URL, Client: r.srv.Client()}
	for _, bad := range []string{r.srv.URL + "/tdx/certification/v4/qe/identity", "https://evil.example/IntelSGXRootCA.der", "https://api.trustedservices.intel.com/sgx/certification/v4/pckcert"} {
		if _, _, err := g.Get(bad); err == nil || !strings.Contains(err.Error(), "not an Intel collateral URL") {
			t.Errorf("Get(%q): %v", bad, err)
		}
	}
	if len(r.requests()) != n {
		t.Fatal("a refused URL was requested")
	}
}

func TestGetterStatusAndSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		size    int
		wantErr string
	}{
		{"200 at the limit", 200, collateral.MaxResponseBytes, ""},
		{"200 over the limit", 200, collateral.MaxResponseBytes + 1, "larger than"},
		{"404", 404, 10, "404 Not Found"},
		{"500", 500, 10, "500 Internal Server Error"},
		{"204", 204, 0, "204 No Content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, tc.status, bytes.Repeat([]byte("x"), tc.size))
			g := &collateral.Getter{BaseURL: r.srv.URL, Client: r.srv.Client()}
			_, b, err := g.Get(tdxpcs.QeIdentityURL())
			if tc.wantErr == "" {
				if err != nil || len(b) != tc.size {
					t.Fatalf("%d bytes, %v", len(b), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || b != nil {
				t.Fatalf("%d bytes, %v; want an error containing %q", len(b), err, tc.wantErr)
			}
		})
	}
	// A dead server is an error too.
	r := newRecorder(t, 200, nil)
	r.srv.Close()
	if _, _, err := (&collateral.Getter{BaseURL: r.srv.URL}).Get(tdxpcs.QeIdentityURL()); err == nil {
		t.Fatal("closed server: no error")
	}
}

func TestGetterPCCSHexCRL(t *testing.T) {
	der, err := os.ReadFile(filepath.Join("testdata", "rootcrl.der"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body []byte
		pccs bool
		want []byte
	}{
		{"hex from a PCCS", []byte(hex.EncodeToString(der) + "\n"), true, der},
		{"DER from a PCCS", der, true, der},
		{"hex from a PCS is left alone", []byte(hex.EncodeToString(der)), false, []byte(hex.EncodeToString(der))},
		{"odd hex is left alone", []byte("303"), true, []byte("303")},
		{"hex not a DER sequence is left alone", []byte("4142"), true, []byte("4142")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, 200, tc.body)
			g := &collateral.Getter{BaseURL: r.srv.URL, Client: r.srv.Client(), PCCS: tc.pccs}
			_, b, err := g.Get(pki.RootCRLURL)
			if err != nil || !bytes.Equal(b, tc.want) {
				t.Fatalf("got %d bytes (%v), want %d", len(b), err, len(tc.want))
			}
		})
	}
	if _, err := x509.ParseRevocationList(der); err != nil {
		t.Fatalf("testdata root CRL: %v", err)
	}
}

func TestNewGetter(t *testing.T) {
	for in, want := range map[string]string{
		conf.DefaultPCSURL:                                "",
		"https://api.trustedservices.intel.com/":          "",
		"http://127.0.0.1:8081":                           "http://127.0.0.1:8081",
		"http://127.0.0.1:8081/":                          "http://127.0.0.1:8081",
		"https://pccs:8081/sgx/certification/v4/":         "https://pccs:8081",
		"https://mirror.example/pcs/tdx/certification/v4": "https://mirror.example/pcs",
	} {
		g, err := collateral.NewGetter(in)
		if err != nil || g.BaseURL != want || g.PCCS {
			t.Errorf("NewGetter(%q) = %+v, %v; want BaseURL %q", in, g, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://h", "http://", "https://u:p@h", "https://h?q=1", "https://h#f", "://", "h:8081"} {
		if g, err := collateral.NewGetter(bad); err == nil {
			t.Errorf("NewGetter(%q) = %+v", bad, g)
		}
		if g, err := collateral.NewPCCSGetter(bad); err == nil {
			t.Errorf("NewPCCSGetter(%q) = %+v", bad, g)
		}
	}
	g, err := collateral.NewPCCSGetter("https://pccs.example:8081/sgx/certification/v4/")
	if err != nil || g.BaseURL != "https://pccs.example:8081" || !g.PCCS {
		t.Errorf("NewPCCSGetter = %+v, %v", g, err)
	}
	if _, err := collateral.NewPCCSGetter(conf.DefaultPCSURL); err == nil {
		t.Error("Intel's PCS accepted as a PCCS")
	}
}
