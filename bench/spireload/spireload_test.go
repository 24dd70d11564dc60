package spireload

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// TestPopAnswerVerifies checks the x509pop agent side against the protocol
// as SPIRE's server checks it, written out here independently: the JSON
// field names, a fresh 32-byte agent nonce, and an ECDSA signature over
// SHA-256(server nonce || agent nonce) that verifies with the leaf's key
// and with nothing else.
func TestPopAnswerVerifies(t *testing.T) {
	now := time.Now()
	ca, err := newPopCA(now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, key, err := ca.issue("agent-1", 7, now)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("leaf does not chain to the CA: %v", err)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Fatal("leaf lacks digitalSignature: SPIRE's server refuses to challenge it")
	}

	payload, err := popPayload(leaf)
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Certificates [][]byte `json:"certificates"`
	}
	if err := json.Unmarshal(payload, &data); err != nil || len(data.Certificates) != 1 || string(data.Certificates[0]) != string(leaf.Raw) {
		t.Fatalf("attestation data %s: want {\"certificates\": [leaf DER]}", payload)
	}

	serverNonce := make([]byte, 32)
	if _, err := rand.Read(serverNonce); err != nil {
		t.Fatal(err)
	}
	challenge, _ := json.Marshal(map[string]any{"rsa_signature": nil, "ecdsa_signature": map[string]any{"nonce": serverNonce}})
	resp, err := popAnswer(key, challenge)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		ECDSA *struct {
			Nonce, R, S []byte
		} `json:"ecdsa_signature"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || r.ECDSA == nil {
		t.Fatalf("response %s: want an ecdsa_signature member", resp)
	}
	if len(r.ECDSA.Nonce) != 32 {
		t.Fatalf("agent nonce is %d bytes, want 32", len(r.ECDSA.Nonce))
	}
	h := sha256.New()
	h.Write(serverNonce)
	h.Write(r.ECDSA.Nonce)
	digest := h.Sum(nil)
	rr, ss := new(big.Int).SetBytes(r.ECDSA.R), new(big.Int).SetBytes(r.ECDSA.S)
	if !ecdsa.Verify(leaf.PublicKey.(*ecdsa.PublicKey), digest, rr, ss) {
		t.Fatal("signature does not verify over SHA-256(server nonce || agent nonce) with the leaf key")
	}
	other, _, err := ca.issue("agent-2", 8, now)
	if err != nil {
		t.Fatal(err)
	}
	if ecdsa.Verify(other.PublicKey.(*ecdsa.PublicKey), digest, rr, ss) {
		t.Fatal("signature verifies with another agent's key")
	}
	// A second answer to the same challenge uses a new agent nonce.
	resp2, err := popAnswer(key, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if string(resp2) == string(resp) {
		t.Fatal("two answers are identical: the agent nonce is not fresh")
	}
}

// TestPopAnswerRefusesBadChallenges: a challenge the agent cannot answer
// correctly is an error, never a signature over something else.
func TestPopAnswerRefusesBadChallenges(t *testing.T) {
	ca, err := newPopCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := ca.issue("agent", 2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]string{
		"not json":    `{`,
		"rsa only":    `{"rsa_signature":{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}`,
		"short nonce": `{"ecdsa_signature":{"nonce":"AAAA"}}`,
	} {
		if _, err := popAnswer(key, []byte(ch)); err == nil {
			t.Errorf("%s: answered %s", name, ch)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p50, p99 := percentiles(d)
	if p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Fatalf("p50 %v p99 %v, want 50ms 99ms", p50, p99)
	}
	if p50, p99 := percentiles([]time.Duration{3}); p50 != 3 || p99 != 3 {
		t.Fatalf("one sample: p50 %v p99 %v", p50, p99)
	}
}

func TestProcCPU(t *testing.T) {
	before, err := ProcCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel's 10 ms accounting tick shows it.
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		if after, _ := ProcCPU(0); after-before >= 50*time.Millisecond {
			t.Logf("%v of CPU seen (%d)", after-before, x)
			return
		}
	}
	t.Fatal("5 s of busy loop did not show 50 ms of CPU in /proc/self/stat")
}

func TestChildByExe(t *testing.T) {
	if _, err := childByExe(os.Getpid(), "no-such-binary"); err == nil {
		t.Fatal("found a child that does not exist")
	}
}

// TestPreparedLogsAreTheAgentsOwn checks that the driver's answers, the
// first for a kind of challenge (which fills the prepared logs) and every
// later one (which takes its logs from them), carry what the agent
// plugin's own answer (nodeattestor.Answer) to the same challenge carries:
// the same logs, ACPI table, checkpoint echo and binding, for a full
// challenge and for an incremental one (log suffixes from checkpoint
// offsets, no CCEL), and that one kind of challenge never gets another's
// logs.
func TestPreparedLogsAreTheAgentsOwn(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	simDir := filepath.Join(dir, "td")
	if err := sim.Init(simDir, sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	rtlog := filepath.Join(dir, "runtime.cel")
	if err := writeRuntimeLog(ctx, simDir, rtlog); err != nil {
		t.Fatal(err)
	}
	rt, err := os.ReadFile(rtlog)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newCCNPAgent(ctx, simDir, filepath.Join(dir, "agent"), rtlog, newPreparedLogs())
	if err != nil {
		t.Fatal(err)
	}
	hello, err := a.payload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const ccel, runtime = evidencepb.LogKind_LOG_KIND_CCEL, evidencepb.LogKind_LOG_KIND_RUNTIME
	offsets := func(b int) *evidencepb.Checkpoint {
		return &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{{Kind: runtime, Events: 1, Bytes: uint64(b)}}}
	}
	cases := []struct {
		name string
		ch   *evidencepb.Challenge
	}{
		{"full", &evidencepb.Challenge{Want: []evidencepb.LogKind{ccel, runtime}}},
		{"incremental, empty suffix", &evidencepb.Challenge{Want: []evidencepb.LogKind{runtime}, Checkpoint: offsets(len(rt))}},
		{"incremental, a suffix", &evidencepb.Challenge{Want: []evidencepb.LogKind{runtime}, Checkpoint: offsets(len(rt) / 2)}},
		{"runtime log only", &evidencepb.Challenge{Want: []evidencepb.LogKind{runtime}}},
	}
	// Twice over: the first round fills the prepared logs, the second
	// uses them.
	for round := range 2 {
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%s/round %d", tc.name, round), func(t *testing.T) {
				ch := proto.CloneOf(tc.ch)
				ch.Nonce = make([]byte, evidence.NonceSize)
				ch.Nonce[0], ch.Nonce[1] = byte(round), byte(i)
				chBytes, err := evidence.Encode(evidence.NewChallenge(ch))
				if err != nil {
					t.Fatal(err)
				}
				ours, err := a.answer(ctx, hello, chBytes)
				if err != nil {
					t.Fatal(err)
				}
				pl, err := nodeattestor.Answer(ctx, a.prov, a.cfg, hello, ch)
				if err != nil {
					t.Fatal(err)
				}
				theirs, err := evidence.Encode(pl)
				if err != nil {
					t.Fatal(err)
				}
				got, err1 := evidence.DecodeEvidence(ours, evidence.DefaultLimits())
				want, err2 := evidence.DecodeEvidence(theirs, evidence.DefaultLimits())
				if err := errors.Join(err1, err2); err != nil {
					t.Fatal(err)
				}
				if len(got.GetQuote()) == 0 || len(got.GetQuote()) != len(want.GetQuote()) {
					t.Errorf("quote: %d bytes, the plugin's %d", len(got.GetQuote()), len(want.GetQuote()))
				}
				// The quotes differ (a fresh ECDSA signature each);
				// everything else must be the plugin's.
				got.Quote, want.Quote = nil, nil
				if !proto.Equal(got, want) {
					t.Errorf("the driver's evidence differs from the agent plugin's:\n got %v\nwant %v", got, want)
				}
				if (got.GetCcel() != nil) != slices.Contains(ch.Want, ccel) {
					t.Errorf("CCEL sent: %v, asked for: %v", got.GetCcel() != nil, slices.Contains(ch.Want, ccel))
				}
			})
		}
	}
	if n := len(a.logs.done); n != len(cases) {
		t.Errorf("%d kinds of challenge prepared, want %d", n, len(cases))
	}
}
