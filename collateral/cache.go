package collateral

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tdx-guest/verify/trust"
)

// Defaults of CacheConfig.
const (
	// DefaultRefresh is the operator's default refresh (conf.DefaultCollateralRefresh).
	DefaultRefresh = 24 * time.Hour
	// DefaultMaxEntries is far above what one fleet needs: one TCB info per
	// FMSPC, one QE identity, two PCK CRLs and a root CRL.
	DefaultMaxEntries = 256
	// DefaultMaxCachedBytes bounds one cached response (headers and body):
	// Intel's largest document is around 10 KiB.
	DefaultMaxCachedBytes = 1 << 20
	// DefaultErrorBackoff is how long an upstream failure is remembered, so
	// that hundreds of attestations a second during an outage make one
	// upstream request every few seconds rather than one each.
	DefaultErrorBackoff = 5 * time.Second
)

// ErrUnavailable marks a cache error meaning no usable collateral could be
// had: the upstream failed and nothing cached is before its nextUpdate. A
// verifier maps it to gRPC Unavailable and never accepts.
var ErrUnavailable = errors.New("collateral unavailable")

// CacheConfig tunes a Cache. The zero value is an in-memory cache with the
// defaults above.
type CacheConfig struct {
	// Refresh caps how long a response is used before it is fetched again,
	// even when its nextUpdate is later. Zero means DefaultRefresh.
	Refresh time.Duration
	// Dir, when set, persists responses there (one 0600 file per URL,
	// replaced atomically) so a restarted server needs no network until
	// they expire. It is created 0700 if missing.
	Dir string
	// MaxEntries bounds the URLs held in memory; zero means DefaultMaxEntries.
	MaxEntries int
	// MaxBytes bounds one response (headers and body); a larger one is an
	// upstream failure. Zero means DefaultMaxCachedBytes.
	MaxBytes int
	// FetchTimeout bounds one upstream request. The request is shared by
	// every caller waiting for that URL, so no caller's context cancels it;
	// each caller stops waiting when its own context ends. Zero means
	// DefaultTimeout.
	FetchTimeout time.Duration
	// ErrorBackoff is how long after an upstream failure the same URL is
	// not asked again. Zero means DefaultErrorBackoff; negative disables.
	ErrorBackoff time.Duration
	// MinTCBEvaluationDataNumber, when set, makes TCB info and QE identity
	// with a lower tcbEvaluationDataNumber an upstream failure: never
	// stored, never served, asked again after ErrorBackoff. A PCCS still
	// serving collateral from before a TCB recovery is then retried until
	// it serves the current issue, rather than its old copy being kept for
	// Refresh.
	MinTCBEvaluationDataNumber uint32
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Warn, when set, receives operational warnings (stale collateral
	// served during an outage, an unreadable or unwritable disk entry) as a
	// message and key/value pairs: an hclog.Logger's Warn method fits.
	Warn func(msg string, args ...any)
}

// CacheStats are a Cache's counters since it was made.
type CacheStats struct {
	// Hits were answered from memory, fresh.
	Hits uint64
	// Misses were not; each joined or started one refill of its URL.
	Misses uint64
	// Revalidated misses were answered at once from an entry past its
	// refresh but before its nextUpdate while the refill ran.
	Revalidated uint64
	// FailedFast misses were answered at once with the URL's last upstream
	// failure (nothing usable held) while a retry ran.
	FailedFast uint64
	// DiskLoads are refills answered from Dir, fresh, without the upstream.
	DiskLoads uint64
	// UpstreamRequests is how many times the upstream getter was called.
	UpstreamRequests uint64
	// UpstreamErrors counts failed upstream requests, including oversized
	// or undated responses.
	UpstreamErrors uint64
	// StaleServed counts refills answered with an entry past its refresh
	// but before its nextUpdate because the upstream failed.
	StaleServed uint64
	// Evictions counts entries dropped to stay within MaxEntries.
	Evictions uint64
	// Entries is how many URLs are held in memory now.
	Entries int
	// Refilling is how many URLs have a refill running now.
	Refilling int
}

// Cache is a trust.HTTPSGetter and trust.ContextHTTPSGetter that caches the
// responses (headers and body) of another getter, keyed by the exact URL.
//
// A response is fresh until the nextUpdate inside it (see NextUpdate), and
// at most Refresh after it was fetched. Concurrent misses for one URL make
// one upstream request. An entry past its refresh but before its nextUpdate
// is served while it is refetched; when the refetch fails it stays in use
// (with a warning) until its nextUpdate. With nothing usable held, an
// upstream failure is returned wrapping ErrUnavailable. A response already
// past its nextUpdate counts as an upstream failure and is never returned.
//
// The cache holds bytes, never verdicts: callers verify every response.
// Callers get their own copies, so nothing they do changes what the cache
// holds.
type Cache struct {
	upstream trust.HTTPSGetter
	cfg      CacheConfig

	mu      sync.RWMutex
	entries map[string]*entry
	failed  map[string]failure

	flightMu sync.Mutex
	flights  map[string]*flight

	hits, misses, revalidated, failedFast, diskLoads, upstreamRequests, upstreamErrors, staleServed, evictions atomic.Uint64
}

// entry is one stored response. Its fields never change once stored.
type entry struct {
	header     http.Header
	body       []byte
	fetched    time.Time
	nextUpdate time.Time
	freshUntil time.Time
}

type failure struct {
	at  time.Time
	err error
}

// flight is one refill of a URL that every concurrent miss waits for.
type flight struct {
	done chan struct{}
	e    *entry
	err  error
	// upstreamErr is why e is a stale fallback rather than a fresh
	// response; nil when it is fresh.
	upstreamErr error
}

// NewCache wraps upstream. It creates cfg.Dir if needed; disk entries are
// read when their URL is first asked for, not here.
func NewCache(upstream trust.HTTPSGetter, cfg CacheConfig) (*Cache, error) {
	if upstream == nil {
		return nil, errors.New("collateral: cache without an upstream getter")
	}
	if cfg.Refresh < 0 || cfg.MaxEntries < 0 || cfg.MaxBytes < 0 || cfg.FetchTimeout < 0 {
		return nil, fmt.Errorf("collateral: negative cache setting (refresh %v, max entries %d, max bytes %d, fetch timeout %v)",
			cfg.Refresh, cfg.MaxEntries, cfg.MaxBytes, cfg.FetchTimeout)
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxCachedBytes
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultTimeout
	}
	if cfg.ErrorBackoff == 0 {
		cfg.ErrorBackoff = DefaultErrorBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("collateral: cache dir: %w", err)
		}
	}
	return &Cache{
		upstream: upstream,
		cfg:      cfg,
		entries:  make(map[string]*entry),
		failed:   make(map[string]failure),
		flights:  make(map[string]*flight),
	}, nil
}

// Get implements trust.HTTPSGetter.
func (c *Cache) Get(rawURL string) (map[string][]string, []byte, error) {
	return c.GetContext(context.Background(), rawURL)
}

// GetContext implements trust.ContextHTTPSGetter. ctx bounds how long this
// caller waits, not the shared upstream request.
//
// A caller never waits for the upstream when it need not: an entry past its
// refresh but before its nextUpdate is served at once while the refill runs
// in the background, and when the last request for the URL failed and
// nothing usable is held, that failure is returned at once while a retry
// runs in the background. So a hanging upstream costs one caller at most
// FetchTimeout, not every attestation.
func (c *Cache) GetContext(ctx context.Context, rawURL string) (map[string][]string, []byte, error) {
	if len(rawURL) > maxURL {
		return nil, nil, fmt.Errorf("collateral: URL of %d bytes, limit %d", len(rawURL), maxURL)
	}
	now := c.cfg.Now()
	c.mu.RLock()
	e := c.entries[rawURL]
	fail, failed := c.failed[rawURL]
	c.mu.RUnlock()
	if e != nil && now.Before(e.freshUntil) {
		c.hits.Add(1)
		return e.header.Clone(), append([]byte(nil), e.body...), nil
	}
	c.misses.Add(1)
	f := c.start(ctx, rawURL)
	switch {
	case e != nil && now.Before(e.nextUpdate):
		c.revalidated.Add(1)
		return e.header.Clone(), append([]byte(nil), e.body...), nil
	case failed && now.Sub(fail.at) < c.cfg.FetchTimeout+max(c.cfg.ErrorBackoff, 0):
		// Recent enough to belong to an outage still going on: each retry
		// starts at most a backoff after the last failure and lasts at most
		// FetchTimeout. An older failure says nothing about now, so the
		// caller waits for the retry instead.
		c.failedFast.Add(1)
		return nil, nil, unavailable(rawURL, fail.err)
	}
	select {
	case <-f.done:
		if f.err != nil {
			return nil, nil, f.err
		}
		if !now.Before(f.e.nextUpdate) {
			// A refill started before this caller's time fell back on a
			// copy that is past its nextUpdate now.
			why := fmt.Errorf("the cached copy expired at %s", f.e.nextUpdate.UTC().Format(time.RFC3339))
			if f.upstreamErr != nil {
				why = fmt.Errorf("%w and the refetch failed: %w", why, f.upstreamErr)
			}
			return nil, nil, unavailable(rawURL, why)
		}
		return f.e.header.Clone(), append([]byte(nil), f.e.body...), nil
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("collateral: waiting for %s: %w", rawURL, ctx.Err())
	}
}

func unavailable(rawURL string, err error) error {
	return fmt.Errorf("collateral: %s: %w: %w", rawURL, ErrUnavailable, err)
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.RLock()
	n := len(c.entries)
	c.mu.RUnlock()
	c.flightMu.Lock()
	r := len(c.flights)
	c.flightMu.Unlock()
	return CacheStats{
		Hits:             c.hits.Load(),
		Misses:           c.misses.Load(),
		Revalidated:      c.revalidated.Load(),
		FailedFast:       c.failedFast.Load(),
		DiskLoads:        c.diskLoads.Load(),
		UpstreamRequests: c.upstreamRequests.Load(),
		UpstreamErrors:   c.upstreamErrors.Load(),
		StaleServed:      c.staleServed.Load(),
		Evictions:        c.evictions.Load(),
		Entries:          n,
		Refilling:        r,
	}
}

// start returns the running refill of rawURL, starting one if none runs.
// The refill is detached from ctx (only its values are kept) and bounded by
// FetchTimeout, so that one impatient caller cannot fail every other caller
// waiting for the same URL.
func (c *Cache) start(ctx context.Context, rawURL string) *flight {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	f := c.flights[rawURL]
	if f != nil {
		return f
	}
	f = &flight{done: make(chan struct{})}
	c.flights[rawURL] = f
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FetchTimeout)
	go func() {
		defer cancel()
		f.e, f.upstreamErr, f.err = c.refill(fctx, rawURL)
		c.flightMu.Lock()
		delete(c.flights, rawURL)
		c.flightMu.Unlock()
		close(f.done)
	}()
	return f
}

// refill finds a usable response for rawURL: memory (filled meanwhile),
// disk, the upstream, and on upstream failure a stale entry before its
// nextUpdate.
func (c *Cache) refill(ctx context.Context, rawURL string) (e *entry, upstreamErr, err error) {
	now := c.cfg.Now()
	c.mu.RLock()
	old := c.entries[rawURL]
	fail, failedRecently := c.failed[rawURL]
	c.mu.RUnlock()
	if old != nil && now.Before(old.freshUntil) {
		return old, nil, nil
	}
	if old == nil && c.cfg.Dir != "" {
		if d := c.loadDisk(rawURL, now); d != nil {
			if now.Before(d.freshUntil) {
				c.diskLoads.Add(1)
				c.store(rawURL, d, now)
				return d, nil, nil
			}
			old = d // stale, but still a fallback before its nextUpdate
		}
	}

	if failedRecently && c.cfg.ErrorBackoff > 0 && now.Sub(fail.at) < c.cfg.ErrorBackoff {
		err = fail.err
	} else {
		e, err = c.fetch(ctx, rawURL)
		if err == nil {
			return e, nil, nil
		}
		c.upstreamErrors.Add(1)
		c.mu.Lock()
		// Dated when it failed, not when it started: a hanging upstream
		// must still be backed off from after its timeout.
		c.failed[rawURL] = failure{at: c.cfg.Now(), err: err}
		c.mu.Unlock()
	}
	if old != nil && now.Before(old.nextUpdate) {
		c.staleServed.Add(1)
		c.warn("collateral upstream failed; serving the cached copy until its nextUpdate",
			"url", rawURL, "fetched", old.fetched, "next_update", old.nextUpdate, "error", err)
		// Kept fresh for one backoff, so that during an outage the copy is
		// answered from memory, and warned about, once per backoff rather
		// than on every attestation.
		kept := *old
		kept.freshUntil = now
		if c.cfg.ErrorBackoff > 0 {
			kept.freshUntil = now.Add(c.cfg.ErrorBackoff)
		}
		if kept.nextUpdate.Before(kept.freshUntil) {
			kept.freshUntil = kept.nextUpdate
		}
		c.store(rawURL, &kept, now)
		return &kept, err, nil
	}
	return nil, nil, unavailable(rawURL, err)
}

// fetch asks the upstream and stores what it returns. Oversized, undated
// and already expired responses are failures: an upstream serving collateral
// past its nextUpdate is as useless as one that is down, and the caller must
// see Unavailable (retry later), not a verdict on the node.
func (c *Cache) fetch(ctx context.Context, rawURL string) (*entry, error) {
	c.upstreamRequests.Add(1)
	h, body, err := trust.GetWith(ctx, c.upstream, rawURL)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now() // after the request, which may have taken a while
	if n := responseSize(h, body); n > c.cfg.MaxBytes {
		return nil, fmt.Errorf("response of %d bytes, limit %d", n, c.cfg.MaxBytes)
	}
	next, err := NextUpdate(body)
	if err != nil {
		return nil, fmt.Errorf("response has no readable nextUpdate: %w", err)
	}
	if !now.Before(next) {
		// Named by kind, so the operator reads "TCB info expired" and
		// knows which document the source must renew.
		what := "response"
		if r, err := ParseIntelURL(rawURL); err == nil {
			what = r.Kind.String() + " response"
		}
		return nil, fmt.Errorf("%s expired: its nextUpdate %s is not after %s", what,
			next.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if err := c.belowMinimum(body); err != nil {
		return nil, fmt.Errorf("response refused: %w", err)
	}
	e := newEntry(http.Header(h).Clone(), append([]byte(nil), body...), now, next, c.cfg.Refresh)
	c.mu.Lock()
	delete(c.failed, rawURL)
	c.mu.Unlock()
	c.store(rawURL, e, now)
	if c.cfg.Dir != "" {
		if err := c.saveDisk(rawURL, e); err != nil {
			c.warn("collateral cache: cannot persist a response", "url", rawURL, "error", err)
		}
	}
	return e, nil
}

func newEntry(h http.Header, body []byte, fetched, next time.Time, refresh time.Duration) *entry {
	fresh := fetched.Add(refresh)
	if next.Before(fresh) {
		fresh = next
	}
	return &entry{header: h, body: body, fetched: fetched, nextUpdate: next, freshUntil: fresh}
}

func responseSize(h map[string][]string, body []byte) int {
	n := len(body)
	for k, vs := range h {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

// store keeps e for rawURL, evicting to stay within MaxEntries: first
// entries past their nextUpdate, then the one that goes stale soonest.
func (c *Cache) store(rawURL string, e *entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[rawURL]; !ok && len(c.entries) >= c.cfg.MaxEntries {
		var victim string
		var soonest time.Time
		for u, o := range c.entries {
			if !now.Before(o.nextUpdate) {
				victim = u
				break
			}
			if victim == "" || o.freshUntil.Before(soonest) {
				victim, soonest = u, o.freshUntil
			}
		}
		delete(c.entries, victim)
		c.evictions.Add(1)
	}
	c.entries[rawURL] = e
	if len(c.failed) > c.cfg.MaxEntries {
		// Failures are only a backoff hint: forgetting them is safe.
		clear(c.failed)
	}
}

func (c *Cache) warn(msg string, args ...any) {
	if c.cfg.Warn != nil {
		c.cfg.Warn(msg, args...)
	}
}
