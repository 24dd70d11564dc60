package adversarial

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
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

// mintAKCertificate certifies the AK of agent a (its TPMT_PUBLIC key)
// under a fresh test AK CA whose PEM it writes into dir; it returns the
// CA file and the AK certificate's DER.
func mintAKCertificate(t *testing.T, dir string, a *agent) (caPath string, leafDER []byte) {
	t.Helper()
	akPub, err := tee.Unwrap(a.p.(tee.Provider)).(*tpm.Provider).AttestationKeyPublic()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpmquote.ParsePublic(akPub)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "adversarial AK CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node X AK"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if leafDER, err = x509.CreateCertificate(rand.Reader, leafTmpl, ca, pub, caKey); err != nil {
		t.Fatal(err)
	}
	caPath = filepath.Join(dir, "ak-ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caPath, leafDER
}

// TestTPMIdentityTakeover: node X, whose AK is certified under the
// configured AK CA, sends node Y's EK public key and EK certificate (both
// public) next to its own AK and quote, to be accepted as Y. Credential
// activation runs although the AK is certified, and X's TPM cannot
// activate a credential made for Y's EK.
func TestTPMIdentityTakeover(t *testing.T) {
	x, y := startTPMNode(t), startTPMNode(t)
	yEK := y.Prov.EKs[swtpm.ECC]
	yHash := ekHash(t, yEK.Cert)
	ax := x.agent(t, "")
	akCA, akCert := mintAKCertificate(t, t.TempDir(), ax)
	cfg := fmt.Sprintf(`tpm {
  ek_ca_files = [%q, %q]
  ak_ca_files = [%q]
}`, x.Prov.CAPath, y.Prov.CAPath, akCA)
	withCert := func(e *evidencepb.Evidence) { e.Tpm.AkCertificateChain = [][]byte{akCert} }

	t.Run("baseline: X as itself with its certified AK", func(t *testing.T) {
		s := newServer(t, cfg)
		ax.Hooks = simtest.Hooks{Mutate: withCert}
		attrs, err := s.attest(ax)
		if err != nil {
			t.Fatalf("genuine node X rejected: %v", err)
		}
		if want := "tpm:ek_hash:" + ekHash(t, x.Prov.EKs[swtpm.ECC].Cert); !slices.Contains(attrs.GetSelectorValues(), want) {
			t.Fatalf("X lacks %s: %v", want, attrs.GetSelectorValues())
		}
	})
	t.Run("X presents Y's EK with its own certified AK", func(t *testing.T) {
		s := newServer(t, cfg)
		ax.Hooks = simtest.Hooks{
			Mutate: func(e *evidencepb.Evidence) {
				withCert(e)
				e.Tpm.EkPublic, e.Tpm.EkCertificate = yEK.Public, yEK.Cert.Raw
			},
			// X's TPM holds no Y EK: it cannot open the credential, so the
			// attacker's best answer is a guess.
			Activate: func(ch *evidencepb.Challenge) []byte {
				secret := make([]byte, 32)
				if pl, err := nodeattestor.Activate(context.Background(), ax.p, ch); err == nil {
					t.Errorf("X's TPM activated a credential made for Y's EK")
					secret = pl.GetActivatedSecret().GetSecret()
				} else if _, err := rand.Read(secret); err != nil {
					t.Fatal(err)
				}
				b, err := evidence.Encode(evidence.NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: secret}))
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
		}
		attrs, err := s.attest(ax)
		if err == nil {
			t.Fatalf("X accepted as %s (Y's EK is %s)", attrs.GetSpiffeId(), yHash)
		}
		s.want(t, err, reject(codes.PermissionDenied, "activation", "activated secret is wrong"))
	})
	t.Run("X with ak_ca_files configured and no AK certificate", func(t *testing.T) {
		s := newServer(t, cfg)
		ax.Hooks = simtest.Hooks{}
		_, err := s.attest(ax)
		s.want(t, err, reject(codes.PermissionDenied, "ak_trust", "AK certificate is required"))
	})
}

// ekHash is SHA-256 of the PKIX DER of the EK a certificate states.
func ekHash(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// TestTPMRuntimeLogRollback: a node ran a workload the runtime policy
// forbids, then root reset the runtime PCR (TPM2_PCR_Reset at locality 0)
// and deleted the runtime log. On PCR23 the reset works, so a log there
// proves nothing and the node never gets policy:clean; on PCR15 (the
// server's tpm.runtime_pcr) the TPM refuses the reset and the forbidden
// record stays in the quoted PCR.
func TestTPMRuntimeLogRollback(t *testing.T) {
	ctx := context.Background()
	allowed, forbidden := workload(0), workload(1)
	policy := func(require bool) string {
		return fmt.Sprintf(`require_policy = %v
policy "clean" {
  enforce = true
  tee     = ["tpm"]
  runtime { allowed_exe_sha256 = [%q] }
}`, require, hex.EncodeToString(allowed.ExeSHA256))
	}
	serverHCL := func(n *tpmNode, tpmExtra, top string) string {
		return fmt.Sprintf("tpm {\n  ek_ca_files = [%q]\n  %s\n}\n%s\n", n.Prov.CAPath, tpmExtra, top)
	}
	// Each step opens the TPM and closes it again: swtpm serves one
	// connection at a time, and the reset needs its own.
	record := func(t *testing.T, n *tpmNode, tpmExtra string, pcr cctrusted.PCR, ws ...runtimelog.Workload) {
		a := n.agent(t, tpmExtra)
		defer a.p.(tee.Provider).Close()
		n.RecordWorkloads(t, tee.Unwrap(a.p.(tee.Provider)).(*tpm.Provider), pcr, ws...)
	}
	attest := func(t *testing.T, n *tpmNode, tpmExtra string, s *server) (*agentAttrs, error) {
		a := n.agent(t, tpmExtra)
		defer a.p.(tee.Provider).Close()
		attrs, err := s.attest(a)
		return (*agentAttrs)(attrs), err
	}
	wipe := func(t *testing.T, n *tpmNode, pcr cctrusted.PCR) error {
		err := n.ResetPCR(ctx, pcr)
		if rerr := os.Remove(n.RuntimeLogPath()); rerr != nil {
			t.Fatal(rerr)
		}
		return err
	}

	t.Run("pcr23", func(t *testing.T) {
		n := startTPMNode(t)
		record(t, n, "", 23, allowed, forbidden)
		if err := wipe(t, n, 23); err != nil {
			t.Fatalf("TPM2_PCR_Reset(23) at locality 0 refused: %v", err)
		}
		s := newServer(t, serverHCL(n, "", policy(true)))
		_, err := attest(t, n, "", s)
		s.want(t, err, reject(codes.PermissionDenied, "policy", "clean", "sets no runtime_pcr"))
		s = newServer(t, serverHCL(n, "", policy(false)))
		attrs, err := attest(t, n, "", s)
		if err != nil {
			t.Fatal(err)
		}
		if attrs.has("policy:clean") || attrs.prefixed("runtime:") || !attrs.has("tpm:runtime_rollback_protected:false") {
			t.Fatalf("after the reset: %v; want no policy:clean, no runtime: selector, tpm:runtime_rollback_protected:false", attrs.GetSelectorValues())
		}
	})
	t.Run("pcr15", func(t *testing.T) {
		n := startTPMNode(t)
		const agentPCR = "runtime_pcr = 15"
		cfg := serverHCL(n, "runtime_pcr = 15", policy(true))
		record(t, n, agentPCR, 15, allowed)
		attrs, err := attest(t, n, agentPCR, newServer(t, cfg))
		if err != nil {
			t.Fatalf("genuine node with only allowed workloads rejected: %v", err)
		}
		for _, sel := range []string{"policy:clean", "tpm:runtime_rollback_protected:true", "runtime:exe:sha256:" + hex.EncodeToString(allowed.ExeSHA256)} {
			if !attrs.has(sel) {
				t.Errorf("genuine node lacks %s: %v", sel, attrs.GetSelectorValues())
			}
		}

		record(t, n, agentPCR, 15, forbidden)
		s := newServer(t, cfg)
		_, err = attest(t, n, agentPCR, s)
		s.want(t, err, reject(codes.PermissionDenied, "policy", "runtime.allowed_exe_sha256", hex.EncodeToString(forbidden.ExeSHA256)))

		err = wipe(t, n, 15)
		if !errors.Is(err, tpm2.TPMRCLocality) {
			t.Fatalf("TPM2_PCR_Reset(15) answered %v, want TPM_RC_LOCALITY", err)
		}
		t.Logf("TPM2_PCR_Reset(15): %v", err)
		s = newServer(t, cfg)
		_, err = attest(t, n, agentPCR, s)
		s.want(t, err, reject(codes.PermissionDenied, "runtime_replay", "pcr15 (tpm.runtime_pcr) is", "the node sent no runtime log"))
	})
}

// agentAttrs reads an attestation's selectors.
type agentAttrs nodeattestorv1.AgentAttributes

func (a *agentAttrs) GetSelectorValues() []string {
	return (*nodeattestorv1.AgentAttributes)(a).GetSelectorValues()
}

func (a *agentAttrs) has(sel string) bool { return slices.Contains(a.GetSelectorValues(), sel) }

func (a *agentAttrs) prefixed(prefix string) bool {
	return slices.ContainsFunc(a.GetSelectorValues(), func(s string) bool { return strings.HasPrefix(s, prefix) })
}
