package collateral_test

import (
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

// urlRecorder records the URLs a client would fetch, without a network.
type urlRecorder struct {
	mu   sync.Mutex
	urls []string
}

func (r *urlRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	return nil, errors.New("no network in tests")
}

func TestNewPCSDefaultFetchesIntel(t *testing.T) {
	s := newSimPCS(t, pcs.Params{}) // only for its URLs
	for _, u := range []string{"", conf.DefaultPCSURL} {
		rec := &urlRecorder{}
		c, err := collateral.New(conf.Collateral{Source: conf.CollateralPCS, URL: u},
			collateral.Options{Client: &http.Client{Transport: rec}})
		if err != nil {
			t.Fatal(err)
		}
		for _, iu := range s.urls() {
			if _, _, err := c.Get(iu); !errors.Is(err, collateral.ErrUnavailable) {
				t.Fatalf("%s: %v", iu, err)
			}
		}
		if strings.Join(rec.urls, " ") != strings.Join(s.urls(), " ") {
			t.Fatalf("URL %q: fetched %q, want Intel's own %q", u, rec.urls, s.urls())
		}
	}
}

func TestNewPCSAndPCCS(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	pcsCache := filepath.Join(t.TempDir(), "c")
	c, err := collateral.New(conf.Collateral{Source: conf.CollateralPCS, URL: s.srv.URL, CacheDir: pcsCache, Refresh: time.Hour},
		collateral.Options{Client: s.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.verify(t, c); err != nil {
		t.Fatalf("pcs: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(pcsCache, "*.json")); len(files) != 4 {
		t.Fatalf("cache_dir holds %d files, want 4", len(files))
	}

	// A PCCS: the same v4 paths under its base URL, the root CA CRL at
	// /sgx/certification/v4/rootcacrl, hex-encoded, and no copy of Intel's
	// certificates host.
	sc, err := pcs.Load(s.dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var paths []string
	h := pcs.Handler(s.dir)
	pccs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case collateral.PCCSRootCRLPath:
			_, _ = w.Write([]byte(hex.EncodeToString(sc.RootCRL)))
		case collateral.RootCRLPath:
			http.NotFound(w, r)
		default:
			h.ServeHTTP(w, r)
		}
	}))
	defer pccs.Close()
	cacheDir := filepath.Join(t.TempDir(), "cache")
	pc, err := collateral.New(conf.Collateral{Source: conf.CollateralPCCS, URL: pccs.URL + "/sgx/certification/v4/", CacheDir: cacheDir, Refresh: time.Hour},
		collateral.Options{Client: pccs.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.verify(t, pc); err != nil {
		t.Fatalf("pccs: %v", err)
	}
	mu.Lock()
	got := strings.Join(paths, " ")
	mu.Unlock()
	if !strings.Contains(got, collateral.PCCSRootCRLPath) || strings.Contains(got, collateral.RootCRLPath) {
		t.Fatalf("PCCS paths requested: %s", got)
	}
	if files, _ := filepath.Glob(filepath.Join(cacheDir, "*.json")); len(files) != 4 {
		t.Fatalf("cache_dir holds %d files, want 4", len(files))
	}
}

func TestNewRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg     conf.Collateral
		wantErr string
	}{
		{conf.Collateral{Source: "ftp"}, "unknown source"},
		{conf.Collateral{Source: conf.CollateralPCS, URL: "ftp://x"}, "pcs_url"},
		{conf.Collateral{Source: conf.CollateralPCCS}, "needs pccs_url"},
		{conf.Collateral{Source: conf.CollateralPCCS, URL: conf.DefaultPCSURL}, "Intel's PCS"},
		{conf.Collateral{Source: conf.CollateralOffline}, "needs offline_dir"},
		{conf.Collateral{Source: conf.CollateralOffline, OfflineDir: filepath.Join(t.TempDir(), "none")}, "no such file"},
		{conf.Collateral{Source: conf.CollateralOffline, OfflineDir: file}, "not a directory"},
		{conf.Collateral{Source: conf.CollateralPCS, CacheDir: filepath.Join(file, "sub")}, "cache dir"},
		{conf.Collateral{Source: conf.CollateralPCS, Refresh: -time.Second}, "negative"},
	} {
		if _, err := collateral.New(tc.cfg, collateral.Options{}); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("New(%+v): %v, want an error containing %q", tc.cfg, err, tc.wantErr)
		}
	}
}
