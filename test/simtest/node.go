package simtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

// Node is a simulated TD for one test: the simulator's directory, a
// provider on it, and a separate directory for its agent's state, so that
// the agent's files never land inside what the simulator owns.
type Node struct {
	// Dir is the simulator's directory (state, PKI, firmware).
	Dir string
	// Base holds the agent's instance ID and runtime log.
	Base string
	// Prov is the simulated TDX provider on Dir.
	Prov *sim.Provider
}

// InitSim makes a simulated TD in a temporary directory and returns the
// directory, for tests that leave opening it to the code under test.
func InitSim(t testing.TB, opts sim.InitOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sim")
	if err := sim.Init(dir, opts); err != nil {
		t.Fatalf("sim.Init: %v", err)
	}
	return dir
}

// NewNode makes a simulated TD with opts and opens it.
func NewNode(t testing.TB, opts sim.InitOptions) *Node {
	t.Helper()
	n := &Node{Dir: InitSim(t, opts), Base: t.TempDir()}
	var err error
	if n.Prov, err = sim.Open(context.Background(), n.Dir); err != nil {
		t.Fatalf("sim.Open: %v", err)
	}
	return n
}

// Clone copies n's simulated TD (state, PKI, firmware) into a second node:
// the same platform under the same root, with its own state lock, agent
// state and runtime log, so that evidence of the two can be mixed and
// agents on the two do not wait for each other's simulated hardware.
func (n *Node) Clone(t testing.TB) *Node {
	t.Helper()
	c := &Node{Dir: filepath.Join(t.TempDir(), "sim"), Base: t.TempDir()}
	err := filepath.WalkDir(n.Dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(n.Dir, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(c.Dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatalf("cloning %s: %v", n.Dir, err)
	}
	if c.Prov, err = sim.Open(context.Background(), c.Dir); err != nil {
		t.Fatalf("sim.Open clone: %v", err)
	}
	return c
}

// SetPCSParams sets what the node's simulated PCS serves (TCB status,
// revocation, validity).
func (n *Node) SetPCSParams(t testing.TB, p pcs.Params) {
	t.Helper()
	if err := pcs.WriteParams(n.Dir, p); err != nil {
		t.Fatal(err)
	}
}

// RuntimeLogPath is where the node's agent keeps its runtime log.
func (n *Node) RuntimeLogPath() string { return filepath.Join(n.Base, "runtime.cel") }

// RunWorkloads records workloads in the node's runtime log and extends
// RTMR3 with each record, as the workload attestor does.
func (n *Node) RunWorkloads(t testing.TB, ws ...runtimelog.Workload) {
	t.Helper()
	RecordWorkloads(t, n.Prov, n.RuntimeLogPath(), ws...)
}

// ExtendIMA extends RTMR2 with every entry of a binary IMA list as a CCNP
// kernel does (SHA-384 of the template data, all 0xFF for a violation);
// the simulator has no securityfs, so the test sends the list itself.
func (n *Node) ExtendIMA(t testing.TB, list []byte) {
	t.Helper()
	_, ds := IMADigests(t, list, SHA384, 48)
	for _, d := range ds {
		if err := n.Prov.ExtendRTMR(context.Background(), 2, [48]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
}

// AgentHCL is the agent plugin's configuration (plugin_data) for the TD
// simulated in simDir, keeping its instance ID and runtime log in
// stateDir; extra goes at the end.
func AgentHCL(simDir, stateDir, extra string) string {
	return fmt.Sprintf(`tee = "sim"
sim { dir = %q }
instance_id_path = %q
runtime_log_path = %q
%s
`, simDir, filepath.Join(stateDir, "instance_id"), filepath.Join(stateDir, "runtime.cel"), extra)
}

// AgentConfig parses an agent configuration the way the agent plugin
// does, so that a test drives package nodeattestor with what an operator
// would have configured.
func AgentConfig(t testing.TB, hcl string) *conf.AgentNodeAttestor {
	t.Helper()
	cfg, err := conf.ParseAgentNodeAttestor(hcl)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// AgentConfig is the agent configuration for n with its state in n.Base;
// extra goes at the end.
func (n *Node) AgentConfig(t testing.TB, extra string) *conf.AgentNodeAttestor {
	t.Helper()
	return AgentConfig(t, AgentHCL(n.Dir, n.Base, extra))
}

// ServerExtra is configuration a test adds to ServerConfig's, by block.
type ServerExtra struct {
	// Collateral goes into the tdx.collateral block.
	Collateral string
	// TDX goes into the tdx block.
	TDX string
	// Top goes at the top level, after the tdx and sim blocks.
	Top string
}

// ServerConfig is the server plugin's configuration accepting this
// simulator (its root as sim.trusted_root_file) with collateral from the
// PCS at pcsURL, plus x.
func (n *Node) ServerConfig(pcsURL string, x ServerExtra) string {
	return fmt.Sprintf(`tdx {
  collateral {
    pcs_url = %q
%s
  }
%s
}
sim { trusted_root_file = %q }
%s
`, pcsURL, x.Collateral, x.TDX, n.RootFile(), x.Top)
}

// RootFile is the simulator's root CA certificate, which a server trusts
// to accept this simulator.
func (n *Node) RootFile() string { return filepath.Join(n.Dir, sim.RootFile) }

// ServePCS serves h (a simulated PCS, or one a test wraps to count or
// break requests) on loopback HTTP until the test ends.
func ServePCS(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// AsTDX presents a simulated TD as TDX hardware: its hello, evidence and
// report all say tdx while its quote is still signed under the simulated
// root, so that tests check a server does not take a sim quote for TDX.
type AsTDX struct{ *sim.Provider }

// TEE claims TDX.
func (p AsTDX) TEE() cctrusted.TEE { return cctrusted.TEETDX }

// Report is the simulator's report, relabelled TDX.
func (p AsTDX) Report(ctx context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	r, err := p.Provider.Report(ctx, nonce, userData)
	if r != nil {
		r.TEE = cctrusted.TEETDX
	}
	return r, err
}
