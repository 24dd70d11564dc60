package nodeattestor_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/test/azuresim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

func startParavisor(t *testing.T) *azuresim.Paravisor {
	t.Helper()
	return azuresim.Start(t, azuresim.Options{
		FirmwareLog: simtest.Testdata(t, "tpmlog", simtest.TPMLogName),
		IMALog:      simtest.Testdata(t, "ima", "mixed.bin"),
	})
}

// azureEvidence is the agent's evidence as azuretdx reads it: the vTPM
// quote's bare RSA signature and the SHA-256 PCRs in order.
func azureEvidence(t *testing.T, ev *evidencepb.Evidence) *azuretdx.Evidence {
	t.Helper()
	te := ev.GetTpm()
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](te.GetSignature())
	if err != nil {
		t.Fatal(err)
	}
	rsassa, err := sig.Signature.RSASSA()
	if err != nil {
		t.Fatalf("the vTPM quote is not signed RSASSA: %v", err)
	}
	out := &azuretdx.Evidence{HCLReport: ev.GetHclReport(), TDQuote: ev.GetQuote(),
		TPMQuote: azuretdx.TPMQuote{Message: te.GetQuote(), Signature: rsassa.Sig.Buffer}}
	for _, b := range te.GetPcrs() {
		if cctrusted.Algorithm(b.GetAlg()) != cctrusted.AlgSHA256 {
			t.Errorf("bank %v sent", cctrusted.Algorithm(b.GetAlg()))
			continue
		}
		for i := range uint32(cctrusted.NumPCRs) {
			out.TPMQuote.PCRs = append(out.TPMQuote.PCRs, b.GetValues()[i])
		}
	}
	return out
}

// TestAttestAzureTDX runs the agent plugin, over the real plugin transport,
// against the simulated paravisor (detected, and named): the hello and the
// evidence follow the wire contract, and the evidence passes
// azuretdx.Verify with appraisal.TDX under the simulated root, and fails it
// for another nonce.
func TestAttestAzureTDX(t *testing.T) {
	p := startParavisor(t)
	verify, err := p.TDQuoteVerifier()
	if err != nil {
		t.Fatal(err)
	}
	for _, tee := range []string{"azure_tdx", "auto"} {
		t.Run(tee, func(t *testing.T) {
			l := load(t)
			l.configure(t, p.AgentConfig(tee, t.TempDir()))
			s := l.begin(t)
			if err := s.recvHello(); err != nil {
				t.Fatal(err)
			}
			if s.hello.GetTee() != "azure_tdx" || s.hello.GetInstanceId() != "" {
				t.Errorf("hello tee %q, instance id %q", s.hello.GetTee(), s.hello.GetInstanceId())
			}
			for _, c := range []string{evidence.CapLogTPM, evidence.CapLogIMA, evidence.CapLogRuntime} {
				if !slices.Contains(s.hello.GetCaps(), c) {
					t.Errorf("caps %v lack %s", s.hello.GetCaps(), c)
				}
			}
			for _, c := range []string{evidence.CapLogCCEL, evidence.CapCredentialActivation} {
				if slices.Contains(s.hello.GetCaps(), c) {
					t.Errorf("caps %v offer %s", s.hello.GetCaps(), c)
				}
			}
			s.challenge(allLogs, 0)
			if err := s.recvEvidence(); err != nil {
				t.Fatal(err)
			}
			ev := s.ev
			te := ev.GetTpm()
			if ev.GetTee() != "azure_tdx" || !bytes.Equal(ev.GetHclReport(), p.HCLReport()) || len(ev.GetQuote()) == 0 {
				t.Fatalf("evidence tee %q, hcl report %d bytes (the NV index's: %v), quote %d bytes",
					ev.GetTee(), len(ev.GetHclReport()), bytes.Equal(ev.GetHclReport(), p.HCLReport()), len(ev.GetQuote()))
			}
			if len(te.GetEkPublic()) != 0 || len(te.GetEkCertificate()) != 0 || len(te.GetPcrs()) != 1 || len(te.GetPcrs()[0].GetValues()) != 24 {
				t.Errorf("tpm evidence: ek %d bytes, ek cert %d bytes, %d banks", len(te.GetEkPublic()), len(te.GetEkCertificate()), len(te.GetPcrs()))
			}
			if !bytes.Equal(s.logs.TPM, simtest.Testdata(t, "tpmlog", simtest.TPMLogName)) || s.logs.IMA == nil || s.logs.CCEL != nil {
				t.Error("logs: want the firmware log and IMA as the TPM flow sends them, no CCEL")
			}
			ctx := context.Background()
			res, err := azuretdx.Verify(ctx, azureEvidence(t, ev), ev.GetBinding(), azuretdx.Options{VerifyTDQuote: verify})
			if err != nil {
				t.Fatalf("azuretdx.Verify: %v", err)
			}
			if !res.Runtime.AK.Equal(p.AK()) {
				t.Error("verified AK is not the paravisor's")
			}
			other := bytes.Clone(ev.GetBinding())
			other[0] ^= 1
			_, err = azuretdx.Verify(ctx, azureEvidence(t, ev), other, azuretdx.Options{VerifyTDQuote: verify})
			if e, ok := err.(*azuretdx.Error); !ok || e.Check != azuretdx.CheckTPMNonce {
				t.Fatalf("Verify with another nonce = %v, want a %s failure", err, azuretdx.CheckTPMNonce)
			}
			s.end()
		})
	}
}

// TestAttackAzureCredentialActivation: a server (or whoever speaks for it)
// sends an Azure node a credential activation challenge, to make the vTPM's
// EK decrypt for it. The wire contract has no activation round for
// azure_tdx; the agent refuses.
func TestAttackAzureCredentialActivation(t *testing.T) {
	p := startParavisor(t)
	l := load(t)
	l.configure(t, p.AgentConfig("azure_tdx", t.TempDir()))
	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	s.challenge(nil, 0)
	if err := s.recvEvidence(); err != nil {
		t.Fatal(err)
	}
	s.send(evidence.NewChallenge(&evidencepb.Challenge{CredentialBlob: []byte("blob"), EncryptedSecret: []byte("secret")}))
	_, err := s.recvResponse()
	wantStatus(t, err, codes.InvalidArgument, "credential activation asked of an azure_tdx node")
}

// A metadata service that fails makes attestation fail with a code SPIRE
// retries, naming the URL and the status.
func TestAttestAzureIMDSDown(t *testing.T) {
	p := startParavisor(t)
	p.SetIMDSHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	}))
	l := load(t)
	l.configure(t, p.AgentConfig("azure_tdx", t.TempDir()))
	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	s.challenge(nil, 0)
	_, err := s.recvResponse()
	wantStatus(t, err, codes.Unavailable, "azure_tdx hcl report and td quote", p.IMDSURL(), "HTTP 503")
}
