package main

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCapacityFromResults derives the capacity model from the committed
// bench/results.json: every input the model names is found there (so a
// renamed series or row shows up here, not as "not measured" in the docs),
// and the derived costs follow from the inputs.
func TestCapacityFromResults(t *testing.T) {
	b, err := os.ReadFile("../../results.json")
	if err != nil {
		t.Skipf("no bench/results.json to derive from: %v", err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	m := newCapacityModel(&res)
	for _, f := range []capFigure{m.server, m.plugin, m.fullServer, m.fullPlugin, m.x509, m.full, m.ima100k, m.reattest, m.datastore} {
		if !f.ok() {
			t.Errorf("%s: not found in bench/results.json (series %s, %s, %s, rows %q, %q, %q)", f.name, capE2ECPUSeries, capE2EFullSeries, capE2EPerAttestSeries, capFullRowPrefix, capReattestRowPrefix, capIMA100kRowPrefix)
		}
	}
	if got, want := m.costs[0].value, m.fullServer.value+m.fullPlugin.value; math.Abs(got-want) > 1e-9 {
		t.Errorf("full attestation cost %v, want spire-server + plugin with whole logs = %v", got, want)
	}
	if got, want := m.costs[1].value, m.server.value+m.plugin.value; math.Abs(got-want) > 1e-9 {
		t.Errorf("incremental attestation cost %v, want spire-server + plugin with a checkpoint = %v", got, want)
	}
	if !(m.costs[3].value < m.costs[1].value+m.reattest.value) {
		t.Errorf("incremental cost with IMA %v not below incremental %v + incremental in-process %v", m.costs[3].value, m.costs[1].value, m.reattest.value)
	}
	md := res.capacityMarkdown()
	for _, want := range []string{"## Capacity model", "re-attesting every 30 min", "full attestation, TDX node without IMA"} {
		if !strings.Contains(md, want) {
			t.Errorf("capacity section lacks %q", want)
		}
	}
	t.Logf("\n%s", md)
}

// TestCapacityMissingFigures: a run without the e2e part (or an older
// results.json) says "not measured", never a number made from nothing.
func TestCapacityMissingFigures(t *testing.T) {
	md := (&Results{Series: map[string]*Series{}}).capacityMarkdown()
	if strings.Contains(md, "NaN") || strings.Contains(md, "Inf") {
		t.Fatalf("capacity section with no figures prints NaN/Inf:\n%s", md)
	}
	if n := strings.Count(md, "not measured"); n < 10 {
		t.Fatalf("capacity section with no figures says \"not measured\" %d times, want every input and every cell:\n%s", n, md)
	}
}

func TestNodesPerCore(t *testing.T) {
	// 10 ms per attestation, every 30 min, half a core: 0.5 * 1,800,000 / 10.
	if got := nodesPerCore(10, 30*time.Minute); got != 90000 {
		t.Fatalf("nodesPerCore(10 ms, 30 min) = %v, want 90000", got)
	}
	for in, want := range map[float64]string{90000: "90000", 12345: "12000", 987: "980", 5.5: "5", 0.5: "0"} {
		if got := fmtCount(in); got != want {
			t.Errorf("fmtCount(%v) = %q, want %q", in, got, want)
		}
	}
}
