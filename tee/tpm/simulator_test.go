package tpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
	"github.com/google/go-tpm-tools/simulator"
)

// TestSimulator runs the provider on go-tpm-tools' in-process reference TPM
// (Microsoft's ms-tpm-20-ref, via cgo): a second, independent TPM
// implementation next to swtpm/libtpms. The simulator is one per process.
func TestSimulator(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Skipf("go-tpm-tools simulator unavailable (needs cgo): %v", err)
	}
	ctx := context.Background()
	p, err := OpenTransport(ctx, sim, Options{Device: "simulator"})
	if err != nil {
		sim.Close()
		t.Fatal(err)
	}
	defer p.Close()

	d := sha256.Sum256([]byte("simulated workload"))
	if err := p.Extend(ctx, 23, cctrusted.AlgSHA256, d[:]); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(make([]byte, 32), d[:]...))
	got, err := p.Measurement(ctx, cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256)
	if err != nil || !bytes.Equal(got.Value, want[:]) {
		t.Fatalf("pcr23 = %x, %v; want %x", got.Value, err, want)
	}

	r, err := p.Report(ctx, []byte("nonce"), []byte("user"))
	if err != nil {
		t.Fatal(err)
	}
	akPub, _ := p.AttestationKeyPublic()
	if err := tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
		t.Fatal(err)
	}
	other := cctrusted.ReportData([]byte("other"), nil)
	var qe *tpmquote.QuoteError
	if err := tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, other[:], r.Registers); !errors.As(err, &qe) || qe.Check != tpmquote.CheckExtraData {
		t.Fatalf("quote with another nonce: %v, want check %s to fail", err, tpmquote.CheckExtraData)
	}

	// Credential activation with the EK the simulator derives from the
	// TCG template (it has no certificate).
	ekPub, err := p.EKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := tpmquote.AKName(akPub)
	blob, enc, err := tpmquote.MakeCredential(ekPub, name, []byte("sim secret"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := p.ActivateCredential(ctx, blob, enc); err != nil || string(s) != "sim secret" {
		t.Fatalf("activate = %q, %v", s, err)
	}
	if _, err := p.EKCertificate(ctx); err == nil {
		t.Fatal("simulator has no EK certificate, yet one was read")
	}
}
