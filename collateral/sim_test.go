package collateral_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tdxpcs "github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

// Upstream behaviours a test can switch the simulated PCS to.
const (
	modeOK int32 = iota
	mode500
	modeGarbage
	modeHang // until the request's context ends
)

// simPCS is the simulated PCS of a fresh sim directory behind a real HTTP
// server that counts requests per path and can be made to fail.
type simPCS struct {
	dir   string
	auth  *pki.Authority
	fmspc string
	srv   *httptest.Server
	mode  atomic.Int32
	delay atomic.Int64 // nanoseconds slept before answering
	// clk, when set before the first request, dates what the PCS issues;
	// nil means the wall clock.
	clk *clock

	mu   sync.Mutex
	hits map[string]int // request URI -> count
}

func newSimPCS(t testing.TB, params pcs.Params) *simPCS {
	t.Helper()
	dir := t.TempDir()
	if err := sim.Init(dir, sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if params.TCBStatus == "" {
		params.TCBStatus = "UpToDate"
	}
	if err := pcs.WriteParams(dir, params); err != nil {
		t.Fatal(err)
	}
	auth, err := pki.Load(filepath.Join(dir, pcs.PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pcs.Load(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := &simPCS{dir: dir, auth: auth, fmspc: c.FMSPC, hits: map[string]int{}}
	h := pcs.HandlerWithClock(dir, func() time.Time {
		if s.clk != nil {
			return s.clk.Now()
		}
		return time.Now()
	})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.RequestURI()]++
		s.mu.Unlock()
		if d := time.Duration(s.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		switch s.mode.Load() {
		case mode500:
			http.Error(w, "PCS down", http.StatusInternalServerError)
		case modeGarbage:
			_, _ = w.Write([]byte("<html>captive portal</html>"))
		case modeHang:
			<-r.Context().Done()
		default:
			h.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// urls are the four Intel URLs a verifier of this platform fetches.
func (s *simPCS) urls() []string {
	return []string{tdxpcs.TcbInfoURL(s.fmspc), tdxpcs.QeIdentityURL(), tdxpcs.PckCrlURL("platform"), pki.RootCRLURL}
}

func (s *simPCS) getter() *collateral.Getter {
	return &collateral.Getter{BaseURL: s.srv.URL, Client: s.srv.Client()}
}

func (s *simPCS) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.hits {
		n += c
	}
	return n
}

func (s *simPCS) quote(t testing.TB) []byte {
	t.Helper()
	var body pki.TDQuoteBody
	body.MRTD[0] = 1
	var rd [64]byte
	copy(rd[:], "nonce")
	q, err := s.auth.SignQuote(body, rd)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// verify runs go-tdx-guest's full verification (chain, signatures,
// collateral, CRLs) of a fresh quote with collateral from g, under the sim
// root only, with fresh Options as the library requires.
func (s *simPCS) verify(t testing.TB, g any) error {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.auth.RootPEM()) {
		t.Fatal("sim root does not parse")
	}
	now := time.Now()
	o := &verify.Options{
		GetCollateral:    true,
		CheckRevocations: true,
		TrustedRoots:     roots,
		Now:              &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now},
	}
	switch g := g.(type) {
	case *collateral.Cache:
		o.Getter = g
	case *collateral.Dir:
		o.Getter = g
	case *collateral.Getter:
		o.Getter = g
	default:
		t.Fatalf("getter %T", g)
	}
	return verify.RawTdxQuoteContext(context.Background(), s.quote(t), o)
}

// clock is an adjustable clock for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// warnings collects the cache's warnings.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Warn(msg string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	b.WriteString(msg)
	for _, a := range args {
		b.WriteString(" ")
		b.WriteString(strings.TrimSpace(strings.ReplaceAll(anyString(a), "\n", " ")))
	}
	w.msgs = append(w.msgs, b.String())
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

func anyString(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case error:
		return v.Error()
	case time.Time:
		return v.Format(time.RFC3339)
	}
	return "?"
}

func mustPool(t testing.TB, pemBytes []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in PEM")
	}
	return p
}

// record mirrors a disk cache file, written down independently of the
// package's own type so that a format change breaks these tests.
type record struct {
	URL     string              `json:"url"`
	Fetched time.Time           `json:"fetched"`
	Header  map[string][]string `json:"header"`
	Body    []byte              `json:"body"`
}

func readRecord(t testing.TB, path string) record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

func writeRecord(t testing.TB, path string, r record) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
