package serververifier

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
)

// TestAttackIMAPrefixNeverSent: a node withholds its IMA list (and the
// CCEL, so RTMR2 is not replayed) in the full attestation that issues its
// checkpoint, then sends only its newest entries as if they were the whole
// list. Were the checkpoint to record an empty IMA list at the register's
// signed value, the new entries would replay from it and earn
// ima:verified:true while the violation before them was never seen. The
// checkpoint records an IMA offset only when the register is proven free of
// IMA entries, so the second attestation is full and the cut list fails it.
func TestAttackIMAPrefixNeverSent(t *testing.T) {
	n := newCkptNode(t)
	n.ima.appendViolation(t, "/usr/bin/rewritten-while-open")
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	var withheld int
	first := h.mustAttestLoop(a, func(_ int, ev *evidencepb.Evidence) {
		withheld = len(rawLog(t, ev.GetImaLog()))
		ev.ImaLog, ev.Ccel, ev.CcelTable = nil, nil, nil
	})
	if hasSelector(first.attrs, "sim:ima:verified:true") {
		t.Fatalf("no IMA list sent, yet: %v", first.attrs.GetSelectorValues())
	}

	n.ima.appendIMA(t, 3)
	second, err := h.attestLoop(a, func(_ int, ev *evidencepb.Evidence) {
		raw := rawLog(t, ev.GetImaLog())
		if len(raw) < withheld {
			return
		}
		l, err := evidence.CompressLog(evidencepb.LogKind_LOG_KIND_IMA, raw[withheld:], ev.GetImaLog().GetEncoding())
		if err != nil {
			t.Fatal(err)
		}
		ev.ImaLog = l
	})
	if err == nil && (hasSelector(second.attrs, "sim:ima:verified:true") || !hasSelector(second.attrs, "sim:ima:violations:1")) {
		t.Fatalf("the newest entries passed for the whole list: %v", second.attrs.GetSelectorValues())
	}
	t.Logf("second attestation: %v", err)
}

// TestAttackIMAPrefixNeverSentTPM is the same attack on a TPM node: the
// IMA list withheld while PCR10 already holds its entries, then only the
// newest entries sent as the whole list.
func TestAttackIMAPrefixNeverSentTPM(t *testing.T) {
	n := startTPMNodeOn(t, 15)
	h := newHarness(t, nil).mustConfigure(n.serverTPM("runtime_pcr = 15") + writeKey(t, "k1"))
	a := n.agent()
	var withheld int
	first := h.mustAttestLoop(a, func(_ int, ev *evidencepb.Evidence) {
		withheld = len(rawLog(t, ev.GetImaLog()))
		ev.ImaLog = nil
	})
	if withheld == 0 {
		t.Fatal("the node has no IMA list to withhold")
	}
	if hasSelector(first.attrs, "ima:verified:true") {
		t.Fatalf("no IMA list sent, yet: %v", first.attrs.GetSelectorValues())
	}

	ctx := context.Background()
	tp := tee.Unwrap(n.agentP).(*tpm.Provider)
	f, err := os.OpenFile(filepath.Join(n.Root, tpm.IMALogPath), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, td := imaEntry("/usr/bin/after-checkpoint", sha512.Sum512_256([]byte("new")))
	if _, err := f.Write(e); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d := sha256.Sum256(td)
	if err := tp.Extend(ctx, 10, cctrusted.AlgSHA256, d[:]); err != nil {
		t.Fatal(err)
	}

	second, err := h.attestLoop(a, func(_ int, ev *evidencepb.Evidence) {
		raw := rawLog(t, ev.GetImaLog())
		if len(raw) < withheld {
			return
		}
		l, err := evidence.CompressLog(evidencepb.LogKind_LOG_KIND_IMA, raw[withheld:], ev.GetImaLog().GetEncoding())
		if err != nil {
			t.Fatal(err)
		}
		ev.ImaLog = l
	})
	if err == nil && hasSelector(second.attrs, "ima:verified:true") {
		t.Fatalf("the newest entry passed for the whole list: %v", second.attrs.GetSelectorValues())
	}
	t.Logf("second attestation: %v", err)
}
