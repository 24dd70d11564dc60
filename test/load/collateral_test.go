package load

import (
	"context"
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

// TestCollateralFaults: the collateral service issues collateral valid for
// a few seconds, then breaks in one of four ways. Attestations keep being
// accepted from the cached collateral until its nextUpdate, and after it
// are refused (Unavailable, or PermissionDenied for expired collateral):
// never accepted on collateral nobody can vouch for. A service that hangs
// costs each attestation collateral.DefaultTimeout (30 s) once the cache
// is past nextUpdate.
func TestCollateralFaults(t *testing.T) {
	// The simulated PCS dates collateral pcs.IssueSkew in the past, so
	// this validity leaves it usable for `window` after it is fetched.
	const window = 6 * time.Second
	const validity = pcs.IssueSkew + window
	for _, c := range []struct {
		name  string
		fault pcsFault
		// after is the verdict once the cached copy is past nextUpdate:
		// Unavailable when the service gives nothing usable; a
		// PermissionDenied naming the expiry when it serves collateral
		// that is signed but expired (collateral.Cache passes such a
		// response on unstored and the verifier refuses it; see the
		// threat model's "Stale or forged collateral").
		after codes.Code
		msg   string
	}{
		{"timeout", hang, codes.Unavailable, "collateral"},
		{"500", status500, codes.Unavailable, "500"},
		{"garbage", garbage, codes.Unavailable, "nextUpdate"},
		{"expired", stale, codes.PermissionDenied, "expired"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := newSimNode(t)
			if err := pcs.WriteParams(n.dir, pcs.Params{TCBStatus: "UpToDate", ValiditySeconds: int64(validity / time.Second)}); err != nil {
				t.Fatal(err)
			}
			f := &faultyPCS{real: pcs.Handler(n.dir), seen: map[string]*httptest.ResponseRecorder{}}
			srv := serve(t, f)
			s := newServer(t, n.serverConfig(srv.URL))
			a := n.agent(t, "")
			ctx := context.Background()

			fetched := time.Now()
			if _, err := s.attest(ctx, a, nil); err != nil {
				t.Fatalf("with a healthy PCS: %v", err)
			}
			f.mode.Store(int32(c.fault))
			before := f.requests.Load()
			accepted := 0
			for time.Since(fetched) < window-2*time.Second {
				if _, err := s.attest(ctx, a, nil); err != nil {
					t.Fatalf("%v after the first fetch, before nextUpdate, with the PCS broken: %v", time.Since(fetched).Round(time.Millisecond), err)
				}
				accepted++
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(time.Until(fetched.Add(window + time.Second)))
			t0 := time.Now()
			_, err := s.attest(ctx, a, nil)
			if status.Code(err) != c.after || !strings.Contains(status.Convert(err).Message(), c.msg) {
				t.Fatalf("after nextUpdate with the PCS broken: %v, want %v naming %q", err, c.after, c.msg)
			}
			took := time.Since(t0)

			// Healthy again: attestations recover without a restart, once
			// the cache's error backoff (collateral.DefaultErrorBackoff)
			// has passed.
			f.mode.Store(int32(healthy))
			healed := time.Now()
			for {
				_, err := s.attest(ctx, a, nil)
				if err == nil {
					break
				}
				if time.Since(healed) > collateral.DefaultErrorBackoff+5*time.Second {
					t.Fatalf("still failing %v after the PCS recovered: %v", time.Since(healed), err)
				}
				time.Sleep(250 * time.Millisecond)
			}
			t.Logf("%d attestations accepted from the cache with the PCS broken (%d requests to it); after nextUpdate: %v in %v; accepted again %v after the PCS recovered",
				accepted, f.requests.Load()-before, status.Code(err), took.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
		})
	}
}
