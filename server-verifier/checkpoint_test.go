package serververifier

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// imaSim is the simulator with an IMA list, as a CCNP kernel keeps one:
// every entry appended is also extended into RTMR2.
type imaSim struct {
	*sim.Provider
	mu   sync.Mutex
	list []byte
	n    int
	// field is the register field of appended entries: 0 writes 10
	// (PCR10 mapped onto RTMR2), 2 what CCNP's kernels write.
	field uint32
}

// RawIMA is what the agent reads as the IMA list.
func (p *imaSim) RawIMA(context.Context) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.list), nil
}

// imaEntry builds one little-endian binary ima-ng entry for file name with
// the given content digest, following the kernel's layout (u32 PCR, SHA-1
// template hash, u32 name length, "ima-ng", u32 data length, then the
// fields d-ng = "sha256:\0"||digest and n-ng = name||"\0", each behind a u32
// length), independently of package ima.
func imaEntry(name string, digest [32]byte) (entry, templateData []byte) {
	le := binary.LittleEndian
	field := func(b []byte) []byte { return append(le.AppendUint32(nil, uint32(len(b))), b...) }
	td := append(field(append([]byte("sha256:\x00"), digest[:]...)), field(append([]byte(name), 0))...)
	th := sha1.Sum(td)
	e := le.AppendUint32(nil, 10)
	e = append(e, th[:]...)
	e = append(e, field([]byte("ima-ng"))...)
	e = append(e, field(td)...)
	return e, td
}

// appendIMA appends n entries and extends RTMR2 with SHA-384 of each
// entry's template data.
func (p *imaSim) appendIMA(t testing.TB, n int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		name := fmt.Sprintf("/usr/bin/file-%d", p.n)
		e, td := imaEntry(name, sha512.Sum512_256([]byte(name)))
		if p.field != 0 {
			binary.LittleEndian.PutUint32(e, p.field)
		}
		p.list = append(p.list, e...)
		if err := p.ExtendRTMR(context.Background(), 2, sha512.Sum384(td)); err != nil {
			t.Fatal(err)
		}
		p.n++
	}
}

// ckptNode is a simulated node with IMA, a runtime log and an agent that
// keeps checkpoints in its own data dir.
type ckptNode struct {
	*simNode
	ima *imaSim
}

func newCkptNode(t *testing.T) *ckptNode {
	n := &ckptNode{simNode: newSimNode(t, sim.InitOptions{})}
	n.ima = &imaSim{Provider: n.prov}
	n.ima.appendIMA(t, 50)
	n.runWorkloads(t, workload(1, "c1"))
	return n
}

func workload(b byte, container string) runtimelog.Workload {
	return runtimelog.Workload{ExeSHA256: bytes.Repeat([]byte{b}, 32), ExeSHA384: bytes.Repeat([]byte{b}, 48), ExePath: fmt.Sprintf("/bin/w%d", b), ContainerID: container}
}

func (n *ckptNode) agent(t *testing.T) *agent {
	a := n.simNode.agent(t, "")
	a.p = n.ima
	return a
}

func (n *ckptNode) checkpointPath(a *agent) string { return nodeattestor.CheckpointPath(a.cfg) }

// writeKey writes a checkpoint key file and returns the config line.
func writeKey(t *testing.T, seed string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "checkpoint.key")
	if err := os.WriteFile(path, []byte(strings.Repeat(seed, 64/len(seed))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("checkpoint_key_file = %q", path)
}

// run is one attestation as the agent plugin runs it, every challenge
// answered through nodeattestor.Answer; mutate edits the evidence of round
// r (0: the first nonce challenge, 1: a fallback round).
type run struct {
	attrs      *nodeattestorv1.AgentAttributes
	challenges []*evidencepb.Challenge
	evidence   []*evidencepb.Evidence
}

func (r *run) nonceRounds() []*evidencepb.Challenge {
	var out []*evidencepb.Challenge
	for _, c := range r.challenges {
		if len(c.GetNonce()) > 0 {
			out = append(out, c)
		}
	}
	return out
}

func (h *harness) attestLoop(a *agent, mutate func(round int, ev *evidencepb.Evidence)) (*run, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := h.client.Attest(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stream.CloseSend() }()
	hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		h.t.Fatalf("agent Hello: %v", err)
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
		return nil, err
	}
	r := &run{}
	round := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			return r, err
		}
		if resp.GetChallenge() == nil {
			r.attrs = resp.GetAgentAttributes()
			return r, nil
		}
		ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
		if err != nil {
			h.t.Fatalf("server challenge: %v", err)
		}
		r.challenges = append(r.challenges, ch)
		pl, err := nodeattestor.Answer(ctx, a.p, a.cfg, hello, ch)
		if err != nil {
			h.t.Fatalf("agent Answer: %v", err)
		}
		if ev := pl.GetEvidence(); ev != nil {
			if mutate != nil {
				mutate(round, ev)
			}
			round++
			r.evidence = append(r.evidence, proto.CloneOf(ev))
		}
		b, err := proto.Marshal(pl)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: b}}); err != nil {
			return r, err
		}
	}
}

func (h *harness) mustAttestLoop(a *agent, mutate func(int, *evidencepb.Evidence)) *run {
	h.t.Helper()
	r, err := h.attestLoop(a, mutate)
	if err != nil {
		h.t.Fatalf("attestation: %v\n%s", err, h.logs.String())
	}
	return r
}

func rawLog(t *testing.T, l *evidencepb.Log) []byte {
	t.Helper()
	b, err := evidence.DecompressLog(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantFull asserts that r verified whole logs: one nonce round, no
// checkpoint offsets, the firmware log asked for.
func wantFull(t *testing.T, r *run) {
	t.Helper()
	rounds := r.nonceRounds()
	if len(rounds) != 1 {
		t.Fatalf("%d nonce rounds, want 1", len(rounds))
	}
	if rounds[0].GetCheckpoint() != nil || !slices.Contains(rounds[0].GetWant(), evidencepb.LogKind_LOG_KIND_CCEL) {
		t.Fatalf("challenge %v is not a full one", rounds[0])
	}
}

// wantIssued asserts the run ended with a checkpoint challenge.
func wantIssued(t *testing.T, r *run) {
	t.Helper()
	if last := r.challenges[len(r.challenges)-1]; len(last.GetCheckpoint().GetToken()) == 0 {
		t.Fatalf("no checkpoint issued; last challenge %v", last)
	}
}

func checkpointConfig(n *ckptNode, key string) string {
	return n.serverConfig("", key)
}

func TestCheckpointSuffixAccepted(t *testing.T) {
	n := newCkptNode(t)
	key := writeKey(t, "k1")
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, key))
	a := n.agent(t)

	first := h.mustAttestLoop(a, nil)
	wantFull(t, first)
	wantIssued(t, first)
	if _, err := os.Stat(n.checkpointPath(a)); err != nil {
		t.Fatalf("the agent stored no checkpoint: %v", err)
	}
	imaBefore, _ := n.ima.RawIMA(context.Background())
	rtBefore, err := os.ReadFile(n.runtimeLogPath())
	if err != nil {
		t.Fatal(err)
	}

	// The node runs on: 7 new IMA entries and a new workload.
	n.ima.appendIMA(t, 7)
	n.runWorkloads(t, workload(2, "c2"))
	imaAfter, _ := n.ima.RawIMA(context.Background())
	rtAfter, err := os.ReadFile(n.runtimeLogPath())
	if err != nil {
		t.Fatal(err)
	}

	second := h.mustAttestLoop(a, nil)
	rounds := second.nonceRounds()
	if len(rounds) != 1 || rounds[0].GetCheckpoint() == nil {
		t.Fatalf("re-attestation was not incremental: %v", rounds)
	}
	if slices.Contains(rounds[0].GetWant(), evidencepb.LogKind_LOG_KIND_CCEL) {
		t.Fatal("an incremental challenge asked for the firmware log")
	}
	off := evidence.OffsetOf(rounds[0].GetCheckpoint().GetOffsets(), evidencepb.LogKind_LOG_KIND_IMA)
	if off.GetBytes() != uint64(len(imaBefore)) || off.GetEvents() != 50 {
		t.Fatalf("IMA offset %v, want 50 events / %d bytes", off, len(imaBefore))
	}
	ev := second.evidence[0]
	if got := rawLog(t, ev.GetImaLog()); !bytes.Equal(got, imaAfter[len(imaBefore):]) {
		t.Fatalf("the agent sent %d IMA bytes, want the %d-byte suffix", len(got), len(imaAfter)-len(imaBefore))
	}
	if got := rawLog(t, ev.GetRuntimeLog()); !bytes.Equal(got, rtAfter[len(rtBefore):]) {
		t.Fatalf("the agent sent %d runtime bytes, want the %d-byte suffix", len(got), len(rtAfter)-len(rtBefore))
	}
	if ev.GetCcel() != nil {
		t.Fatal("the agent sent the firmware log with an incremental evidence")
	}
	wantIssued(t, second)

	// The same node attested in full by a server without checkpoints
	// gets exactly the same selectors.
	full := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	ref := full.mustAttestLoop(a, nil)
	wantFull(t, ref)
	if !slices.Equal(second.attrs.GetSelectorValues(), ref.attrs.GetSelectorValues()) {
		t.Fatalf("incremental selectors\n%v\ndiffer from a full replay's\n%v", second.attrs.GetSelectorValues(), ref.attrs.GetSelectorValues())
	}
	for _, s := range []string{"sim:runtime:exe:sha256:" + strings.Repeat("01", 32), "sim:runtime:exe:sha256:" + strings.Repeat("02", 32), "sim:ima:verified:true"} {
		if !hasSelector(second.attrs, s) {
			t.Errorf("incremental attestation lacks %s (a fact of the prefix or the suffix)", s)
		}
	}
	if second.attrs.GetSpiffeId() != first.attrs.GetSpiffeId() {
		t.Fatalf("agent ID changed: %s -> %s", first.attrs.GetSpiffeId(), second.attrs.GetSpiffeId())
	}

	// A third attestation chains on the second checkpoint: 3 more entries.
	n.ima.appendIMA(t, 3)
	third := h.mustAttestLoop(a, nil)
	off = evidence.OffsetOf(third.nonceRounds()[0].GetCheckpoint().GetOffsets(), evidencepb.LogKind_LOG_KIND_IMA)
	if off.GetEvents() != 57 || off.GetBytes() != uint64(len(imaAfter)) {
		t.Fatalf("third IMA offset %v, want 57 events / %d bytes", off, len(imaAfter))
	}
	if got := rawLog(t, third.evidence[0].GetImaLog()); len(got) == 0 || len(third.nonceRounds()) != 1 {
		t.Fatalf("third attestation: %d IMA bytes, %d rounds", len(got), len(third.nonceRounds()))
	}
	// Nothing new at all: empty suffixes.
	fourth := h.mustAttestLoop(a, nil)
	if len(fourth.nonceRounds()) != 1 || fourth.nonceRounds()[0].GetCheckpoint() == nil || len(rawLog(t, fourth.evidence[0].GetImaLog())) != 0 {
		t.Fatal("a re-attestation with no new events was not an empty incremental one")
	}
	for _, l := range h.logs.Audit(t) {
		if l["result"] != "accepted" {
			t.Fatalf("audit: %v", l)
		}
	}
}

// dropFirstIMAEntry removes the first entry of the IMA suffix: a suffix
// that skips an entry the register holds.
func dropFirstIMAEntry(t *testing.T, ev *evidencepb.Evidence) {
	raw := rawLog(t, ev.GetImaLog())
	l, err := ima.Parse(raw, ima.Options{})
	if err != nil || len(l.Entries) < 2 {
		t.Fatalf("suffix of %d bytes: %v", len(raw), err)
	}
	ev.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, raw[l.Entries[1].Offset:])
}

func TestCheckpointSkippingSuffix(t *testing.T) {
	n := newCkptNode(t)
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	h.mustAttestLoop(a, nil)
	n.ima.appendIMA(t, 4)

	// Once: the server does not accept it, asks for whole logs, and the
	// honest full answer is accepted.
	r := h.mustAttestLoop(a, func(round int, ev *evidencepb.Evidence) {
		if round == 0 {
			dropFirstIMAEntry(t, ev)
		}
	})
	rounds := r.nonceRounds()
	if len(rounds) != 2 || rounds[0].GetCheckpoint() == nil || rounds[1].GetCheckpoint() != nil {
		t.Fatalf("want an incremental round then a full one, got %v", rounds)
	}
	if !strings.Contains(h.logs.String(), "checkpoint_fallback") || !strings.Contains(h.logs.String(), "do not replay to the signed value") {
		t.Fatalf("the audit line does not say why it fell back:\n%s", h.logs.String())
	}

	// Persistently: the skipping suffix is rejected.
	n.ima.appendIMA(t, 4)
	_, err := h.attestLoop(a, func(round int, ev *evidencepb.Evidence) {
		if round == 0 {
			dropFirstIMAEntry(t, ev)
			return
		}
		// Round 1 asks for whole logs; the liar answers with a suffix.
		raw := rawLog(t, ev.GetImaLog())
		ev.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, raw[len(raw)/2:])
		ev.Checkpoint = &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 1, Bytes: 1}}}
	})
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckCheckpoint, "asked for whole logs")

	// A full log that skips an entry is rejected by the replay.
	n.ima.appendIMA(t, 2)
	_, err = h.attestLoop(a, func(_ int, ev *evidencepb.Evidence) { dropFirstIMAEntry(t, ev) })
	h.wantReject(err, codes.PermissionDenied, "ima_replay")
}

func TestCheckpointLost(t *testing.T) {
	n := newCkptNode(t)
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	h.mustAttestLoop(a, nil)
	for _, damage := range []struct {
		name string
		do   func(path string)
	}{
		{"deleted", func(p string) { _ = os.Remove(p) }},
		{"truncated", func(p string) { b, _ := os.ReadFile(p); _ = os.WriteFile(p, b[:len(b)/2], 0o600) }},
		{"garbage", func(p string) { _ = os.WriteFile(p, []byte("not a checkpoint"), 0o600) }},
	} {
		t.Run(damage.name, func(t *testing.T) {
			n.ima.appendIMA(t, 2)
			damage.do(n.checkpointPath(a))
			r := h.mustAttestLoop(a, nil)
			wantFull(t, r)
			wantIssued(t, r)
			// and the next one is incremental again
			n.ima.appendIMA(t, 1)
			if next := h.mustAttestLoop(a, nil); next.nonceRounds()[0].GetCheckpoint() == nil {
				t.Fatal("no incremental attestation after the new checkpoint")
			}
		})
	}
}

func TestCheckpointOffsetLie(t *testing.T) {
	n := newCkptNode(t)
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	h.mustAttestLoop(a, nil)
	n.ima.appendIMA(t, 3)
	for _, tt := range []struct {
		name string
		edit func(*evidencepb.Checkpoint)
	}{
		{"later ima offset", func(c *evidencepb.Checkpoint) {
			evidence.OffsetOf(c.Offsets, evidencepb.LogKind_LOG_KIND_IMA).Bytes++
		}},
		{"fewer events", func(c *evidencepb.Checkpoint) {
			evidence.OffsetOf(c.Offsets, evidencepb.LogKind_LOG_KIND_RUNTIME).Events = 0
		}},
		{"runtime offset dropped", func(c *evidencepb.Checkpoint) { c.Offsets = c.Offsets[:1] }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.attestLoop(a, func(round int, ev *evidencepb.Evidence) {
				c := proto.CloneOf(ev.GetCheckpoint())
				tt.edit(c)
				ev.Checkpoint = c
			})
			h.wantReject(err, codes.PermissionDenied, appraisal.CheckCheckpoint, "but this server asked for")
		})
	}
	// A token whose offsets were edited in the agent's file no longer
	// verifies: the server falls back to whole logs.
	b, err := os.ReadFile(n.checkpointPath(a))
	if err != nil {
		t.Fatal(err)
	}
	var ck evidencepb.Checkpoint
	if err := proto.Unmarshal(b, &ck); err != nil {
		t.Fatal(err)
	}
	var sc evidencepb.SignedCheckpoint
	if err := proto.Unmarshal(ck.GetToken(), &sc); err != nil {
		t.Fatal(err)
	}
	var claims evidencepb.CheckpointClaims
	if err := proto.Unmarshal(sc.GetClaims(), &claims); err != nil {
		t.Fatal(err)
	}
	evidence.OffsetOf(claims.Offsets, evidencepb.LogKind_LOG_KIND_IMA).Bytes -= 10
	sc.Claims, _ = proto.Marshal(&claims)
	ck.Token, _ = proto.Marshal(&sc)
	b, _ = proto.Marshal(&ck)
	if err := os.WriteFile(n.checkpointPath(a), b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := h.mustAttestLoop(a, nil)
	wantFull(t, r)
	if !strings.Contains(h.logs.String(), "Checkpoint token does not verify") {
		t.Fatal("an edited token was not reported")
	}
}

func TestCheckpointRefusedTokens(t *testing.T) {
	n := newCkptNode(t)
	key := writeKey(t, "k1")
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, key+"\ncheckpoint_ttl = \"1h\""))
	a := n.agent(t)
	h.mustAttestLoop(a, nil)
	tokenA, err := os.ReadFile(n.checkpointPath(a))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("another agent", func(t *testing.T) {
		// Same node state, another instance ID: node B presents A's token.
		b := n.agent(t)
		dir := t.TempDir()
		b.cfg.InstanceIDPath = filepath.Join(dir, "instance_id")
		if err := os.WriteFile(nodeattestor.CheckpointPath(b.cfg), tokenA, 0o600); err != nil {
			t.Fatal(err)
		}
		r := h.mustAttestLoop(b, nil)
		wantFull(t, r)
		if r.attrs.GetSpiffeId() == "" {
			t.Fatal("no agent ID")
		}
		if !strings.Contains(h.logs.String(), "the token was issued to") {
			t.Fatal("the fallback reason is not logged")
		}
	})
	t.Run("expired", func(t *testing.T) {
		if err := os.WriteFile(n.checkpointPath(a), tokenA, 0o600); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(61 * time.Minute)
		r := h.mustAttestLoop(a, nil)
		wantFull(t, r)
		if !strings.Contains(h.logs.String(), "checkpoint token expired") {
			t.Fatal("expiry not logged")
		}
	})
	t.Run("forged", func(t *testing.T) {
		var ck evidencepb.Checkpoint
		if err := proto.Unmarshal(tokenA, &ck); err != nil {
			t.Fatal(err)
		}
		ck.Token[len(ck.Token)-1] ^= 1
		b, _ := proto.Marshal(&ck)
		if err := os.WriteFile(n.checkpointPath(a), b, 0o600); err != nil {
			t.Fatal(err)
		}
		wantFull(t, h.mustAttestLoop(a, nil))
	})
	t.Run("other trust domain key", func(t *testing.T) {
		other := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "zz")))
		wantFull(t, other.mustAttestLoop(a, nil))
	})
	t.Run("server without key", func(t *testing.T) {
		plain := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
		r := plain.mustAttestLoop(a, nil)
		wantFull(t, r)
		if len(r.challenges) != 1 {
			t.Fatalf("a server without a key issued a checkpoint: %v", r.challenges)
		}
	})
}

// TestCheckpointHA: two servers of one trust domain (two plugin instances
// sharing the key, nothing else) accept each other's checkpoints, in turn.
func TestCheckpointHA(t *testing.T) {
	n := newCkptNode(t)
	key := writeKey(t, "k1")
	s1 := newHarness(t, nil).mustConfigure(checkpointConfig(n, key))
	s2 := newHarness(t, nil).mustConfigure(checkpointConfig(n, key))
	a := n.agent(t)
	wantFull(t, s1.mustAttestLoop(a, nil))
	for i, s := range []*harness{s2, s1, s2} {
		n.ima.appendIMA(t, 2)
		n.runWorkloads(t, workload(byte(10+i), ""))
		r := s.mustAttestLoop(a, nil)
		if rounds := r.nonceRounds(); len(rounds) != 1 || rounds[0].GetCheckpoint() == nil {
			t.Fatalf("attestation %d to the other server was not incremental", i)
		}
	}
}

// imaEntries is the number of entries of an IMA list.
func imaEntries(t *testing.T, b []byte) int {
	t.Helper()
	l, err := ima.Parse(b, ima.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Entries)
}

// TestCheckpointTPM: on a TPM node the checkpoint records PCR10 and the
// runtime PCR; the re-attestation sends the firmware log whole, IMA and
// runtime suffixes, still proves the AK by credential activation, and
// yields the selectors of a full replay.
func TestCheckpointTPM(t *testing.T) {
	n := startTPMNodeOn(t, 15)
	cfg := n.serverTPM("runtime_pcr = 15") + writeKey(t, "k1")
	h := newHarness(t, nil).mustConfigure(cfg)
	a := n.agent()
	first := h.mustAttestLoop(a, nil)
	wantIssued(t, first)

	// The node runs on: two IMA entries on PCR10, a workload on PCR15.
	ctx := context.Background()
	tp := tee.Unwrap(n.agentP).(*tpm.Provider)
	imaPath := filepath.Join(n.Root, tpm.IMALogPath)
	for i := range 2 {
		e, td := imaEntry(fmt.Sprintf("/usr/bin/tpm-new-%d", i), sha512.Sum512_256([]byte{byte(i)}))
		f, err := os.OpenFile(imaPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(e); err != nil {
			t.Fatal(err)
		}
		f.Close()
		d := sha256.Sum256(td)
		if err := tp.Extend(ctx, 10, cctrusted.AlgSHA256, d[:]); err != nil {
			t.Fatal(err)
		}
	}
	rtPath := filepath.Join(n.Base, "runtime.cel")
	raw, err := os.ReadFile(rtPath)
	if err != nil {
		t.Fatal(err)
	}
	l, err := runtimelog.Decode(raw, runtimelog.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	exe2 := sha256.Sum256([]byte("second tpm workload"))
	ev, err := l.Append(runtimelog.Workload{ExeSHA256: exe2[:], ExePath: "/usr/bin/w2"})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := ev.Digest(cctrusted.AlgSHA256)
	if err := tp.Extend(ctx, n.runtimePCR, cctrusted.AlgSHA256, d); err != nil {
		t.Fatal(err)
	}
	if raw, err = l.Encode(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rtPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	second := h.mustAttestLoop(a, nil)
	rounds := second.nonceRounds()
	if len(rounds) != 1 || rounds[0].GetCheckpoint() == nil {
		t.Fatalf("TPM re-attestation was not incremental: %v", rounds)
	}
	if !slices.ContainsFunc(second.challenges, func(c *evidencepb.Challenge) bool { return len(c.GetCredentialBlob()) > 0 }) {
		t.Fatal("no credential activation in the incremental attestation")
	}
	if ima := rawLog(t, second.evidence[0].GetImaLog()); imaEntries(t, ima) != 2 {
		t.Fatalf("IMA suffix of %d entries, want 2", imaEntries(t, ima))
	}
	full := newHarness(t, nil).mustConfigure(n.serverTPM("runtime_pcr = 15"))
	ref := full.mustAttestLoop(a, nil)
	if !slices.Equal(second.attrs.GetSelectorValues(), ref.attrs.GetSelectorValues()) {
		t.Fatalf("incremental selectors\n%v\ndiffer from a full replay's\n%v", second.attrs.GetSelectorValues(), ref.attrs.GetSelectorValues())
	}
	// The node's first IMA list has a violation; the suffix has none: the
	// checkpoint must carry the prefix's count, or the suffix would clear it.
	for _, s := range []string{"runtime:exe:sha256:" + hex.EncodeToString(n.exe), "runtime:exe:sha256:" + hex.EncodeToString(exe2[:]), "ima:violations:1"} {
		if !hasSelector(second.attrs, s) {
			t.Errorf("selector %s missing", s)
		}
	}
	if hasSelector(second.attrs, "ima:verified:true") {
		t.Error("ima:verified:true for a list with a violation")
	}
}
