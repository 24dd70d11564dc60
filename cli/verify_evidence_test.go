package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// offlineCase is one node: its agent configuration, the server's
// plugin_data, and the provider the transport attestation uses.
type offlineCase struct {
	agentHCL, serverHCL string
	cfg                 *conf.AgentNodeAttestor
	// open gives the node's TEE for one transport attestation and the
	// function that releases it (swtpm serves one connection at a time,
	// and collect opens its own).
	open func(t *testing.T) (cctrusted.Provider, func())
}

// captured is one attestation over the real plugin transport: the bytes
// the agent sent, the nonce it answered, and the server's verdict.
type captured struct {
	hello, evidence, nonce []byte
	selectors              []string
	agentID                string
	err                    error
}

func attestOverTransport(t *testing.T, c *offlineCase, mutate func(*evidencepb.Evidence)) captured {
	t.Helper()
	var got captured
	client := simtest.ServeConfigured(t, serververifier.New(), c.serverHCL, io.Discard, hclog.Off)
	prov, release := c.open(t)
	defer release()
	attrs, err := simtest.AttestT(t, time.Minute, client, prov, c.cfg, &simtest.Hooks{
		Hello:     func(b []byte) []byte { got.hello = b; return b },
		Challenge: func(ch *evidencepb.Challenge) { got.nonce = ch.GetNonce() },
		Mutate:    mutate,
		Sent:      &got.evidence,
	})
	got.err = err
	got.selectors, got.agentID = attrs.GetSelectorValues(), attrs.GetSpiffeId()
	return got
}

func writeRecording(t *testing.T, hello, ev []byte) string {
	t.Helper()
	b, err := (&evidence.Recording{Hello: hello, Evidence: ev}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rec.bin")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func verifyRecording(t *testing.T, file, serverConfig string, nonce []byte) (int, serververifier.OfflineResult, string) {
	t.Helper()
	code, out, errOut := run(t, "verify", "--evidence", file, "--nonce", hex.EncodeToString(nonce), "--server-config", serverConfig, "-o", "json")
	var res serververifier.OfflineResult
	readJSON(t, out, &res)
	return code, res, errOut
}

// checkOffline is the whole comparison on one node: the agent's bytes of a
// transport attestation, verified offline, give the plugin's selectors and
// agent ID; `ccnp evidence collect` sends the same hello and its evidence
// verifies to the same selectors; tampered evidence is rejected offline
// naming the check the plugin names over the transport.
func checkOffline(t *testing.T, c *offlineCase, tamper func(*evidencepb.Evidence), wantProven bool) {
	dir := t.TempDir()
	serverFile := filepath.Join(dir, "server.hcl")
	agentFile := filepath.Join(dir, "agent.hcl")
	for f, s := range map[string]string{serverFile: c.serverHCL, agentFile: c.agentHCL} {
		if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	live := attestOverTransport(t, c, nil)
	if live.err != nil {
		t.Fatalf("transport attestation: %v", live.err)
	}
	code, res, errOut := verifyRecording(t, writeRecording(t, live.hello, live.evidence), serverFile, live.nonce)
	if code != 0 || !res.Accepted {
		t.Fatalf("verify --evidence of the transport's bytes: exit %d, %+v, %s", code, res, errOut)
	}
	if !slices.Equal(res.Selectors, live.selectors) || res.AgentID != live.agentID {
		t.Fatalf("offline selectors/agent ID differ from the plugin's over the transport:\noffline %s %q\nplugin  %s %q", res.AgentID, res.Selectors, live.agentID, live.selectors)
	}
	if res.AgentIDProven != wantProven {
		t.Errorf("agent_id_proven = %v, want %v (not_checked %q)", res.AgentIDProven, wantProven, res.NotChecked)
	}

	// The same node recorded by `ccnp evidence collect`.
	nonce := make([]byte, evidence.NonceSize)
	for i := range nonce {
		nonce[i] = byte(i + 1)
	}
	recFile := filepath.Join(dir, "collected.bin")
	if code, out, errOut := run(t, "evidence", "collect", "--agent-config", agentFile, "--nonce", hex.EncodeToString(nonce), "-o", recFile); code != 0 {
		t.Fatalf("evidence collect: exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(recFile)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := evidence.UnmarshalRecording(b, evidence.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.Hello, live.hello) {
		t.Errorf("collect's hello differs from the agent's:\n%x\n%x", rec.Hello, live.hello)
	}
	code, res, errOut = verifyRecording(t, recFile, serverFile, nonce)
	if code != 0 || !slices.Equal(res.Selectors, live.selectors) || res.AgentID != live.agentID {
		t.Fatalf("collect + verify: exit %d, %s %q, want the plugin's %s %q\n%s", code, res.AgentID, res.Selectors, live.agentID, live.selectors, errOut)
	}
	// And with the wrong nonce, the binding names the stale recording.
	other := append([]byte{}, nonce...)
	other[0] ^= 1
	if code, res, _ = verifyRecording(t, recFile, serverFile, other); code != 2 || res.FailedCheck != appraisal.CheckBinding {
		t.Errorf("wrong nonce: exit %d, failed_check %q, want 2 and %q", code, res.FailedCheck, appraisal.CheckBinding)
	}

	// Tampered evidence: the plugin over the transport and verify offline
	// name the same check, with the same code.
	bad := attestOverTransport(t, c, tamper)
	st, _ := status.FromError(bad.err)
	if bad.err == nil {
		t.Fatal("tampered evidence accepted over the transport")
	}
	code, res, _ = verifyRecording(t, writeRecording(t, bad.hello, bad.evidence), serverFile, bad.nonce)
	wantMsg := st.Message()
	if code != 2 || res.Accepted || res.Code != st.Code().String() || res.Error != wantMsg || len(res.Selectors) != 0 || res.AgentID != "" {
		t.Fatalf("tampered: offline exit %d %+v\nplugin %s %q", code, res, st.Code(), wantMsg)
	}
	failed := slices.IndexFunc(res.Checks, func(c appraisal.Check) bool { return c.Name == res.FailedCheck })
	if failed < 0 || res.Checks[failed].OK {
		t.Errorf("the failed check %q is not listed as failed in %+v", res.FailedCheck, res.Checks)
	}
	t.Logf("tampered evidence rejected by check %q (%s) both ways; whole case %s", res.FailedCheck, res.Code, time.Since(start).Round(time.Millisecond))
}

// TestVerifyEvidenceSim: collect + verify --evidence on the simulated TD
// against the server plugin over the real plugin transport; the tamper is a
// flipped RTMR1 byte in the quote, which its signature covers.
func TestVerifyEvidenceSim(t *testing.T) {
	n := simtest.NewNode(t, sim.InitOptions{})
	agentHCL := simtest.AgentHCL(n.Dir, n.Base, "")
	c := &offlineCase{
		agentHCL:  agentHCL,
		serverHCL: fmt.Sprintf("sim { trusted_root_file = %q }\npolicy \"booted\" {\n  tee = [\"sim\"]\n}\n", n.RootFile()),
		cfg:       simtest.AgentConfig(t, agentHCL),
		open:      func(*testing.T) (cctrusted.Provider, func()) { return n.Prov, func() {} },
	}
	checkOffline(t, c, func(e *evidencepb.Evidence) {
		q := proto.Clone(e).(*evidencepb.Evidence).GetQuote()
		q[48+424] ^= 1 // RTMR1 of the v4 body
		e.Quote = q
	}, true)
}

// TestVerifyEvidenceTPM: the same on swtpm (skipped without it). Offline,
// credential activation cannot run: the agent ID is reported unproven.
func TestVerifyEvidenceTPM(t *testing.T) {
	n := simtest.StartTPMNode(t, nil)
	agentHCL := n.AgentHCL("ecc", "", n.Base)
	cfg := simtest.AgentConfig(t, agentHCL)
	c := &offlineCase{
		agentHCL:  agentHCL,
		serverHCL: fmt.Sprintf("tpm {\n  ek_ca_files = [%q]\n}\n", n.Prov.CAPath),
		cfg:       cfg,
	}
	c.open = func(t *testing.T) (cctrusted.Provider, func()) {
		p, err := tee.Open(context.Background(), tee.ForNodeAttestor(cfg))
		if err != nil {
			t.Fatal(err)
		}
		return p, func() { p.Close() }
	}
	// A quoted PCR value changed after the quote: its digest no longer
	// matches the signed one.
	checkOffline(t, c, func(e *evidencepb.Evidence) {
		for _, b := range e.GetTpm().GetPcrs() {
			for idx, v := range b.GetValues() {
				v = append([]byte{}, v...)
				v[0] ^= 1
				b.Values[idx] = v
				return
			}
		}
	}, false)
}
