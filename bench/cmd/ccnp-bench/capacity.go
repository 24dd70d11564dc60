package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ccnp-spire/ccnp-spire/collateral"
)

// The capacity model of docs/operations.md ("Capacity"), derived from this
// run's own figures so that every number in it names where it came from.
// It reads only the Results (series and rows), so it works on any
// results.json, and says "not measured" for a figure the run lacks instead
// of inventing one.

// Names of the figures the model reads. The e2e part writes the series, the
// go part the rows; a rename there must be made here too (capacity_test.go
// checks them against bench/results.json).
const (
	capE2ECPUSeries      = "e2e_cpu_vs_concurrency"
	capE2EServerLine     = "ccnp: spire-server process"
	capE2EPluginLine     = "ccnp: ccnp server plugin process"
	capE2EX509Line       = "x509pop: spire-server process"
	capFullRowPrefix     = "Full server verification of a sim TDX attestation (Plugin.Attest"
	capReattestRowPrefix = "Re-attestation, 500,000-entry IMA log + 100 new entries"
	capIMA100kRowPrefix  = "Full attestation with a 100,000-entry IMA list"
	// The e2e run's whole-log series (agents drop their checkpoint: a
	// full attestation) and its per-attestation datastore figures.
	capE2EFullSeries      = "e2e_full_vs_concurrency"
	capE2EFullServerLine  = "spire-server CPU ms per attestation"
	capE2EFullPluginLine  = "ccnp plugin CPU ms per attestation"
	capE2EPerAttestSeries = "e2e_per_attestation"
	capE2EDatastoreLine   = "ccnp: datastore writes"
	// capDatastoreKey is matched (case-insensitively) against series keys
	// and row operations: the e2e part's datastore-write figures, when it
	// has them.
	capDatastoreKey = "datastore"
)

// capIntervals are re-attestation intervals (minutes) the table covers: an
// agent re-attests at about half its SVID's lifetime, so 30 is SPIRE's
// default agent_ttl of 1 h.
var capIntervals = []float64{5, 15, 30, 60}

// capUtilisation is the share of a core the table plans for: attestations
// arrive in bursts (a server restart, a fleet rollout), so a core planned
// at half load absorbs a doubling of the rate.
const capUtilisation = 0.5

// capFigure is one input of the model: a value and where it came from.
type capFigure struct {
	name   string
	value  float64 // NaN: not measured
	unit   string
	source string
}

func (f capFigure) ok() bool { return !math.IsNaN(f.value) && f.value > 0 }

func (f capFigure) String() string {
	if !f.ok() {
		return "not measured"
	}
	return fmtNum(f.value) + " " + f.unit
}

// capacityModel holds the inputs and the derived server-side CPU cost per
// attestation of each kind.
type capacityModel struct {
	server, plugin, x509, full, reattest, ima100k, datastore capFigure
	// fullServer and fullPlugin are the e2e figures with whole logs (no
	// checkpoint); server and plugin those of incremental rounds.
	fullServer, fullPlugin capFigure
	costs                  []capFigure // server-side CPU ms per attestation, by kind
}

// seriesAtLowest is line's median at the lowest concurrency of series key:
// the figure for attestations that arrive one at a time, as a fleet's
// spread-out re-attestations do, and the highest per-attestation cost the
// run saw (batching at higher concurrency only lowers it).
func seriesAtLowest(res *Results, key, line string) (float64, string) {
	s := res.Series[key]
	if s == nil || len(s.X) == 0 {
		return math.NaN(), ""
	}
	lo := 0
	for i, x := range s.X {
		if x < s.X[lo] {
			lo = i
		}
	}
	for _, l := range s.Lines {
		if l.Name == line && lo < len(l.Points) && l.Points[lo].Median > 0 {
			return l.Points[lo].Median, fmt.Sprintf("results.json series %s, line %q, concurrency %s (median)", key, line, fmtNum(s.X[lo]))
		}
	}
	return math.NaN(), ""
}

// rowByPrefix is the row whose operation starts with prefix.
func rowByPrefix(res *Results, prefix string) *Row {
	for i := range res.Rows {
		if strings.HasPrefix(res.Rows[i].Operation, prefix) {
			return &res.Rows[i]
		}
	}
	return nil
}

func rowFigure(res *Results, name, prefix string, anchor bool) capFigure {
	f := capFigure{name: name, value: math.NaN(), unit: "ms"}
	r := rowByPrefix(res, prefix)
	if r == nil {
		return f
	}
	st, what := r.Ours, "ours"
	if anchor {
		if r.Anchor == nil {
			return f
		}
		st, what = *r.Anchor, "anchor"
	}
	if st.Median > 0 && r.Unit == "ms" {
		f.value, f.source = st.Median, fmt.Sprintf("results.md row %q, %s (median)", r.Operation, what)
	}
	return f
}

// datastoreFigure looks for the e2e run's datastore writes per ccnp
// attestation: a series whose key names the datastore (the ccnp line at its
// lowest concurrency) or a row whose operation does.
func datastoreFigure(res *Results) capFigure {
	f := capFigure{name: "datastore writes per ccnp attestation (e2e, sqlite)", value: math.NaN(), unit: "writes"}
	if v, src := seriesAtLowest(res, capE2EPerAttestSeries, capE2EDatastoreLine); !math.IsNaN(v) {
		f.value, f.source = v, src
		return f
	}
	for key, s := range res.Series {
		if !strings.Contains(strings.ToLower(key), capDatastoreKey) {
			continue
		}
		for _, l := range s.Lines {
			if strings.HasPrefix(strings.ToLower(l.Name), "ccnp") {
				if v, src := seriesAtLowest(res, key, l.Name); !math.IsNaN(v) {
					f.value, f.source = v, src
					return f
				}
			}
		}
	}
	for _, r := range res.Rows {
		op := strings.ToLower(r.Operation)
		if strings.Contains(op, capDatastoreKey) && strings.Contains(op, "ccnp") && r.Ours.Median > 0 {
			f.value, f.source = r.Ours.Median, fmt.Sprintf("results.md row %q (median)", r.Operation)
			return f
		}
	}
	return f
}

func newCapacityModel(res *Results) *capacityModel {
	m := &capacityModel{}
	fig := func(name, line string) capFigure {
		v, src := seriesAtLowest(res, capE2ECPUSeries, line)
		return capFigure{name: name, value: v, unit: "ms", source: src}
	}
	m.server = fig("spire-server CPU per incremental ccnp attestation (e2e, checkpoint)", capE2EServerLine)
	m.plugin = fig("ccnp server plugin CPU per incremental attestation (e2e, over go-plugin)", capE2EPluginLine)
	fullFig := func(name, line string) capFigure {
		v, src := seriesAtLowest(res, capE2EFullSeries, line)
		return capFigure{name: name, value: v, unit: "ms", source: src}
	}
	m.fullServer = fullFig("spire-server CPU per full ccnp attestation (e2e, whole logs)", capE2EFullServerLine)
	m.fullPlugin = fullFig("ccnp server plugin CPU per full attestation (e2e, whole logs)", capE2EFullPluginLine)
	m.x509 = fig("spire-server CPU per x509pop attestation (e2e, for scale)", capE2EX509Line)
	m.full = rowFigure(res, "in-process full verification, sim TDX, no IMA", capFullRowPrefix, false)
	m.reattest = rowFigure(res, "in-process incremental re-attestation, 500,000-entry IMA log + 100 new", capReattestRowPrefix, false)
	m.ima100k = rowFigure(res, "in-process full attestation, 100,000-entry IMA list", capIMA100kRowPrefix, false)
	m.datastore = datastoreFigure(res)

	nan := math.NaN()
	sum := func(name, how string, parts ...float64) capFigure {
		v := 0.0
		for _, p := range parts {
			v += p
		}
		if math.IsNaN(v) || v <= 0 {
			v = nan
		}
		return capFigure{name: name, value: v, unit: "ms", source: how}
	}
	// The e2e nodes are sim TDX nodes without IMA, attested in full. Other
	// kinds take the e2e figures (SPIRE's share and the plugin's transport,
	// quote and collateral work) and swap the plugin's in-process
	// verification of an e2e node for the in-process figure of that kind.
	m.costs = []capFigure{
		sum("full attestation, TDX node without IMA", "spire-server + plugin (e2e, whole logs)",
			m.fullServer.value, m.fullPlugin.value),
		sum("incremental re-attestation, TDX node without IMA", "spire-server + plugin (e2e, checkpoint)",
			m.server.value, m.plugin.value),
		sum("full attestation, TDX node with a 100,000-entry IMA list", "spire-server + plugin (e2e, whole logs) - in-process full (no IMA) + in-process full (100,000 IMA entries)",
			m.fullServer.value, m.fullPlugin.value, -m.full.value, m.ima100k.value),
		sum("incremental re-attestation, 500,000-entry IMA list + 100 new entries", "spire-server + plugin (e2e, checkpoint) - in-process full (no IMA) + in-process incremental",
			m.server.value, m.plugin.value, -m.full.value, m.reattest.value),
	}
	return m
}

// nodesPerCore is how many nodes re-attesting every interval one core
// sustains at capUtilisation, for a cost in CPU ms per attestation.
func nodesPerCore(costMs float64, interval time.Duration) float64 {
	return capUtilisation * float64(interval.Milliseconds()) / costMs
}

// capacityMarkdown is the "Capacity model" section of results.md.
func (res *Results) capacityMarkdown() string {
	m := newCapacityModel(res)
	var b strings.Builder
	b.WriteString("\n## Capacity model (docs/operations.md, \"Capacity\")\n\n")
	b.WriteString("Derived by bench/cmd/ccnp-bench/capacity.go from this run's figures above; \"not measured\" where the run lacks one.\n\n")
	b.WriteString("### Inputs\n\n| input | value | source |\n|---|---|---|\n")
	for _, f := range []capFigure{m.fullServer, m.fullPlugin, m.server, m.plugin, m.x509, m.full, m.ima100k, m.reattest, m.datastore} {
		src := f.source
		if !f.ok() {
			src = "absent from this run's results"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", f.name, f, src)
	}
	refresh := collateral.DefaultRefresh
	fmt.Fprintf(&b, "| collateral fetches per FMSPC per day, per server | %.0f TCB info + %.0f shared (QE identity, PCK CRL, root CRL) | configuration, not measured: one fetch per document per `collateral.refresh` (default %s, collateral.DefaultRefresh), sooner only if the document's nextUpdate is earlier; independent of the number of nodes |\n",
		24*time.Hour.Hours()/refresh.Hours(), 3*24*time.Hour.Hours()/refresh.Hours(), refresh)

	b.WriteString("\n### Server-side CPU per attestation\n\n| row | CPU per attestation | how |\n|---|---|---|\n")
	for _, c := range m.costs {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.name, c, c.source)
	}

	fmt.Fprintf(&b, "\n### Nodes one server core sustains (at %.0f%% load)\n\n| row |", capUtilisation*100)
	for _, iv := range capIntervals {
		fmt.Fprintf(&b, " re-attesting every %.0f min |", iv)
	}
	b.WriteString("\n|---|")
	for range capIntervals {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, c := range m.costs {
		fmt.Fprintf(&b, "| %s |", c.name)
		for _, iv := range capIntervals {
			if !c.ok() {
				b.WriteString(" not measured |")
				continue
			}
			fmt.Fprintf(&b, " %s |", fmtCount(nodesPerCore(c.value, time.Duration(iv)*time.Minute)))
		}
		b.WriteString("\n")
	}
	if m.datastore.ok() {
		fmt.Fprintf(&b, "\nDatastore writes: %s per attestation, i.e. %s writes/s for 10,000 nodes re-attesting every 30 min.\n",
			fmtNum(m.datastore.value), fmtNum(m.datastore.value*10000/(30*60)))
	} else {
		b.WriteString("\nDatastore writes per attestation: not measured in this run (the e2e part does not report them yet).\n")
	}
	return b.String()
}

// fmtCount rounds a node count down to two significant digits: the model
// is no more precise than that.
func fmtCount(n float64) string {
	if n < 1 || math.IsNaN(n) {
		return "0"
	}
	p := max(1, math.Pow(10, math.Floor(math.Log10(n))-1))
	return fmt.Sprintf("%.0f", math.Floor(n/p)*p)
}
