package serververifier

// Benchmarks of how the server's cost grows with the work, and their
// floors; bench/ (make bench) runs them next to their anchors and writes
// bench/results.md.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// BenchmarkECDSAFloor is two ECDSA P-256 verifications over messages of a
// TDX quote's sizes (header and body, 632 bytes, signed by the attestation
// key; the QE report, 384 bytes, signed by the PCK): the least any TDX
// quote verification costs.
func BenchmarkECDSAFloor(b *testing.B) {
	type signed struct {
		pub    *ecdsa.PublicKey
		digest []byte
		sig    []byte
	}
	var ss [2]signed
	for i, size := range []int{632, 384} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		msg := make([]byte, size)
		_, _ = rand.Read(msg)
		d := sha256.Sum256(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
		if err != nil {
			b.Fatal(err)
		}
		ss[i] = signed{&k.PublicKey, d[:], sig}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range ss {
			if !ecdsa.VerifyASN1(s.pub, s.digest, s.sig) {
				b.Fatal("signature does not verify")
			}
		}
	}
}

// bulkIMA gives the simulated TD an n-entry IMA list: the list in memory
// and RTMR2 set, in the simulator's state file, to the CCEL's RTMR2
// extended with every entry (what n ExtendRTMR calls would leave, without
// n state file rewrites).
func bulkIMA(b testing.TB, n *simNode, entries int) *imaSim {
	b.Helper()
	path := filepath.Join(n.dir, sim.StateFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	st, err := sim.ParseState(raw)
	if err != nil {
		b.Fatal(err)
	}
	p := &imaSim{Provider: n.prov}
	cur := bytes.Clone(st.RTMR[2])
	p.list = make([]byte, 0, entries*120)
	for i := range entries {
		name := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%d.so.1", i)
		e, td := imaEntry(name, sha256.Sum256([]byte(name)))
		p.list = append(p.list, e...)
		d := sha512.Sum384(td)
		h := sha512.New384()
		h.Write(cur)
		h.Write(d[:])
		cur = h.Sum(cur[:0])
	}
	p.n = entries
	st.RTMR[2] = cur
	out, err := json.Marshal(st)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchPlugin is a configured server plugin with its nonce source fixed per
// exchange, so prepared evidence can be replayed.
func benchPlugin(b testing.TB, n *simNode, extra string) *Plugin {
	b.Helper()
	p := New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  n.serverConfig("", "max_payload_bytes = 268435456\n"+extra),
	}); err != nil {
		b.Fatal(err)
	}
	return p
}

// attestOnce runs one attestation through Plugin.Attest over an in-memory
// stream with the given agent messages.
func attestOnce(b testing.TB, p *Plugin, nonce []byte, msgs ...[]byte) []*nodeattestorv1.AttestResponse {
	p.newNonce = func() ([]byte, error) { return nonce, nil }
	s := &memStream{ctx: context.Background()}
	for i, m := range msgs {
		if i == 0 {
			s.in = append(s.in, &nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: m}})
		} else {
			s.in = append(s.in, &nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: m}})
		}
	}
	if err := p.Attest(s); err != nil {
		b.Fatal(err)
	}
	if last := s.out[len(s.out)-1]; last.GetAgentAttributes() == nil {
		b.Fatalf("no agent attributes: %v", s.out)
	}
	return s.out
}

// collectFor builds the agent's evidence for a known nonce and challenge.
func collectFor(b testing.TB, a *agent, hello, nonce []byte, ch *evidencepb.Challenge) []byte {
	b.Helper()
	ch.Nonce = nonce
	pl, err := nodeattestor.Collect(context.Background(), a.p, a.cfg, hello, ch)
	if err != nil {
		b.Fatal(err)
	}
	out, err := proto.Marshal(pl)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

var allWanted = []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_CCEL, evidencepb.LogKind_LOG_KIND_IMA, evidencepb.LogKind_LOG_KIND_RUNTIME}

// BenchmarkAttestIMA is the full server-side verification of a simulated
// TDX attestation whose IMA list has the given number of entries (every
// entry parsed, its template hash checked and replayed onto RTMR2), with
// warm collateral and CCEL caches: how verification grows with the log.
func BenchmarkAttestIMA(b *testing.B) {
	for _, entries := range []int{10, 100, 1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("entries=%d", entries), func(b *testing.B) {
			n := newSimNode(b, sim.InitOptions{})
			n.runWorkloads(b, workload(1, "c1"))
			a := n.agent(b, `compression = "none"`)
			a.p = bulkIMA(b, n, entries)
			p := benchPlugin(b, n, "")
			hello, err := nodeattestor.Hello(context.Background(), a.p, a.cfg)
			if err != nil {
				b.Fatal(err)
			}
			nonce, _ := evidence.NewNonce()
			ev := collectFor(b, a, hello, nonce, &evidencepb.Challenge{Want: allWanted})
			attestOnce(b, p, nonce, hello, ev)
			b.ReportAllocs()
			b.SetBytes(int64(len(a.p.(*imaSim).list)))
			for b.Loop() {
				attestOnce(b, p, nonce, hello, ev)
			}
		})
	}
}

// BenchmarkReattestIMA500k is an incremental re-attestation of a node with
// a 500,000-entry IMA list that gained 100 entries (and one workload) since
// its checkpoint: hello with the token, suffix challenge, quote, the suffix
// replayed from the checkpoint's RTMR2, a new token issued and
// acknowledged. Cost must follow the 100 new entries, not the 500,000.
func BenchmarkReattestIMA500k(b *testing.B) { reattestIMA500k(b, nil) }

// BenchmarkReattestIMA500kPolicy is BenchmarkReattestIMA500k with an IMA
// runtime policy (Keylime JSON, 500,100 paths) required: the checkpoint
// carries its verdict, so only the 100 new entries are appraised.
func BenchmarkReattestIMA500kPolicy(b *testing.B) {
	reattestIMA500k(b, func(n *simNode) string {
		var js bytes.Buffer
		js.WriteString(`{"meta": {"version": 1, "generator": 0}, "release": 0, "excludes": [], "keyrings": {}, "ima-buf": {}, "verification-keys": "", "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null}, "digests": {`)
		for i := range 500_000 {
			name := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%d.so.1", i)
			d := sha256.Sum256([]byte(name))
			fmt.Fprintf(&js, "%q: [%q],", name, hex.EncodeToString(d[:]))
		}
		for i := 500_000; i < 500_100; i++ {
			name := fmt.Sprintf("/usr/bin/file-%d", i)
			d := sha512.Sum512_256([]byte(name))
			fmt.Fprintf(&js, "%q: [%q],", name, hex.EncodeToString(d[:]))
		}
		js.Truncate(js.Len() - 1)
		js.WriteString("}}")
		path := filepath.Join(b.TempDir(), "ima-runtime.json")
		if err := os.WriteFile(path, js.Bytes(), 0o600); err != nil {
			b.Fatal(err)
		}
		return fmt.Sprintf("require_policy = true\npolicy \"runtime\" {\n  tee = [\"sim\"]\n  ima_policy_file = %q\n}\n", path)
	})
}

// reattestIMA500k runs the re-attestation benchmark; policy, when set,
// returns more server configuration for the node.
func reattestIMA500k(b *testing.B, policy func(*simNode) string) {
	n := newSimNode(b, sim.InitOptions{})
	n.runWorkloads(b, workload(1, "c1"))
	a := n.agent(b, `compression = "zstd"`)
	ip := bulkIMA(b, n, 500_000)
	a.p = ip
	extra := writeKeyB(b)
	if policy != nil {
		extra += policy(n)
	}
	p := benchPlugin(b, n, extra)
	ctx := context.Background()

	// The first, full attestation issues the checkpoint the agent keeps.
	hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		b.Fatal(err)
	}
	nonce, _ := evidence.NewNonce()
	ev := collectFor(b, a, hello, nonce, &evidencepb.Challenge{Want: allWanted})
	ack, _ := evidence.Encode(evidence.NewAck())
	out := attestOnce(b, p, nonce, hello, ev, ack)
	keep(b, a, out)

	// The node runs on: 100 IMA entries and a workload.
	ip.appendIMA(b, 100)
	n.runWorkloads(b, workload(2, "c2"))
	hello, err = nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		b.Fatal(err)
	}
	hl, _ := evidence.DecodeHello(hello, evidence.DefaultLimits())
	if hl.GetCheckpoint() == nil {
		b.Fatal("the agent presents no checkpoint")
	}
	ch := &evidencepb.Challenge{Want: []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_IMA, evidencepb.LogKind_LOG_KIND_RUNTIME},
		Checkpoint: &evidencepb.Checkpoint{Offsets: hl.GetCheckpoint().GetOffsets()}}
	ev = collectFor(b, a, hello, nonce, ch)
	out = attestOnce(b, p, nonce, hello, ev, ack)
	var sent evidencepb.Payload
	_ = proto.Unmarshal(ev, &sent)
	if sent.GetEvidence().GetCheckpoint() == nil || len(out) != 3 {
		b.Fatalf("not an incremental attestation: %d responses", len(out))
	}
	b.ReportMetric(float64(len(ev)), "evidence-bytes")
	b.ReportAllocs()
	for b.Loop() {
		attestOnce(b, p, nonce, hello, ev, ack)
	}
}

func writeKeyB(b testing.TB) string {
	path := filepath.Join(b.TempDir(), "checkpoint.key")
	if err := os.WriteFile(path, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("checkpoint_key_file = %q\n", path)
}

// keep stores the checkpoint a run issued, as the agent does.
func keep(b testing.TB, a *agent, out []*nodeattestorv1.AttestResponse) {
	b.Helper()
	for _, r := range out {
		ch, err := evidence.DecodeChallenge(r.GetChallenge(), evidence.DefaultLimits())
		if err != nil || len(ch.GetCheckpoint().GetToken()) == 0 {
			continue
		}
		if _, err := nodeattestor.Answer(context.Background(), a.p, a.cfg, nil, ch); err != nil {
			b.Fatal(err)
		}
		return
	}
	b.Fatal("no checkpoint issued")
}
