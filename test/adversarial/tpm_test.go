package adversarial

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/internal/simtest"
)

// tpmNode is one swtpm with certified EKs and the real firmware log
// replayed into its PCRs.
type tpmNode struct{ *simtest.TPMNode }

func startTPMNode(t *testing.T) *tpmNode {
	t.Helper()
	return &tpmNode{simtest.StartTPMNode(t, nil)}
}

// agent opens the TPM for one attestation (the TPM serves one connection
// at a time) with extra keys in the agent's tpm block.
func (n *tpmNode) agent(t *testing.T, tpmExtra string) *agent {
	t.Helper()
	cfg := simtest.AgentConfig(t, n.AgentHCL("ecc", tpmExtra, n.Base))
	return &agent{p: simtest.OpenAgentTEE(t, cfg), cfg: cfg}
}

func (n *tpmNode) serverConfig(extra string) string {
	return fmt.Sprintf("tpm { ek_ca_files = [%q] }\n%s\n", n.Prov.CAPath, extra)
}

// tpmLogEvents splits a crypto-agile TPM log into its header and events,
// walking the layout itself (digest sizes from the Spec ID event).
func tpmLogEvents(t *testing.T, raw []byte) (head []byte, events [][]byte) {
	t.Helper()
	size := int(binary.LittleEndian.Uint32(raw[28:]))
	spec := raw[32 : 32+size]
	algs := map[uint16]int{}
	for i := range int(binary.LittleEndian.Uint32(spec[24:])) {
		algs[binary.LittleEndian.Uint16(spec[28+4*i:])] = int(binary.LittleEndian.Uint16(spec[30+4*i:]))
	}
	off := 32 + size
	head = raw[:off]
	for off < len(raw) {
		start := off
		count := int(binary.LittleEndian.Uint32(raw[off+8:]))
		off += 12
		for range count {
			off += 2 + algs[binary.LittleEndian.Uint16(raw[off:])]
		}
		off += 4 + int(binary.LittleEndian.Uint32(raw[off:]))
		events = append(events, bytes.Clone(raw[start:off]))
	}
	return head, events
}

// TestTPMQuotes: a TPM quote over a PCR selection that leaves out what the
// policy checks, and TPM evidence edited after the quote.
func TestTPMQuotes(t *testing.T) {
	n := startTPMNode(t)
	pcr7Policy := fmt.Sprintf(`require_policy = true
policy "firmware" {
  enforce = true
  tee = ["tpm"]
  pcr "7" { sha256 = [%q] }
}`, simtest.ExpectedPCR(t, 7))
	// The firmware log's events on PCR 7, swapped, and one moved.
	head, events := tpmLogEvents(t, n.Firmware)
	var on7 []int
	for i, e := range events {
		if binary.LittleEndian.Uint32(e) == 7 && binary.LittleEndian.Uint32(e[4:]) != cctrusted.EventNoAction {
			on7 = append(on7, i)
		}
	}
	if len(on7) < 2 {
		t.Fatalf("firmware log has %d events on PCR 7", len(on7))
	}
	edited := func(edit func(es [][]byte)) []byte {
		es := make([][]byte, len(events))
		for i := range events {
			es[i] = bytes.Clone(events[i])
		}
		edit(es)
		return append(bytes.Clone(head), bytes.Join(es, nil)...)
	}
	sendLog := func(log []byte) func(t *testing.T, a *agent) {
		return func(t *testing.T, a *agent) {
			a.Mutate = func(e *evidencepb.Evidence) { e.TpmLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_TPM, log) }
		}
	}

	t.Run("baseline", func(t *testing.T) {
		s := newServer(t, n.serverConfig(pcr7Policy))
		attrs, err := s.attest(n.agent(t, ""))
		if err != nil {
			t.Fatalf("genuine TPM evidence rejected: %v", err)
		}
		if !strings.Contains(strings.Join(attrs.GetSelectorValues(), " "), "policy:firmware") {
			t.Fatalf("policy not met by the genuine node: %v", attrs.GetSelectorValues())
		}
	})
	for _, c := range []struct {
		name     string
		tpmExtra string
		config   string
		setup    func(t *testing.T, a *agent)
		want     rejection
	}{
		{
			name:     "quote over PCRs 0-6 while the policy checks PCR 7",
			tpmExtra: "pcrs = [0, 1, 2, 3, 4, 5, 6]",
			config:   pcr7Policy,
			want:     reject(codes.PermissionDenied, "policy", "firmware"),
		},
		{
			name:     "quote over PCR 0 only while the policy checks PCR 7",
			tpmExtra: "pcrs = [0]",
			config:   pcr7Policy,
			want:     reject(codes.PermissionDenied, "policy", "firmware"),
		},
		{
			// PCR 7 is claimed in the evidence but was not in the quoted
			// selection: the quote's digest does not cover it.
			name:     "PCR 7 added to the evidence outside the quoted selection",
			tpmExtra: "pcrs = [0, 1, 2, 3, 4, 5, 6]",
			config:   pcr7Policy,
			setup: func(t *testing.T, a *agent) {
				v, err := hexBytes(simtest.ExpectedPCR(t, 7))
				if err != nil {
					t.Fatal(err)
				}
				a.Mutate = func(e *evidencepb.Evidence) { e.Tpm.Pcrs[0].Values[7] = v }
			},
			want: reject(codes.PermissionDenied, "tpm_quote"),
		},
		{
			name: "quoted PCR value edited in the evidence",
			setup: func(t *testing.T, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) { e.Tpm.Pcrs[0].Values[0][0] ^= 1 }
			},
			want: reject(codes.PermissionDenied, "tpm_quote"),
		},
		{
			name: "TPMS_ATTEST byte flipped",
			setup: func(t *testing.T, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) { e.Tpm.Quote[len(e.Tpm.Quote)-1] ^= 1 }
			},
			want: reject(codes.PermissionDenied, "tpm_quote"),
		},
		{
			name: "quote for another nonce with the binding rewritten",
			setup: func(t *testing.T, a *agent) {
				var hello, nonce []byte
				a.Hello = func(h []byte) []byte { hello = h; return h }
				a.Challenge = func(c *evidencepb.Challenge) {
					nonce = bytes.Clone(c.Nonce)
					c.Nonce = bytes.Repeat([]byte{7}, evidence.NonceSize)
				}
				a.Mutate = func(e *evidencepb.Evidence) { b := evidence.Binding(nonce, hello); e.Binding = b[:] }
			},
			want: reject(codes.PermissionDenied, "tpm_quote"),
		},
		{
			// The same key under another Name: a reserved objectAttributes
			// bit set in the AK's public area.
			name: "AK public area with a reserved attribute bit",
			setup: func(t *testing.T, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) { e.Tpm.AkPublic[4] |= 0x80 }
			},
			want: reject(codes.InvalidArgument, "tpm_quote", "reserved objectAttributes"),
		},
		{
			name: "credential activation answered with a guess",
			setup: func(t *testing.T, a *agent) {
				a.Activate = func(*evidencepb.Challenge) []byte {
					secret := make([]byte, 32)
					if _, err := rand.Read(secret); err != nil {
						t.Fatal(err)
					}
					b, err := evidence.Encode(evidence.NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: secret}))
					if err != nil {
						t.Fatal(err)
					}
					return b
				}
			},
			want: reject(codes.PermissionDenied, "activation"),
		},
		{
			name:  "firmware log events on PCR 7 swapped",
			setup: sendLog(edited(func(es [][]byte) { es[on7[0]], es[on7[1]] = es[on7[1]], es[on7[0]] })),
			want:  reject(codes.PermissionDenied, "tpm_log_replay"),
		},
		{
			name:  "firmware log event moved from PCR 7 to PCR 4",
			setup: sendLog(edited(func(es [][]byte) { binary.LittleEndian.PutUint32(es[on7[0]], 4) })),
			want:  reject(codes.PermissionDenied, "tpm_log_replay"),
		},
		{
			name:  "firmware log event on PCR 30, outside the bank",
			setup: sendLog(edited(func(es [][]byte) { binary.LittleEndian.PutUint32(es[on7[0]], 30) })),
			want:  reject(codes.InvalidArgument, "tpm_log_replay"),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := n.agent(t, c.tpmExtra)
			if c.setup != nil {
				c.setup(t, a)
			}
			s := newServer(t, n.serverConfig(c.config))
			_, err := s.attest(a)
			s.want(t, err, c.want)
		})
	}
}

func hexBytes(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	_, err := fmt.Sscanf(s, "%x", &b)
	return b, err
}
