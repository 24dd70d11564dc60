package serververifier

import (
	"bytes"
	"context"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// appendViolation appends a ToMToU-style violation entry as the kernel
// writes one: an all-zero template hash over template data that names a
// file the kernel did not measure, and 0xFF extended into RTMR2.
func (p *imaSim) appendViolation(t testing.TB, name string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, _ := imaEntry(name, [32]byte{})
	clear(e[4:24]) // the template hash
	p.list = append(p.list, e...)
	if err := p.ExtendRTMR(context.Background(), 2, [48]byte(bytes.Repeat([]byte{0xff}, 48))); err != nil {
		t.Fatal(err)
	}
	p.n++
}

// TestCheckpointKeepsIMAViolations is the attack on incremental
// re-attestation: a node whose IMA list had a violation before its
// checkpoint sends a clean suffix, hoping the server sees only the suffix
// and hands out ima:verified:true. The checkpoint records the count, so
// the incremental attestation says what a full replay says.
func TestCheckpointKeepsIMAViolations(t *testing.T) {
	n := newCkptNode(t)
	n.ima.appendViolation(t, "/usr/bin/rewritten-while-open")
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	first := h.mustAttestLoop(a, nil)
	wantFull(t, first)
	wantIssued(t, first)
	if !hasSelector(first.attrs, "sim:ima:violations:1") || hasSelector(first.attrs, "sim:ima:verified:true") {
		t.Fatalf("full attestation of a list with a violation: %v", first.attrs.GetSelectorValues())
	}

	n.ima.appendIMA(t, 3)
	second := h.mustAttestLoop(a, nil)
	if r := second.nonceRounds(); len(r) != 1 || r[0].GetCheckpoint() == nil {
		t.Fatalf("re-attestation was not incremental: %v", r)
	}
	if got := imaEntries(t, rawLog(t, second.evidence[0].GetImaLog())); got != 3 {
		t.Fatalf("IMA suffix of %d entries, want the 3 clean ones", got)
	}
	if !hasSelector(second.attrs, "sim:ima:violations:1") || hasSelector(second.attrs, "sim:ima:verified:true") {
		t.Fatalf("a clean suffix cleared the prefix's violation: %v", second.attrs.GetSelectorValues())
	}

	// A violation in the suffix adds to the recorded one.
	n.ima.appendViolation(t, "/etc/opened-for-write")
	third := h.mustAttestLoop(a, nil)
	if !hasSelector(third.attrs, "sim:ima:violations:2") {
		t.Fatalf("violations of prefix and suffix do not add up: %v", third.attrs.GetSelectorValues())
	}

	// allow_ima_violations gives ima:verified:true, and the count still.
	h2 := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")) + "allow_ima_violations = true\n")
	fourth := h2.mustAttestLoop(a, nil)
	if r := fourth.nonceRounds(); len(r) != 1 || r[0].GetCheckpoint() == nil {
		t.Fatalf("re-attestation under the same key was not incremental: %v", r)
	}
	for _, s := range []string{"sim:ima:violations:2", "sim:ima:verified:true"} {
		if !hasSelector(fourth.attrs, s) {
			t.Errorf("with allow_ima_violations: %s missing from %v", s, fourth.attrs.GetSelectorValues())
		}
	}
}

// TestCheckpointCCNPRegisterField: on a CCNP kernel every IMA entry
// carries register field 2 (the RTMR index). The incremental path replays
// the suffix as the full replay does (ima.Log.VerifyRTMR2): read as PCR2
// the suffix's entries would be skipped, RTMR2 would not match and every
// re-attestation would fall back to a full one.
func TestCheckpointCCNPRegisterField(t *testing.T) {
	n := &ckptNode{simNode: newSimNode(t, sim.InitOptions{})}
	n.ima = &imaSim{Provider: n.prov, field: 2}
	n.ima.appendIMA(t, 5)
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	first := h.mustAttestLoop(a, nil)
	wantFull(t, first)
	wantIssued(t, first)
	if !hasSelector(first.attrs, "sim:ima:verified:true") {
		t.Fatalf("full attestation: %v", first.attrs.GetSelectorValues())
	}

	n.ima.appendIMA(t, 3)
	second := h.mustAttestLoop(a, nil)
	if r := second.nonceRounds(); len(r) != 1 || r[0].GetCheckpoint() == nil {
		t.Fatalf("re-attestation was not incremental: %v", r)
	}
	if got := imaEntries(t, rawLog(t, second.evidence[0].GetImaLog())); got != 3 {
		t.Fatalf("IMA suffix of %d entries, want 3", got)
	}
	if !hasSelector(second.attrs, "sim:ima:verified:true") {
		t.Fatalf("incremental attestation: %v", second.attrs.GetSelectorValues())
	}
}
