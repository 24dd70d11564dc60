package spireload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// The x509pop wire messages, as SPIRE's x509pop attestor (agent and server,
// pkg/common/plugin/x509pop at v1.13.3) marshals them with encoding/json:
// byte slices travel base64-encoded, and only the member for the key's
// algorithm is set. The benchmark implements the agent side itself (the
// main module does not link SPIRE), from the protocol:
//
//  1. the agent sends its certificate chain, leaf first (DER);
//  2. the server verifies the chain to its CA bundle and sends a 32-byte
//     challenge nonce;
//  3. the agent picks its own 32-byte nonce and signs
//     SHA-256(challenge nonce || its nonce) with the leaf key (ECDSA: r and
//     s as big-endian bytes);
//  4. the server verifies the signature with the leaf's public key and
//     names the agent spiffe://<td>/spire/agent/x509pop/<SHA-1 of the leaf>.
type (
	popAttestationData struct {
		Certificates [][]byte `json:"certificates"`
	}
	popChallenge struct {
		ECDSASignature *popNonce `json:"ecdsa_signature"`
	}
	popNonce struct {
		Nonce []byte `json:"nonce"`
	}
	popResponse struct {
		ECDSASignature *popECDSAResponse `json:"ecdsa_signature"`
	}
	popECDSAResponse struct {
		Nonce []byte `json:"nonce"`
		R     []byte `json:"r"`
		S     []byte `json:"s"`
	}
)

// popNonceSize is the length of both nonces; SPIRE rejects any other.
const popNonceSize = 32

// popCA issues the x509pop agents' leaf certificates.
type popCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPopCA(now time.Time) (*popCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ccnp-bench x509pop CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &popCA{cert: cert, key: key}, nil
}

// writePEM writes the CA certificate for the server's ca_bundle_path.
func (ca *popCA) writePEM(path string) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644)
}

// issue returns a leaf for one agent: its own key and serial number, so
// its agent ID (the leaf's fingerprint) is its own. SPIRE's server issues
// a challenge only to a leaf whose key usage allows digital signatures.
func (ca *popCA) issue(cn string, serial int64, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// popPayload is the attestation data for a leaf.
func popPayload(leaf *x509.Certificate) ([]byte, error) {
	return json.Marshal(popAttestationData{Certificates: [][]byte{leaf.Raw}})
}

// popAnswer signs the server's challenge with the leaf key.
func popAnswer(key *ecdsa.PrivateKey, challenge []byte) ([]byte, error) {
	var ch popChallenge
	if err := json.Unmarshal(challenge, &ch); err != nil {
		return nil, fmt.Errorf("x509pop challenge: %w", err)
	}
	if ch.ECDSASignature == nil {
		return nil, errors.New("x509pop challenge: no ecdsa_signature challenge for an ECDSA leaf")
	}
	if len(ch.ECDSASignature.Nonce) != popNonceSize {
		return nil, fmt.Errorf("x509pop challenge: nonce is %d bytes, want %d", len(ch.ECDSASignature.Nonce), popNonceSize)
	}
	ours := make([]byte, popNonceSize)
	if _, err := rand.Read(ours); err != nil {
		return nil, err
	}
	digest := popDigest(ch.ECDSASignature.Nonce, ours)
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(popResponse{ECDSASignature: &popECDSAResponse{Nonce: ours, R: r.Bytes(), S: s.Bytes()}})
}

// popDigest is what the agent signs: the server's nonce, then its own.
func popDigest(challenge, response []byte) [32]byte {
	h := sha256.New()
	h.Write(challenge)
	h.Write(response)
	return [32]byte(h.Sum(nil))
}
