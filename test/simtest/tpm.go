package simtest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
)

// TPMLogName is a real firmware log (testdata/tpmlog, from go-eventlog)
// that StartTPMNode replays into swtpm, so that the quoted PCRs and the
// log agree.
const TPMLogName = "rhel8-uefi.bin"

// TPMNode is a TPM node for one test: a swtpm with EKs certified by a test
// EK CA and TPMLogName replayed into its PCRs, and a host root holding
// that log (and an IMA list, if any) where the agent reads them.
type TPMNode struct {
	// TPM is the running swtpm; the agent dials TPM.Addr().
	TPM *swtpm.TPM
	// Prov is its provisioning: the EK CA (a server's ek_ca_files) and
	// the certified EKs.
	Prov *swtpm.Provisioned
	// Root is the agent's host_root.
	Root string
	// Base is a directory for the agent's state.
	Base string
	// Firmware is the firmware log, as replayed and on disk.
	Firmware []byte
	// IMA is the IMA list on disk; nil for none.
	IMA []byte
}

// StartTPMNode starts and provisions swtpm for the test, or skips the test
// where swtpm is not installed. ima, unless nil, is written as the host's
// IMA list; extending the PCR with it is the caller's choice.
func StartTPMNode(t *testing.T, ima []byte) *TPMNode {
	t.Helper()
	return StartTPMNodeWithLog(t, Testdata(t, "tpmlog", TPMLogName), ima)
}

// StartTPMNodeWithLog is StartTPMNode with another firmware log (for
// example a legacy SHA-1 format one), replayed into the banks it has.
func StartTPMNodeWithLog(t *testing.T, firmware, ima []byte) *TPMNode {
	t.Helper()
	if err := swtpm.Available(); err != nil {
		t.Skipf("swtpm not installed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp, err := swtpm.Start(ctx, t.TempDir(), swtpm.Options{})
	if err != nil {
		t.Fatalf("swtpm: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	n := &TPMNode{TPM: tp, Root: t.TempDir(), Base: t.TempDir(), Firmware: firmware, IMA: ima}
	if n.Prov, err = swtpm.Provision(ctx, tp, swtpm.ProvisionOptions{}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if _, err := swtpm.ReplayLog(ctx, tp, n.Firmware); err != nil {
		t.Fatalf("replay: %v", err)
	}
	files := map[string][]byte{tpm.EventLogPath: n.Firmware}
	if ima != nil {
		files[tpm.IMALogPath] = ima
	}
	for path, b := range files {
		p := filepath.Join(n.Root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// AgentHCL is the agent plugin's configuration for this TPM with an AK of
// akType and its state in stateDir; tpmExtra goes into the tpm block.
func (n *TPMNode) AgentHCL(akType, tpmExtra, stateDir string) string {
	return fmt.Sprintf(`tee = "tpm"
host_root = %q
tpm {
  device  = %q
  ak_type = %q
  %s
}
instance_id_path = %q
runtime_log_path = %q
`, n.Root, n.TPM.Addr(), akType, tpmExtra, filepath.Join(stateDir, "instance_id"), filepath.Join(stateDir, "runtime.cel"))
}

// OpenAgentTEE opens the TEE of an agent configuration as the agent plugin
// does, until the test ends. The TPM serves one connection at a time, so a
// second one waits for this one to close.
func OpenAgentTEE(t testing.TB, cfg *conf.AgentNodeAttestor) tee.Provider {
	t.Helper()
	p, err := tee.Open(context.Background(), tee.ForNodeAttestor(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// ExpectedPCR is the SHA-256 value of pcr, in hex, that the machine which
// recorded TPMLogName reported (testdata/tpmlog/expected.json, from
// go-eventlog's tests): what a correct replay must reach.
func ExpectedPCR(t testing.TB, pcr int) string {
	t.Helper()
	var exp map[string]struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	if err := json.Unmarshal(Testdata(t, "tpmlog", "expected.json"), &exp); err != nil {
		t.Fatal(err)
	}
	v := exp[TPMLogName].Banks["sha256"][fmt.Sprintf("pcr%d", pcr)]
	if v == "" {
		t.Fatalf("no expected pcr%d", pcr)
	}
	return v
}

// RuntimeLogPath is where the node's agent keeps its runtime log.
func (n *TPMNode) RuntimeLogPath() string { return filepath.Join(n.Base, "runtime.cel") }

// RecordWorkloads appends ws to the node's runtime log on pcr (SHA-256)
// and extends pcr with each record through p, as the workload attestor
// does. A log on another PCR is an error of the test.
func (n *TPMNode) RecordWorkloads(t testing.TB, p *tpm.Provider, pcr cctrusted.PCR, ws ...runtimelog.Workload) {
	t.Helper()
	l := runtimelog.New(pcr.IMR(), cctrusted.AlgSHA256)
	if b, err := os.ReadFile(n.RuntimeLogPath()); err == nil {
		if l, err = runtimelog.Decode(b, runtimelog.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		if l.IMR() != pcr.IMR() {
			t.Fatalf("the runtime log is on %v, not %v", l.IMR(), pcr.IMR())
		}
	}
	for _, w := range ws {
		ev, err := l.Append(w)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := ev.Digest(cctrusted.AlgSHA256)
		if err := p.Extend(context.Background(), pcr, cctrusted.AlgSHA256, d); err != nil {
			t.Fatal(err)
		}
	}
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.RuntimeLogPath(), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ResetPCR sends TPM2_PCR_Reset for pcr at locality 0, as any process with
// access to the TPM (root) can, and returns the TPM's answer. No other
// connection to the TPM may be open (swtpm serves one at a time).
func (n *TPMNode) ResetPCR(ctx context.Context, pcr cctrusted.PCR) error {
	rw, err := n.TPM.Dial(ctx)
	if err != nil {
		return err
	}
	defer rw.Close()
	_, err = tpm2.PCRReset{PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)}}.Execute(transport.FromReadWriter(rw))
	return err
}

// ExtendIMA appends entries (binary IMA entries on PCR10) to the node's IMA
// list on disk and extends PCR10 through p with each, as a kernel with a
// TPM does in the SHA-256 bank: SHA-256 of the template data, all 0xFF for
// a violation. Only that bank is extended: it is the one the server
// replays. Calling it again appends, as a node that ran more files.
func (n *TPMNode) ExtendIMA(t testing.TB, p *tpm.Provider, entries []byte) {
	t.Helper()
	pcrs, ds := IMADigests(t, entries, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }, 32)
	for i, d := range ds {
		if pcrs[i] != 10 {
			t.Fatalf("IMA entry %d is on PCR %d, not 10", i, pcrs[i])
		}
		if err := p.Extend(context.Background(), 10, cctrusted.AlgSHA256, d); err != nil {
			t.Fatal(err)
		}
	}
	n.IMA = append(n.IMA, entries...)
	path := filepath.Join(n.Root, tpm.IMALogPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, n.IMA, 0o644); err != nil {
		t.Fatal(err)
	}
}
