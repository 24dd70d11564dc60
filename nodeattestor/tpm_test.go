package nodeattestor_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// tpmNode is a swtpm-backed node: a provisioned TPM whose PCRs hold a real
// firmware log's replay, and a host root exposing that log and an IMA list.
type tpmNode struct{ *simtest.TPMNode }

func startTPMNode(t *testing.T) *tpmNode {
	t.Helper()
	return &tpmNode{simtest.StartTPMNode(t, simtest.Testdata(t, "ima", "mixed.bin"))}
}

func (n *tpmNode) config(akType string) string {
	return n.AgentHCL(akType, "", filepath.Join(n.Base, "state"))
}

// expectedPCRs are the SHA-256 values of PCR0..7, the firmware's PCRs that
// the log fully describes, as the machine that recorded it reported them.
func expectedPCRs(t *testing.T) map[uint32][]byte {
	t.Helper()
	out := map[uint32][]byte{}
	for i := range 8 {
		b, err := hex.DecodeString(simtest.ExpectedPCR(t, i))
		if err != nil {
			t.Fatal(err)
		}
		out[uint32(i)] = b
	}
	return out
}

// checkTPMEvidence does what a server does with TPM evidence, with the
// server-side functions of tee/tpm and the swtpm CA.
func checkTPMEvidence(t *testing.T, n *tpmNode, s *server) {
	t.Helper()
	te := s.ev.GetTpm()
	if s.ev.GetTee() != "tpm" || te == nil || s.ev.GetQuote() != nil {
		t.Fatalf("evidence tee %q, tpm %v, quote %d bytes", s.ev.GetTee(), te != nil, len(s.ev.GetQuote()))
	}
	regs := cctrusted.Registers{}
	for _, b := range te.GetPcrs() {
		for i, v := range b.GetValues() {
			regs.Set(cctrusted.PCR(i).IMR(), cctrusted.Algorithm(b.GetAlg()), v)
		}
	}
	if err := tpmquote.VerifyQuote(te.GetAkPublic(), te.GetQuote(), te.GetSignature(), s.ev.GetBinding(), regs); err != nil {
		t.Fatalf("quote: %v", err)
	}
	for i, want := range expectedPCRs(t) {
		got, ok := regs.Get(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("quoted sha256 PCR%d = %x, the machine had %x", i, got, want)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(n.Prov.CA)
	if _, err := tpmquote.VerifyEKCertificate(te.GetEkCertificate(), te.GetEkPublic(), x509.VerifyOptions{Roots: roots}); err != nil {
		t.Errorf("EK certificate: %v", err)
	}
	if !bytes.Equal(s.logs.TPM, n.Firmware) || !bytes.Equal(s.logs.IMA, n.IMA) {
		t.Error("logs differ from the node's files")
	}
	if s.logs.CCEL != nil || s.ev.GetCcelTable() != nil {
		t.Error("a TPM node sent a CCEL")
	}
}

func TestAttestTPM(t *testing.T) {
	n := startTPMNode(t)
	for _, akType := range []string{"ecc", "rsa"} {
		t.Run(akType, func(t *testing.T) {
			l := load(t)
			l.configure(t, n.config(akType))
			s := l.begin(t)
			if err := s.recvHello(); err != nil {
				t.Fatal(err)
			}
			if s.hello.GetTee() != "tpm" || s.hello.GetInstanceId() != "" {
				t.Errorf("hello tee %q, instance id %q: a TPM node is named by its EK", s.hello.GetTee(), s.hello.GetInstanceId())
			}
			for _, c := range []string{evidence.CapCredentialActivation, evidence.CapLogTPM, evidence.CapLogIMA, evidence.CapLogRuntime} {
				if !slices.Contains(s.hello.GetCaps(), c) {
					t.Errorf("caps %v lack %s", s.hello.GetCaps(), c)
				}
			}
			if slices.Contains(s.hello.GetCaps(), evidence.CapLogCCEL) {
				t.Errorf("caps %v claim a CCEL", s.hello.GetCaps())
			}
			s.challenge(allLogs, 0)
			if err := s.recvEvidence(); err != nil {
				t.Fatal(err)
			}
			checkTPMEvidence(t, n, s)
			ek := n.Prov.EKs[swtpm.KeyType(akType)]
			if !bytes.Equal(s.ev.GetTpm().GetEkPublic(), ek.Public) {
				t.Errorf("EK public is not the provisioned %s EK", akType)
			}

			// Credential activation: only this TPM, with this AK loaded,
			// recovers the secret.
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				t.Fatal(err)
			}
			akName, err := tpmquote.AKName(s.ev.GetTpm().GetAkPublic())
			if err != nil {
				t.Fatal(err)
			}
			blob, encSecret, err := tpmquote.MakeCredential(s.ev.GetTpm().GetEkPublic(), akName, secret)
			if err != nil {
				t.Fatal(err)
			}
			s.send(evidence.NewChallenge(&evidencepb.Challenge{CredentialBlob: blob, EncryptedSecret: encSecret}))
			b, err := s.recvResponse()
			if err != nil {
				t.Fatal(err)
			}
			as, err := evidence.DecodeActivatedSecret(b, evidence.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(as.GetSecret(), secret) {
				t.Errorf("activated secret %x, want %x", as.GetSecret(), secret)
			}
			s.end()
			if _, err := os.Stat(filepath.Join(n.Base, "state", "instance_id")); !os.IsNotExist(err) {
				t.Errorf("a TPM node created an instance id file: %v", err)
			}
		})
	}
}

// TestAttestTPMActivationOtherKey: a credential bound to another key's name
// is refused by the TPM, and the plugin says so.
func TestAttestTPMActivationOtherKey(t *testing.T) {
	n := startTPMNode(t)
	l := load(t)
	l.configure(t, n.config("ecc"))
	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	s.challenge(nil, 0)
	if err := s.recvEvidence(); err != nil {
		t.Fatal(err)
	}
	// A name of the right form (SHA-256 nameAlg) that is not the AK's.
	other := sha256.Sum256([]byte("not the AK"))
	name := append([]byte{0x00, 0x0b}, other[:]...)
	blob, encSecret, err := tpmquote.MakeCredential(s.ev.GetTpm().GetEkPublic(), name, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	s.send(evidence.NewChallenge(&evidencepb.Challenge{CredentialBlob: blob, EncryptedSecret: encSecret}))
	_, err = s.recvResponse()
	wantStatus(t, err, codes.Internal, "tpm activate credential")
}

// TestAttestTPMNoActivation: a server that trusts the AK otherwise ends the
// stream after the evidence; the plugin finishes without error.
func TestAttestTPMNoActivation(t *testing.T) {
	n := startTPMNode(t)
	l := load(t)
	l.configure(t, n.config("ecc"))
	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	s.challenge(nil, 0)
	if err := s.recvEvidence(); err != nil {
		t.Fatal(err)
	}
	if err := s.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	s.end()
}
