package azure_test

import (
	"encoding/base64"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rawRSASSA is the RSA signature inside a TPMT_SIGNATURE, as azuretdx
// takes it (Azure's evidence carries it bare).
func rawRSASSA(t *testing.T, sig []byte) []byte {
	t.Helper()
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Signature.RSASSA()
	if err != nil {
		t.Fatal(err)
	}
	return r.Sig.Buffer
}
