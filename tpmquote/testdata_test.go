package tpmquote_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/tpm"
	gotpmquote "github.com/google/go-tpm-tools/quote"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// The files in testdata/ are real swtpm output (a quote per AK type over
// SHA-256 PCRs 0..23 with PCR23 extended, and the EK public areas), written
// by TestWriteTestdata with CCNP_WRITE_TPM_TESTDATA=1. They let the verifier
// tests and fuzz seeds run without swtpm.

var testdataNonce = []byte("ccnp-spire testdata nonce")

type quoteFixture struct {
	akPub, attest, sig []byte
	pcrs               cctrusted.Registers
}

func readFixture(t testing.TB, akType string) quoteFixture {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	raw := read("quote-" + akType + ".pcrs")
	if len(raw) != 24*32 {
		t.Fatalf("pcrs file is %d bytes", len(raw))
	}
	regs := make(cctrusted.Registers)
	for i := range 24 {
		regs.Set(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256, raw[i*32:(i+1)*32])
	}
	return quoteFixture{read("ak-" + akType + ".pub"), read("quote-" + akType + ".attest"), read("quote-" + akType + ".sig"), regs}
}

func TestWriteTestdata(t *testing.T) {
	if os.Getenv("CCNP_WRITE_TPM_TESTDATA") != "1" {
		t.Skip("set CCNP_WRITE_TPM_TESTDATA=1 to regenerate testdata from swtpm")
	}
	ctx := context.Background()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, akType := range []string{"ecc", "rsa"} {
		sw := swtpm.StartT(t)
		if _, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{swtpm.KeyType(akType)}}); err != nil {
			t.Fatal(err)
		}
		p := open(t, sw, tpm.Options{AKType: akType, EKType: akType})
		d := bytes.Repeat([]byte{0x23}, 32)
		if err := p.Extend(ctx, 23, cctrusted.AlgSHA256, d); err != nil {
			t.Fatal(err)
		}
		r, err := p.Report(ctx, testdataNonce, nil)
		if err != nil {
			t.Fatal(err)
		}
		akPub, _ := p.AttestationKeyPublic()
		ekPub, _ := p.EKPublic(ctx)
		var pcrs []byte
		for i := range 24 {
			v, _ := r.Registers.Get(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256)
			pcrs = append(pcrs, v...)
		}
		write("ak-"+akType+".pub", akPub)
		write("ek-"+akType+".pub", ekPub)
		write("quote-"+akType+".attest", r.Quote)
		write("quote-"+akType+".sig", r.Signature)
		write("quote-"+akType+".pcrs", pcrs)
	}
}

// TestVerifyQuoteFixtures runs the verifier on stored real quotes, so the
// server-side checks are covered even where swtpm is missing.
func TestVerifyQuoteFixtures(t *testing.T) {
	rd := cctrusted.ReportData(testdataNonce, nil)
	for _, akType := range []string{"ecc", "rsa"} {
		t.Run(akType, func(t *testing.T) {
			f := readFixture(t, akType)
			if err := tpmquote.VerifyQuote(f.akPub, f.attest, f.sig, rd[:], f.pcrs); err != nil {
				t.Fatal(err)
			}
			// Cross-check with go-tpm-tools' independent verifier.
			key, err := tpmquote.ParsePublic(f.akPub)
			if err != nil {
				t.Fatal(err)
			}
			q := &pb.Quote{Quote: f.attest, RawSig: f.sig, Pcrs: &pb.PCRs{Hash: pb.HashAlgo_SHA256, Pcrs: map[uint32][]byte{}}}
			for i := range uint32(24) {
				q.Pcrs.Pcrs[i], _ = f.pcrs.Get(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256)
			}
			if err := gotpmquote.Verify(q, key, rd[:]); err != nil {
				t.Fatalf("go-tpm-tools rejects the fixture: %v", err)
			}
			checkTampering(t, f.akPub, &cctrusted.Report{Quote: f.attest, Signature: f.sig, Registers: f.pcrs}, rd[:])
			other := readFixture(t, map[string]string{"ecc": "rsa", "rsa": "ecc"}[akType])
			wantCheck(t, tpmquote.VerifyQuote(other.akPub, f.attest, f.sig, rd[:], f.pcrs), tpmquote.CheckSignature)
		})
	}
}

// An AK public area that differs from the real one only in its scheme's hash
// (the fuzzer found it: the key, and so the signature, are unchanged) names
// another AK; it must not verify.
func TestVerifyQuoteRejectsAKSchemeChange(t *testing.T) {
	fx := readFixture(t, "ecc")
	rd := cctrusted.ReportData(testdataNonce, nil)
	if err := tpmquote.VerifyQuote(fx.akPub, fx.attest, fx.sig, rd[:], fx.pcrs); err != nil {
		t.Fatalf("the real quote: %v", err)
	}
	// TPMT_PUBLIC: type, nameAlg, attributes, authPolicy (empty), then the
	// ECC parameters: symmetric (2), scheme (2), scheme hash (2).
	for _, hash := range []uint16{0x00d7, 0x0004, 0x000c} {
		ak := bytes.Clone(fx.akPub)
		if binary.BigEndian.Uint16(ak[12:]) != 0x0018 || binary.BigEndian.Uint16(ak[14:]) != 0x000b {
			t.Fatalf("fixture layout unexpected: %x", ak[:20])
		}
		binary.BigEndian.PutUint16(ak[14:], hash)
		err := tpmquote.VerifyQuote(ak, fx.attest, fx.sig, rd[:], fx.pcrs)
		var qe *tpmquote.QuoteError
		if !errors.As(err, &qe) || (qe.Check != tpmquote.CheckAK && qe.Check != tpmquote.CheckSignature) {
			t.Errorf("scheme hash 0x%04x: err = %v, want an ak or signature check failure", hash, err)
		}
	}
}
