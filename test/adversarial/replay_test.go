package adversarial

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// TestReplayedQuotes: genuine evidence used outside the one challenge it
// answers.
func TestReplayedQuotes(t *testing.T) {
	runSimCases(t, []simCase{
		{
			// A recorded attestation played back on a new stream: its
			// binding is for the old nonce.
			name: "evidence of an earlier attestation replayed",
			setup: func(t *testing.T, n *simNode, a *agent) {
				s := newServer(t, n.serverConfig(""))
				var old []byte
				first := n.agent(t)
				first.Sent = &old
				if _, err := s.attest(first); err != nil {
					t.Fatalf("first attestation: %v", err)
				}
				a.Raw = func([]byte) []byte { return old }
			},
			want: reject(codes.PermissionDenied, "binding"),
		},
		{
			// The attacker rewrites the binding field to what the server
			// expects; the signed REPORTDATA still holds the other nonce.
			name: "quote for another nonce with the binding field rewritten",
			setup: func(t *testing.T, n *simNode, a *agent) {
				var hello, nonce []byte
				a.Hello = func(h []byte) []byte { hello = h; return h }
				a.Challenge = func(c *evidencepb.Challenge) {
					nonce = bytes.Clone(c.Nonce)
					c.Nonce = bytes.Repeat([]byte{0x42}, evidence.NonceSize)
				}
				a.Mutate = func(e *evidencepb.Evidence) { b := evidence.Binding(nonce, hello); e.Binding = b[:] }
			},
			want: reject(codes.PermissionDenied, "report_data"),
		},
		{
			name: "instance ID swapped in the hello after the quote",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Hello = func(h []byte) []byte {
					var p evidencepb.Payload
					if err := proto.Unmarshal(h, &p); err != nil {
						t.Fatal(err)
					}
					p.GetHello().InstanceId = "00000000000000000000000000000000"
					b, err := evidence.Encode(&p)
					if err != nil {
						t.Fatal(err)
					}
					return b
				}
			},
			want: reject(codes.PermissionDenied, "binding"),
		},
		{
			name: "binding field of another challenge",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) { e.Binding[0] ^= 1 }
			},
			want: reject(codes.PermissionDenied, "binding"),
		},
		{
			name:   "nonce expired before the evidence arrived",
			config: `nonce_ttl = "1s"`,
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.BeforeEvidence = func() { time.Sleep(1200 * time.Millisecond) }
			},
			want: reject(codes.DeadlineExceeded, "nonce", "expired"),
		},
	})
}

// TestMixedEvidence: parts of the evidence of two nodes of the same
// platform (same simulated root) put together.
func TestMixedEvidence(t *testing.T) {
	runSimCases(t, []simCase{
		{
			name: "runtime log of another node",
			setup: func(t *testing.T, n *simNode, a *agent) {
				b := n.cloneNode(t)
				b.RunWorkloads(t, workload(1))
				other := b.collect(t, make([]byte, evidence.NonceSize), nil)
				a.Mutate = func(e *evidencepb.Evidence) { e.RuntimeLog = other.RuntimeLog }
			},
			want: reject(codes.PermissionDenied, "runtime_replay"),
		},
		{
			name: "CCEL of a node that booted something else",
			setup: func(t *testing.T, n *simNode, a *agent) {
				other := simtest.Testdata(t, "ccel", "ubuntu-2404-intel-tdx.bin")
				a.Mutate = func(e *evidencepb.Evidence) { e.Ccel = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_CCEL, other) }
			},
			want: reject(codes.PermissionDenied, "ccel_replay"),
		},
		{
			name: "IMA log of another node",
			setup: func(t *testing.T, n *simNode, a *agent) {
				b := n.cloneNode(t)
				list := simtest.Testdata(t, "ima", "cgpath.bin")
				b.ExtendIMA(t, list)
				a.Mutate = func(e *evidencepb.Evidence) { e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, list) }
			},
			want: reject(codes.PermissionDenied, "ima_replay"),
		},
		{
			// The other node answers the same nonce for its own hello; the
			// result is sent on this node's stream.
			name: "quote of another node for the same nonce",
			setup: func(t *testing.T, n *simNode, a *agent) {
				b := n.cloneNode(t)
				a.Challenge = func(c *evidencepb.Challenge) {
					other := b.collect(t, c.Nonce, nil)
					a.Mutate = func(e *evidencepb.Evidence) { e.Quote = other.Quote }
				}
			},
			want: reject(codes.PermissionDenied, "report_data"),
		},
		{
			// Everything of the other node, including its binding, on this
			// node's stream.
			name: "whole evidence of another node for the same nonce",
			setup: func(t *testing.T, n *simNode, a *agent) {
				b := n.cloneNode(t)
				b.RunWorkloads(t, workload(2))
				a.Challenge = func(c *evidencepb.Challenge) {
					other := b.collect(t, c.Nonce, nil)
					a.Mutate = func(e *evidencepb.Evidence) { proto.Reset(e); proto.Merge(e, other) }
				}
			},
			want: reject(codes.PermissionDenied, "binding"),
		},
		{
			name: "quote of another platform with this node's logs",
			setup: func(t *testing.T, n *simNode, a *agent) {
				other := newSimNode(t, sim.InitOptions{})
				a.Challenge = func(c *evidencepb.Challenge) {
					q := other.collect(t, c.Nonce, nil).Quote
					a.Mutate = func(e *evidencepb.Evidence) { e.Quote = q }
				}
			},
			want: reject(codes.PermissionDenied, "pck_chain"),
		},
	})
}
