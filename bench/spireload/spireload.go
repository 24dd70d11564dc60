// Package spireload drives node attestation end to end through a real SPIRE
// server (v1.13.3, built from tools/spire, started by test/spirelab with its
// sqlite datastore and its attestation rate limit off): many simulated
// agents call the server's Agent API (AttestAgent, over TLS on its TCP port,
// as SPIRE's agent does) concurrently, for the ccnp attestor (the simulated
// TD with collateral from a loopback PCS, its real CCEL and a runtime log,
// answered by the agent plugin's own code) and, against the same server in
// the same run, for SPIRE's x509pop attestor (real certificates and
// signatures), the anchor. It measures attestations per second, latency
// percentiles, and the CPU time of the server, of the ccnp server plugin
// process and of the driver itself.
package spireload

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/spirelab"
)

// The attestors measured, by their SPIRE plugin names.
const (
	CCNP    = "ccnp"
	X509PoP = "x509pop"
)

// CCNPFull is the ccnp attestor measured without incremental
// re-attestation: the same agents, each dropping its checkpoint before it
// attests, so the server asks for and replays whole logs, as at a node's
// first attestation after a reboot or with an expired checkpoint.
const CCNPFull = "ccnp-full"

// pluginOf is the SPIRE node attestor a measurement's agents use.
func pluginOf(name string) string {
	if name == CCNPFull {
		return CCNP
	}
	return name
}

// Config says what to run.
type Config struct {
	// Bin holds spire-server, ccnp and the plugins (make build spire).
	Bin string
	// Dir is where the lab writes configs, state and logs.
	Dir string
	// Levels of concurrency, each a number of agents attesting at once.
	Levels []int
	// Duration of one measurement (one attestor at one level).
	Duration time.Duration
	// Count is the number of measurements per attestor and level; the two
	// attestors alternate, so load from elsewhere on the machine falls on
	// both alike.
	Count int
	// AgentsDir holds the simulated agents' data dirs (instance ID,
	// checkpoint); empty: under Dir. Each real agent writes these on its
	// own machine's disk; ccnp-bench puts them on tmpfs so that the
	// journal commits of the agents' checkpoint writes (each fsynced, as
	// the agent plugin does) are not charged to the cores the server
	// runs on.
	AgentsDir string
	// FullLevels are the levels (a subset of Levels) at which CCNPFull is
	// measured too, after the other two.
	FullLevels []int
	// Progress receives one line per step and measurement (nil: none).
	Progress io.Writer
	// Around, when set, is called before each measurement; the function
	// it returns is called right after (a profiler's start and stop).
	Around func(w Window) func()
}

// Window is one measurement as Around sees it: what runs, and where to
// observe the server.
type Window struct {
	Attestor    string
	Concurrency int
	Rep         int
	// ServerPID and PluginPID are spire-server's and the ccnp server
	// plugin's processes.
	ServerPID, PluginPID int
	// ServerPprof is spire-server's net/http/pprof base URL
	// (http://localhost:<profiling_port>/debug/pprof/).
	ServerPprof string
}

// Sample is one measurement of one attestor at one level of concurrency.
type Sample struct {
	Attestor     string        `json:"attestor"`
	Concurrency  int           `json:"concurrency"`
	Attestations int           `json:"attestations"`
	Wall         time.Duration `json:"wall_ns"`
	P50          time.Duration `json:"p50_ns"`
	P99          time.Duration `json:"p99_ns"`
	// ServerCPU is the spire-server process's CPU time, its plugin
	// processes excluded; PluginCPU is the ccnp server plugin process's;
	// DriverCPU is this process's (the simulated agents).
	ServerCPU time.Duration `json:"server_cpu_ns"`
	PluginCPU time.Duration `json:"plugin_cpu_ns"`
	DriverCPU time.Duration `json:"driver_cpu_ns"`
	// Datastore is spire-server's datastore calls during the measurement
	// by operation (its Prometheus counters), reads and writes.
	Datastore DatastoreCalls `json:"datastore_calls"`
	// Challenges is the number of challenges the agents answered; SentBytes
	// and ReceivedBytes are the AttestAgent payloads the agents sent
	// (attestation data, challenge responses) and received (challenges),
	// excluding the CSR, the SVID and gRPC/TLS framing.
	Challenges    int   `json:"challenges"`
	SentBytes     int64 `json:"sent_bytes"`
	ReceivedBytes int64 `json:"received_bytes"`
}

// PerAttestation divides a count over the sample's attestations.
func (s Sample) PerAttestation(n float64) float64 { return n / float64(s.Attestations) }

// Rate is attestations per second.
func (s Sample) Rate() float64 { return float64(s.Attestations) / s.Wall.Seconds() }

// PluginShare is the ccnp plugin's share of the server side's CPU (server
// process plus plugin process) during the measurement.
func (s Sample) PluginShare() float64 {
	if s.ServerCPU+s.PluginCPU == 0 {
		return 0
	}
	return float64(s.PluginCPU) / float64(s.ServerCPU+s.PluginCPU)
}

// Result is every sample of a run.
type Result struct {
	Samples []Sample `json:"samples"`
	// Agents is the number of distinct identities per attestor.
	Agents int `json:"agents"`
	// Selectors are the selectors SPIRE stored for the first enrolled
	// node of each attestor (spire-server agent show), after enrolment.
	Selectors map[string][]string `json:"selectors"`
}

// Of returns the samples of one attestor at one level.
func (r *Result) Of(attestor string, conc int) []Sample {
	var out []Sample
	for _, s := range r.Samples {
		if s.Attestor == attestor && s.Concurrency == conc {
			out = append(out, s)
		}
	}
	return out
}

// Run starts the lab (simulated TD, its PCS, spire-server with both
// attestors), enrols one ccnp and one x509pop agent per worker of the
// highest level with a first attestation (which also warms the server's
// collateral and chain caches), then measures.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Levels) == 0 || cfg.Count < 1 || cfg.Duration <= 0 {
		return nil, errors.New("spireload: Levels, Count and Duration must be set")
	}
	agents := slices.Max(cfg.Levels)
	lab, err := spirelab.New(cfg.Dir, cfg.Bin)
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	lab.Progress = cfg.Progress
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "==> "+format+"\n", args...)
		}
	}

	simTD, err := lab.InitSim(ctx, "td")
	if err != nil {
		return nil, err
	}
	rtlog := filepath.Join(lab.Dir, "runtime.cel")
	if err := writeRuntimeLog(ctx, simTD.Dir, rtlog); err != nil {
		return nil, err
	}
	policy, err := lab.GeneratePolicy(ctx, simTD, "golden")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca, err := newPopCA(now)
	if err != nil {
		return nil, err
	}
	bundle := filepath.Join(lab.Dir, "x509pop-ca.pem")
	if err := ca.writePEM(bundle); err != nil {
		return nil, err
	}
	pprofPort, err1 := spirelab.FreePort()
	promPort, err2 := spirelab.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	// Checkpoints on, as a deployment that re-attests often runs: every
	// verified attestation ends with a checkpoint, and the next one sends
	// log suffixes (CCNPFull measures the other case).
	ckptKey := filepath.Join(lab.Dir, "checkpoint.key")
	if err := writeSecret(ckptKey); err != nil {
		return nil, err
	}
	srv, err := lab.StartServer(ctx, spirelab.ServerConfig{
		CheckpointKeyFile: ckptKey,
		SimRoot:           filepath.Join(simTD.Dir, sim.RootFile), PCSURL: simTD.PCSURL,
		PolicyFile: policy, RequirePolicy: true,
		X509PoPCABundle: bundle, NoAttestationRateLimit: true, LogLevel: "WARN",
		ProfilingPort: pprofPort, PrometheusPort: promPort,
	})
	if err != nil {
		return nil, err
	}
	pluginPID, err := childByExe(srv.PID(), "ccnp-server-nodeattestor")
	if err != nil {
		return nil, fmt.Errorf("spireload: the ccnp server plugin process: %w", err)
	}
	say("spire-server pid %d, ccnp server plugin pid %d", srv.PID(), pluginPID)

	agentsDir := cfg.AgentsDir
	if agentsDir == "" {
		agentsDir = filepath.Join(lab.Dir, "agents")
	}
	ccnpAgents := make([]agent, agents)
	// Every agent runs on the same simulated TD: one set of logs.
	logs := newPreparedLogs()
	popAgents := make([]agent, agents)
	for i := range agents {
		if ccnpAgents[i], err = newCCNPAgent(ctx, simTD.Dir, filepath.Join(agentsDir, fmt.Sprintf("ccnp-%03d", i)), rtlog, logs); err != nil {
			return nil, err
		}
		leaf, key, err := ca.issue(fmt.Sprintf("bench-agent-%03d", i), int64(i+2), now)
		if err != nil {
			return nil, err
		}
		a := &popAgent{leaf: leaf, key: key}
		if a.data, err = popPayload(leaf); err != nil {
			return nil, err
		}
		if a.request, err = newCSR(); err != nil {
			return nil, err
		}
		popAgents[i] = a
	}
	d := &driver{addr: "127.0.0.1:" + strconv.Itoa(srv.Port), tlsConf: bootstrapTLS(lab.TrustDomain), td: lab.TrustDomain,
		server: srv.PID(), plugin: pluginPID, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort)}
	fullAgents := make([]agent, agents)
	for i, a := range ccnpAgents {
		fullAgents[i] = fullCCNP{a.(*ccnpAgent)}
	}
	by := map[string][]agent{CCNP: ccnpAgents, X509PoP: popAgents, CCNPFull: fullAgents}

	// Enrolment: every agent's first attestation creates its node.
	for _, name := range []string{CCNP, X509PoP} {
		start := time.Now()
		if _, err := d.load(ctx, name, by[name], min(agents, 8), agents, 0); err != nil {
			return nil, fmt.Errorf("spireload: enrolling the %s agents: %w", name, err)
		}
		say("%d %s agents enrolled in %s", agents, name, time.Since(start).Round(time.Millisecond))
	}

	res := &Result{Agents: agents, Selectors: map[string][]string{}}
	for _, name := range []string{CCNP, X509PoP} {
		ids, err := srv.Agents(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if strings.Contains(id, "/spire/agent/"+name+"/") {
				if res.Selectors[name], err = srv.AgentSelectors(ctx, id); err != nil {
					return nil, err
				}
				break
			}
		}
		say("a %s node has %d selectors", name, len(res.Selectors[name]))
	}
	for _, c := range cfg.Levels {
		for rep := range cfg.Count {
			order := []string{CCNP, X509PoP}
			if rep%2 == 1 {
				order = []string{X509PoP, CCNP}
			}
			if slices.Contains(cfg.FullLevels, c) {
				order = append(order, CCNPFull)
			}
			for _, name := range order {
				after := func() {}
				if cfg.Around != nil {
					after = cfg.Around(Window{Attestor: name, Concurrency: c, Rep: rep, ServerPID: d.server, PluginPID: d.plugin,
						ServerPprof: fmt.Sprintf("http://localhost:%d/debug/pprof/", pprofPort)})
				}
				s, err := d.load(ctx, name, by[name], c, 0, cfg.Duration)
				after()
				if err != nil {
					return nil, fmt.Errorf("spireload: %s at concurrency %d: %w", name, c, err)
				}
				res.Samples = append(res.Samples, s)
				say("%-7s c=%-3d %6.0f/s p50 %6.1f ms p99 %6.1f ms; CPU per attestation: server %.2f ms, ccnp plugin %.2f ms, driver %.2f ms; per attestation: %.1f datastore writes of %.1f calls, %.1f challenges, %.0f B sent, %.0f B received",
					name, c, s.Rate(), ms(s.P50), ms(s.P99), ms(s.ServerCPU)/float64(s.Attestations),
					ms(s.PluginCPU)/float64(s.Attestations), ms(s.DriverCPU)/float64(s.Attestations),
					s.PerAttestation(s.Datastore.Writes()), s.PerAttestation(s.Datastore.Total()),
					s.PerAttestation(float64(s.Challenges)), s.PerAttestation(float64(s.SentBytes)), s.PerAttestation(float64(s.ReceivedBytes)))
			}
		}
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// newCCNPAgent configures a ccnp agent in dir with its own instance ID on
// the shared simulated TD, and opens the TD for it. logs are the TD's
// logs as answered before (nil: the agent reads and compresses its logs at
// every answer).
func newCCNPAgent(ctx context.Context, simDir, dir, rtlog string, logs *preparedLogs) (*ccnpAgent, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg, err := conf.ParseAgentNodeAttestor(fmt.Sprintf(`tee = "sim"
sim { dir = %q }
instance_id_path = %q
runtime_log_path = %q
`, simDir, filepath.Join(dir, "instance_id"), rtlog))
	if err != nil {
		return nil, err
	}
	p, err := sim.Open(ctx, simDir)
	if err != nil {
		return nil, err
	}
	req, err := newCSR()
	if err != nil {
		return nil, err
	}
	// The instance ID is created now, once, as the agent does at its
	// first attestation.
	if _, err := nodeattestor.InstanceID(cfg.InstanceIDPath); err != nil {
		return nil, err
	}
	return &ccnpAgent{cfg: cfg, prov: &stableQE{Provider: p}, request: req, logs: logs}, nil
}

// writeSecret writes a random 32-byte key, hex, for checkpoint_key_file.
func writeSecret(path string) error {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600)
}

// writeRuntimeLog records a few workloads in the runtime log through the
// project's runtime log store, which extends the simulated RTMR3 with each.
func writeRuntimeLog(ctx context.Context, simDir, path string) error {
	p, err := sim.Open(ctx, simDir)
	if err != nil {
		return err
	}
	reg := rtmr3{p}
	store, _, err := runtimelog.OpenStore(ctx, path, reg, runtimelog.StoreOptions{IMR: cctrusted.RTMR(3).IMR(), Alg: cctrusted.AlgSHA384})
	if err != nil {
		return err
	}
	for i, exe := range []string{"/usr/bin/spire-agent", "/usr/local/bin/web", "/usr/local/bin/db", "/usr/local/bin/cache"} {
		d, d384 := sha256.Sum256([]byte(exe)), sha512.Sum384([]byte(exe))
		w := runtimelog.Workload{ExeSHA256: d[:], ExeSHA384: d384[:], ExePath: exe, ContainerID: fmt.Sprintf("%064x", i+1)}
		if _, err := store.Append(ctx, w); err != nil {
			return err
		}
	}
	return nil
}

// rtmr3 is the simulated TD's RTMR3 as the runtime log store's register.
type rtmr3 struct{ p *sim.Provider }

func (r rtmr3) Read(ctx context.Context) ([]byte, error) {
	d, err := r.p.Measurement(ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	return d.Value, err
}

func (r rtmr3) Extend(ctx context.Context, digest []byte) error {
	if len(digest) != 48 {
		return fmt.Errorf("rtmr3 digest is %d bytes, want 48", len(digest))
	}
	return r.p.ExtendRTMR(ctx, 3, [48]byte(digest))
}

// driver runs attestations against one server.
type driver struct {
	addr    string
	tlsConf *tls.Config
	td      string
	// server and plugin are the PIDs whose CPU time is measured.
	server, plugin int
	// metrics is spire-server's Prometheus endpoint.
	metrics string
}

// wire counts what the agents exchanged with the server.
type wire struct {
	challenges, sent, received atomic.Int64
}

// load runs conc workers until d has passed, worker w attesting as
// agents[w], or, with total > 0, until agents[0..total) have attested once
// each (enrolment); then it measures. Any
// failed attestation ends the measurement with its error: a benchmark
// that counted failures as work would flatter the attestor.
func (d *driver) load(ctx context.Context, name string, agents []agent, conc, total int, dur time.Duration) (Sample, error) {
	if conc > len(agents) || total > len(agents) {
		return Sample{}, fmt.Errorf("concurrency %d, total %d, but only %d agents", conc, total, len(agents))
	}
	prefix := "spiffe://" + d.td + "/spire/agent/" + pluginOf(name) + "/"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		started  atomic.Int64
		wg       sync.WaitGroup
	)
	var counts wire
	ds0, err3 := scrapeDatastore(ctx, d.metrics)
	s0, err0 := ProcCPU(d.server)
	p0, err1 := ProcCPU(d.plugin)
	c0, err2 := ProcCPU(0)
	if err := errors.Join(err0, err1, err2, err3); err != nil {
		return Sample{}, err
	}
	start := time.Now()
	deadline := start.Add(dur)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				a := agents[w]
				if total > 0 {
					n := started.Add(1)
					if n > int64(total) {
						return
					}
					a = agents[n-1]
				} else if time.Now().After(deadline) {
					return
				}
				t := time.Now()
				if err := attestOnce(ctx, d.addr, d.tlsConf, pluginOf(name), a, prefix, &counts); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("agent %d: %w", w, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				mine = append(mine, time.Since(t))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if firstErr != nil {
		return Sample{}, firstErr
	}
	s1, err0 := ProcCPU(d.server)
	p1, err1 := ProcCPU(d.plugin)
	c1, err2 := ProcCPU(0)
	// The server counts a call when it returns, which is before the
	// agent's stream ends: every call of these attestations is in.
	ds1, err3 := scrapeDatastore(ctx, d.metrics)
	if err := errors.Join(err0, err1, err2, err3); err != nil {
		return Sample{}, err
	}
	if len(lat) == 0 {
		return Sample{}, errors.New("no attestation completed")
	}
	p50, p99 := percentiles(lat)
	return Sample{Attestor: name, Concurrency: conc, Attestations: len(lat), Wall: wall, P50: p50, P99: p99,
		ServerCPU: s1 - s0, PluginCPU: p1 - p0, DriverCPU: c1 - c0, Datastore: ds1.Sub(ds0),
		Challenges: int(counts.challenges.Load()), SentBytes: counts.sent.Load(), ReceivedBytes: counts.received.Load()}, nil
}

// percentiles returns the median and the 99th percentile (nearest rank).
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return rank(0.50), rank(0.99)
}
