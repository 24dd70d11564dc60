// Package pki is a simulated Intel SGX/TDX provisioning certification PKI: a root CA,
// a PCK platform CA, a PCK leaf certificate carrying the SGX extension, a TCB signing
// certificate for collateral, CRLs, and the quoting enclave that signs TDX v4 quotes.
//
// Certificates have exactly the shape go-tdx-guest's verify package checks (P-256,
// ECDSA-SHA256, Intel's common names, the SGX extension on a leaf with six
// extensions), so quotes minted here pass the production verification path when, and
// only when, the simulated root is among the verifier's trusted roots.
//
// A simulation is marked as such in three places: every certificate subject carries
// the organizational unit [SimulationOU], every quote header carries [QEVendorID]
// ("CCNP-SIM-NOTINTL") instead of Intel's QE vendor ID, and the platform's FMSPC spells
// "SIM". Private keys live in PKCS#8 PEM files with mode 0600 and are never logged or
// printed.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// Common names that go-tdx-guest requires, letter for letter.
const (
	RootCN       = "Intel SGX Root CA"
	PlatformCACN = "Intel SGX PCK Platform CA"
	PCKCN        = "Intel SGX PCK Certificate"
	TCBSigningCN = "Intel SGX TCB Signing"
)

// RootCRLURL is the CRL distribution point of the simulated root. It is Intel's own
// URL on purpose: go-tdx-guest fetches the root CRL from whatever the root certificate
// names, so a verifier that maps Intel's hosts onto a PCS/PCCS base URL (which it must
// do for real hardware anyway) reaches the simulated PCS without a special case. A
// verifier that fetches it from Intel gets Intel's CRL, whose signature the sim root
// rejects: it fails closed.
const RootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

// PCKCRLURL is the CRL distribution point written into the PCK leaf, as Intel's PCS
// names it (go-tdx-guest derives the URL from the issuer name instead of reading it).
const PCKCRLURL = "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"

// Files of a PKI directory.
const (
	RootCertFile       = "root.pem"
	PlatformCACertFile = "platform-ca.pem"
	PCKCertFile        = "pck.pem"
	TCBSigningCertFile = "tcb-signing.pem"
	PlatformFile       = "platform.json"

	rootKeyFile        = "root.key"
	platformCAKeyFile  = "platform-ca.key"
	pckKeyFile         = "pck.key"
	tcbSigningKeyFile  = "tcb-signing.key"
	attestationKeyFile = "attestation.key"
)

// Validity periods, shaped like Intel's (root for decades, CAs and leaves for years).
const (
	rootValidity = 25 * 365 * 24 * time.Hour
	caValidity   = 15 * 365 * 24 * time.Hour
	leafValidity = 7 * 365 * 24 * time.Hour
	// backdate keeps certificates valid for a verifier whose clock is slightly behind.
	backdate = time.Hour
)

// Authority is a loaded simulated PKI: certificates, their keys, the quoting
// enclave's attestation key and the platform description.
type Authority struct {
	// Platform describes the simulated machine.
	Platform Platform
	// Root is the self-signed "Intel SGX Root CA".
	Root *x509.Certificate
	// PlatformCA is the "Intel SGX PCK Platform CA" under Root.
	PlatformCA *x509.Certificate
	// PCK is the platform's "Intel SGX PCK Certificate" under PlatformCA.
	PCK *x509.Certificate
	// TCBSigning is the "Intel SGX TCB Signing" certificate under Root that signs
	// TCB info and QE identity.
	TCBSigning *x509.Certificate

	rootKey, platformCAKey, pckKey, tcbSigningKey, attestationKey *ecdsa.PrivateKey
}

// Create generates a new PKI for platform p with certificates valid from now, writes
// it into dir (created if missing, mode 0700) and returns it. It refuses to overwrite
// an existing PKI.
func Create(dir string, p Platform, now time.Time) (*Authority, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, rootKeyFile)); err == nil {
		return nil, fmt.Errorf("pki: %s already holds a PKI", dir)
	}
	a, err := generate(p, now)
	if err != nil {
		return nil, err
	}
	if err := a.write(dir); err != nil {
		return nil, err
	}
	return a, nil
}

func generate(p Platform, now time.Time) (*Authority, error) {
	a := &Authority{Platform: p}
	keys := []**ecdsa.PrivateKey{&a.rootKey, &a.platformCAKey, &a.pckKey, &a.tcbSigningKey, &a.attestationKey}
	for _, k := range keys {
		var err error
		if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("pki: generate key: %w", err)
		}
	}
	start := now.Add(-backdate).UTC().Truncate(time.Second)

	rootTmpl, err := caTemplate(RootCN, start, rootValidity, 1)
	if err != nil {
		return nil, err
	}
	if a.Root, err = sign(rootTmpl, rootTmpl, &a.rootKey.PublicKey, a.rootKey); err != nil {
		return nil, fmt.Errorf("pki: root certificate: %w", err)
	}

	caTmpl, err := caTemplate(PlatformCACN, start, caValidity, 0)
	if err != nil {
		return nil, err
	}
	if a.PlatformCA, err = sign(caTmpl, a.Root, &a.platformCAKey.PublicKey, a.rootKey); err != nil {
		return nil, fmt.Errorf("pki: platform CA certificate: %w", err)
	}

	tcbTmpl, err := leafTemplate(TCBSigningCN, start, leafValidity, RootCRLURL)
	if err != nil {
		return nil, err
	}
	if a.TCBSigning, err = sign(tcbTmpl, a.Root, &a.tcbSigningKey.PublicKey, a.rootKey); err != nil {
		return nil, fmt.Errorf("pki: TCB signing certificate: %w", err)
	}

	pckTmpl, err := leafTemplate(PCKCN, start, leafValidity, PCKCRLURL)
	if err != nil {
		return nil, err
	}
	ext, err := sgxExtension(&p)
	if err != nil {
		return nil, err
	}
	pckTmpl.ExtraExtensions = []pkix.Extension{ext}
	if a.PCK, err = sign(pckTmpl, a.PlatformCA, &a.pckKey.PublicKey, a.platformCAKey); err != nil {
		return nil, fmt.Errorf("pki: PCK certificate: %w", err)
	}
	if n := len(a.PCK.Extensions); n != pckExtensionCount {
		return nil, fmt.Errorf("pki: PCK certificate has %d extensions, go-tdx-guest requires %d", n, pckExtensionCount)
	}
	return a, nil
}

// pckExtensionCount is what go-tdx-guest's pcs.PckCertificateExtensions insists on:
// AKI, CRL distribution points, SKI, key usage, basic constraints, SGX extension.
const pckExtensionCount = 6

func subject(cn string) pkix.Name {
	return pkix.Name{
		CommonName:         cn,
		OrganizationalUnit: []string{SimulationOU},
		Organization:       []string{"Intel Corporation"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		Country:            []string{"US"},
	}
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func caTemplate(cn string, start time.Time, validity time.Duration, maxPath int) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               subject(cn),
		NotBefore:             start,
		NotAfter:              start.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPath,
		MaxPathLenZero:        maxPath == 0,
		CRLDistributionPoints: []string{RootCRLURL},
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	return t, nil
}

func leafTemplate(cn string, start time.Time, validity time.Duration, crlURL string) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          sn,
		Subject:               subject(cn),
		NotBefore:             start,
		NotAfter:              start.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true,
		IsCA:                  false,
		CRLDistributionPoints: []string{crlURL},
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}, nil
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	// Go only derives a subject key ID for CAs; Intel's leaves carry one too, and the
	// PCK leaf needs it to reach six extensions.
	if tmpl.SubjectKeyId == nil {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(der)
		tmpl.SubjectKeyId = sum[:20]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// RootPEM returns the root certificate in PEM form: what a verifier puts into its
// trusted roots to accept this simulation.
func (a *Authority) RootPEM() []byte { return certPEM(a.Root) }

// PCKChainPEM returns the PCK leaf, platform CA and root, concatenated in PEM, as
// certification data type 5 carries them in a quote.
func (a *Authority) PCKChainPEM() []byte {
	return concat(certPEM(a.PCK), certPEM(a.PlatformCA), certPEM(a.Root))
}

// TCBSigningChainPEM returns the TCB signing certificate and the root in PEM: the
// issuer chain of TCB info and QE identity.
func (a *Authority) TCBSigningChainPEM() []byte {
	return concat(certPEM(a.TCBSigning), certPEM(a.Root))
}

// PCKCRLIssuerChainPEM returns the platform CA and the root in PEM: the issuer chain of
// the PCK CRL.
func (a *Authority) PCKCRLIssuerChainPEM() []byte {
	return concat(certPEM(a.PlatformCA), certPEM(a.Root))
}

// SignCollateral signs msg with the TCB signing key and returns the signature as
// Intel's PCS encodes it: r || s, 32 bytes each (ECDSA P-256 over SHA-256).
func (a *Authority) SignCollateral(msg []byte) ([]byte, error) {
	return signRaw(a.tcbSigningKey, msg)
}

// CreatePCKCRL issues a PCK CRL under the platform CA listing the given serial numbers.
func (a *Authority) CreatePCKCRL(revoked []*big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	return createCRL(a.PlatformCA, a.platformCAKey, revoked, thisUpdate, nextUpdate)
}

// CreateRootCRL issues a root CA CRL listing the given serial numbers.
func (a *Authority) CreateRootCRL(revoked []*big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	return createCRL(a.Root, a.rootKey, revoked, thisUpdate, nextUpdate)
}

func createCRL(issuer *x509.Certificate, key *ecdsa.PrivateKey, revoked []*big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	if !nextUpdate.After(thisUpdate) {
		return nil, fmt.Errorf("pki: CRL of %q: nextUpdate %v not after thisUpdate %v", issuer.Subject.CommonName, nextUpdate, thisUpdate)
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, sn := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: thisUpdate.UTC()})
	}
	tmpl := &x509.RevocationList{
		SignatureAlgorithm:        x509.ECDSAWithSHA256,
		RevokedCertificateEntries: entries,
		// The number only has to grow between issues; seconds since the epoch do.
		Number:     big.NewInt(thisUpdate.Unix()),
		ThisUpdate: thisUpdate.UTC(),
		NextUpdate: nextUpdate.UTC(),
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CRL of %q: %w", issuer.Subject.CommonName, err)
	}
	return der, nil
}

// signRaw signs SHA-256(msg) and returns r || s, each left-padded to 32 bytes.
func signRaw(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	sum := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return nil, fmt.Errorf("pki: sign: %w", err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func (a *Authority) write(dir string) error {
	for _, k := range []struct {
		file string
		key  *ecdsa.PrivateKey
	}{
		{rootKeyFile, a.rootKey}, {platformCAKeyFile, a.platformCAKey}, {pckKeyFile, a.pckKey},
		{tcbSigningKeyFile, a.tcbSigningKey}, {attestationKeyFile, a.attestationKey},
	} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return fmt.Errorf("pki: encode %s: %w", k.file, err)
		}
		if err := writeNew(filepath.Join(dir, k.file), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		file string
		cert *x509.Certificate
	}{
		{RootCertFile, a.Root}, {PlatformCACertFile, a.PlatformCA}, {PCKCertFile, a.PCK}, {TCBSigningCertFile, a.TCBSigning},
	} {
		if err := writeNew(filepath.Join(dir, c.file), certPEM(c.cert), 0o644); err != nil {
			return err
		}
	}
	pj, err := json.MarshalIndent(&a.Platform, "", "  ")
	if err != nil {
		return fmt.Errorf("pki: encode platform: %w", err)
	}
	return writeNew(filepath.Join(dir, PlatformFile), append(pj, '\n'), 0o644)
}

// writeNew creates path exclusively, writes b and syncs it, so a crash never leaves a
// half-written key that a later Load would trust.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pki: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: close %s: %w", path, err)
	}
	return nil
}

// maxPEMFile bounds every PEM file Load reads; real ones are about 1 KiB.
const maxPEMFile = 64 << 10

// Load reads a PKI that Create wrote into dir and checks that every certificate
// belongs to its key and chains to the root.
func Load(dir string) (*Authority, error) {
	a := &Authority{}
	pb, err := readBounded(filepath.Join(dir, PlatformFile))
	if err != nil {
		return nil, err
	}
	if a.Platform, err = ParsePlatform(pb); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", filepath.Join(dir, PlatformFile), err)
	}
	for _, k := range []struct {
		file string
		key  **ecdsa.PrivateKey
	}{
		{rootKeyFile, &a.rootKey}, {platformCAKeyFile, &a.platformCAKey}, {pckKeyFile, &a.pckKey},
		{tcbSigningKeyFile, &a.tcbSigningKey}, {attestationKeyFile, &a.attestationKey},
	} {
		if *k.key, err = loadKey(filepath.Join(dir, k.file)); err != nil {
			return nil, err
		}
	}
	for _, c := range []struct {
		file string
		cert **x509.Certificate
		key  *ecdsa.PrivateKey
	}{
		{RootCertFile, &a.Root, a.rootKey}, {PlatformCACertFile, &a.PlatformCA, a.platformCAKey},
		{PCKCertFile, &a.PCK, a.pckKey}, {TCBSigningCertFile, &a.TCBSigning, a.tcbSigningKey},
	} {
		p := filepath.Join(dir, c.file)
		if *c.cert, err = loadCert(p); err != nil {
			return nil, err
		}
		pub, ok := (*c.cert).PublicKey.(*ecdsa.PublicKey)
		if !ok || !pub.Equal(c.key.Public()) {
			return nil, fmt.Errorf("pki: %s does not match its private key", p)
		}
	}
	for _, link := range []struct {
		name          string
		child, parent *x509.Certificate
	}{
		{RootCertFile, a.Root, a.Root}, {PlatformCACertFile, a.PlatformCA, a.Root},
		{TCBSigningCertFile, a.TCBSigning, a.Root}, {PCKCertFile, a.PCK, a.PlatformCA},
	} {
		if err := link.child.CheckSignatureFrom(link.parent); err != nil {
			return nil, fmt.Errorf("pki: %s is not signed by %q: %w", filepath.Join(dir, link.name), link.parent.Subject.CommonName, err)
		}
	}
	return a, nil
}

func readBounded(path string) ([]byte, error) {
	b, err := smallfile.Read(path, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return b, nil
}

func loadKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("pki: %s: want exactly one PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		// The parser's error never contains key material.
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("pki: %s: not an ECDSA P-256 key", path)
	}
	return ek, nil
}

func loadCert(path string) (*x509.Certificate, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("pki: %s: want exactly one PEM \"CERTIFICATE\" block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return c, nil
}

// attestationPublicKey is the 64-byte X || Y form a quote carries (the SEC 1
// uncompressed point without its 0x04 prefix).
func (a *Authority) attestationPublicKey() ([]byte, error) {
	b, err := a.attestationKey.PublicKey.Bytes()
	if err != nil || len(b) != 65 {
		return nil, fmt.Errorf("pki: attestation public key: %v", err)
	}
	return b[1:], nil
}
