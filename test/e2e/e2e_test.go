//go:build e2e

// Package e2e runs real SPIRE server and agent binaries (v1.13.3) with the
// ccnp plugins: `make test-e2e` (part of `make test`) builds them into .bin
// and runs these tests with -tags e2e.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/test/azuresim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
	"github.com/ccnp-spire/ccnp-spire/test/spirelab"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
)

// bin is where make builds the plugins, the CLI and SPIRE.
var bin = func() string {
	if b := os.Getenv("CCNP_BIN"); b != "" {
		return b
	}
	return "../../.bin"
}()

func newLab(t *testing.T) (*spirelab.Lab, context.Context) {
	t.Helper()
	lab, err := spirelab.New(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	lab.Progress = testWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(func() {
		lab.Close()
		cancel()
		if t.Failed() {
			for _, name := range []string{"server", "agent"} {
				if b, err := os.ReadFile(filepath.Join(lab.Dir, name+".log")); err == nil {
					t.Logf("---- %s.log (tail) ----\n%s", name, tailLines(string(b), 40))
				}
			}
		}
	})
	return lab, ctx
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func sum(t *testing.T, path string) string {
	t.Helper()
	s, err := spirelab.Checksum(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// simServer starts a simulated TD with its PCS, a policy generated from it,
// and a server that requires it.
func simServer(t *testing.T, lab *spirelab.Lab, ctx context.Context, cfg spirelab.ServerConfig) (*spirelab.Sim, *spirelab.Server) {
	t.Helper()
	sim, err := lab.InitSim(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PolicyFile == "" {
		if cfg.PolicyFile, err = lab.GeneratePolicy(ctx, sim, "demo"); err != nil {
			t.Fatal(err)
		}
		cfg.RequirePolicy = true
	}
	cfg.SimRoot = filepath.Join(sim.Dir, "root.pem")
	cfg.PCSURL = sim.PCSURL
	srv, err := lab.StartServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sim, srv
}

func entries(t *testing.T, ctx context.Context, lab *spirelab.Lab, srv *spirelab.Server, nodeSelector, workload string) {
	t.Helper()
	td := lab.TrustDomain
	if err := srv.CreateEntry(ctx, "-node", "-spiffeID", "spiffe://"+td+"/nodes/demo", "-selector", nodeSelector); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateEntry(ctx, "-parentID", "spiffe://"+td+"/nodes/demo", "-spiffeID", "spiffe://"+td+"/demo/workload",
		"-selector", "ccnp:exe:sha256:"+sum(t, workload)); err != nil {
		t.Fatal(err)
	}
}

// The demo's flow: a simulated TDX node matches its golden policy, and the
// workload gets its SVID by executable digest.
func TestSimHappyPath(t *testing.T) {
	lab, ctx := newLab(t)
	res, err := spirelab.RunDemo(ctx, lab, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if res.SPIFFEID != "spiffe://example.org/demo/workload" {
		t.Fatalf("SVID %q", res.SPIFFEID)
	}
	if !strings.HasPrefix(res.AgentID, "spiffe://example.org/spire/agent/ccnp/sim/") {
		t.Errorf("agent ID %q", res.AgentID)
	}
	joined := strings.Join(res.AgentSelectors, " ")
	for _, want := range []string{"ccnp:tee:sim", "ccnp:sim:policy:demo"} {
		if !strings.Contains(joined, want) {
			t.Errorf("agent selectors lack %s: %v", want, res.AgentSelectors)
		}
	}
	if strings.Contains(joined, "ccnp:tdx:") || strings.Contains(joined, "ccnp:tpm:") {
		t.Errorf("a simulated node got hardware selectors: %v", res.AgentSelectors)
	}
}

// A simulated node whose RTMR2 was extended with an unexpected digest no
// longer matches its policy: the server rejects it, naming the policy, and no
// SVID is issued.
func TestRejectNodeOffPolicy(t *testing.T) {
	lab, ctx := newLab(t)
	sim, srv := simServer(t, lab, ctx, spirelab.ServerConfig{})
	d := sha512.Sum384([]byte("an unexpected kernel module"))
	if _, err := lab.Run(ctx, "ccnp", "sim", "extend", "--dir", sim.Dir, "--rtmr", "2", "--digest", hex.EncodeToString(d[:])); err != nil {
		t.Fatal(err)
	}
	workload := filepath.Join(bin, "ccnp-demo-workload")
	entries(t, ctx, lab, srv, "ccnp:sim:policy:demo", workload)
	agent, err := lab.StartAgent(ctx, srv, spirelab.AgentConfig{TEE: "sim", SimDir: sim.Dir})
	if err != nil {
		t.Fatal(err)
	}
	// The agent gives up (SPIRE exits on a failed node attestation).
	deadline := time.Now().Add(90 * time.Second)
	for {
		if done, _ := agent.Exited(); done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent still running after a rejected attestation")
		}
		time.Sleep(300 * time.Millisecond)
	}
	logb, _ := os.ReadFile(srv.Log)
	if !bytes.Contains(logb, []byte("policy")) || !bytes.Contains(logb, []byte("rtmr2")) {
		t.Errorf("server log does not name the policy failure on rtmr2")
	}
	ids, _ := srv.Agents(ctx)
	if len(ids) != 0 {
		t.Errorf("rejected node listed as attested: %v", ids)
	}
}

// A workload whose binary is not the registered one gets no SVID.
func TestRejectOtherBinary(t *testing.T) {
	lab, ctx := newLab(t)
	sim, srv := simServer(t, lab, ctx, spirelab.ServerConfig{})
	workload := filepath.Join(bin, "ccnp-demo-workload")
	entries(t, ctx, lab, srv, "ccnp:sim:policy:demo", workload)
	agent, err := lab.StartAgent(ctx, srv, spirelab.AgentConfig{TEE: "sim", SimDir: sim.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// The same program with one byte appended: another executable digest.
	b, err := os.ReadFile(workload)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other-workload")
	if err := os.WriteFile(other, append(b, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := agent.FetchSVID(ctx, other, 8*time.Second); err == nil {
		t.Fatalf("another binary got an SVID: %s", out)
	}
	if out, err := agent.FetchSVID(ctx, workload, 60*time.Second); err != nil {
		t.Fatalf("the registered binary got none: %v", err)
	} else {
		t.Log(out)
	}
}

// After a new workload runs (and is measured into RTMR3), the next
// re-attestation shows it as runtime:exe:sha256 on the agent; a runtime
// policy that excludes it rejects the node at that re-attestation.
func TestReattestationRuntime(t *testing.T) {
	lab, ctx := newLab(t)
	sim, err := lab.InitSim(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := lab.GeneratePolicy(ctx, sim, "demo")
	if err != nil {
		t.Fatal(err)
	}
	// A second, enforced policy allows only another executable: it matches
	// until the workload runs. Node entries select on it, so losing it
	// loses the SVIDs.
	strict := filepath.Join(lab.Dir, "policy-strict.hcl")
	b, _ := os.ReadFile(golden)
	strictSrc := strings.Replace(string(b), `policy "demo" {`, `policy "strict" {
  runtime {
    allowed_exe_sha256 = ["`+strings.Repeat("ab", 32)+`"]
  }`, 1)
	if err := os.WriteFile(strict, []byte(string(b)+"\n"+strictSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := lab.StartServer(ctx, spirelab.ServerConfig{SimRoot: filepath.Join(sim.Dir, "root.pem"), PCSURL: sim.PCSURL,
		PolicyFile: strict, RequirePolicy: true, AgentTTL: 40 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	workload := filepath.Join(bin, "ccnp-demo-workload")
	entries(t, ctx, lab, srv, "ccnp:sim:policy:demo", workload)
	agent, err := lab.StartAgent(ctx, srv, spirelab.AgentConfig{TEE: "sim", SimDir: sim.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := srv.Agents(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("agents %v, %v", ids, err)
	}
	sel, _ := srv.AgentSelectors(ctx, ids[0])
	if !strings.Contains(strings.Join(sel, " "), "ccnp:sim:policy:strict") {
		t.Fatalf("before the workload ran the node should match strict: %v", sel)
	}
	if _, err := agent.FetchSVID(ctx, workload, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	want := "ccnp:sim:runtime:exe:sha256:" + sum(t, workload)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sel, _ = srv.AgentSelectors(ctx, ids[0])
		joined := strings.Join(sel, " ")
		if strings.Contains(joined, want) {
			if strings.Contains(joined, "ccnp:sim:policy:strict") {
				t.Fatalf("the node still matches the strict runtime policy after running an excluded workload: %v", sel)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-attestation showed %s: %v", want, sel)
		}
		time.Sleep(2 * time.Second)
	}
	logb, _ := os.ReadFile(srv.Log)
	if !bytes.Contains(logb, []byte("strict")) {
		t.Error("server log does not mention the failed strict policy")
	}
}

// TPM on swtpm: EK certificate from a simulated EK CA, firmware log
// replayed into the PCRs.
func TestTPMHappyPath(t *testing.T) {
	if err := swtpm.Available(); err != nil {
		t.Skipf("swtpm not installed: %v", err)
	}
	lab, ctx := newLab(t)
	tdir := filepath.Join(lab.Dir, "swtpm")
	s, err := swtpm.Start(ctx, tdir, swtpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := swtpm.Provision(ctx, s, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{swtpm.ECC}, CADir: tdir}); err != nil {
		t.Fatal(err)
	}
	srv, err := lab.StartServer(ctx, spirelab.ServerConfig{
		TPM: `ek_ca_files = ["` + filepath.Join(tdir, swtpm.CACertFile) + `"]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	workload := filepath.Join(bin, "ccnp-demo-workload")
	entries(t, ctx, lab, srv, "ccnp:tee:tpm", workload)
	agent, err := lab.StartAgent(ctx, srv, spirelab.AgentConfig{TEE: "tpm", TPM: s.Addr(), Measure: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := agent.FetchSVID(ctx, workload, 60*time.Second)
	if err != nil || !strings.Contains(out, "spiffe://example.org/demo/workload") {
		t.Fatalf("%s, %v", out, err)
	}
	ids, _ := srv.Agents(ctx)
	if len(ids) != 1 || !strings.HasPrefix(ids[0], "spiffe://example.org/spire/agent/ccnp/tpm/") {
		t.Fatalf("agents %v", ids)
	}
}

// Killing the agent's workload attestor plugin: SPIRE does not restart
// plugins; Workload API calls then fail, reported, without hanging.
func TestWorkloadAttestorCrash(t *testing.T) {
	lab, ctx := newLab(t)
	sim, srv := simServer(t, lab, ctx, spirelab.ServerConfig{})
	workload := filepath.Join(bin, "ccnp-demo-workload")
	entries(t, ctx, lab, srv, "ccnp:sim:policy:demo", workload)
	agent, err := lab.StartAgent(ctx, srv, spirelab.AgentConfig{TEE: "sim", SimDir: sim.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pkill", "-KILL", "-f", filepath.Join(lab.Bin, spirelab.SimBinDir, "ccnp-agent-workloadattestor")).CombinedOutput()
	if err != nil {
		t.Fatalf("pkill: %v %s", err, out)
	}
	start := time.Now()
	_, ferr := agent.FetchSVID(ctx, workload, 10*time.Second)
	took := time.Since(start)
	if took > 30*time.Second {
		t.Fatalf("the Workload API hung for %v after the plugin died", took)
	}
	logb, _ := os.ReadFile(agent.Log)
	t.Logf("fetch after plugin kill: err=%v after %v", ferr, took)
	if ferr == nil {
		t.Log("SPIRE served the SVID from its cache")
	} else if !bytes.Contains(logb, []byte("ccnp")) {
		t.Error("the agent log does not mention the failed ccnp workload attestor")
	}
}

// TestTimeToSVID measures, in one run, agent start to a workload's first SVID
// with the ccnp node attestor on the simulated TDX and with SPIRE's
// join_token attestor on the same server, with the same workload attestor.
// bench/time-to-svid runs it; the figures are logged, not asserted (speed is
// reported by benchmarks, not timed tests).
func TestTimeToSVID(t *testing.T) {
	if os.Getenv("CCNP_TIME_TO_SVID") == "" {
		t.Skip("set CCNP_TIME_TO_SVID=N (bench/time-to-svid) to run N rounds")
	}
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("CCNP_TIME_TO_SVID")); err == nil && n > 0 {
		rounds = n
	}
	var ccnp, join []time.Duration
	for i := range rounds {
		for _, mode := range []string{"ccnp", "join_token"} {
			d := timeToSVID(t, mode)
			t.Logf("round %d %s: %v", i, mode, d)
			if mode == "ccnp" {
				ccnp = append(ccnp, d)
			} else {
				join = append(join, d)
			}
		}
	}
	mc, mj := median(ccnp), median(join)
	t.Logf("TIME_TO_SVID ccnp_median=%v join_token_median=%v ratio=%.2f rounds=%d target<=1.2", mc, mj, float64(mc)/float64(mj), rounds)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	slices.Sort(s)
	return s[len(s)/2]
}

func timeToSVID(t *testing.T, mode string) time.Duration {
	lab, ctx := newLab(t)
	defer lab.Close()
	sim, err := lab.InitSim(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := lab.StartServer(ctx, spirelab.ServerConfig{SimRoot: filepath.Join(sim.Dir, "root.pem"), PCSURL: sim.PCSURL, JoinToken: true})
	if err != nil {
		t.Fatal(err)
	}
	workload := filepath.Join(bin, "ccnp-demo-workload")
	cfg := spirelab.AgentConfig{TEE: "sim", SimDir: sim.Dir, Measure: "off"}
	node := "ccnp:tee:sim"
	if mode == "join_token" {
		if cfg.JoinToken, err = srv.JoinToken(ctx, "spiffe://example.org/nodes/joined"); err != nil {
			t.Fatal(err)
		}
		if err := srv.CreateEntry(ctx, "-parentID", "spiffe://example.org/nodes/joined", "-spiffeID", "spiffe://example.org/demo/workload",
			"-selector", "ccnp:exe:sha256:"+sum(t, workload)); err != nil {
			t.Fatal(err)
		}
	} else {
		entries(t, ctx, lab, srv, node, workload)
	}
	start := time.Now()
	agent, err := lab.StartAgent(ctx, srv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := agent.FetchSVID(ctx, workload, 90*time.Second); err != nil {
		t.Fatalf("%s: %v", mode, err)
	} else if !strings.Contains(out, "demo/workload") {
		t.Fatalf("%s: %s", mode, out)
	}
	return time.Since(start)
}

// agentRecord is what `spire-server agent show` says about one agent.
type agentRecord struct {
	expires   time.Time
	serial    string
	selectors []string
}

func showAgent(t *testing.T, ctx context.Context, srv *spirelab.Server, id string) agentRecord {
	t.Helper()
	out, err := srv.Exec(ctx, "agent show", "-spiffeID", id)
	if err != nil {
		t.Fatalf("agent show: %v: %s", err, out)
	}
	var r agentRecord
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "Expiration time":
			if r.expires, err = time.Parse("2006-01-02 15:04:05 -0700 MST", v); err != nil {
				t.Fatalf("expiration time %q: %v", v, err)
			}
		case "Serial number":
			r.serial = v
		}
	}
	if r.selectors, err = srv.AgentSelectors(ctx, id); err != nil {
		t.Fatal(err)
	}
	if r.serial == "" || r.expires.IsZero() {
		t.Fatalf("unexpected agent show output:\n%s", out)
	}
	return r
}

// A node stops matching its only enforced policy (it ran a workload the
// policy's runtime allow-list excludes) while require_policy is set. At its
// next re-attestation the server rejects it, and what the operator then
// sees is SPIRE's behaviour, documented in operations.md: the agent keeps
// its previous SVID and selectors until that SVID expires, its workloads
// still get SVIDs, and only eviction removes it at once.
func TestReattestationRejectedKeepsPreviousSVID(t *testing.T) {
	lab, ctx := newLab(t)
	sim, err := lab.InitSim(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := lab.GeneratePolicy(ctx, sim, "demo")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(lab.Dir, "policy-runtime.hcl")
	src := strings.Replace(string(b), `policy "demo" {`, `policy "demo" {
  runtime {
    allowed_exe_sha256 = ["`+strings.Repeat("ab", 32)+`"]
  }`, 1)
	if err := os.WriteFile(policy, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	const ttl = 40 * time.Second
	srv, err := lab.StartServer(ctx, spirelab.ServerConfig{SimRoot: filepath.Join(sim.Dir, "root.pem"), PCSURL: sim.PCSURL,
		PolicyFile: policy, RequirePolicy: true, AgentTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	workload := filepath.Join(bin, "ccnp-demo-workload")
	entries(t, ctx, lab, srv, "ccnp:sim:policy:demo", workload)
	start := time.Now()
	agent, err := lab.StartAgent(ctx, srv, spirelab.AgentConfig{TEE: "sim", SimDir: sim.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := srv.Agents(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("agents %v, %v", ids, err)
	}
	id := ids[0]
	before := showAgent(t, ctx, srv, id)
	t.Logf("attested at +%.1fs: serial %s, SVID expires %s (agent_ttl %s)", time.Since(start).Seconds(), before.serial, before.expires.Format(time.TimeOnly), ttl)
	if !slices.Contains(before.selectors, "ccnp:sim:policy:demo") {
		t.Fatalf("the node does not match its policy before the workload ran: %v", before.selectors)
	}
	// The workload runs (and is measured into RTMR3): the node no longer
	// matches "demo", its only enforced policy.
	if out, err := agent.FetchSVID(ctx, workload, 60*time.Second); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("workload SVID before the rejection: %s", out)
	}

	// The agent re-attests at about half of agent_ttl; the server rejects it.
	var rejectedAt time.Duration
	deadline := time.Now().Add(ttl + 30*time.Second)
	for {
		logb, _ := os.ReadFile(srv.Log)
		if i := bytes.Index(logb, []byte("require_policy: the node matches no enforced policy")); i >= 0 {
			rejectedAt = time.Since(start)
			line := logb[bytes.LastIndexByte(logb[:i], '\n')+1:]
			if j := bytes.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			t.Logf("server at +%.1fs: %s", rejectedAt.Seconds(), line)
			if !bytes.Contains(line, []byte("PermissionDenied")) || !bytes.Contains(line, []byte("runtime.allowed_exe_sha256")) {
				t.Errorf("the rejection line does not name the code and the failed constraint")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rejected re-attestation within %s", ttl+30*time.Second)
		}
		time.Sleep(time.Second)
	}

	// What the operator sees: the node is still attested with its previous
	// SVID and selectors, until that SVID expires.
	after := showAgent(t, ctx, srv, id)
	t.Logf("after the rejection (+%.1fs): serial %s, expires %s, %d selectors, policy selector kept: %v", time.Since(start).Seconds(),
		after.serial, after.expires.Format(time.TimeOnly), len(after.selectors), slices.Contains(after.selectors, "ccnp:sim:policy:demo"))
	if after.serial != before.serial || !after.expires.Equal(before.expires) {
		t.Errorf("the rejected re-attestation changed the agent's SVID: serial %s -> %s, expiry %s -> %s", before.serial, after.serial, before.expires, after.expires)
	}
	if !time.Now().Before(after.expires) {
		t.Errorf("the previous SVID already expired at %s", after.expires)
	}
	if !slices.Equal(after.selectors, before.selectors) {
		t.Errorf("the node's selectors changed:\n%v\n->\n%v", before.selectors, after.selectors)
	}
	if out, err := agent.FetchSVID(ctx, workload, 30*time.Second); err != nil {
		t.Errorf("after the rejection the workload got no SVID (SPIRE's documented behaviour is that it still does): %v", err)
	} else {
		t.Logf("workload SVID after the rejection, %.0fs before the agent SVID expires: %s", time.Until(after.expires).Seconds(), out)
	}
	if entry, err := srv.Exec(ctx, "entry show", "-spiffeID", "spiffe://"+lab.TrustDomain+"/nodes/demo"); err == nil {
		t.Logf("node alias entry:\n%s", entry)
	}

	// Eviction takes effect at once, and the node cannot come back: its
	// attestation is rejected as its re-attestation was.
	if out, err := srv.Exec(ctx, "agent evict", "-spiffeID", id); err != nil {
		t.Fatalf("agent evict: %v: %s", err, out)
	}
	evicted := time.Now()
	time.Sleep(10 * time.Second)
	if ids, _ := srv.Agents(ctx); len(ids) != 0 {
		t.Errorf("agents after eviction: %v", ids)
	}
	t.Logf("evicted at +%.1fs; %.0fs later no agent is listed", evicted.Sub(start).Seconds(), time.Since(evicted).Seconds())
}

// An Azure TDX guest, simulated: the production agent plugins (tee
// azure_tdx) read the HCL report from a swtpm vTPM's NV index, fetch the TD
// quote from a loopback metadata service, and quote the vTPM's PCRs with the
// HCL AK; the server verifies the chain through appraisal.AzureTDX. The TD
// quote chains to the simulated root, so the node is a simulation: tee:sim,
// every other selector under sim:, an agent ID under /ccnp/sim/, and an
// entry on a hardware selector (ccnp:tee:azure_tdx) would never match it.
func TestAzureTDXSimulatedParavisor(t *testing.T) {
	if err := swtpm.Available(); err != nil {
		t.Skipf("swtpm not installed: %v", err)
	}
	lab, ctx := newLab(t)
	sim, err := lab.InitSim(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	vm := azuresim.Start(t, azuresim.Options{
		SimDir:      sim.Dir,
		SecureBoot:  true,
		FirmwareLog: simtest.Testdata(t, "tpmlog", simtest.TPMLogName),
	})
	hcl, err := azuretdx.ParseHCLReport(vm.HCLReport())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := lab.StartServer(ctx, spirelab.ServerConfig{
		SimRoot:  filepath.Join(sim.Dir, "root.pem"),
		PCSURL:   sim.PCSURL,
		AzureTDX: `paravisor_mrtds = ["` + hex.EncodeToString(hcl.TDReport.MRTD[:]) + `"]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	workload := filepath.Join(bin, "ccnp-demo-workload")
	entries(t, ctx, lab, srv, "ccnp:sim:azure:paravisor:true", workload)
	agent, err := lab.StartAgent(ctx, srv, spirelab.AgentConfig{
		TEE: "azure_tdx", TPM: vm.Device(), IMDSURL: vm.IMDSURL(), HostRoot: vm.HostRoot(), Measure: "off",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := agent.FetchSVID(ctx, workload, 60*time.Second)
	if err != nil || !strings.Contains(out, "spiffe://example.org/demo/workload") {
		t.Fatalf("%s, %v", out, err)
	}
	if vm.IMDSRequests() == 0 {
		t.Error("the agent never asked the metadata service for the TD quote")
	}
	ids, _ := srv.Agents(ctx)
	if len(ids) != 1 || !strings.HasPrefix(ids[0], "spiffe://example.org/spire/agent/ccnp/sim/") {
		t.Fatalf("agents %v", ids)
	}
	sels := showAgent(t, ctx, srv, ids[0]).selectors
	joined := strings.Join(sels, " ")
	t.Logf("selectors of the simulated Azure node: %v", sels)
	for _, want := range []string{"ccnp:tee:sim", "ccnp:sim:azure:paravisor:true", "ccnp:sim:azure:vm_secure_boot:true", "ccnp:sim:pcr:sha256:7:", "ccnp:sim:mrtd:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("agent selectors lack %s: %v", want, sels)
		}
	}
	for _, s := range sels {
		if !strings.HasPrefix(s, "ccnp:sim:") && s != "ccnp:tee:sim" {
			t.Errorf("a simulated Azure node got a selector a hardware entry could take: %s", s)
		}
	}
}
