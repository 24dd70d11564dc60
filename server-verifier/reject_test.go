package serververifier

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// simSetup is a simulated TD and a server configured to accept it.
func simSetup(t *testing.T, opts sim.InitOptions, tdxExtra, extra string) (*simNode, *harness, *agent) {
	t.Helper()
	n := newSimNode(t, opts)
	h := newHarness(t, nil).mustConfigure(n.serverConfig(tdxExtra, extra))
	return n, h, n.agent(t, "")
}

func TestRejectWrongRoot(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	// TDX with Intel's root (the default) and the simulator's root for sim:
	// a sim quote that claims to be tdx chains to the wrong root.
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	a := n.agent(t, "")
	a.p = simtest.AsTDX{Provider: n.prov}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "pck_chain", "does not chain to a trusted root")

	// A root of another simulator as the only TDX root.
	other := newSimNode(t, sim.InitOptions{})
	h2 := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tdx {
  trusted_roots_file = %q
  collateral { pcs_url = %q }
}`, filepath.Join(other.dir, sim.RootFile), n.pcs.URL))
	_, err = h2.attest(a)
	h2.wantReject(err, codes.PermissionDenied, "pck_chain", "does not chain to a trusted root")
}

func TestRejectSimulatedQuoteAsTDX(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	// An operator put the simulated root among the TDX roots (and no sim
	// block): the quote verifies, and is still refused as a simulation.
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tdx {
  trusted_roots_file = %q
  collateral { pcs_url = %q }
}`, filepath.Join(n.dir, sim.RootFile), n.pcs.URL))
	a := n.agent(t, "")
	a.p = simtest.AsTDX{Provider: n.prov}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckSimulatedQuote, pki.QEVendorID)
	if appraisal.SimQEVendorID != pki.QEVendorID {
		t.Errorf("appraisal.SimQEVendorID %q, tee/sim says %q", appraisal.SimQEVendorID, pki.QEVendorID)
	}
	// The sim root can never be a TDX root and the sim root at once.
	err = h.configure(n.serverConfig(fmt.Sprintf("trusted_roots_file = %q", filepath.Join(n.dir, sim.RootFile)), ""))
	if err == nil {
		t.Fatal("configuration trusting the sim root as TDX and sim accepted")
	}
}

func TestRejectSimWithoutSimBlock(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tdx { collateral { pcs_url = %q } }`, n.pcs.URL))
	_, err := h.attest(n.agent(t, ""))
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckTEE, "no sim block")
}

func TestRejectRevokedPCK(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	n.node.SetPCSParams(t, pcs.Params{TCBStatus: "UpToDate", RevokePCK: true})
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	_, err := h.attest(n.agent(t, ""))
	h.wantReject(err, codes.PermissionDenied, "pck_chain", "revoked")
}

func TestRejectExpiredCollateral(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	n.node.SetPCSParams(t, pcs.Params{TCBStatus: "UpToDate", ValiditySeconds: 3600})
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	a := n.agent(t, "")
	if _, err := h.attest(a); err != nil {
		t.Fatal(err)
	}
	// Two hours on, what the PCS issues (valid one hour from the real now)
	// is expired for the server, and the cached copy too. Expired
	// collateral is no collateral: Unavailable (retry later), never a
	// verdict on the node and never accepted.
	h.clock.Advance(2 * time.Hour)
	_, err := h.attest(a)
	h.wantReject(err, codes.Unavailable, "collateral", "expired")
}

func TestRejectTCBStatusNotAccepted(t *testing.T) {
	n, h, a := simSetup(t, sim.InitOptions{TCBStatus: "OutOfDate"}, "", "")
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "tcb_status", "OutOfDate", "not accepted")

	// Listed, it is accepted and reported.
	h2 := newHarness(t, nil).mustConfigure(n.serverConfig(`accepted_tcb_statuses = ["UpToDate", "OutOfDate"]`, ""))
	attrs, err := h2.attest(a)
	if err != nil {
		t.Fatal(err)
	}
	if !hasSelector(attrs, "sim:tcb_status:OutOfDate") {
		t.Errorf("selectors %v", attrs.GetSelectorValues())
	}
}

func TestRejectDebugTD(t *testing.T) {
	n, h, a := simSetup(t, sim.InitOptions{Debug: true}, "", "")
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "debug", "DEBUG")

	h2 := newHarness(t, nil).mustConfigure(n.serverConfig(`allow_debug = true`, ""))
	attrs, err := h2.attest(a)
	if err != nil {
		t.Fatal(err)
	}
	if !hasSelector(attrs, "sim:debug:true") {
		t.Errorf("selectors %v", attrs.GetSelectorValues())
	}
}

// TestRejectNonceReused: a nonce answers the one round that issued it. When
// an incremental re-attestation falls back to a full round, the server
// challenges with a fresh nonce; answering it with the first round's quote
// and binding (the same stream, the same genuine node) is refused. Across
// streams, TestRejectReplayedEvidence.
func TestRejectNonceReused(t *testing.T) {
	n := newCkptNode(t)
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	h.mustAttestLoop(a, nil)
	n.ima.appendIMA(t, 4)
	var first *evidencepb.Evidence
	r, err := h.attestLoop(a, func(round int, ev *evidencepb.Evidence) {
		if round == 0 {
			first = proto.CloneOf(ev)
			dropFirstIMAEntry(t, ev) // the suffix does not replay: full round next
			return
		}
		ev.Quote, ev.Binding = first.Quote, first.Binding
	})
	if rounds := r.nonceRounds(); len(rounds) != 2 || bytes.Equal(rounds[0].GetNonce(), rounds[1].GetNonce()) {
		t.Fatalf("want two rounds with distinct nonces, got %v", rounds)
	}
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckBinding, "binding")
}

func TestRejectNonceExpired(t *testing.T) {
	n, h, a := simSetup(t, sim.InitOptions{}, "", `nonce_ttl = "10s"`)
	a.BeforeEvidence = func() { h.clock.Advance(11 * time.Second) }
	_, err := h.attest(a)
	h.wantReject(err, codes.DeadlineExceeded, appraisal.CheckNonce, "expired")
	_ = n
}

func TestRejectReplayedEvidence(t *testing.T) {
	_, h, a := simSetup(t, sim.InitOptions{}, "", "")
	var captured []byte
	a.Raw = func(b []byte) []byte { captured = b; return b }
	if _, err := h.attest(a); err != nil {
		t.Fatal(err)
	}
	// The same evidence answering a fresh challenge: bound to the old nonce.
	a.Raw = func([]byte) []byte { return captured }
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckBinding, "binding")
}

func TestRejectReportDataOfAnotherNonce(t *testing.T) {
	_, h, a := simSetup(t, sim.InitOptions{}, "", "")
	var helloBytes, serverNonce []byte
	a.Hello = func(b []byte) []byte { helloBytes = bytes.Clone(b); return b }
	a.Challenge = func(c *evidencepb.Challenge) {
		serverNonce = bytes.Clone(c.Nonce)
		c.Nonce = bytes.Repeat([]byte{0x5a}, evidence.NonceSize) // the TD signs another nonce
	}
	// The evidence claims the right binding; the quote does not hold it.
	a.Mutate = func(e *evidencepb.Evidence) {
		b := evidence.Binding(serverNonce, helloBytes)
		e.Binding = b[:]
	}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "report_data", "REPORTDATA")
}

func TestRejectQuoteBodyByteFlipped(t *testing.T) {
	_, h, a := simSetup(t, sim.InitOptions{}, "", "")
	a.Mutate = func(e *evidencepb.Evidence) { e.Quote[48+200] ^= 1 } // inside MRTD
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "quote_signature", "signature")
}

func TestRejectRTMRChangedLogUnchanged(t *testing.T) {
	n, h, a := simSetup(t, sim.InitOptions{}, "", "")
	// Something extended RTMR1 that the CCEL does not record.
	if err := n.prov.ExtendRTMR(context.Background(), 2, [48]byte{1}); err != nil {
		t.Fatal(err)
	}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "ccel_replay", "rtmr2")
}

// ccelEvents splits a CCEL (crypto-agile, SHA-384 only, as TDX firmware
// writes it) into its Spec ID header, its events and the padding after
// them, walking the layout itself: u32 index, u32 type, u32 digest count,
// per digest u16 algorithm and 48 bytes, u32 size, data.
func ccelEvents(t *testing.T, log []byte) (head []byte, events [][]byte, tail []byte) {
	t.Helper()
	// Spec ID event, SHA-1 format: index, type, 20-byte digest, size, data.
	n := 32 + int(binary.LittleEndian.Uint32(log[28:]))
	head, off := log[:n], n
	for off+8 <= len(log) && binary.LittleEndian.Uint32(log[off:]) != 0xffffffff {
		start := off
		count := int(binary.LittleEndian.Uint32(log[off+8:]))
		off += 12
		for range count {
			if alg := binary.LittleEndian.Uint16(log[off:]); alg != 0x0c {
				t.Fatalf("event at %d: digest algorithm %#x", start, alg)
			}
			off += 2 + 48
		}
		off += 4 + int(binary.LittleEndian.Uint32(log[off:]))
		events = append(events, log[start:off])
	}
	return head, events, log[off:]
}

func joinCCEL(head []byte, events [][]byte, tail []byte) []byte {
	out := bytes.Clone(head)
	for _, e := range events {
		out = append(out, e...)
	}
	return append(out, tail...)
}

func TestRejectCCELEventEdited(t *testing.T) {
	log, _ := sim.DefaultCCEL()
	head, events, tail := ccelEvents(t, log)
	if !bytes.Equal(joinCCEL(head, events, tail), log) {
		t.Fatal("the CCEL walk does not reproduce the log")
	}
	measured := func(e []byte) bool {
		idx := binary.LittleEndian.Uint32(e)
		typ := binary.LittleEndian.Uint32(e[4:])
		return idx >= 1 && idx <= 3 && typ != cctrusted.EventNoAction
	}
	// Two measured events on the same register with different digests.
	var i, j int
	for i = range events {
		for j = i + 1; j < len(events); j++ {
			if measured(events[i]) && measured(events[j]) && binary.LittleEndian.Uint32(events[i]) == binary.LittleEndian.Uint32(events[j]) && !bytes.Equal(events[i][14:62], events[j][14:62]) {
				goto found
			}
		}
	}
	t.Fatal("no two events to reorder")
found:
	edit := func(f func([][]byte) [][]byte) []byte {
		es := f(append([][]byte(nil), events...))
		// Keep the log's length so the table's log area still holds it.
		out := joinCCEL(head, es, nil)
		if len(out) < len(log) {
			out = append(out, bytes.Repeat([]byte{0xff}, len(log)-len(out))...)
		}
		return out
	}
	for name, edited := range map[string][]byte{
		"inserted":  edit(func(es [][]byte) [][]byte { return append(es[:i+1], append([][]byte{es[i]}, es[i+1:]...)...) }),
		"removed":   edit(func(es [][]byte) [][]byte { return append(es[:i], es[i+1:]...) }),
		"reordered": edit(func(es [][]byte) [][]byte { es[i], es[j] = es[j], es[i]; return es }),
	} {
		t.Run(name, func(t *testing.T) {
			_, h, a := simSetup(t, sim.InitOptions{}, "", "")
			a.Mutate = func(e *evidencepb.Evidence) { e.Ccel = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_CCEL, edited) }
			_, err := h.attest(a)
			h.wantReject(err, codes.PermissionDenied, "ccel_replay", fmt.Sprintf("rtmr%d", binary.LittleEndian.Uint32(events[i])-1))
		})
	}
}

func TestRejectIMAEntryAltered(t *testing.T) {
	list := simtest.Testdata(t, "ima", "cgpath.bin")
	n, h, a := simSetup(t, sim.InitOptions{}, "", "")
	a.Mutate = n.addIMA(t, list)
	attrs, err := h.attest(a)
	if err != nil {
		t.Fatalf("IMA on RTMR2: %v", err)
	}
	// cgpath.bin ends with a violation: replayed, counted, not "verified".
	if !hasSelector(attrs, "sim:ima:violations:1") || hasSelector(attrs, "sim:ima:verified:true") {
		t.Errorf("selectors %v", attrs.GetSelectorValues())
	}

	// Alter one entry's file name and recompute its template hash, so the
	// list is well-formed but records something the register never saw.
	altered := bytes.Clone(list)
	at := bytes.Index(altered, []byte("/usr/bin"))
	if at < 0 {
		t.Fatal("no /usr/bin entry")
	}
	altered[at+1] = 'x'
	off := 0
	for {
		nameLen := int(binary.LittleEndian.Uint32(altered[off+24:]))
		dataOff := off + 28 + nameLen + 4
		dataLen := int(binary.LittleEndian.Uint32(altered[dataOff-4:]))
		if at >= dataOff && at < dataOff+dataLen {
			sum := sha1.Sum(altered[dataOff : dataOff+dataLen])
			copy(altered[off+4:off+24], sum[:])
			break
		}
		off = dataOff + dataLen
	}
	a.Mutate = func(e *evidencepb.Evidence) { e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, altered) }
	_, err = h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "ima_replay", "rtmr2")

	// A template hash that does not match its entry is malformed.
	altered[at+2] = 'y'
	_, err = h.attest(a)
	h.wantReject(err, codes.InvalidArgument, "ima_replay", "template hash")
}

func TestRejectRuntimeLogEntryAltered(t *testing.T) {
	n, h, a := simSetup(t, sim.InitOptions{}, "", "")
	w := runtimelog.Workload{ExeSHA256: bytes.Repeat([]byte{1}, 32), ExeSHA384: bytes.Repeat([]byte{1}, 48), ExePath: "/usr/bin/real"}
	n.runWorkloads(t, w)
	if _, err := h.attest(a); err != nil {
		t.Fatal(err)
	}
	// A well-formed log that says another program ran.
	forged := runtimelog.New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	w.ExePath, w.ExeSHA256 = "/usr/bin/other", bytes.Repeat([]byte{2}, 32)
	if _, err := forged.Append(w); err != nil {
		t.Fatal(err)
	}
	fb, err := forged.Encode()
	if err != nil {
		t.Fatal(err)
	}
	a.Mutate = func(e *evidencepb.Evidence) {
		e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, fb)
	}
	_, err = h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckRuntimeReplay, "does not replay", "rtmr3")

	// The real log with one byte of a record's content changed: its
	// digest no longer matches.
	a.Mutate = func(e *evidencepb.Evidence) {
		raw, err := evidence.DecompressLog(e.RuntimeLog, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw = bytes.Clone(raw)
		raw[bytes.Index(raw, []byte("/usr/bin/real"))+9] = 'R'
		e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, raw)
	}
	_, err = h.attest(a)
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckRuntimeReplay, "runtime log")

	// Dropping the log while RTMR3 holds workloads leaves them unknown: a
	// runtime policy then cannot be met.
	h2 := newHarness(t, nil).mustConfigure(n.serverConfig("", `require_policy = true
policy "rt" {
  enforce = true
  runtime { allowed_exe_sha256 = ["`+fmt.Sprintf("%x", bytes.Repeat([]byte{1}, 32))+`"] }
}`))
	a.Mutate = func(e *evidencepb.Evidence) { e.RuntimeLog = nil }
	_, err = h2.attest(a)
	h2.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "no verified runtime log")
}

func TestRejectPayloadOverSizeLimit(t *testing.T) {
	_, h, a := simSetup(t, sim.InitOptions{}, "", `max_payload_bytes = 4096`)
	var ch *evidencepb.Challenge
	a.Challenge = func(c *evidencepb.Challenge) { ch = proto.Clone(c).(*evidencepb.Challenge) }
	_, err := h.attest(a)
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload, "above the limit of 4096 bytes", "evidence message")
	if ch.GetMaxPayloadBytes() != 4096 {
		t.Errorf("challenge says max_payload_bytes %d", ch.GetMaxPayloadBytes())
	}
}

func TestRejectMalformedPayload(t *testing.T) {
	_, h, a := simSetup(t, sim.InitOptions{}, "", "")
	a.Raw = func([]byte) []byte { return []byte("\x0a\xff\xff\xff\xff\x0fgarbage") }
	_, err := h.attest(a)
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload, "malformed")

	// A hello where evidence is due is well-formed but the wrong kind.
	a.Raw = func([]byte) []byte {
		b, err := evidence.Encode(evidence.NewHello(&evidencepb.Hello{Tee: "sim", InstanceId: "x"}))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	_, err = h.attest(a)
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload, "expected evidence, got hello")

	// A malformed hello.
	a.Raw = nil
	a.Hello = func([]byte) []byte { return []byte{0xff} }
	_, err = h.attest(a)
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload, "hello message")
}

func TestRejectUnknownEvidenceVersion(t *testing.T) {
	_, h, a := simSetup(t, sim.InitOptions{}, "", "")
	a.Raw = func(b []byte) []byte {
		var p evidencepb.Payload
		if err := proto.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		p.Version = evidence.Version + 1
		out, err := proto.Marshal(&p)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	_, err := h.attest(a)
	h.wantReject(err, codes.FailedPrecondition, appraisal.CheckPayload, "version")
}

func TestRejectPolicyMismatchRequirePolicy(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	other := fmt.Sprintf("%x", sha256.Sum256([]byte("x")))
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", fmt.Sprintf(`require_policy = true
policy "golden" {
  enforce = true
  tee     = ["sim"]
  mrtd    = ["%s%s"]
}`, other, other[:32])))
	_, err := h.attest(n.agent(t, ""))
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, `policy "golden": mrtd:`)
	audit := h.logs.Audit(t)
	if len(audit) != 1 || fmt.Sprint(audit[0]["policies"]) == "[]" {
		t.Errorf("audit line does not list the policy: %v", audit)
	}
}

// TestRejectWithWarmCaches repeats rejections on a server whose caches
// (collateral, PCK chain, library verdicts, CCEL replay, decompressed
// firmware logs) were warmed by an accepted attestation of the same node.
func TestRejectWithWarmCaches(t *testing.T) {
	n, h, a := simSetup(t, sim.InitOptions{}, "", "")
	var goodCCEL *evidencepb.Log
	a.Mutate = func(e *evidencepb.Evidence) { goodCCEL = proto.Clone(e.Ccel).(*evidencepb.Log) }
	if _, err := h.attest(a); err != nil {
		t.Fatal(err)
	}
	if goodCCEL.GetEncoding() == evidencepb.Encoding_ENCODING_NONE {
		t.Fatal("the agent sent the CCEL uncompressed: the log cache is not exercised")
	}
	if _, _, _, ccel := h.plugin.cache.Len(); ccel != 1 || h.plugin.logs.Stats().Entries != 1 {
		t.Fatalf("caches not warm: %d CCEL replays, %d logs", ccel, h.plugin.logs.Stats().Entries)
	}

	t.Run("quote byte flipped", func(t *testing.T) {
		a.Mutate = func(e *evidencepb.Evidence) { e.Quote[48+300] ^= 1 }
		_, err := h.attest(a)
		h.wantReject(err, codes.PermissionDenied, "quote_signature")
	})
	t.Run("cached CCEL with a wrong raw size", func(t *testing.T) {
		a.Mutate = func(e *evidencepb.Evidence) { e.Ccel.RawSize++ }
		_, err := h.attest(a)
		h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload)
	})
	t.Run("CCEL edited", func(t *testing.T) {
		a.Mutate = func(e *evidencepb.Evidence) {
			raw, err := evidence.DecompressLog(goodCCEL, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw = bytes.Clone(raw)
			// A digest byte of the first event that extends RTMR0.
			head, events, _ := ccelEvents(t, raw)
			off := len(head)
			for _, ev := range events {
				if binary.LittleEndian.Uint32(ev) == 1 && binary.LittleEndian.Uint32(ev[4:]) != cctrusted.EventNoAction {
					break
				}
				off += len(ev)
			}
			raw[off+14] ^= 1
			e.Ccel = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_CCEL, raw)
		}
		_, err := h.attest(a)
		h.wantReject(err, codes.PermissionDenied, "ccel_replay", "rtmr0")
	})
	t.Run("RTMR changed, log unchanged", func(t *testing.T) {
		a.Mutate = nil
		if err := n.prov.ExtendRTMR(context.Background(), 2, [48]byte{9}); err != nil {
			t.Fatal(err)
		}
		_, err := h.attest(a)
		h.wantReject(err, codes.PermissionDenied, "ccel_replay", "rtmr2")
	})
}
