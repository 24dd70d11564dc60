package tpmquote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// These tests take their quotes, keys and EK certificates from the agent's
// provider on swtpm: what the verifier must accept is what a real TPM
// produces, and every tampering of it must fail the named check.

func open(t testing.TB, sw *swtpm.TPM, opts tpm.Options) *tpm.Provider {
	t.Helper()
	opts.Device = sw.Addr()
	p, err := tpm.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func wantCheck(t *testing.T, err error, check string) *tpmquote.QuoteError {
	t.Helper()
	var qe *tpmquote.QuoteError
	if !errors.As(err, &qe) {
		t.Fatalf("err = %v, want a tpmquote.QuoteError for check %s", err, check)
	}
	if qe.Check != check {
		t.Fatalf("failed check %q (%v), want %q", qe.Check, err, check)
	}
	return qe
}

func TestReportVerify(t *testing.T) {
	for _, akType := range []string{"ecc", "rsa"} {
		t.Run(akType, func(t *testing.T) {
			sw := swtpm.StartT(t)
			p := open(t, sw, tpm.Options{AKType: akType})
			ctx := context.Background()
			d := sha256.Sum256([]byte("runtime event"))
			if err := p.Extend(ctx, 23, cctrusted.AlgSHA256, d[:]); err != nil {
				t.Fatal(err)
			}
			nonce, ud := []byte("server nonce"), []byte("hello digest")
			r, err := p.Report(ctx, nonce, ud)
			if err != nil {
				t.Fatal(err)
			}
			rd := cctrusted.ReportData(nonce, ud)
			if r.TEE != cctrusted.TEETPM || !bytes.Equal(r.ReportData, rd[:]) {
				t.Fatalf("report %v %x", r.TEE, r.ReportData)
			}
			if len(r.Registers) != 24 {
				t.Fatalf("%d registers quoted, want 24", len(r.Registers))
			}
			akPub, err := p.AttestationKeyPublic()
			if err != nil {
				t.Fatal(err)
			}
			if err := tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, rd[:], r.Registers); err != nil {
				t.Fatal(err)
			}
			checkTampering(t, akPub, r, rd[:])

			// An AK of another TPM: its signature check must fail.
			other := open(t, swtpm.StartT(t), tpm.Options{AKType: akType})
			otherPub, _ := other.AttestationKeyPublic()
			wantCheck(t, tpmquote.VerifyQuote(otherPub, r.Quote, r.Signature, rd[:], r.Registers), tpmquote.CheckSignature)
		})
	}
}

// checkTampering flips each input of a valid quote and expects the named
// check to fail.
func checkTampering(t *testing.T, akPub []byte, r *cctrusted.Report, rd []byte) {
	t.Helper()
	clone := func(b []byte) []byte { return bytes.Clone(b) }
	cloneRegs := func() cctrusted.Registers {
		out := make(cctrusted.Registers)
		for m, banks := range r.Registers {
			for a, v := range banks {
				out.Set(m, a, v)
			}
		}
		return out
	}

	otherRD := cctrusted.ReportData([]byte("another nonce"), nil)
	wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, otherRD[:], r.Registers), tpmquote.CheckExtraData)

	sig := clone(r.Signature)
	sig[len(sig)-1] ^= 1
	wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, sig, rd, r.Registers), tpmquote.CheckSignature)

	att := clone(r.Quote)
	att[len(att)-1] ^= 1 // a byte of the quoted PCR digest
	wantCheck(t, tpmquote.VerifyQuote(akPub, att, r.Signature, rd, r.Registers), tpmquote.CheckSignature)

	regs := cloneRegs()
	v, _ := regs.Get(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256)
	v = clone(v)
	v[0] ^= 1
	regs.Set(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256, v)
	qe := wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), tpmquote.CheckPCRDigest)
	if !strings.Contains(qe.Error(), "sha256 pcrs 0-23") {
		t.Errorf("digest error does not name the selection: %v", qe)
	}

	regs = cloneRegs()
	delete(regs, cctrusted.PCR(5).IMR())
	qe = wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), tpmquote.CheckPCRSelection)
	if qe.IMR != cctrusted.PCR(5).IMR() || qe.Alg != cctrusted.AlgSHA256 || !strings.Contains(qe.Error(), "pcr5 (sha256)") {
		t.Errorf("missing PCR error = %v", qe)
	}

	regs = cloneRegs()
	regs.Set(cctrusted.PCR(3).IMR(), cctrusted.AlgSHA1, make([]byte, 20))
	qe = wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), tpmquote.CheckPCRSelection)
	if qe.IMR != cctrusted.PCR(3).IMR() || qe.Alg != cctrusted.AlgSHA1 {
		t.Errorf("unquoted PCR error = %v", qe)
	}

	regs = cloneRegs()
	regs.Set(cctrusted.PCR(9).IMR(), cctrusted.AlgSHA256, make([]byte, 31))
	wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), tpmquote.CheckPCRSelection)

	// An AK that is not restricted could have signed anything.
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPub)
	if err != nil {
		t.Fatal(err)
	}
	pub.ObjectAttributes.Restricted = false
	wantCheck(t, tpmquote.VerifyQuote(tpm2.Marshal(*pub), r.Quote, r.Signature, rd, r.Registers), tpmquote.CheckAK)
	wantCheck(t, tpmquote.VerifyQuote(append(clone(akPub), 0), r.Quote, r.Signature, rd, r.Registers), tpmquote.CheckAK)
	wantCheck(t, tpmquote.VerifyQuote(nil, r.Quote, r.Signature, rd, r.Registers), tpmquote.CheckAK)
	wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, nil, rd, r.Registers), tpmquote.CheckSignature)
	wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote[:10], r.Signature, rd, r.Registers), tpmquote.CheckSignature)
}

func TestReportMultiBank(t *testing.T) {
	banks := []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384}
	p := open(t, swtpm.StartT(t), tpm.Options{QuoteBanks: banks, QuotePCRs: []cctrusted.PCR{0, 7, 14, 23}})
	r, err := p.Report(context.Background(), []byte("n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range r.Registers {
		n += len(b)
	}
	if n != 12 {
		t.Fatalf("%d values quoted, want 4 PCRs x 3 banks", n)
	}
	akPub, _ := p.AttestationKeyPublic()
	if err := tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
		t.Fatal(err)
	}
	delete(r.Registers[cctrusted.PCR(14).IMR()], cctrusted.AlgSHA384)
	qe := wantCheck(t, tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers), tpmquote.CheckPCRSelection)
	if qe.IMR != cctrusted.PCR(14).IMR() || qe.Alg != cctrusted.AlgSHA384 {
		t.Fatalf("error names %v %v", qe.IMR, qe.Alg)
	}
}

func TestMakeCredentialRejects(t *testing.T) {
	sw := swtpm.StartT(t)
	ctx := context.Background()
	if _, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{swtpm.ECC}}); err != nil {
		t.Fatal(err)
	}
	p := open(t, sw, tpm.Options{EKType: "ecc"})
	ekPub, _ := p.EKPublic(ctx)
	akPub, _ := p.AttestationKeyPublic()
	akName, _ := tpmquote.AKName(akPub)
	for name, tc := range map[string]struct{ ek, name, secret []byte }{
		"ak as ek":      {akPub, akName, []byte("s")},
		"empty secret":  {ekPub, akName, nil},
		"long secret":   {ekPub, akName, make([]byte, 33)},
		"short name":    {ekPub, akName[:1], []byte("s")},
		"sha1 name":     {ekPub, append([]byte{0, 4}, make([]byte, 20)...), []byte("s")},
		"truncated ek":  {ekPub[:len(ekPub)-1], akName, []byte("s")},
		"name size off": {ekPub, akName[:20], []byte("s")},
	} {
		if _, _, err := tpmquote.MakeCredential(tc.ek, tc.name, tc.secret); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := p.ActivateCredential(ctx, nil, []byte{1}); err == nil {
		t.Error("empty blob accepted")
	}
}

func TestEKCertificate(t *testing.T) {
	ctx := context.Background()
	sw := swtpm.StartT(t)
	prov, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{swtpm.RSA}})
	if err != nil {
		t.Fatal(err)
	}
	p := open(t, sw, tpm.Options{})
	der, err := p.EKCertificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(der, prov.EKs[swtpm.RSA].Cert.Raw) {
		t.Fatal("NV certificate differs from the one provisioned")
	}
	ekPub, err := p.EKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(prov.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tpmquote.VerifyEKCertificate(der, ekPub, x509.VerifyOptions{Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	if cert.SerialNumber.Cmp(prov.EKs[swtpm.RSA].Cert.SerialNumber) != 0 {
		t.Fatal("serial differs")
	}
	// The EK hash is the same from the TPM and from the certificate.
	h, err := tpmquote.PublicKeyHash(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if h != hexString(spki[:]) {
		t.Fatalf("tpmquote.PublicKeyHash %s, certificate SPKI hash %x", h, spki)
	}

	if _, err := tpmquote.VerifyEKCertificate(der, ekPub, x509.VerifyOptions{Roots: x509.NewCertPool()}); err == nil {
		t.Error("EK certificate accepted without its root")
	}
	akPub, _ := p.AttestationKeyPublic()
	if _, err := tpmquote.VerifyEKCertificate(der, akPub, x509.VerifyOptions{Roots: roots}); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Errorf("certificate for another key: %v", err)
	}
	if _, err := tpmquote.VerifyEKCertificate(der[:100], ekPub, x509.VerifyOptions{Roots: roots}); err == nil {
		t.Error("truncated certificate accepted")
	}

	// No ECC certificate was provisioned: the error names the index.
	pe := open(t, swtpm.StartT(t), tpm.Options{EKType: "ecc"})
	if _, err := pe.EKCertificate(ctx); err == nil || !strings.Contains(err.Error(), "0x01c0000a") {
		t.Errorf("missing certificate: %v", err)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// BenchmarkVerifyQuote is the server side alone, on the stored ECC quote.
func BenchmarkVerifyQuote(b *testing.B) {
	f := readFixture(b, "ecc")
	rd := cctrusted.ReportData(testdataNonce, nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := tpmquote.VerifyQuote(f.akPub, f.attest, f.sig, rd[:], f.pcrs); err != nil {
			b.Fatal(err)
		}
	}
}
