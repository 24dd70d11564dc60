package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ccnp-spire/ccnp-spire/bench/spireload"
)

// Flags of the e2e part only (declared here so that main stays as it is).
var (
	e2ePprof = flag.String("pprof", "", "end to end: take Go CPU profiles of spire-server (its profiling_port) and of the driver at these levels of concurrency (comma-separated, e.g. 8,64), for every attestor; kept in a temporary directory for go tool pprof (-diff_base)")
	e2eDur   = flag.Duration("e2e-duration", 0, "end to end: length of one measurement (default 1.5s, -quick 300ms); profiles want a few seconds")
)

// e2e measures node attestation through a real spire-server (bench/spireload):
// ccnp on the simulated TD beside SPIRE's x509pop, same server, same run,
// alternating, at each level of concurrency.
func (r *runner) e2e(ctx context.Context, bin string) error {
	dir, err := os.MkdirTemp("", "ccnp-bench-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dur := 1500 * time.Millisecond
	if r.quick {
		dur = 300 * time.Millisecond
	}
	if *e2eDur > 0 {
		dur = *e2eDur
	}
	levels := r.levels([]int{1, 2, 4, 8, 16, 32, 64})
	cfg := spireload.Config{Bin: bin, Dir: dir, Levels: levels, Duration: dur, Count: r.count, Progress: os.Stderr,
		FullLevels: []int{1, 8, 64}}
	// The simulated agents' own files on tmpfs when there is one (see
	// spireload.Config.AgentsDir).
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if cfg.AgentsDir, err = os.MkdirTemp("/dev/shm", "ccnp-bench-agents-"); err != nil {
			return err
		}
		defer os.RemoveAll(cfg.AgentsDir)
	}
	if *e2ePprof != "" {
		if r.perf != nil {
			return fmt.Errorf("-pprof and -perf profile the same windows: choose one")
		}
		at, err := parseLevels(*e2ePprof)
		if err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
		pdir, err := os.MkdirTemp("", "ccnp-bench-pprof-")
		if err != nil {
			return err
		}
		log.Printf("pprof profiles in %s", pdir)
		cfg.Around = func(w spireload.Window) func() {
			if w.Rep != 0 || !at[w.Concurrency] {
				return func() {}
			}
			stop := goProfiles(pdir, fmt.Sprintf("%s-c%d", w.Attestor, w.Concurrency), w.ServerPprof, dur)
			return func() {
				for k, v := range stop() {
					r.res.Profiles[fmt.Sprintf("e2e %s c=%d: %s (pprof)", w.Attestor, w.Concurrency, k)] = v
				}
			}
		}
	}
	if r.perf != nil {
		pbin, err := os.MkdirTemp(dir, "bin-")
		if err != nil {
			return err
		}
		plugin, err := unstrippedPlugin(pbin)
		if err != nil {
			return err
		}
		if cfg.Bin, err = binWith(bin, plugin, pbin); err != nil {
			return err
		}
		cfg.Around = func(w spireload.Window) func() {
			c := w.Concurrency
			if w.Attestor != spireload.CCNP || w.Rep != 0 || !r.perf.at[c] {
				return func() {}
			}
			stopServer := r.perf.record(fmt.Sprintf("e2e-spire-server-c%d", c), w.ServerPID)
			stopPlugin := r.perf.record(fmt.Sprintf("e2e-ccnp-plugin-c%d", c), w.PluginPID)
			return func() {
				r.res.Profiles[fmt.Sprintf("e2e ccnp c=%d: spire-server process (perf)", c)] = stopServer()
				r.res.Profiles[fmt.Sprintf("e2e ccnp c=%d: ccnp server plugin process (perf)", c)] = stopPlugin()
			}
		}
	}
	res, err := spireload.Run(ctx, cfg)
	if err != nil {
		return err
	}
	r.e2eRes = res
	r.res.E2E = res

	tput := &Series{Title: "End to end through spire-server v1.13.3: attestations per second vs concurrency", XLabel: "concurrent agents", YLabel: "attestations/s", LogX: true}
	lat := &Series{Title: "End to end through spire-server v1.13.3: latency vs concurrency", XLabel: "concurrent agents", YLabel: "latency (ms)", LogX: true, LogY: true}
	cpu := &Series{Title: "End to end: server-side CPU per attestation and the ccnp plugin's share", XLabel: "concurrent agents", YLabel: "CPU ms per attestation (share: %)", LogX: true}
	for _, c := range levels {
		stat := func(name string, f func(spireload.Sample) float64) Stat {
			var v []float64
			for _, s := range res.Of(name, c) {
				v = append(v, f(s))
			}
			return newStat(v)
		}
		perAtt := func(d func(spireload.Sample) time.Duration) func(spireload.Sample) float64 {
			return func(s spireload.Sample) float64 { return msOf(d(s)) / float64(s.Attestations) }
		}
		tput.X = append(tput.X, float64(c))
		tput.add("ccnp (sim TDX: quote with collateral, CCEL, runtime log, policy)", stat(spireload.CCNP, spireload.Sample.Rate))
		tput.add("x509pop (SPIRE built-in, ECDSA P-256 leaf)", stat(spireload.X509PoP, spireload.Sample.Rate))
		lat.X = append(lat.X, float64(c))
		lat.add("ccnp p50", stat(spireload.CCNP, func(s spireload.Sample) float64 { return msOf(s.P50) }))
		lat.add("ccnp p99", stat(spireload.CCNP, func(s spireload.Sample) float64 { return msOf(s.P99) }))
		lat.add("x509pop p50", stat(spireload.X509PoP, func(s spireload.Sample) float64 { return msOf(s.P50) }))
		lat.add("x509pop p99", stat(spireload.X509PoP, func(s spireload.Sample) float64 { return msOf(s.P99) }))
		cpu.X = append(cpu.X, float64(c))
		cpu.add("ccnp: spire-server process", stat(spireload.CCNP, perAtt(func(s spireload.Sample) time.Duration { return s.ServerCPU })))
		cpu.add("ccnp: ccnp server plugin process", stat(spireload.CCNP, perAtt(func(s spireload.Sample) time.Duration { return s.PluginCPU })))
		cpu.add("ccnp: plugin share of server-side CPU (%)", stat(spireload.CCNP, func(s spireload.Sample) float64 { return 100 * s.PluginShare() }))
		cpu.add("ccnp: driver (simulated agents)", stat(spireload.CCNP, perAtt(func(s spireload.Sample) time.Duration { return s.DriverCPU })))
		cpu.add("x509pop: spire-server process", stat(spireload.X509PoP, perAtt(func(s spireload.Sample) time.Duration { return s.ServerCPU })))
		cpu.add("x509pop: driver (simulated agents)", stat(spireload.X509PoP, perAtt(func(s spireload.Sample) time.Duration { return s.DriverCPU })))
		// All the processes together: on a shared machine, throughput
		// follows the CPU each attestor gets, and three processes get a
		// larger share than two, so this ratio is the one load elsewhere
		// does not bend.
		all := perAtt(func(s spireload.Sample) time.Duration { return s.ServerCPU + s.PluginCPU + s.DriverCPU })
		cpu.add("ccnp: all processes", stat(spireload.CCNP, all))
		cpu.add("x509pop: all processes", stat(spireload.X509PoP, all))
	}
	r.res.Series["e2e_throughput_vs_concurrency"] = tput
	r.res.Series["e2e_latency_vs_concurrency"] = lat
	r.res.Series["e2e_cpu_vs_concurrency"] = cpu
	r.res.Series["e2e_per_attestation"] = e2ePerAttestation(res, levels)
	if len(cfg.FullLevels) > 0 {
		r.res.Series["e2e_full_vs_concurrency"] = e2eFull(res, cfg.FullLevels)
	}
	return nil
}

// stat summarises f over the samples of one attestor at one level.
func e2eStat(res *spireload.Result, name string, c int, f func(spireload.Sample) float64) Stat {
	var v []float64
	for _, s := range res.Of(name, c) {
		v = append(v, f(s))
	}
	return newStat(v)
}

// e2ePerAttestation is what one attestation costs spire-server's datastore
// and the wire, per attestor and level: the datastore calls counted by
// spire-server's own telemetry (Prometheus, spire_server_datastore_*),
// writes apart; the selectors SPIRE stores per node (each
// node_selectors_set deletes the node's old selector rows and inserts one
// row per selector, SPIRE v1.13.3 sqlstore.setNodeSelectors); the
// challenges answered and the AttestAgent payload bytes the agent sent.
func e2ePerAttestation(res *spireload.Result, levels []int) *Series {
	s := &Series{Title: "End to end: datastore, selectors and wire per attestation", XLabel: "concurrent agents", YLabel: "per attestation", LogX: true}
	per := func(f func(spireload.Sample) float64) func(spireload.Sample) float64 {
		return func(x spireload.Sample) float64 { return x.PerAttestation(f(x)) }
	}
	for _, c := range levels {
		s.X = append(s.X, float64(c))
		for _, name := range []string{spireload.CCNP, spireload.X509PoP} {
			s.add(name+": datastore writes", e2eStat(res, name, c, per(func(x spireload.Sample) float64 { return x.Datastore.Writes() })))
			s.add(name+": datastore calls", e2eStat(res, name, c, per(func(x spireload.Sample) float64 { return x.Datastore.Total() })))
			sel := float64(len(res.Selectors[name]))
			s.add(name+": selectors per node", e2eStat(res, name, c, func(spireload.Sample) float64 { return sel }))
			s.add(name+": selector rows written (deleted + inserted)", e2eStat(res, name, c, per(func(x spireload.Sample) float64 { return 2 * sel * x.Datastore["node_selectors_set"] })))
			s.add(name+": challenges", e2eStat(res, name, c, per(func(x spireload.Sample) float64 { return float64(x.Challenges) })))
			s.add(name+": bytes sent", e2eStat(res, name, c, per(func(x spireload.Sample) float64 { return float64(x.SentBytes) })))
		}
	}
	return s
}

// e2eFull is ccnp without incremental re-attestation (every attestation
// replays whole logs, as after a reboot) at a few levels.
func e2eFull(res *spireload.Result, levels []int) *Series {
	s := &Series{Title: "End to end: ccnp with whole logs at every attestation (checkpoint dropped), same run", XLabel: "concurrent agents", YLabel: "median of samples", LogX: true}
	perAtt := func(d func(spireload.Sample) time.Duration) func(spireload.Sample) float64 {
		return func(x spireload.Sample) float64 { return msOf(d(x)) / float64(x.Attestations) }
	}
	for _, c := range levels {
		s.X = append(s.X, float64(c))
		st := func(f func(spireload.Sample) float64) Stat { return e2eStat(res, spireload.CCNPFull, c, f) }
		s.add("attestations/s", st(spireload.Sample.Rate))
		s.add("p50 ms", st(func(x spireload.Sample) float64 { return msOf(x.P50) }))
		s.add("p99 ms", st(func(x spireload.Sample) float64 { return msOf(x.P99) }))
		s.add("spire-server CPU ms per attestation", st(perAtt(func(x spireload.Sample) time.Duration { return x.ServerCPU })))
		s.add("ccnp plugin CPU ms per attestation", st(perAtt(func(x spireload.Sample) time.Duration { return x.PluginCPU })))
		s.add("driver CPU ms per attestation", st(perAtt(func(x spireload.Sample) time.Duration { return x.DriverCPU })))
		s.add("datastore writes per attestation", st(func(x spireload.Sample) float64 { return x.PerAttestation(x.Datastore.Writes()) }))
		s.add("bytes sent per attestation", st(func(x spireload.Sample) float64 { return x.PerAttestation(float64(x.SentBytes)) }))
	}
	return s
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// e2eRows adds, per level of concurrency, the throughput and p99 rows of
// ccnp beside x509pop. The ratios are of the medians; each sample pair was
// measured back to back.
func (r *runner) e2eRows(add func(Row, string)) {
	tput, lat, cpu := r.res.Series["e2e_throughput_vs_concurrency"], r.res.Series["e2e_latency_vs_concurrency"], r.res.Series["e2e_cpu_vs_concurrency"]
	if tput == nil || lat == nil || cpu == nil {
		return
	}
	for i, c := range tput.X {
		ours, anchor := tput.Lines[0].Points[i], tput.Lines[1].Points[i]
		rt := ours.Median / anchor.Median
		share := cpu.Lines[2].Points[i].Median
		note := fmt.Sprintf("server-side CPU per ccnp attestation: spire-server %.2f ms + ccnp plugin %.2f ms (plugin share %.0f%%); x509pop: spire-server %.2f ms; the simulated agents share the 2 cores; CPU of all processes per attestation: ccnp %.2f ms, x509pop %.2f ms, ratio %.3f",
			cpu.Lines[0].Points[i].Median, cpu.Lines[1].Points[i].Median, share, cpu.Lines[4].Points[i].Median,
			cpu.Lines[6].Points[i].Median, cpu.Lines[7].Points[i].Median, cpu.Lines[7].Points[i].Median/cpu.Lines[6].Points[i].Median)
		add(Row{Operation: fmt.Sprintf("End to end through spire-server (AttestAgent over TLS, sqlite), attestations/s at concurrency %.0f", c),
			Ours: ours, Unit: "attestations/s", Anchor: &anchor, AnchorOp: "SPIRE x509pop attestor, same server, same run",
			Ratio: rt, Target: "ratio >= 0.8", Holds: boolp(rt >= 0.8), Note: note}, "")
		p99, p99a := lat.Lines[1].Points[i], lat.Lines[3].Points[i]
		rl := p99.Median / p99a.Median
		add(Row{Operation: fmt.Sprintf("End to end through spire-server, p99 latency at concurrency %.0f", c),
			Ours: p99, Unit: "ms", Anchor: &p99a, AnchorOp: "SPIRE x509pop attestor p99, same server, same run",
			Ratio: rl, Target: "ratio <= 2", Holds: boolp(rl <= 2)}, "")
	}
	if len(tput.X) > 0 {
		log.Printf("end to end: %d agents per attestor", r.e2eRes.Agents)
	}
}

// e2eBin is the directory of the SPIRE binaries and plugins for the e2e
// part: the one holding the server plugin binary.
func e2eBin(plugin string) string { return filepath.Dir(plugin) }
