package imapolicy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

// Key is an ima-sig verification key: RSA, ECDSA on P-256 or P-384, or
// ECDSA on secp256k1 (which Go's crypto/x509 does not parse, hence the
// decred implementation), with the 32-bit key identifier signatures name.
type Key struct {
	// ID is the signature header's keyid this key answers to.
	ID uint32
	// Public is *rsa.PublicKey, *ecdsa.PublicKey or *secp256k1.PublicKey.
	Public any
	// DER is the key's SubjectPublicKeyInfo, for fingerprints and states.
	DER []byte
}

// ErrNotAKey: the bytes are no public key, private key or certificate in
// PEM or DER. ErrUnsupportedKey: they are, but of a type IMA signatures
// cannot use here (Ed25519, DSA, another curve).
var (
	ErrNotAKey        = errors.New("not a public key or certificate")
	ErrUnsupportedKey = errors.New("unsupported key type")
)

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	oidSKID        = asn1.ObjectIdentifier{2, 5, 29, 14}
)

// ParseKey reads a key as Keylime's file_signatures.get_pubkey does: an
// X.509 certificate or a public key, DER or PEM (PEM blocks are tried in
// order; the first that holds a key wins). For a certificate with a subject
// key identifier the key ID is its last four bytes (what evmctl and the
// kernel use); otherwise it is derived from the key (KeyIDv2).
func ParseKey(data []byte) (*Key, error) {
	rest := data
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		k, err := parseKeyDER(b.Bytes)
		if errors.Is(err, ErrNotAKey) {
			continue
		}
		return k, err
	}
	return parseKeyDER(data)
}

func parseKeyDER(der []byte) (*Key, error) {
	if k, err := parseCertKey(der); !errors.Is(err, ErrNotAKey) {
		return k, err
	}
	pub, spki, err := parseSPKI(der)
	if err != nil {
		return nil, err
	}
	id, err := KeyIDv2(pub)
	if err != nil {
		return nil, err
	}
	return &Key{ID: id, Public: pub, DER: spki}, nil
}

// certificate is the part of an X.509 certificate read here: the
// TBSCertificate's fields up to its extensions. crypto/x509 is not used
// for certificates since it refuses the secp256k1 curve.
type certificate struct {
	TBS       tbsCertificate
	SigAlg    pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

type tbsCertificate struct {
	Version    int `asn1:"optional,explicit,default:0,tag:0"`
	Serial     *big.Int
	SigAlg     pkix.AlgorithmIdentifier
	Issuer     asn1.RawValue
	Validity   asn1.RawValue
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	IssuerUID  asn1.BitString   `asn1:"optional,tag:1"`
	SubjectUID asn1.BitString   `asn1:"optional,tag:2"`
	Extensions []pkix.Extension `asn1:"optional,explicit,tag:3"`
}

func parseCertKey(der []byte) (*Key, error) {
	var c certificate
	rest, err := asn1.Unmarshal(der, &c)
	if err != nil || len(rest) != 0 {
		return nil, ErrNotAKey
	}
	pub, spki, err := parseSPKI(c.TBS.PublicKey.FullBytes)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	for _, e := range c.TBS.Extensions {
		if !e.Id.Equal(oidSKID) {
			continue
		}
		var skid []byte
		if _, err := asn1.Unmarshal(e.Value, &skid); err != nil || len(skid) < 4 {
			return nil, fmt.Errorf("certificate: malformed subject key identifier")
		}
		return &Key{ID: binary.BigEndian.Uint32(skid[len(skid)-4:]), Public: pub, DER: spki}, nil
	}
	id, err := KeyIDv2(pub)
	if err != nil {
		return nil, err
	}
	return &Key{ID: id, Public: pub, DER: spki}, nil
}

type spkiASN1 struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// parseSPKI parses a SubjectPublicKeyInfo: secp256k1 itself, everything
// else through crypto/x509.
func parseSPKI(der []byte) (any, []byte, error) {
	var s spkiASN1
	rest, err := asn1.Unmarshal(der, &s)
	if err != nil || len(rest) != 0 {
		return nil, nil, ErrNotAKey
	}
	if s.Algorithm.Algorithm.Equal(oidECPublicKey) {
		var curve asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(s.Algorithm.Parameters.FullBytes, &curve); err == nil && curve.Equal(oidSecp256k1) {
			k, err := secp256k1.ParsePubKey(s.PublicKey.RightAlign())
			if err != nil {
				return nil, nil, fmt.Errorf("%w: secp256k1 point: %v", ErrNotAKey, err)
			}
			return k, der, nil
		}
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return k, der, nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return k, der, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// KeyIDv2 derives a key's identifier as the kernel's and evmctl's
// calc_keyid_v2 and Keylime's ImaKeyring._get_keyidv2 do: the last four
// bytes of SHA-1 over the RSA key in PKCS#1 DER, or over the uncompressed
// EC point.
func KeyIDv2(pub any) (uint32, error) {
	var b []byte
	switch k := pub.(type) {
	case *rsa.PublicKey:
		b = x509.MarshalPKCS1PublicKey(k)
	case *ecdsa.PublicKey:
		ek, err := k.ECDH()
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
		}
		b = ek.Bytes()
	case *secp256k1.PublicKey:
		b = k.SerializeUncompressed()
	default:
		return 0, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint32(h[16:]), nil
}

// verifyDigest checks sig (DER ECDSA, or PKCS#1 v1.5 for RSA) over the
// already computed digest of hash h.
func verifyDigest(pub any, h crypto.Hash, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case *secp256k1.PublicKey:
		s, err := secpecdsa.ParseDERSignature(sig)
		return err == nil && s.Verify(digest, k)
	}
	return false
}
