package serververifier

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"

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

// Metric keys, as SPIRE's Metrics host service takes them: SPIRE joins the
// parts with "_" under its own prefix (spire_server_ on Prometheus) and
// sends them to every telemetry sink the server's telemetry block
// configures. Timers end in elapsed_time and are in milliseconds, as
// SPIRE's own are. docs/operations.md lists every metric.
var (
	keyAttestation      = []string{"ccnp", "attestation"}
	keyPhase            = []string{"ccnp", "attestation", "phase", "elapsed_time"}
	keyFirmwareLogCache = []string{"ccnp", "firmware_log_cache"}
	keyCollateralCache  = []string{"ccnp", "collateral_cache"}
	keyAppraisalCache   = []string{"ccnp", "appraisal_cache", "entries"}
)

// subKey is base with one more part, never sharing base's array.
func subKey(base []string, part string) []string {
	return append(slices.Clip(base), part)
}

// Label names and values.
const (
	labelResult = "result"
	labelMode   = "mode"
	labelPhase  = "phase"
	labelTable  = "table"
)

// Bounds of the emitter. Emitting is a gRPC call to the SPIRE server per
// metric, so it runs on its own goroutine behind a queue: an attestation
// never waits for telemetry, and a stalled host service costs dropped
// samples, not attestations. The queue holds what a burst of a few
// hundred attestations emits; cache statistics are sent at most once per
// cacheInterval, with counters as the increase since the last send.
const (
	metricsQueue       = 4096
	metricsCallTimeout = 5 * time.Second
	cacheInterval      = 10 * time.Second
)

// Aggregation of the per-attestation metrics. One host-service call per
// counter increment and per phase sample cost about 10% of the plugin's CPU
// at concurrency 64 (six gRPC calls to the SPIRE server per attestation), so
// counters are summed and sent once per flushInterval for each key and
// label set, and each phase keeps a uniform random sample of at most
// maxSamplesPerFlush durations per interval (reservoir sampling): the
// distribution SPIRE's telemetry computes stays representative, the host
// calls per second no longer grow with the attestation rate, and at low
// rates every sample is still sent.
const (
	flushInterval      = time.Second
	maxSamplesPerFlush = 32
)

// aggKey names one metric and label set in the aggregation maps.
type aggKey string

func newAggKey(key []string, l []*metricsv1.Label) aggKey {
	var b strings.Builder
	for _, k := range key {
		b.WriteString(k)
		b.WriteByte(0)
	}
	for _, x := range l {
		b.WriteByte(1)
		b.WriteString(x.GetName())
		b.WriteByte(0)
		b.WriteString(x.GetValue())
	}
	return aggKey(b.String())
}

type counterAgg struct {
	key    []string
	labels []*metricsv1.Label
	sum    float32
}

type sampleAgg struct {
	key    []string
	labels []*metricsv1.Label
	seen   int
	vals   []float32
}

// metrics sends per-phase durations, attestation outcomes and cache
// statistics to SPIRE's Metrics host service. A nil *metrics records
// nothing (SPIRE offered no Metrics host service): every method is
// nil-safe, so the attestation path needs no conditionals.
type metrics struct {
	p      *Plugin
	client metricsv1.MetricsClient
	queue  chan func(context.Context, metricsv1.MetricsClient) error
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	// dropped counts samples the full queue turned away.
	dropped atomic.Uint64

	// aggMu guards the counters and samples gathered since the last flush.
	aggMu    sync.Mutex
	counters map[aggKey]*counterAgg
	samples  map[aggKey]*sampleAgg
	flushes  time.Duration

	// The collateral cache of the current configuration.
	collateral atomic.Pointer[collateral.Cache]

	// cacheMu guards what the cache statistics were at the last send, so
	// counters go out as increases.
	cacheMu       sync.Mutex
	cacheInterval time.Duration
	cacheSent     time.Time
	logHits       uint64
	logMisses     uint64
	colSent       *collateral.Cache
	colLast       collateral.CacheStats
}

// newMetrics starts the emitter on client.
func newMetrics(p *Plugin, client metricsv1.MetricsClient) *metrics {
	return newMetricsEvery(p, client, flushInterval)
}

// newMetricsEvery starts the emitter, flushing aggregates every flush.
func newMetricsEvery(p *Plugin, client metricsv1.MetricsClient, flush time.Duration) *metrics {
	m := &metrics{
		p: p, client: client, cacheInterval: cacheInterval,
		queue: make(chan func(context.Context, metricsv1.MetricsClient) error, metricsQueue),
		stop:  make(chan struct{}), done: make(chan struct{}),
		counters: make(map[aggKey]*counterAgg), samples: make(map[aggKey]*sampleAgg),
		flushes: flush,
	}
	go m.run()
	return m
}

// run sends queued metrics until close. A failing host service is logged
// once per burst of failures, at the first failure after a success.
func (m *metrics) run() {
	defer close(m.done)
	failing := false
	call := func(send func(context.Context, metricsv1.MetricsClient) error) {
		ctx, cancel := context.WithTimeout(context.Background(), metricsCallTimeout)
		err := send(ctx, m.client)
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			m.p.log().Warn("Metrics host service call failed: metrics are lost until it answers again", "error", err)
		case err == nil:
			failing = false
		}
	}
	tick := time.NewTicker(m.flushes)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case send := <-m.queue:
			call(send)
		case <-tick.C:
			for _, send := range m.takeAggregates() {
				select {
				case <-m.stop:
					return
				default:
				}
				call(send)
			}
		}
	}
}

// takeAggregates empties the aggregation maps and returns one host call
// per counter and per kept sample.
func (m *metrics) takeAggregates() []func(context.Context, metricsv1.MetricsClient) error {
	m.aggMu.Lock()
	counters, samples := m.counters, m.samples
	if len(counters) == 0 && len(samples) == 0 {
		m.aggMu.Unlock()
		return nil
	}
	m.counters, m.samples = make(map[aggKey]*counterAgg, len(counters)), make(map[aggKey]*sampleAgg, len(samples))
	m.aggMu.Unlock()
	var out []func(context.Context, metricsv1.MetricsClient) error
	for _, c := range counters {
		out = append(out, func(ctx context.Context, cl metricsv1.MetricsClient) error {
			_, err := cl.IncrCounter(ctx, &metricsv1.IncrCounterRequest{Key: c.key, Val: c.sum, Labels: c.labels})
			return err
		})
	}
	for _, sa := range samples {
		for _, v := range sa.vals {
			out = append(out, func(ctx context.Context, cl metricsv1.MetricsClient) error {
				_, err := cl.AddSample(ctx, &metricsv1.AddSampleRequest{Key: sa.key, Val: v, Labels: sa.labels})
				return err
			})
		}
	}
	return out
}

// close stops the emitter; what is still queued is dropped.
func (m *metrics) close() {
	if m == nil {
		return
	}
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

func (m *metrics) enqueue(send func(context.Context, metricsv1.MetricsClient) error) {
	select {
	case m.queue <- send:
	default:
		if m.dropped.Add(1) == 1 {
			m.p.log().Warn("Metrics queue full: samples dropped (the Metrics host service is slower than the attestations)", "queue", metricsQueue)
		}
	}
}

func labels(kv ...string) []*metricsv1.Label {
	out := make([]*metricsv1.Label, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &metricsv1.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// incr adds val to a counter; the sum goes out at the next flush.
func (m *metrics) incr(key []string, val float32, l []*metricsv1.Label) {
	if val == 0 {
		return
	}
	k := newAggKey(key, l)
	m.aggMu.Lock()
	defer m.aggMu.Unlock()
	c := m.counters[k]
	if c == nil {
		c = &counterAgg{key: key, labels: l}
		m.counters[k] = c
	}
	c.sum += val
}

func (m *metrics) gauge(key []string, val float32, l []*metricsv1.Label) {
	m.enqueue(func(ctx context.Context, c metricsv1.MetricsClient) error {
		_, err := c.SetGauge(ctx, &metricsv1.SetGaugeRequest{Key: key, Val: val, Labels: l})
		return err
	})
}

// sample sends a duration in milliseconds, the unit of SPIRE's timers
// (MeasureSince), computed here so the host call's latency is not in it.
func (m *metrics) sample(key []string, d time.Duration, l []*metricsv1.Label) {
	ms := float32(d) / float32(time.Millisecond)
	k := newAggKey(key, l)
	m.aggMu.Lock()
	defer m.aggMu.Unlock()
	sa := m.samples[k]
	if sa == nil {
		sa = &sampleAgg{key: key, labels: l}
		m.samples[k] = sa
	}
	sa.seen++
	if len(sa.vals) < maxSamplesPerFlush {
		sa.vals = append(sa.vals, ms)
	} else if i := rand.IntN(sa.seen); i < maxSamplesPerFlush {
		sa.vals[i] = ms
	}
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
	t.m.observe(t.name, max(d, 0))
}

func (m *metrics) observe(name string, d time.Duration) {
	if m != nil {
		m.sample(keyPhase, d, labels(labelPhase, name))
	}
}

// result counts one finished attestation and, at most once per
// cacheInterval, sends the caches' statistics.
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
	m.incr(keyAttestation, 1, labels(labelResult, r, labelMode, mode))
	m.caches()
}

// caches sends the cache statistics when cacheInterval has passed since
// the last send: lookups as counter increases, sizes as gauges.
func (m *metrics) caches() {
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	now := time.Now()
	if !m.cacheSent.IsZero() && now.Sub(m.cacheSent) < m.cacheInterval {
		return
	}
	m.cacheSent = now

	logs := m.p.logs.Stats()
	m.incr(subKey(keyFirmwareLogCache, "hits"), float32(logs.Hits-m.logHits), nil)
	m.incr(subKey(keyFirmwareLogCache, "misses"), float32(logs.Misses-m.logMisses), nil)
	m.logHits, m.logMisses = logs.Hits, logs.Misses

	chains, col, lib, ccel := m.p.cache.Len()
	for _, e := range []struct {
		table string
		n     int
	}{{"pck_chains", chains}, {"collateral", col}, {"library_verdicts", lib}, {"ccel_replays", ccel}} {
		m.gauge(keyAppraisalCache, float32(e.n), labels(labelTable, e.table))
	}

	c := m.collateral.Load()
	if c == nil {
		return
	}
	if c != m.colSent {
		// A new configuration's cache counts from zero.
		m.colSent, m.colLast = c, collateral.CacheStats{}
	}
	s := c.Stats()
	for _, x := range []struct {
		name      string
		now, last uint64
	}{
		{"hits", s.Hits, m.colLast.Hits},
		{"misses", s.Misses, m.colLast.Misses},
		{"upstream_requests", s.UpstreamRequests, m.colLast.UpstreamRequests},
		{"upstream_errors", s.UpstreamErrors, m.colLast.UpstreamErrors},
		{"stale_served", s.StaleServed, m.colLast.StaleServed},
		{"revalidated", s.Revalidated, m.colLast.Revalidated},
		{"failed_fast", s.FailedFast, m.colLast.FailedFast},
	} {
		m.incr(subKey(keyCollateralCache, x.name), float32(x.now-x.last), nil)
	}
	m.gauge(subKey(keyCollateralCache, "entries"), float32(s.Entries), nil)
	m.colLast = s
}

// logCaches writes the bounded caches' counters at debug level, so an
// operator can see whether they work from the server log alone.
func (a *attestation) logCaches() {
	chains, col, lib, ccel := a.p.cache.Len()
	logs := a.p.logs.Stats()
	kv := []any{
		"firmware_log_hits", logs.Hits, "firmware_log_misses", logs.Misses,
		"appraisal_pck_chains", chains, "appraisal_collateral", col, "appraisal_library_verdicts", lib, "appraisal_ccel_replays", ccel,
	}
	g := a.st.getter
	if t, ok := g.(collateral.Timed); ok {
		g = t.Next
	}
	if c, ok := g.(*collateral.Cache); ok {
		s := c.Stats()
		kv = append(kv, "collateral_hits", s.Hits, "collateral_misses", s.Misses, "collateral_upstream_requests", s.UpstreamRequests,
			"collateral_upstream_errors", s.UpstreamErrors, "collateral_entries", s.Entries)
	}
	a.log.Debug("Caches", kv...)
}

// brokerMetrics starts the metrics on SPIRE's Metrics host service when
// SPIRE offers it (every SPIRE server since 1.0 does).
func (p *Plugin) brokerMetrics(client metricsv1.MetricsClient, logger hclog.Logger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.metrics != nil {
		return
	}
	p.metrics = newMetrics(p, client)
	logger.Debug("Metrics go to the SPIRE server's telemetry through the Metrics host service")
}
