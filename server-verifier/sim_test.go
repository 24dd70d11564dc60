package serververifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

func TestAttestSimHappyPath(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	exe := sha256.Sum256([]byte("workload one"))
	n.runWorkloads(t, runtimelog.Workload{ExeSHA256: exe[:], ExeSHA384: simtest.SHA384([]byte("workload one")), ExePath: "/usr/bin/one", ContainerID: "c0ffee"})
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	a := n.agent(t, "")

	attrs, err := h.attest(a)
	if err != nil {
		t.Fatal(err)
	}
	id, err := nodeattestorInstanceID(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://" + trustDomain + "/spire/agent/ccnp/sim/" + id; attrs.GetSpiffeId() != want {
		t.Errorf("SPIFFE ID %s, want %s", attrs.GetSpiffeId(), want)
	}
	if !attrs.GetCanReattest() {
		t.Error("CanReattest is false")
	}
	mrtd, rtmr, err := n.prov.Measurements(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mrtd[:], sim.DefaultMRTD()) {
		t.Fatalf("sim MRTD %x is not DefaultMRTD", mrtd)
	}
	want := []string{
		"tee:sim",
		"sim:mrtd:" + hex.EncodeToString(mrtd[:]),
		"sim:rtmr0:" + hex.EncodeToString(rtmr[0][:]),
		"sim:rtmr1:" + hex.EncodeToString(rtmr[1][:]),
		"sim:rtmr2:" + hex.EncodeToString(rtmr[2][:]),
		"sim:rtmr3:" + hex.EncodeToString(rtmr[3][:]),
		"sim:tcb_status:UpToDate",
		"sim:tcb_eval_num:17",
		"sim:debug:false",
		"sim:fmspc:" + hex.EncodeToString(pki.DefaultPlatform().FMSPC),
		"sim:runtime:exe:sha256:" + hex.EncodeToString(exe[:]),
		"sim:boot:bootloader:grub",
	}
	for _, s := range want {
		if !hasSelector(attrs, s) {
			t.Errorf("selector %s missing from %v", s, attrs.GetSelectorValues())
		}
	}
	for _, s := range attrs.GetSelectorValues() {
		if s != "tee:sim" && !strings.HasPrefix(s, "sim:") {
			t.Errorf("a simulation yields %s outside sim:", s)
		}
		if len(s) >= 255 {
			t.Errorf("selector of %d bytes: %s", len(s), s)
		}
		if strings.ToLower(s) != s && !strings.HasPrefix(s, "sim:tcb_status:") && !strings.HasPrefix(s, "sim:advisory:") {
			t.Errorf("selector %s is not lower case", s)
		}
	}
	if len(selectorsWithPrefix(attrs, "sim:boot:cmdline_sha256:")) != 1 {
		t.Errorf("no command line selector in %v", attrs.GetSelectorValues())
	}

	audit := h.logs.Audit(t)
	if len(audit) != 1 || audit[0]["result"] != "accepted" || audit[0]["agent_id"] != attrs.GetSpiffeId() || audit[0]["tee"] != "sim" {
		t.Fatalf("audit lines %v", audit)
	}
	if q, _ := audit[0]["quote_sha256"].(string); len(q) != 64 {
		t.Errorf("audit quote_sha256 %q", q)
	}
	if len(h.logs.Lines(t, "Simulated TEE accepted: the sim block makes this server trust quotes signed under a simulated root; never configure it in production")) != 1 {
		t.Error("no WARN line about the sim block at configure time")
	}
	if n.tcbFetches.Load() != 1 {
		t.Errorf("TCB info fetched %d times", n.tcbFetches.Load())
	}
	// Re-attestation: same identity, collateral from the cache.
	again, err := h.attest(a)
	if err != nil || again.GetSpiffeId() != attrs.GetSpiffeId() {
		t.Fatalf("re-attestation: %v %s", err, again.GetSpiffeId())
	}
	if n.tcbFetches.Load() != 1 {
		t.Errorf("TCB info fetched %d times after re-attestation", n.tcbFetches.Load())
	}
}

func nodeattestorInstanceID(n *simNode) (string, error) {
	b, err := readFileString(n.base + "/instance_id")
	return strings.TrimSpace(b), err
}
