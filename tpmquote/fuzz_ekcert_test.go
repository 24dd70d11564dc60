package tpmquote_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// FuzzVerifyEKCertificate feeds mutated EK certificates and EK public
// areas to VerifyEKCertificate under a CA made for the test. The seed is a
// certificate shaped as TPM vendors issue them (critical subject
// alternative name holding only a directoryName with the TPM attributes)
// for the real EK public area in testdata. Whatever is accepted must chain
// to the CA by Go's own x509 verification of the returned certificate.
func FuzzVerifyEKCertificate(f *testing.F) {
	ekPub, err := os.ReadFile(filepath.Join("testdata", "ek-ecc.pub"))
	if err != nil {
		f.Fatal(err)
	}
	key, err := tpmquote.ParsePublic(ekPub)
	if err != nil {
		f.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fuzz EK CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		f.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		f.Fatal(err)
	}
	// SAN: GeneralNames { [4] directoryName: TPM manufacturer, model,
	// version (TCG EK credential profile OIDs 2.23.133.2.1..3) }.
	attr := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	dn, err := asn1.Marshal(pkix.RDNSequence{
		{attr(asn1.ObjectIdentifier{2, 23, 133, 2, 1}, "id:53574D20")},
		{attr(asn1.ObjectIdentifier{2, 23, 133, 2, 2}, "swtpm")},
		{attr(asn1.ObjectIdentifier{2, 23, 133, 2, 3}, "id:20191023")},
	})
	if err != nil {
		f.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dn}})
	if err != nil {
		f.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage:        x509.KeyUsageKeyAgreement,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key, caKey)
	if err != nil {
		f.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := tpmquote.VerifyEKCertificate(der, ekPub, x509.VerifyOptions{Roots: roots}); err != nil {
		f.Fatalf("seed certificate refused: %v", err)
	}
	f.Add(der, ekPub)
	f.Add(der, []byte(nil))
	f.Add(caDER, ekPub)
	f.Fuzz(func(t *testing.T, der, ekPub []byte) {
		cert, err := tpmquote.VerifyEKCertificate(der, ekPub, x509.VerifyOptions{Roots: roots})
		if err != nil {
			return
		}
		if err := cert.CheckSignatureFrom(ca); err != nil {
			t.Fatalf("accepted a certificate the CA did not sign: %v", err)
		}
	})
}
