package swtpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// KeyType names an endorsement key algorithm.
type KeyType string

// The EK types of the TCG EK Credential Profile's default templates.
const (
	RSA KeyType = "rsa" // RSA 2048, template L-1, certificate at NV 0x01c00002
	ECC KeyType = "ecc" // ECC NIST P-256, template L-2, certificate at NV 0x01c0000a
)

// NV indices of EK certificates (TCG EK Credential Profile 2.0, 2.2.1.4).
const (
	EKCertNVIndexRSA uint32 = 0x01c00002
	EKCertNVIndexECC uint32 = 0x01c0000a
)

// Persistent handles the EKs are stored at (TCG Provisioning Guidance).
const (
	EKHandleRSA uint32 = 0x81010001
	EKHandleECC uint32 = 0x81010002
)

// Files Provision writes into the CA directory.
const (
	CACertFile = "ek-ca.pem"
	CAKeyFile  = "ek-ca-key.pem"
)

// TCG OIDs used in EK certificates (TCG EK Credential Profile 2.0, 3.2).
var (
	oidSAN             = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	// OIDEKCertificate is the extended key usage tcg-kp-EKCertificate. Go's
	// x509 does not know it: verify EK chains with x509.ExtKeyUsageAny.
	OIDEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
)

// ProvisionOptions chooses what Provision creates.
type ProvisionOptions struct {
	// EKs lists the endorsement keys to create and certify (default RSA and ECC).
	EKs []KeyType
	// CADir holds the simulated EK CA (default: the TPM's state directory).
	// An existing CA there is reused so several TPMs can share one root.
	CADir string
	// Manufacturer, Model and Version go into the certificate's subject
	// alternative name as TPM attributes (defaults: libtpms' "IBM" vendor id,
	// "swtpm", "id:00000000").
	Manufacturer, Model, Version string
}

// EK is one provisioned endorsement key.
type EK struct {
	Type KeyType
	// Handle is the persistent handle the EK was stored at.
	Handle uint32
	// NVIndex holds Cert's DER bytes in the TPM.
	NVIndex uint32
	// Public is the TPMT_PUBLIC area as the TPM returned it.
	Public []byte
	// PublicKey is the key itself.
	PublicKey crypto.PublicKey
	// Cert is the EK certificate written to NVIndex.
	Cert *x509.Certificate
}

// Provisioned is what Provision created.
type Provisioned struct {
	// CA is the simulated EK CA's certificate; CAPath is its PEM file.
	CA     *x509.Certificate
	CAPath string
	// EKs by type.
	EKs map[KeyType]*EK
}

// Provision creates the requested EKs from the TCG default templates,
// persists them at the reserved handles, issues each an EK certificate from
// a simulated EK CA and writes the certificate (DER) into the standard NV
// index, as a TPM manufacturer would. The TPM must not have another client
// connected (swtpm serves one connection at a time).
func Provision(ctx context.Context, t *TPM, opts ProvisionOptions) (*Provisioned, error) {
	if len(opts.EKs) == 0 {
		opts.EKs = []KeyType{RSA, ECC}
	}
	if opts.CADir == "" {
		opts.CADir = t.Dir()
	}
	if opts.Manufacturer == "" {
		opts.Manufacturer = "id:49424D00"
	}
	if opts.Model == "" {
		opts.Model = "swtpm"
	}
	if opts.Version == "" {
		opts.Version = "id:00000000"
	}
	caCert, caKey, caPath, err := loadOrCreateCA(opts.CADir)
	if err != nil {
		return nil, err
	}
	rw, err := t.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = rw.(*framedConn).SetDeadline(d)
	}

	out := &Provisioned{CA: caCert, CAPath: caPath, EKs: make(map[KeyType]*EK)}
	for _, typ := range opts.EKs {
		ek, err := provisionEK(rw, typ, caCert, caKey, opts)
		if err != nil {
			return nil, fmt.Errorf("swtpm: provisioning %s EK: %w", typ, err)
		}
		out.EKs[typ] = ek
	}
	return out, nil
}

func provisionEK(rw io.ReadWriter, typ KeyType, caCert *x509.Certificate, caKey crypto.Signer, opts ProvisionOptions) (*EK, error) {
	var (
		key      *client.Key
		err      error
		ek       = &EK{Type: typ}
		keyUsage x509.KeyUsage
	)
	switch typ {
	case RSA:
		key, err = client.EndorsementKeyRSA(rw)
		ek.Handle, ek.NVIndex, keyUsage = EKHandleRSA, EKCertNVIndexRSA, x509.KeyUsageKeyEncipherment
	case ECC:
		key, err = client.EndorsementKeyECC(rw)
		ek.Handle, ek.NVIndex, keyUsage = EKHandleECC, EKCertNVIndexECC, x509.KeyUsageKeyAgreement
	default:
		return nil, fmt.Errorf("unknown EK type %q (want rsa or ecc)", typ)
	}
	if err != nil {
		return nil, fmt.Errorf("creating EK: %w", err)
	}
	defer key.Close()
	if ek.Public, err = key.PublicArea().Encode(); err != nil {
		return nil, fmt.Errorf("encoding EK public area: %w", err)
	}
	ek.PublicKey = key.PublicKey()

	san, err := tpmSAN(opts.Manufacturer, opts.Model, opts.Version)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// EK certificates have an empty subject; the TPM is named in the
		// critical subject alternative name instead.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              keyUsage,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{OIDEKCertificate},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, ek.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("issuing EK certificate: %w", err)
	}
	if ek.Cert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	if err := writeNV(transport.FromReadWriter(rw), ek.NVIndex, der); err != nil {
		return nil, fmt.Errorf("writing EK certificate to NV 0x%08x: %w", ek.NVIndex, err)
	}
	return ek, nil
}

// tpmSAN encodes GeneralNames{directoryName{manufacturer, model, version}}.
func tpmSAN(manufacturer, model, version string) ([]byte, error) {
	name, err := asn1.Marshal(pkix.RDNSequence{pkix.RelativeDistinguishedNameSET{
		{Type: oidTPMManufacturer, Value: manufacturer},
		{Type: oidTPMModel, Value: model},
		{Type: oidTPMVersion, Value: version},
	}})
	if err != nil {
		return nil, fmt.Errorf("encoding TPM SAN: %w", err)
	}
	// directoryName is [4] EXPLICIT Name.
	return asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
}

// nvChunk stays below every TPM's TPM_PT_NV_BUFFER_MAX.
const nvChunk = 512

// writeNV (re)defines a platform-created NV index shaped like a
// manufacturer's EK certificate index and writes data into it.
func writeNV(tpm transport.TPM, index uint32, data []byte) error {
	if len(data) > 0xffff {
		return fmt.Errorf("%d bytes do not fit an NV index", len(data))
	}
	h := tpm2.TPMHandle(index)
	if rsp, err := (tpm2.NVReadPublic{NVIndex: h}).Execute(tpm); err == nil {
		_, err := tpm2.NVUndefineSpace{
			AuthHandle: tpm2.TPMRHPlatform,
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: rsp.NVName},
		}.Execute(tpm)
		if err != nil {
			return fmt.Errorf("removing the previous index: %w", err)
		}
	}
	def := tpm2.NVDefineSpace{
		AuthHandle: tpm2.TPMRHPlatform,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: h,
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true,
				NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary,
			},
			DataSize: uint16(len(data)),
		}),
	}
	if _, err := def.Execute(tpm); err != nil {
		return fmt.Errorf("defining the index: %w", err)
	}
	for off := 0; off < len(data); off += nvChunk {
		// The index's name changes once written (TPMA_NV_WRITTEN): ask the TPM.
		pub, err := (tpm2.NVReadPublic{NVIndex: h}).Execute(tpm)
		if err != nil {
			return err
		}
		end := min(off+nvChunk, len(data))
		_, err = tpm2.NVWrite{
			AuthHandle: tpm2.TPMRHPlatform,
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: pub.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			return fmt.Errorf("writing bytes %d..%d: %w", off, end, err)
		}
	}
	return nil
}

// loadOrCreateCA reuses the CA in dir or creates a new self-signed P-256 one.
func loadOrCreateCA(dir string) (*x509.Certificate, crypto.Signer, string, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		cert, key, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, nil, "", fmt.Errorf("swtpm: EK CA in %s: %w", dir, err)
		}
		return cert, key, certPath, nil
	}
	if !errors.Is(cerr, os.ErrNotExist) && cerr != nil {
		return nil, nil, "", fmt.Errorf("swtpm: %w", cerr)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, "", fmt.Errorf("swtpm: CA dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ccnp-spire simulated EK CA (not trusted)", Organization: []string{"ccnp-spire test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, "", fmt.Errorf("swtpm: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, "", fmt.Errorf("swtpm: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, certPath, err
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("no PEM block in the CA certificate or key file")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("CA key is a %T, not a signer", k)
	}
	return cert, signer, nil
}

// WriteNV (re)defines NV index idx as a platform-created index (as a
// manufacturer's or a paravisor's) and writes data into it. No other client
// may be connected.
func (t *TPM) WriteNV(ctx context.Context, idx uint32, data []byte) error {
	rw, err := t.Dial(ctx)
	if err != nil {
		return err
	}
	defer rw.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = rw.(*framedConn).SetDeadline(d)
	}
	if err := writeNV(transport.FromReadWriter(rw), idx, data); err != nil {
		return fmt.Errorf("swtpm: NV index 0x%08x: %w", idx, err)
	}
	return nil
}
