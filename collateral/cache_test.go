package collateral_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

func newCache(t testing.TB, up any, cfg collateral.CacheConfig) *collateral.Cache {
	t.Helper()
	var c *collateral.Cache
	var err error
	switch g := up.(type) {
	case *collateral.Getter:
		c, err = collateral.NewCache(g, cfg)
	case *collateral.Dir:
		c, err = collateral.NewCache(g, cfg)
	default:
		t.Fatalf("upstream %T", up)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustGet(t testing.TB, c *collateral.Cache, u string) []byte {
	t.Helper()
	_, b, err := c.GetContext(context.Background(), u)
	if err != nil {
		t.Fatalf("Get %s: %v", u, err)
	}
	return b
}

func TestCacheOneUpstreamRequestPerURLUnderConcurrency(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	// Slow answers keep every caller waiting on the same refill.
	s.delay.Store(int64(50 * time.Millisecond))
	c := newCache(t, s.getter(), collateral.CacheConfig{})
	const callers = 200
	urls := s.urls()
	start := make(chan struct{})
	var wg sync.WaitGroup
	bodies := make([][][]byte, len(urls))
	errs := make(chan error, callers*len(urls))
	for i, u := range urls {
		bodies[i] = make([][]byte, callers)
		for j := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, b, err := c.GetContext(context.Background(), u)
				if err != nil {
					errs <- err
					return
				}
				bodies[i][j] = b
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, u := range urls {
		for j := range callers {
			if !bytes.Equal(bodies[i][j], bodies[i][0]) {
				t.Fatalf("%s: caller %d got other bytes than caller 0", u, j)
			}
		}
	}
	if got := s.requests(); got != len(urls) {
		t.Fatalf("%d upstream requests for %d URLs x %d callers, want one per URL", got, len(urls), callers)
	}
	// Everything is cached now: another round costs nothing upstream.
	for _, u := range urls {
		mustGet(t, c, u)
	}
	st := c.Stats()
	if s.requests() != len(urls) || st.UpstreamRequests != uint64(len(urls)) {
		t.Fatalf("after a warm round: %d requests, stats %+v", s.requests(), st)
	}
	if st.Hits+st.Misses != uint64(callers*len(urls)+len(urls)) || st.Hits < uint64(len(urls)) || st.Entries != len(urls) {
		t.Fatalf("stats %+v", st)
	}
}

// settle waits until no refill runs, so that what a background refill did
// can be asserted.
func settle(t testing.TB, c *collateral.Cache) collateral.CacheStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := c.Stats()
		if st.Refilling == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("refills still running after 10s: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCacheFreshUntilNextUpdate(t *testing.T) {
	// Collateral valid for an hour, refresh a day: nextUpdate decides.
	s := newSimPCS(t, pcs.Params{ValiditySeconds: 3600})
	clk := newClock()
	c := newCache(t, s.getter(), collateral.CacheConfig{Refresh: 24 * time.Hour, Now: clk.Now})
	u := s.urls()[0]
	first := mustGet(t, c, u)
	clk.Add(50 * time.Minute)
	if b := mustGet(t, c, u); !bytes.Equal(b, first) || s.requests() != 1 {
		t.Fatalf("before nextUpdate: %d requests, same bytes %v", s.requests(), bytes.Equal(b, first))
	}
	// Past nextUpdate (the sim issues a little before the real now, valid
	// 1h): the cached copy is never served, and what the PCS sends now is
	// dated an hour after the real now, already past for this clock. An
	// expired response is an upstream failure, not collateral: Unavailable.
	clk.Add(15 * time.Minute)
	_, _, err := c.GetContext(context.Background(), u)
	if !errors.Is(err, collateral.ErrUnavailable) || !strings.Contains(err.Error(), "response expired") {
		t.Fatalf("past nextUpdate with an expired response: %v, want ErrUnavailable naming the expiry", err)
	}
	if st := c.Stats(); s.requests() != 2 || st.UpstreamErrors != 1 {
		t.Fatalf("past nextUpdate: %d upstream requests, stats %+v; want 2 and one error", s.requests(), st)
	}
	// Nothing expired was stored: past the error backoff the PCS is asked
	// again (the caller is answered with the recent failure meanwhile).
	clk.Add(collateral.DefaultErrorBackoff + time.Second)
	if _, _, err := c.GetContext(context.Background(), u); !errors.Is(err, collateral.ErrUnavailable) {
		t.Fatalf("still expired: %v", err)
	}
	settle(t, c)
	if s.requests() != 3 {
		t.Fatalf("an already expired response was cached: %d upstream requests, want 3", s.requests())
	}
}

func TestCacheRefreshCap(t *testing.T) {
	s := newSimPCS(t, pcs.Params{}) // valid 30 days
	clk := newClock()
	c := newCache(t, s.getter(), collateral.CacheConfig{Refresh: time.Hour, Now: clk.Now})
	u := s.urls()[1]
	first := mustGet(t, c, u)
	clk.Add(59 * time.Minute)
	mustGet(t, c, u)
	if s.requests() != 1 {
		t.Fatalf("within refresh: %d requests", s.requests())
	}
	// Refresh passed, nextUpdate not: the cached copy answers at once and
	// the refetch runs behind it.
	clk.Add(2 * time.Minute)
	if b := mustGet(t, c, u); !bytes.Equal(b, first) {
		t.Fatal("past refresh: not the cached copy")
	}
	if st := settle(t, c); s.requests() != 2 || st.Revalidated != 1 {
		t.Fatalf("refresh passed, nextUpdate not: %d requests, stats %+v; want 2 and one revalidation", s.requests(), st)
	}
	clk.Add(time.Minute)
	mustGet(t, c, u)
	if s.requests() != 2 {
		t.Fatalf("refetched entry not cached: %d requests", s.requests())
	}
}

func TestCacheServesStaleBeforeNextUpdateOnly(t *testing.T) {
	s := newSimPCS(t, pcs.Params{}) // valid 30 days
	clk := newClock()
	s.clk = clk // so that what it issues after the outage is current
	var w warnings
	c := newCache(t, s.getter(), collateral.CacheConfig{Refresh: time.Hour, Now: clk.Now, Warn: w.Warn})
	urls := s.urls()
	want := make([][]byte, len(urls))
	for i, u := range urls {
		want[i] = mustGet(t, c, u)
	}
	s.mode.Store(mode500)
	clk.Add(2 * time.Hour)
	for i, u := range urls {
		if b := mustGet(t, c, u); !bytes.Equal(b, want[i]) {
			t.Fatalf("%s: stale entry not served during the outage", u)
		}
	}
	st := settle(t, c)
	if st.StaleServed != uint64(len(urls)) || st.UpstreamErrors != uint64(len(urls)) {
		t.Fatalf("stats %+v", st)
	}
	if ws := w.all(); len(ws) != len(urls) || !strings.Contains(ws[0], "serving the cached copy") || !strings.Contains(ws[0], "500") {
		t.Fatalf("warnings %q", ws)
	}
	// Within the error backoff the PCS is not asked again, nor warned about.
	n := s.requests()
	clk.Add(time.Second)
	for range 10 {
		mustGet(t, c, urls[0])
	}
	if st := settle(t, c); s.requests() != n || len(w.all()) != len(urls) {
		t.Fatalf("within the error backoff: %d more upstream requests, %d more warnings (stats %+v)", s.requests()-n, len(w.all())-len(urls), st)
	}
	// The whole verification still passes on stale-but-current collateral.
	if err := s.verify(t, c); err != nil {
		t.Fatalf("verification on stale collateral: %v", err)
	}

	clk.Add(31 * 24 * time.Hour) // past every nextUpdate
	for _, u := range urls {
		_, _, err := c.GetContext(context.Background(), u)
		if !errors.Is(err, collateral.ErrUnavailable) || !strings.Contains(err.Error(), "500") {
			t.Fatalf("%s past nextUpdate with the PCS down: %v, want ErrUnavailable naming the 500", u, err)
		}
	}
	// The PCS is back: fresh collateral again, at the latest one retry
	// after the failure stops counting as recent.
	s.mode.Store(modeOK)
	clk.Add(collateral.DefaultTimeout + collateral.DefaultErrorBackoff)
	_, _, err := c.GetContext(context.Background(), urls[1])
	if err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// A hanging upstream costs the first caller with nothing usable at most
// FetchTimeout; while the outage lasts, later callers get Unavailable at
// once and one retry runs per backoff in the background.
func TestCacheHangingUpstreamFailsFast(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	s.mode.Store(modeHang)
	const timeout = time.Second
	c := newCache(t, s.getter(), collateral.CacheConfig{FetchTimeout: timeout, ErrorBackoff: 100 * time.Millisecond})
	u := s.urls()[0]
	t0 := time.Now()
	_, _, err := c.GetContext(context.Background(), u)
	first := time.Since(t0)
	if !errors.Is(err, collateral.ErrUnavailable) || first < timeout || first > 5*timeout {
		t.Fatalf("first caller: %v after %v, want ErrUnavailable after about %v", err, first, timeout)
	}
	var slowest time.Duration
	for range 50 {
		t0 := time.Now()
		_, _, err := c.GetContext(context.Background(), u)
		slowest = max(slowest, time.Since(t0))
		if !errors.Is(err, collateral.ErrUnavailable) || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("during the outage: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// 50 callers over about a second: the first timed out, the rest were
	// answered from the failure while retries ran behind them.
	if slowest > timeout/2 {
		t.Fatalf("a caller during the outage waited %v; the upstream timeout is %v", slowest, timeout)
	}
	st := settle(t, c)
	if st.FailedFast < 40 || st.UpstreamRequests > 6 {
		t.Fatalf("stats %+v: want most callers failed fast and a retry per backoff+timeout at most", st)
	}
	// Recovery: the next retry succeeds and callers are served again.
	s.mode.Store(modeOK)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err := c.GetContext(context.Background(), u); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not recovered 5s after the upstream came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("hang (fetch timeout %v): first caller %v, slowest of 50 later callers %v; stats %+v", timeout, first.Round(time.Millisecond), slowest, st)
}

func TestCacheUpstreamFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    int32
		cfg     collateral.CacheConfig
		wantErr string
	}{
		{"500", mode500, collateral.CacheConfig{}, "500 Internal Server Error"},
		{"garbage", modeGarbage, collateral.CacheConfig{}, "no readable nextUpdate"},
		{"timeout", modeHang, collateral.CacheConfig{FetchTimeout: 100 * time.Millisecond}, "deadline exceeded"},
		{"oversize", modeOK, collateral.CacheConfig{MaxBytes: 200}, "limit 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSimPCS(t, pcs.Params{})
			s.mode.Store(tc.mode)
			c := newCache(t, s.getter(), tc.cfg)
			for _, u := range s.urls() {
				h, b, err := c.GetContext(context.Background(), u)
				if err == nil || !errors.Is(err, collateral.ErrUnavailable) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%s: %v, %d bytes; want ErrUnavailable containing %q", u, err, len(b), tc.wantErr)
				}
				if h != nil || b != nil {
					t.Fatalf("%s: data returned with the error", u)
				}
			}
			if st := c.Stats(); st.Entries != 0 || st.UpstreamErrors != 4 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestCacheCallerContextDoesNotCancelOthers(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	s.delay.Store(int64(300 * time.Millisecond))
	c := newCache(t, s.getter(), collateral.CacheConfig{})
	u := s.urls()[0]
	done := make(chan error, 1)
	go func() {
		_, _, err := c.GetContext(context.Background(), u)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the patient caller start the refill
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, _, err := c.GetContext(ctx, u); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller: %v", err)
	}
	if d := time.Since(began); d > 200*time.Millisecond {
		t.Fatalf("impatient caller waited %v", d)
	}
	if err := <-done; err != nil {
		t.Fatalf("patient caller failed: %v", err)
	}
	if s.requests() != 1 {
		t.Fatalf("%d upstream requests", s.requests())
	}
}

func TestCacheDiskPersistence(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	dir := filepath.Join(t.TempDir(), "cache")
	clk := newClock()
	a := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir, Refresh: time.Hour, Now: clk.Now})
	urls := s.urls()
	want := make([][]byte, len(urls))
	for i, u := range urls {
		want[i] = mustGet(t, a, u)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v, %v", st.Mode(), err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != len(urls) {
		t.Fatalf("%d files in the cache dir, want %d: %v", len(files), len(urls), files)
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", f, st.Mode())
		}
	}

	// A second cache (a restarted server) with the PCS down serves the
	// same bytes from disk.
	s.mode.Store(mode500)
	n := s.requests()
	b := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir, Refresh: time.Hour, Now: clk.Now})
	for i, u := range urls {
		if got := mustGet(t, b, u); !bytes.Equal(got, want[i]) {
			t.Fatalf("%s: disk copy differs", u)
		}
	}
	if st := b.Stats(); st.DiskLoads != uint64(len(urls)) || st.UpstreamRequests != 0 || s.requests() != n {
		t.Fatalf("restart: stats %+v, %d upstream requests", st, s.requests()-n)
	}
	if err := s.verify(t, b); err != nil {
		t.Fatalf("verification from the disk cache: %v", err)
	}

	// Past the refresh, the PCS still down: the disk copy is a fallback
	// until its nextUpdate, also across a restart.
	clk.Add(2 * time.Hour)
	c := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir, Refresh: time.Hour, Now: clk.Now})
	for _, u := range urls {
		mustGet(t, c, u)
	}
	if st := c.Stats(); st.StaleServed != uint64(len(urls)) || st.DiskLoads != 0 {
		t.Fatalf("stale disk fallback: stats %+v", st)
	}

	// Past nextUpdate nothing on disk is trusted.
	clk.Add(31 * 24 * time.Hour)
	d := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir, Refresh: time.Hour, Now: clk.Now})
	for _, u := range urls {
		if _, _, err := d.GetContext(context.Background(), u); !errors.Is(err, collateral.ErrUnavailable) {
			t.Fatalf("%s: expired disk entry served: %v", u, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("expired disk entries kept: %v", left)
	}
}

func TestCacheIgnoresCorruptDiskEntries(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	dir := t.TempDir()
	a := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir})
	urls := s.urls()
	for _, u := range urls {
		mustGet(t, a, u)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != len(urls) {
		t.Fatalf("%d files", len(files))
	}
	good, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	future := bytes.Replace(good, []byte(`"fetched":"`+time.Now().Format("2006")), []byte(`"fetched":"2999`), 1)
	if bytes.Equal(future, good) {
		t.Fatal("could not move fetched into the future")
	}
	for name, corrupt := range map[string][]byte{
		"garbage":         []byte("\x00\xffnot json"),
		"empty":           nil,
		"truncated":       good[:len(good)/2],
		"another URL":     other,
		"fetched later":   future,
		"undated body":    bytes.Replace(good, []byte(`"body":"`), []byte(`"body":"AAAA`), 1),
		"oversized":       bytes.Repeat([]byte(" "), 3<<20),
		"wrong JSON type": []byte(`{"url":1}`),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(files[0], corrupt, 0o600); err != nil {
				t.Fatal(err)
			}
			var w warnings
			n := s.requests()
			b := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir, Warn: w.Warn})
			for _, u := range urls {
				mustGet(t, b, u)
			}
			if got := s.requests() - n; got != 1 {
				t.Fatalf("%d upstream requests, want 1 (the corrupt entry's URL)", got)
			}
			if ws := w.all(); len(ws) != 1 || !strings.Contains(ws[0], "ignoring") {
				t.Fatalf("warnings %q", ws)
			}
			// The entry was rewritten from the PCS.
			if st := b.Stats(); st.DiskLoads != 3 || st.UpstreamRequests != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestCacheNeverAccepts shows that caching changes no verdict: a revoked
// PCK and a non-UpToDate TCB are rejected on the warm path as on the cold
// one, and a forged disk entry is served as bytes but rejected by the
// verifier's signature check.
func TestCacheNeverAccepts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		params  pcs.Params
		wantErr string
	}{
		{"revoked PCK", pcs.Params{TCBStatus: "UpToDate", RevokePCK: true}, "revoked"},
		{"OutOfDate TCB", pcs.Params{TCBStatus: "OutOfDate"}, "TCB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSimPCS(t, tc.params)
			c := newCache(t, s.getter(), collateral.CacheConfig{Dir: t.TempDir()})
			for i := range 3 {
				if err := s.verify(t, c); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("round %d: %v, want an error containing %q", i, err, tc.wantErr)
				}
			}
			if st := c.Stats(); st.Hits == 0 || st.UpstreamRequests != 4 {
				t.Fatalf("the warm path was not exercised: %+v", st)
			}
		})
	}

	t.Run("forged disk entry", func(t *testing.T) {
		s := newSimPCS(t, pcs.Params{TCBStatus: "OutOfDate"})
		dir := t.TempDir()
		a := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir})
		if err := s.verify(t, a); err == nil {
			t.Fatal("OutOfDate accepted")
		}
		// Rewrite the stored TCB info so that every level says UpToDate,
		// keeping the record well-formed and the signature as it was.
		forged := 0
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			rec := readRecord(t, f)
			if !bytes.Contains(rec.Body, []byte(`"tcbInfo"`)) {
				continue
			}
			rec.Body = bytes.ReplaceAll(rec.Body, []byte(`"OutOfDate"`), []byte(`"UpToDate"`))
			writeRecord(t, f, rec)
			forged++
		}
		if forged != 1 {
			t.Fatalf("forged %d TCB infos", forged)
		}
		s.mode.Store(mode500) // only the forged copy is available
		b := newCache(t, s.getter(), collateral.CacheConfig{Dir: dir})
		_, body, err := b.GetContext(context.Background(), s.urls()[0])
		if err != nil || bytes.Contains(body, []byte(`"OutOfDate"`)) {
			t.Fatalf("the forged bytes were not what the cache served: %v", err)
		}
		if err := s.verify(t, b); err == nil || !strings.Contains(err.Error(), "ECDSA verification failure") {
			t.Fatalf("forged TCB info: %v, want a signature failure", err)
		}
	})
}

func TestCacheEviction(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	c := newCache(t, s.getter(), collateral.CacheConfig{MaxEntries: 2})
	for _, u := range s.urls() {
		mustGet(t, c, u)
	}
	if st := c.Stats(); st.Entries != 2 || st.Evictions != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNewCacheRejects(t *testing.T) {
	if _, err := collateral.NewCache(nil, collateral.CacheConfig{}); err == nil {
		t.Error("nil upstream accepted")
	}
	for _, cfg := range []collateral.CacheConfig{{Refresh: -1}, {MaxEntries: -1}, {MaxBytes: -1}, {FetchTimeout: -1}} {
		if _, err := collateral.NewCache(&collateral.Getter{}, cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := collateral.NewCache(&collateral.Getter{}, collateral.CacheConfig{Dir: filepath.Join(f, "sub")}); err == nil {
		t.Error("cache dir under a file accepted")
	}
	c, err := collateral.NewCache(&collateral.Getter{}, collateral.CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get("https://" + collateral.PCSHost + "/" + strings.Repeat("a", 3000)); err == nil {
		t.Error("overlong URL accepted")
	}
}
