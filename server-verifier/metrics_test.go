package serververifier

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// fakeMetrics is SPIRE's Metrics host service as the plugin sees it:
// what the plugin sends, kept by Prometheus name (SPIRE's prefix
// spire_server_ and the key parts joined by "_") and labels.
type fakeMetrics struct {
	metricsv1.UnimplementedMetricsServer
	mu       sync.Mutex
	counters map[string]float32
	samples  map[string][]float32
	gauges   map[string]float32
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{counters: map[string]float32{}, samples: map[string][]float32{}, gauges: map[string]float32{}}
}

// metricName renders a key and labels as SPIRE's Prometheus sink names
// them: name{label="value",...} with labels sorted.
func metricName(key []string, labels []*metricsv1.Label) string {
	name := "spire_server_" + strings.Join(key, "_")
	if len(labels) == 0 {
		return name
	}
	var ls []string
	for _, l := range labels {
		ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
	}
	slices.Sort(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

func (f *fakeMetrics) IncrCounter(_ context.Context, r *metricsv1.IncrCounterRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counters[metricName(r.GetKey(), r.GetLabels())] += r.GetVal()
	return &emptypb.Empty{}, nil
}

func (f *fakeMetrics) AddSample(_ context.Context, r *metricsv1.AddSampleRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := metricName(r.GetKey(), r.GetLabels())
	f.samples[n] = append(f.samples[n], r.GetVal())
	return &emptypb.Empty{}, nil
}

func (f *fakeMetrics) SetGauge(_ context.Context, r *metricsv1.SetGaugeRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gauges[metricName(r.GetKey(), r.GetLabels())] = r.GetVal()
	return &emptypb.Empty{}, nil
}

// waitFor polls cond (the plugin emits on its own goroutine) and fails
// the test with what was emitted when it does not hold within a minute.
func (f *fakeMetrics) waitFor(t *testing.T, what string, cond func(f *fakeMetrics) bool) {
	t.Helper()
	start := time.Now()
	for {
		f.mu.Lock()
		ok := cond(f)
		f.mu.Unlock()
		if ok {
			t.Logf("%s: after %v", what, time.Since(start))
			return
		}
		if time.Since(start) > time.Minute {
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("%s: not emitted within a minute\ncounters %v\nsamples %v\ngauges %v", what, f.counters, f.samples, f.gauges)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// names returns the metric names emitted, without labels.
func (f *fakeMetrics) names() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	for _, m := range []map[string]float32{f.counters, f.gauges} {
		for k := range m {
			out[strings.SplitN(k, "{", 2)[0]] = true
		}
	}
	for k := range f.samples {
		out[strings.SplitN(k, "{", 2)[0]] = true
	}
	return out
}

// documentedMetrics reads the metric names of the table in
// docs/operations.md ("Metrics"): one row per name.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(spire_server_ccnp_[a-z_]+)`").FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	if len(out) == 0 {
		t.Fatal("docs/operations.md documents no spire_server_ccnp_ metric")
	}
	return out
}

// TestMetricsHostService: over the real plugin transport with SPIRE's
// Metrics host service offered, accepted and rejected attestations emit
// the documented metrics, and every metric emitted is documented.
func TestMetricsHostService(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	fm := newFakeMetrics()
	h := &harness{t: t, plugin: New(), logs: &simtest.LogBuffer{}, clock: &simtest.Clock{}}
	h.plugin.now = h.clock.Now
	h.client, h.config = simtest.ServeServer(t, h.plugin, h.logs, hclog.Debug, metricsv1.MetricsServiceServer(fm))
	if h.plugin.metrics == nil {
		t.Fatal("the Metrics host service offered but not brokered")
	}
	// Every attestation sends the cache statistics in this test.
	h.plugin.metrics.cacheMu.Lock()
	h.plugin.metrics.cacheInterval = 0
	h.plugin.metrics.cacheMu.Unlock()
	h.mustConfigure(n.serverConfig("", ""))

	a := n.agent(t, `compression = "zstd"`)
	for range 2 {
		if _, err := h.attest(a); err != nil {
			t.Fatal(err)
		}
	}
	const accepted = `spire_server_ccnp_attestation{mode="full",result="accepted"}`
	fm.waitFor(t, "two accepted attestations", func(f *fakeMetrics) bool {
		// The second attestation's statistics: the collateral and the
		// firmware log are cached by then.
		if f.counters[accepted] != 2 || f.counters["spire_server_ccnp_firmware_log_cache_hits"] != 1 || f.counters["spire_server_ccnp_collateral_cache_hits"] < 1 {
			return false
		}
		for _, phase := range []string{"parse", "quote", "collateral", "replay", "policy"} {
			if len(f.samples[`spire_server_ccnp_attestation_phase_elapsed_time{phase="`+phase+`"}`]) != 2 {
				return false
			}
		}
		return true
	})
	fm.mu.Lock()
	for k, want := range map[string]float32{
		"spire_server_ccnp_firmware_log_cache_misses":                   1,
		`spire_server_ccnp_appraisal_cache_entries{table="pck_chains"}`: 1,
	} {
		got := fm.counters[k]
		if strings.Contains(k, "entries") {
			got = fm.gauges[k]
		}
		if got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	// The first attestation fetched the TCB info and the QE identity (and
	// the CRLs), the second found them in memory.
	if fm.counters["spire_server_ccnp_collateral_cache_upstream_requests"] < 2 || fm.gauges["spire_server_ccnp_collateral_cache_entries"] < 2 {
		t.Errorf("collateral cache: upstream requests %v, entries %v", fm.counters["spire_server_ccnp_collateral_cache_upstream_requests"], fm.gauges["spire_server_ccnp_collateral_cache_entries"])
	}
	// Timers are in milliseconds, as SPIRE's: an attestation of the
	// simulator on this machine takes well under a minute.
	for k, v := range fm.samples {
		for _, ms := range v {
			if ms < 0 || ms > 60_000 {
				t.Errorf("%s: %v ms", k, ms)
			}
		}
	}
	t.Logf("phase samples (ms): %v", fm.samples)
	fm.mu.Unlock()

	// A rejection is counted too.
	_, err := h.attest(&agent{p: a.p, cfg: a.cfg, Hooks: simtest.Hooks{Raw: func(b []byte) []byte { return b[:len(b)/2] }}})
	if err == nil {
		t.Fatal("truncated evidence accepted")
	}
	fm.waitFor(t, "the rejection", func(f *fakeMetrics) bool {
		return f.counters[`spire_server_ccnp_attestation{mode="full",result="rejected"}`] == 1
	})

	docs := documentedMetrics(t)
	for name := range fm.names() {
		if !docs[name] {
			t.Errorf("%s is emitted but not documented in docs/operations.md", name)
		}
	}
	t.Logf("documented: %d names; emitted: %v", len(docs), fm.names())
	if !strings.Contains(h.logs.String(), `"@message":"Caches"`) || !strings.Contains(h.logs.String(), "firmware_log_hits") {
		t.Error("no debug line with the cache counters")
	}
	if strings.Contains(h.logs.String(), "no Metrics host service") {
		t.Error("warned of a missing Metrics host service that was offered")
	}
}

// TestMetricsWithoutHostService: without SPIRE's Metrics host service the
// plugin says so once and attests as usual.
func TestMetricsWithoutHostService(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	if h.plugin.metrics != nil {
		t.Fatal("metrics without a host service")
	}
	if _, err := h.attest(n.agent(t, "")); err != nil {
		t.Fatal(err)
	}
	if got := len(h.logs.Lines(t, "SPIRE offers no Metrics host service: this plugin emits no metrics")); got != 1 {
		t.Errorf("%d warnings of the missing host service, want 1:\n%s", got, h.logs.String())
	}
}

func TestVerifySlots(t *testing.T) {
	s := newVerifySlots(1)
	rel, err := s.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel(t)
	cancel()
	if _, err := s.acquire(ctx); err == nil {
		t.Fatal("acquired a second slot of one")
	}
	rel()
	rel() // idempotent: must not free a slot it does not hold
	if _, err := s.acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = contextWithCancel(t)
	cancel()
	if _, err := s.acquire(ctx); err == nil {
		t.Fatal("a double release freed a second slot")
	}
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
