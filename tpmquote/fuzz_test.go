package tpmquote_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// FuzzVerifyQuote feeds mutated real quotes (testdata/) to the verifier: it
// must never panic, and must never accept a quote whose bytes differ from
// the signed ones.
func FuzzVerifyQuote(f *testing.F) {
	rd := cctrusted.ReportData(testdataNonce, nil)
	var fixtures []quoteFixture
	for _, typ := range []string{"ecc", "rsa"} {
		fx := readFixture(f, typ)
		fixtures = append(fixtures, fx)
		f.Add(fx.akPub, fx.attest, fx.sig, rd[:])
	}
	// Both fixtures quote the same PCR values.
	pcrs := fixtures[0].pcrs
	f.Fuzz(func(t *testing.T, akPub, attest, sig, extra []byte) {
		if tpmquote.VerifyQuote(akPub, attest, sig, extra, pcrs) != nil {
			return
		}
		// ECDSA signatures are malleable, so sig may differ; what was signed
		// and by whom (the key) may not. The public area may differ from
		// the TPM's in attributes that change only its Name (userWithAuth,
		// noDA, ...: seed 099d1ba71b81e79e): credential activation binds
		// the Name, so such an area fails activation (server-verifier
		// TestRejectAKNotTiedToEK); reserved bits are refused here (seed
		// 3da09fe9d151e953).
		for _, fx := range fixtures {
			if bytes.Equal(attest, fx.attest) && sameKey(t, akPub, fx.akPub) && bytes.Equal(extra, rd[:]) {
				return
			}
		}
		t.Fatalf("accepted a quote that is not a signed one")
	})
}

// FuzzPublicArea feeds mutated TPMT_PUBLIC areas to every function that
// parses one.
func FuzzPublicArea(f *testing.F) {
	for _, name := range []string{"ak-ecc.pub", "ak-rsa.pub", "ek-ecc.pub", "ek-rsa.pub"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	akName := []byte{0, 0x0b}
	akName = append(akName, make([]byte, 32)...)
	f.Fuzz(func(t *testing.T, pub []byte) {
		_, _ = tpmquote.ParsePublic(pub)
		_, _ = tpmquote.PublicKeyHash(pub)
		if name, err := tpmquote.AKName(pub); err == nil && len(name) < 2 {
			t.Fatalf("name %x", name)
		}
		_, _, _ = tpmquote.MakeCredential(pub, akName, []byte("secret"))
	})
}

// sameKey reports whether two public areas hold the same public key,
// compared in PKIX form.
func sameKey(t *testing.T, a, b []byte) bool {
	ka, err := tpmquote.ParsePublic(a)
	if err != nil {
		t.Fatalf("accepted an AK whose public area does not parse: %v", err)
	}
	kb, err := tpmquote.ParsePublic(b)
	if err != nil {
		t.Fatal(err)
	}
	da, err := x509.MarshalPKIXPublicKey(ka)
	if err != nil {
		t.Fatal(err)
	}
	db, err := x509.MarshalPKIXPublicKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(da, db)
}
