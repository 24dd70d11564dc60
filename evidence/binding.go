package evidence

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// NonceSize is the length of a challenge nonce.
const NonceSize = 32

// NewNonce returns NonceSize bytes from crypto/rand for a Challenge.
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("evidence: reading a nonce from crypto/rand: %w", err)
	}
	return n, nil
}

// Binding is the value TDX REPORTDATA and the TPM quote's extraData must
// hold: SHA-512(nonce || SHA-256(helloBytes)).
//
// helloBytes are the exact encoded Payload bytes that carried the Hello:
// the agent hashes what it sent and the server hashes the raw bytes it
// received, never a re-encoding of the decoded message (protobuf encoding is
// not canonical across implementations, and a re-encoding would drop fields
// this version does not know). So nothing in the hello can be swapped once
// the TEE has signed the binding.
//
// The SHA-512 step is cctrusted.ReportData, so the REPORTDATA rule exists
// once in the project.
func Binding(nonce, helloBytes []byte) [cctrusted.ReportDataSize]byte {
	h := sha256.Sum256(helloBytes)
	return cctrusted.ReportData(nonce, h[:])
}

// CheckBinding returns an error matching ErrBinding unless got is
// Binding(nonce, helloBytes).
func CheckBinding(got, nonce, helloBytes []byte) error {
	want := Binding(nonce, helloBytes)
	if subtle.ConstantTimeCompare(got, want[:]) != 1 {
		return fmt.Errorf("%w: evidence binding %x is not SHA-512(nonce || SHA-256(hello)) = %x (stale nonce, or a hello other than the one this session received)",
			ErrBinding, got, want)
	}
	return nil
}
