package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// pcsFault is what a failing collateral service does to every request.
type pcsFault int

const (
	healthy pcsFault = iota
	hang             // never answers (until the client gives up)
	status500
	garbage
	stale // the responses it gave when healthy, replayed: genuine, signed, expired once their nextUpdate passes
)

// faultyPCS serves the simulated PCS, or fails in the chosen way once
// broken.
type faultyPCS struct {
	real     http.Handler
	mode     atomic.Int32
	requests atomic.Int64

	mu   sync.Mutex
	seen map[string]*httptest.ResponseRecorder
}

func (f *faultyPCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	switch pcsFault(f.mode.Load()) {
	case hang:
		<-r.Context().Done()
	case status500:
		http.Error(w, "internal error", http.StatusInternalServerError)
	case garbage:
		_, _ = w.Write([]byte(`{"tcbInfo": [1, 2,`))
	case stale:
		f.mu.Lock()
		rec, ok := f.seen[r.URL.String()]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	default:
		rec := httptest.NewRecorder()
		f.real.ServeHTTP(rec, r)
		f.mu.Lock()
		f.seen[r.URL.String()] = rec
		f.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}
}

// TestCollateralFaults: the collateral service breaks in one of four ways
// once the server has fetched collateral (valid 30 days, refresh 1h,
// fetch_timeout 1s). The server's clock, shared with the service, is then
// moved past the refresh: attestations keep being accepted from the cached
// collateral, without waiting for the broken service, while the cache
// retries it behind them. Past nextUpdate they are refused with
// Unavailable, never accepted, and a service that hangs costs one
// attestation the fetch timeout, not every one. When the service heals,
// attestations are accepted again without a restart.
func TestCollateralFaults(t *testing.T) {
	const fetchTimeout = 3 * time.Second
	for _, c := range []struct {
		name  string
		fault pcsFault
		msg   string // in the Unavailable message past nextUpdate
	}{
		{"timeout", hang, "deadline exceeded"},
		{"500", status500, "500"},
		{"garbage", garbage, "nextUpdate"},
		{"expired", stale, "expired"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := newSimNode(t)
			if err := pcs.WriteParams(n.Dir, pcs.Params{TCBStatus: "UpToDate"}); err != nil {
				t.Fatal(err)
			}
			clk := &simtest.Clock{}
			f := &faultyPCS{real: pcs.HandlerWithClock(n.Dir, clk.Now), seen: map[string]*httptest.ResponseRecorder{}}
			srv := simtest.ServePCS(t, f)
			s := newServerWithClock(t, n.serverConfig(srv.URL, `refresh = "1h"`, fmt.Sprintf("fetch_timeout = %q", fetchTimeout)), clk.Now)
			a := n.agent(t, "")
			ctx := context.Background()
			if _, err := s.attest(ctx, a, nil); err != nil {
				t.Fatalf("with a healthy PCS: %v", err)
			}

			// Broken, two hours on: past the refresh, before nextUpdate.
			f.mode.Store(int32(c.fault))
			before := f.requests.Load()
			clk.Advance(2 * time.Hour)
			var slowest time.Duration
			const during = 20
			for i := range during {
				t0 := time.Now()
				if _, err := s.attest(ctx, a, nil); err != nil {
					t.Fatalf("attestation %d before nextUpdate with the PCS broken: %v", i, err)
				}
				slowest = max(slowest, time.Since(t0))
				clk.Advance(time.Minute)
				time.Sleep(100 * time.Millisecond)
			}
			tried := f.requests.Load() - before
			if tried == 0 {
				t.Fatal("the cache never asked the broken PCS again after the refresh passed")
			}
			if slowest >= fetchTimeout {
				t.Errorf("an attestation with usable cached collateral waited %v for the broken PCS (fetch_timeout %v)", slowest, fetchTimeout)
			}

			// Past every nextUpdate: refused, Unavailable, never accepted.
			clk.Advance(31 * 24 * time.Hour)
			var took [3]time.Duration
			for i := range took {
				t0 := time.Now()
				_, err := s.attest(ctx, a, nil)
				took[i] = time.Since(t0)
				if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), c.msg) {
					t.Fatalf("attestation %d after nextUpdate with the PCS broken: %v, want Unavailable naming %q", i, err, c.msg)
				}
			}
			// Only the first waits for a hanging service; the others are
			// answered from its failure while a retry runs.
			if c.fault == hang && (took[1] >= fetchTimeout/2 || took[2] >= fetchTimeout/2) {
				t.Errorf("attestations after the first failure took %v and %v (fetch_timeout %v)", took[1], took[2], fetchTimeout)
			}

			// Healthy again: accepted again without a restart, once the
			// cache's error backoff has passed.
			f.mode.Store(int32(healthy))
			healed := time.Now()
			for {
				_, err := s.attest(ctx, a, nil)
				if err == nil {
					break
				}
				if time.Since(healed) > collateral.DefaultErrorBackoff+fetchTimeout+5*time.Second {
					t.Fatalf("still failing %v after the PCS recovered: %v", time.Since(healed), err)
				}
				time.Sleep(250 * time.Millisecond)
			}
			t.Logf("%s: %d attestations accepted from the cache with the PCS broken, slowest %v (%d requests to it); after nextUpdate: Unavailable in %v, then %v and %v; accepted again %v after the PCS recovered",
				c.name, during, slowest.Round(time.Millisecond), tried, took[0].Round(time.Millisecond),
				took[1].Round(time.Millisecond), took[2].Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
		})
	}
}
