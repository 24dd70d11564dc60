package serververifier

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/simtest"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// scrape returns the value of every sample line of the endpoint, keyed by
// the metric name with its labels as printed.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	line := regexp.MustCompile(`^(\S+) (\S+)$`)
	for _, l := range strings.Split(string(b), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil || strings.HasPrefix(l, "#") {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out[m[1]] = v
	}
	return out
}

func TestMetricsEndpoint(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	h := newHarness(t, nil)
	if h.plugin.metrics.listening() != "" {
		t.Fatal("metrics served without metrics_address")
	}
	h.mustConfigure(n.serverConfig("", `metrics_address = "127.0.0.1:0"`))
	addr := h.plugin.metrics.listening()
	if addr == "" {
		t.Fatal("no endpoint with metrics_address set")
	}
	a := n.agent(t, `compression = "zstd"`)
	for range 2 {
		if _, err := h.attest(a); err != nil {
			t.Fatal(err)
		}
	}
	m := scrape(t, addr)
	for _, phase := range []string{"parse", "quote", "collateral", "replay", "policy"} {
		if got := m[`ccnp_attestation_phase_seconds_count{phase="`+phase+`"}`]; got != 2 {
			t.Errorf("phase %s observed %v times, want 2", phase, got)
		}
	}
	want := map[string]float64{
		`ccnp_attestation_total{mode="full",result="accepted"}`: 2,
		`ccnp_firmware_log_cache_misses_total`:                  1,
		`ccnp_firmware_log_cache_hits_total`:                    1,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if m["ccnp_collateral_cache_hits_total"] < 1 || m["ccnp_collateral_cache_upstream_requests_total"] < 1 {
		t.Errorf("collateral cache counters: hits %v, upstream %v", m["ccnp_collateral_cache_hits_total"], m["ccnp_collateral_cache_upstream_requests_total"])
	}
	if m["ccnp_appraisal_cache_pck_chains"] != 1 {
		t.Errorf("appraisal cache gauge: %v", m["ccnp_appraisal_cache_pck_chains"])
	}
	// A rejection is counted too.
	_, err := h.attest(&agent{p: a.p, cfg: a.cfg, Hooks: simtest.Hooks{Raw: func(b []byte) []byte { return b[:len(b)/2] }}})
	if err == nil {
		t.Fatal("truncated evidence accepted")
	}
	if got := scrape(t, addr)[`ccnp_attestation_total{mode="full",result="rejected"}`]; got != 1 {
		t.Errorf("rejections counted %v, want 1", got)
	}
	if !strings.Contains(h.logs.String(), `"@message":"caches"`) || !strings.Contains(h.logs.String(), "firmware_log_hits") {
		t.Error("no debug line with the cache counters")
	}

	// Reconfigured without the key, the endpoint goes away.
	h.mustConfigure(n.serverConfig("", ""))
	if h.plugin.metrics.listening() != "" {
		t.Fatal("endpoint still listening")
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Fatal("endpoint still answers")
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
