// Command ccnp-bench runs every benchmark of the project beside its anchor
// in one run (make bench): the go test benchmarks of server-verifier and
// bench/scale, the server plugin binary under load through the real plugin
// transport (go-plugin gRPC, as SPIRE runs it), and the workload attestor
// next to SPIRE's unix attestor (bench/unixattestor). Every measurement is
// repeated -count times; results.json and results.md report medians with
// their spread, each target with its measured value, and for a target that
// does not hold, the top of a CPU profile of the operation.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/ccnp-spire/ccnp-spire/bench/spireload"
)

func main() {
	out := flag.String("out", "bench", "directory for results.json and results.md")
	bin := flag.String("plugin", ".bin/ccnp-server-nodeattestor", "server plugin binary")
	count := flag.Int("count", 5, "repetitions of every measurement")
	quick := flag.Bool("quick", false, "fewer sizes and shorter runs (a smoke test of the harness)")
	parts := flag.String("parts", "go,transport,workload,e2e", "which measurements to run (comma-separated: go, transport, workload, e2e)")
	perfAt := flag.String("perf", "", "profile the server plugin (and, end to end, spire-server) with Linux perf at these levels of concurrency (comma-separated, e.g. 8,64); needs perf")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process (the load generators) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *count < 1 {
		log.Fatal("-count must be >= 1")
	}
	r := &runner{count: *count, quick: *quick, res: &Results{
		Generated: time.Now().UTC().Format(time.RFC3339),
		Machine:   machine(),
		Count:     *count,
		Series:    map[string]*Series{},
		Profiles:  map[string]string{},
	}}
	if *perfAt != "" {
		// The recordings stay for perf report (callers, annotations).
		dir, err := os.MkdirTemp("", "ccnp-bench-perf-")
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("perf recordings in %s", dir)
		r.perf = &perfProfiler{dir: dir, at: map[int]bool{}}
		for _, f := range strings.Split(*perfAt, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				log.Fatalf("-perf: %q is not a level of concurrency", f)
			}
			r.perf.at[c] = true
		}
	}
	start := time.Now()
	ctx := context.Background()
	want := map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		want[strings.TrimSpace(p)] = true
	}
	if want["go"] {
		r.goBenchmarks()
	}
	if want["transport"] {
		if err := r.transport(ctx, *bin); err != nil {
			log.Fatalf("transport benchmarks: %v", err)
		}
	}
	if want["workload"] {
		r.workload()
	}
	if want["e2e"] {
		if err := r.e2e(ctx, e2eBin(*bin)); err != nil {
			log.Fatalf("end-to-end benchmark through spire-server: %v", err)
		}
	}
	r.targets()
	r.res.Duration = time.Since(start).Round(time.Second).String()
	if err := r.res.write(*out); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s/results.json and %s/results.md in %s", *out, *out, r.res.Duration)
}

type runner struct {
	count int
	quick bool
	res   *Results
	// samples of go test benchmarks: name -> metric -> values.
	samples map[string]map[string][]float64
	// anchors of the profiles to take when a target fails.
	profile map[string]profileSpec
	// perf profiles child processes at some levels of concurrency (-perf).
	perf *perfProfiler
	// e2eRes is the end-to-end run through spire-server, if any.
	e2eRes *spireload.Result
}

// profileSpec is a benchmark to profile and the function whose samples
// matter (setup excluded).
type profileSpec struct{ pkg, bench, benchtime, focus string }

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// goBench runs `go test -bench` in pkg and adds every sample.
func (r *runner) goBench(pkg, pattern, benchtime string) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchmem", "-count", strconv.Itoa(r.count), "-benchtime", benchtime, "-timeout", "30m", pkg}
	log.Printf("go %s", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		log.Fatalf("go test %s: %v\n%s", pkg, err, outb)
	}
	if r.samples == nil {
		r.samples = map[string]map[string][]float64{}
	}
	sc := bufio.NewScanner(bytes.NewReader(outb))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if r.samples[m[1]] == nil {
				r.samples[m[1]] = map[string][]float64{}
			}
			r.samples[m[1]][f[i+1]] = append(r.samples[m[1]][f[i+1]], v)
		}
	}
}

func (r *runner) stat(name, metric string) Stat {
	return newStat(r.samples[name][metric])
}

func (r *runner) goBenchmarks() {
	bt := "1s"
	if r.quick {
		bt = "100ms"
	}
	r.goBench("./server-verifier", "^(BenchmarkECDSAFloor|BenchmarkAttestTDXSim|BenchmarkGoTdxGuestVerify|BenchmarkAttestIMA|BenchmarkReattestIMA500k)$", bt)
	scaleBT := "2x"
	if r.quick {
		scaleBT = "1x"
	}
	r.goBench("./bench/scale", ".", scaleBT)
	r.goBench("./eventlog/ima/imapolicy", "^BenchmarkAppraise100k$/^ratio$", scaleBT)
	r.profile = map[string]profileSpec{
		"verify":   {"./server-verifier", "^BenchmarkAttestTDXSim$", "3s", `\(\*Plugin\)\.Attest$`},
		"ima":      {"./bench/scale", "^BenchmarkIMAParseReplay/entries=1000000$", "3x", `ima\.ParseBinary|ima\.\(\*Log\)\.Replay`},
		"reattest": {"./server-verifier", "^BenchmarkReattestIMA500k$", "2s", `\(\*Plugin\)\.Attest$`},
	}

	// Plot: server verification time vs events, ours vs go-eventlog.
	s := &Series{Title: "Server verification time vs event-log size", XLabel: "events in the log", YLabel: "time per verification (ms)", LogX: true, LogY: true}
	for _, n := range []int{10, 100, 1_000, 10_000, 100_000} {
		s.X = append(s.X, float64(n))
		s.add("ours: full attestation, IMA list of n entries", r.stat(fmt.Sprintf("BenchmarkAttestIMA/entries=%d", n), "ns/op").scale(1e-6))
		s.add("go-eventlog tcg.ParseAndReplay of n events", r.stat(fmt.Sprintf("BenchmarkGoEventlogReplay/events=%d", n), "ns/op").scale(1e-6))
	}
	r.res.Series["verify_vs_events"] = s

	s = &Series{Title: "IMA parse + SHA-256 replay vs entries", XLabel: "IMA entries", YLabel: "time (ms)", LogX: true, LogY: true}
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		s.X = append(s.X, float64(n))
		s.add("ours: eventlog/ima ParseBinary + Replay(sha256)", r.stat(fmt.Sprintf("BenchmarkIMAParseReplay/entries=%d", n), "ns/op").scale(1e-6))
		s.add("hashing floor: SHA-1 + SHA-256 of the template data, SHA-256 extend", r.stat(fmt.Sprintf("BenchmarkIMAHashFloor/entries=%d", n), "ns/op").scale(1e-6))
	}
	r.res.Series["ima_vs_entries"] = s
}

// levels of concurrency of the transport benchmarks.
func (r *runner) levels(full []int) []int {
	if r.quick {
		return []int{1, 8, 64}
	}
	return full
}

// transport measures the plugin binary through go-plugin: attestations per
// second and the process's CPU per attestation vs concurrency (small
// evidence: quote, CCEL, no IMA), and its peak RSS vs concurrency with 1 MiB
// of IMA log per attestation, a fresh process per run.
func (r *runner) transport(ctx context.Context, bin string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: build it first (make build): %w", bin, err)
	}
	tmp, err := os.MkdirTemp("", "ccnp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if r.perf != nil {
		if bin, err = unstrippedPlugin(tmp); err != nil {
			return err
		}
	}
	small, err := newNode(filepath.Join(tmp, "small"), 0)
	if err != nil {
		return err
	}
	defer small.close()
	p, err := startPlugin(ctx, bin, small.serverConfig())
	if err != nil {
		return err
	}
	defer p.stop()
	agents := make([]*agent, 256)
	for i := range agents {
		if agents[i], err = newAgent(small, fmt.Sprintf("bench-agent-%03d", i)); err != nil {
			return err
		}
	}
	// Warm the collateral cache and the connection.
	if _, _, err := load(ctx, p, agents, 1, 20, 0); err != nil {
		return fmt.Errorf("warm-up attestation: %w", err)
	}
	dur := 2 * time.Second
	if r.quick {
		dur = 500 * time.Millisecond
	}
	tput := &Series{Title: "Attestations per second vs concurrency (plugin gRPC transport)", XLabel: "concurrent attestations", YLabel: "attestations/s", LogX: true}
	cpu := &Series{Title: "Server plugin CPU per attestation", XLabel: "concurrent attestations", YLabel: "CPU ms per attestation", LogX: true}
	for _, c := range r.levels([]int{1, 2, 4, 8, 16, 32, 64, 128, 256}) {
		var rates, cpus []float64
		// A profile covers every repetition at its level.
		stop := func() {}
		if r.perf != nil && r.perf.at[c] {
			stopPerf := r.perf.record(fmt.Sprintf("transport-c%d", c), p.pid)
			stop = func() { r.res.Profiles[fmt.Sprintf("transport c=%d: server plugin process (perf)", c)] = stopPerf() }
		}
		for range r.count {
			c0, _ := spireload.ProcCPU(p.pid)
			n, wall, err := load(ctx, p, agents, c, 0, dur)
			if err != nil {
				return fmt.Errorf("concurrency %d: %w", c, err)
			}
			c1, _ := spireload.ProcCPU(p.pid)
			rates = append(rates, float64(n)/wall.Seconds())
			cpus = append(cpus, float64(c1-c0)/float64(time.Millisecond)/float64(n))
		}
		stop()
		tput.X = append(tput.X, float64(c))
		tput.add("ours: full sim TDX attestations/s (load generator on the same 2 cores)", newStat(rates))
		cpu.X = append(cpu.X, float64(c))
		cpu.add("server plugin process CPU per attestation", newStat(cpus))
		log.Printf("concurrency %d: %.0f attestations/s, %.3f ms server CPU each, %d collateral fetches so far", c, newStat(rates).Median, newStat(cpus).Median, small.fetches.Load())
	}
	r.res.Series["throughput_vs_concurrency"] = tput
	r.res.Series["server_cpu_vs_concurrency"] = cpu

	big, err := newNode(filepath.Join(tmp, "big"), 1<<20)
	if err != nil {
		return err
	}
	defer big.close()
	bigAgents := make([]*agent, 256)
	for i := range bigAgents {
		if bigAgents[i], err = newAgent(big, fmt.Sprintf("rss-agent-%03d", i)); err != nil {
			return err
		}
	}
	rss := &Series{Title: "Server plugin peak RSS vs concurrency (1 MiB IMA log per attestation)", XLabel: "concurrent attestations", YLabel: "peak RSS (MiB)", LogX: true}
	for _, c := range r.levels([]int{1, 8, 32, 64, 128, 256}) {
		var peaks []float64
		for range r.count {
			pp, err := startPlugin(ctx, bin, big.serverConfig())
			if err != nil {
				return err
			}
			// One warm-up so the peak is of the concurrent attestations,
			// then two waves of c concurrent ones.
			_, _, err = load(ctx, pp, bigAgents, 1, 1, 0)
			if err == nil {
				_, _, err = load(ctx, pp, bigAgents, c, 2*c, 0)
			}
			hwm, herr := procStatus(pp.pid, "VmHWM")
			pp.stop()
			if err != nil {
				return fmt.Errorf("rss at concurrency %d: %w", c, err)
			}
			if herr != nil {
				return herr
			}
			peaks = append(peaks, float64(hwm)/1024)
		}
		rss.X = append(rss.X, float64(c))
		rss.add("ours: server plugin VmHWM", newStat(peaks))
		log.Printf("concurrency %d with 1 MiB logs: peak RSS %.0f MiB", c, newStat(peaks).Median)
	}
	r.res.Series["rss_vs_concurrency"] = rss
	return nil
}

var p50Line = regexp.MustCompile(`p50 ccnp (\d+) ns, unix (\d+) ns, ratio`)

// workload runs bench/unixattestor/run.sh count times: this project's
// workload attestor and SPIRE's unix attestor in one go test run each.
func (r *runner) workload() {
	var ours, unix []float64
	for range r.count {
		cmd := exec.Command("sh", "bench/unixattestor/run.sh")
		if r.quick {
			cmd.Env = append(os.Environ(), "BENCHTIME=200x")
		}
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			log.Printf("bench/unixattestor/run.sh: %v (workload target not measured)", err)
			return
		}
		m := p50Line.FindSubmatch(b)
		if m == nil {
			log.Printf("bench/unixattestor/run.sh printed no p50 line:\n%s", b)
			return
		}
		c, _ := strconv.ParseFloat(string(m[1]), 64)
		u, _ := strconv.ParseFloat(string(m[2]), 64)
		ours, unix = append(ours, c), append(unix, u)
	}
	if r.samples == nil {
		r.samples = map[string]map[string][]float64{}
	}
	r.samples["workload/ccnp"] = map[string][]float64{"p50-ns": ours}
	r.samples["workload/unix"] = map[string][]float64{"p50-ns": unix}
}

// pprofTop profiles one benchmark and returns the top of the profile.
func pprofTop(spec profileSpec) string {
	dir, err := os.MkdirTemp("", "ccnp-pprof-")
	if err != nil {
		return err.Error()
	}
	defer os.RemoveAll(dir)
	prof := filepath.Join(dir, "cpu.out")
	testBin := filepath.Join(dir, "bench.test")
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", spec.bench, "-benchtime", spec.benchtime, "-cpuprofile", prof, "-o", testBin, spec.pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("profiling failed: %v\n%s", err, out)
	}
	var text strings.Builder
	fmt.Fprintf(&text, "$ go test -run '^$' -bench '%s' -benchtime %s -cpuprofile cpu.out %s\n", spec.bench, spec.benchtime, spec.pkg)
	for _, mode := range []string{"-top", "-top -cum"} {
		args := append([]string{"tool", "pprof"}, strings.Fields(mode)...)
		args = append(args, "-nodecount=25", "-focus="+spec.focus, testBin, prof)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("pprof failed: %v\n%s", err, out)
		}
		fmt.Fprintf(&text, "$ go tool pprof %s -nodecount=25 -focus='%s' bench.test cpu.out\n%s\n", mode, spec.focus, out)
	}
	return text.String()
}

func machine() Machine {
	m := Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	return m
}

func init() { log.SetFlags(log.Ltime) }
