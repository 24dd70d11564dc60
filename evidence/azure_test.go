package evidence

import (
	"errors"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// azureEvidence is well-formed azure_tdx evidence (its contents are not
// verified here).
func azureEvidence() *evidencepb.Evidence {
	return &evidencepb.Evidence{
		Tee: "azure_tdx", Binding: make([]byte, 64),
		HclReport: []byte("HCLA"), Quote: []byte{4, 0},
		Tpm: &evidencepb.TPMEvidence{Quote: []byte{1}, Signature: []byte{2}, Pcrs: []*evidencepb.PCRBank{{Alg: 0x0b, Values: map[uint32][]byte{0: make([]byte, 32)}}}},
	}
}

func TestMaxHCLReportIsAzureTDXs(t *testing.T) {
	if MaxHCLReport != azuretdx.MaxHCLReportSize {
		t.Fatalf("MaxHCLReport %d, azuretdx.MaxHCLReportSize %d", MaxHCLReport, azuretdx.MaxHCLReportSize)
	}
}

func TestValidateAzureEvidence(t *testing.T) {
	if err := validate(NewEvidence(azureEvidence())); err != nil {
		t.Fatalf("well-formed azure_tdx evidence: %v", err)
	}
	if err := validate(NewHello(&evidencepb.Hello{Tee: "azure_tdx"})); err != nil {
		t.Fatalf("azure_tdx hello: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*evidencepb.Evidence)
		field  string
	}{
		{"no HCL report", func(e *evidencepb.Evidence) { e.HclReport = nil }, "evidence.hcl_report"},
		{"HCL report over its bound", func(e *evidencepb.Evidence) { e.HclReport = make([]byte, MaxHCLReport+1) }, "evidence.hcl_report"},
		{"no TD quote", func(e *evidencepb.Evidence) { e.Quote = nil }, "evidence.quote"},
		{"no vTPM quote", func(e *evidencepb.Evidence) { e.Tpm = nil }, "evidence.tpm"},
		{"no vTPM signature", func(e *evidencepb.Evidence) { e.Tpm.Signature = nil }, "evidence.tpm.signature"},
		{"no PCRs", func(e *evidencepb.Evidence) { e.Tpm.Pcrs = nil }, "evidence.tpm.pcrs"},
		{"an EK", func(e *evidencepb.Evidence) { e.Tpm.EkPublic = []byte{1} }, "evidence.tpm.ek_public"},
		{"an EK certificate", func(e *evidencepb.Evidence) { e.Tpm.EkCertificate = []byte{1} }, "evidence.tpm.ek_certificate"},
		{"an AK certificate", func(e *evidencepb.Evidence) { e.Tpm.AkCertificateChain = [][]byte{{1}} }, "evidence.tpm.ak_certificate_chain"},
		{"a CCEL", func(e *evidencepb.Evidence) { e.CcelTable = []byte{1} }, "evidence.ccel"},
		{"an HCL report from a tdx node", func(e *evidencepb.Evidence) { e.Tee, e.Tpm = "tdx", nil }, "evidence.hcl_report"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := azureEvidence()
			tc.mutate(e)
			err := validate(NewEvidence(e))
			var me *MalformedError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v, want a malformed %s", err, tc.field)
			}
		})
	}
}
