package serververifier

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tdx-guest/verify/trust"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ccnp-spire/ccnp-spire/collateral"
)

// Phases of an attestation, as the metrics name them. "quote" is the quote
// appraisal without the time spent fetching collateral (PCK chain,
// signatures, TCB evaluation and, on TDX, the CCEL replay, which appraisal
// does); "collateral" is the time in the collateral getter (a cache hit
// normally); "replay" the IMA and runtime log replays (and the TPM logs).
const (
	phaseParse      = "parse"
	phaseQuote      = "quote"
	phaseCollateral = "collateral"
	phaseReplay     = "replay"
	phasePolicy     = "policy"
)

// metrics records per-phase durations, attestation outcomes and cache
// counters. A nil *metrics records nothing (no metrics_address): every
// method is nil-safe, so the attestation path needs no conditionals.
type metrics struct {
	reg     *prometheus.Registry
	phases  *prometheus.HistogramVec
	results *prometheus.CounterVec

	// The collateral cache of the current configuration, read at scrape
	// time.
	collateral atomic.Pointer[collateral.Cache]

	mu   sync.Mutex
	srv  *http.Server
	addr string
	// bound is the address the endpoint listens on (addr with its port
	// resolved).
	bound string
}

func newMetrics(p *Plugin) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.phases = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "ccnp", Subsystem: "attestation", Name: "phase_seconds",
		Help: "Time spent in each phase of a node attestation (parse, quote, collateral, replay, policy).",
		// 50 µs .. ~6.5 s: a cached quote check to a million-entry replay.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
	}, []string{"phase"})
	m.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ccnp", Subsystem: "attestation", Name: "total",
		Help: "Node attestations by result (accepted, rejected) and mode (full, incremental).",
	}, []string{"result", "mode"})
	m.reg.MustRegister(m.phases, m.results)
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "ccnp", Subsystem: "firmware_log_cache", Name: "hits_total",
			Help: "Compressed firmware logs (CCEL, TPM log) found decompressed in the cache."}, func() float64 { return float64(p.logs.hits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "ccnp", Subsystem: "firmware_log_cache", Name: "misses_total",
			Help: "Compressed firmware logs decompressed and added to the cache."}, func() float64 { return float64(p.logs.misses.Load()) }),
	)
	stat := func(name, help string, f func(collateral.CacheStats) float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "ccnp", Subsystem: "collateral_cache", Name: name, Help: help},
			func() float64 {
				c := m.collateral.Load()
				if c == nil {
					return 0
				}
				return f(c.Stats())
			}))
	}
	stat("hits_total", "Collateral requests answered from memory.", func(s collateral.CacheStats) float64 { return float64(s.Hits) })
	stat("misses_total", "Collateral requests that needed a refill.", func(s collateral.CacheStats) float64 { return float64(s.Misses) })
	stat("upstream_requests_total", "Requests to the PCS, PCCS or offline directory.", func(s collateral.CacheStats) float64 { return float64(s.UpstreamRequests) })
	stat("upstream_errors_total", "Failed upstream requests.", func(s collateral.CacheStats) float64 { return float64(s.UpstreamErrors) })
	stat("stale_served_total", "Refills answered with stale collateral because the upstream failed.", func(s collateral.CacheStats) float64 { return float64(s.StaleServed) })
	stat("revalidated_total", "Misses answered at once from collateral past its refresh while it was refetched.", func(s collateral.CacheStats) float64 { return float64(s.Revalidated) })
	stat("failed_fast_total", "Misses refused at once with the upstream's last failure while a retry ran.", func(s collateral.CacheStats) float64 { return float64(s.FailedFast) })
	entries := func(name, help string, f func(chains, col, lib, ccel int) int) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ccnp", Subsystem: "appraisal_cache", Name: name, Help: help},
			func() float64 { a, b, c, d := p.cache.Len(); return float64(f(a, b, c, d)) }))
	}
	entries("pck_chains", "Verified PCK chains held.", func(a, _, _, _ int) int { return a })
	entries("collateral", "Verified collateral sets held.", func(_, b, _, _ int) int { return b })
	entries("library_verdicts", "go-tdx-guest verdicts held.", func(_, _, c, _ int) int { return c })
	entries("ccel_replays", "CCEL replays held.", func(_, _, _, d int) int { return d })
	return m
}

// serve (re)starts the endpoint on addr; "" stops it. The listener is
// opened here so that a bad address fails Configure.
func (m *metrics) serve(addr string, log hclog.Logger) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr == m.addr && m.srv != nil {
		return nil
	}
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = m.srv.Shutdown(ctx)
		cancel()
		m.srv, m.addr, m.bound = nil, "", ""
	}
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	m.srv, m.addr, m.bound = srv, addr, ln.Addr().String()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "address", addr, "error", err)
		}
	}()
	log.Info("metrics endpoint listening", "address", ln.Addr().String())
	return nil
}

// listening returns the endpoint's address, "" when it serves none.
func (m *metrics) listening() string {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bound
}

// phaseTimer is one running phase.
type phaseTimer struct {
	m     *metrics
	name  string
	start time.Time
}

func (m *metrics) start(name string) phaseTimer {
	if m == nil {
		return phaseTimer{}
	}
	return phaseTimer{m: m, name: name, start: time.Now()}
}

// done records the phase; minus is time already attributed to another
// phase (collateral fetched during the quote appraisal).
func (t phaseTimer) done(minus ...time.Duration) {
	if t.m == nil {
		return
	}
	d := time.Since(t.start)
	for _, x := range minus {
		d -= x
	}
	t.m.phases.WithLabelValues(t.name).Observe(max(d, 0).Seconds())
}

func (m *metrics) observe(name string, d time.Duration) {
	if m != nil {
		m.phases.WithLabelValues(name).Observe(d.Seconds())
	}
}

func (m *metrics) result(accepted, incremental bool) {
	if m == nil {
		return
	}
	r, mode := "rejected", "full"
	if accepted {
		r = "accepted"
	}
	if incremental {
		mode = "incremental"
	}
	m.results.WithLabelValues(r, mode).Inc()
}

// logCaches writes the bounded caches' counters at debug level, so an
// operator without a metrics endpoint can still see whether they work.
func (a *attestation) logCaches() {
	chains, col, lib, ccel := a.p.cache.Len()
	kv := []any{
		"firmware_log_hits", a.p.logs.hits.Load(), "firmware_log_misses", a.p.logs.misses.Load(),
		"appraisal_pck_chains", chains, "appraisal_collateral", col, "appraisal_library_verdicts", lib, "appraisal_ccel_replays", ccel,
	}
	g := a.st.getter
	if t, ok := g.(timedGetter); ok {
		g = t.next
	}
	if c, ok := g.(*collateral.Cache); ok {
		s := c.Stats()
		kv = append(kv, "collateral_hits", s.Hits, "collateral_misses", s.Misses, "collateral_upstream_requests", s.UpstreamRequests,
			"collateral_upstream_errors", s.UpstreamErrors, "collateral_entries", s.Entries)
	}
	a.log.Debug("caches", kv...)
}

// collateralClock accumulates the time one attestation spends in the
// collateral getter; it travels in the context appraisal hands the getter.
type collateralClock struct{ ns atomic.Int64 }

type collateralClockKey struct{}

func withCollateralClock(ctx context.Context) (context.Context, *collateralClock) {
	c := &collateralClock{}
	return context.WithValue(ctx, collateralClockKey{}, c), c
}

func (c *collateralClock) elapsed() time.Duration {
	if c == nil {
		return 0
	}
	return time.Duration(c.ns.Load())
}

// timedGetter measures the collateral getter for the attestation whose
// context it is called with.
type timedGetter struct{ next trust.HTTPSGetter }

var _ trust.ContextHTTPSGetter = timedGetter{}

// Get is the context-free form; its time is not attributed.
func (g timedGetter) Get(url string) (map[string][]string, []byte, error) {
	return g.next.Get(url)
}

// GetContext fetches through the wrapped getter (with ctx when it takes
// one) and adds the time to the attestation's collateral clock.
func (g timedGetter) GetContext(ctx context.Context, url string) (map[string][]string, []byte, error) {
	start := time.Now()
	defer func() {
		if c, ok := ctx.Value(collateralClockKey{}).(*collateralClock); ok {
			c.ns.Add(int64(time.Since(start)))
		}
	}()
	if cg, ok := g.next.(trust.ContextHTTPSGetter); ok {
		return cg.GetContext(ctx, url)
	}
	return g.next.Get(url)
}
