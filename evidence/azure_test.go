package evidence_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// azureEv is well-formed azure_tdx evidence: a vTPM quote without an EK
// (the TD report vouches for the AK), the TD quote and the HCL report.
func azureEv() *evidencepb.Evidence {
	return &evidencepb.Evidence{
		Tee: "azure_tdx", Binding: bytes.Repeat([]byte{1}, 64),
		Quote: []byte("td quote"), HclReport: []byte("HCLA..."),
		Tpm: &evidencepb.TPMEvidence{AkPublic: []byte("ak"), Quote: []byte("q"), Signature: []byte("s"),
			Pcrs: []*evidencepb.PCRBank{{Alg: 0x0b, Values: map[uint32][]byte{0: make([]byte, 32)}}}},
	}
}

func TestAzureEvidenceShape(t *testing.T) {
	roundTrip := func(e *evidencepb.Evidence) error {
		b, err := evidence.Encode(evidence.NewEvidence(e))
		if err != nil {
			return err
		}
		_, err = evidence.DecodeEvidence(b, evidence.DefaultLimits())
		return err
	}
	if err := roundTrip(azureEv()); err != nil {
		t.Fatalf("well-formed azure_tdx evidence: %v", err)
	}
	for _, tt := range []struct {
		name   string
		mutate func(e *evidencepb.Evidence)
		want   string
	}{
		{"no hcl report", func(e *evidencepb.Evidence) { e.HclReport = nil }, "must send its hcl_report"},
		{"no td quote", func(e *evidencepb.Evidence) { e.Quote = nil }, "must send its hcl_report, the TD quote"},
		{"no vtpm quote", func(e *evidencepb.Evidence) { e.Tpm = nil }, "vTPM's tpm evidence"},
		{"oversized hcl report", func(e *evidencepb.Evidence) { e.HclReport = make([]byte, 16<<10+1) }, "evidence.hcl_report"},
		{"hcl report on a tpm node", func(e *evidencepb.Evidence) {
			e.Tee, e.Quote, e.Tpm.EkPublic = "tpm", nil, []byte("ek")
		}, "only azure_tdx nodes have one"},
		{"tpm node without ek", func(e *evidencepb.Evidence) { e.Tee, e.Quote, e.HclReport = "tpm", nil, nil }, "needs ek_public or ek_certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := azureEv()
			tt.mutate(e)
			err := roundTrip(e)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
