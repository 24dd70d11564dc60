package tpm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/google/go-tpm/tpm2"
)

// startTPM starts a fresh swtpm, or skips only when swtpm is not installed.
func startTPM(t testing.TB) *swtpm.TPM {
	t.Helper()
	if err := swtpm.Available(); err != nil {
		t.Skipf("swtpm not installed, skipping: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sw, err := swtpm.Start(ctx, t.TempDir(), swtpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return sw
}

func open(t testing.TB, sw *swtpm.TPM, opts Options) *Provider {
	t.Helper()
	opts.Device = sw.Addr()
	p, err := Open(context.Background(), opts)
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

func wantCheck(t *testing.T, err error, check string) *QuoteError {
	t.Helper()
	var qe *QuoteError
	if !errors.As(err, &qe) {
		t.Fatalf("err = %v, want a QuoteError for check %s", err, check)
	}
	if qe.Check != check {
		t.Fatalf("failed check %q (%v), want %q", qe.Check, err, check)
	}
	return qe
}

func TestMeasurementsEveryBank(t *testing.T) {
	p := open(t, startTPM(t), Options{})
	ctx := context.Background()
	if p.TEE() != cctrusted.TEETPM {
		t.Fatal(p.TEE())
	}
	if a, err := p.DefaultAlgorithm(ctx); err != nil || a != cctrusted.AlgSHA256 {
		t.Fatalf("DefaultAlgorithm = %v, %v", a, err)
	}
	if n, _ := p.MeasurementCount(ctx); n != 24 {
		t.Fatalf("MeasurementCount = %d", n)
	}
	// swtpm 0.7 allocates these four banks.
	want := []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384, cctrusted.AlgSHA512}
	if got := p.Banks(); len(got) != len(want) {
		t.Fatalf("Banks = %v, want %v", got, want)
	}
	all, err := p.PCRs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range want {
		for i := range uint32(24) {
			d, err := p.Measurement(ctx, cctrusted.PCR(i).IMR(), alg)
			if err != nil {
				t.Fatal(err)
			}
			// PC Client reset values: PCR17..22 all ones, the rest zero.
			fill := byte(0)
			if i >= 17 && i <= 22 {
				fill = 0xff
			}
			if d.Alg != alg || !bytes.Equal(d.Value, bytes.Repeat([]byte{fill}, alg.Size())) {
				t.Errorf("pcr%d %v = %v", i, alg, d)
			}
			if v, _ := all.Get(cctrusted.PCR(i).IMR(), alg); !bytes.Equal(v, d.Value) {
				t.Errorf("PCRs() pcr%d %v = %x, Measurement %x", i, alg, v, d.Value)
			}
		}
	}
	for name, tc := range map[string]struct {
		imr  cctrusted.IMR
		alg  cctrusted.Algorithm
		want string
	}{
		"rtmr":        {cctrusted.RTMR(0).IMR(), cctrusted.AlgSHA256, "not a PCR"},
		"pcr24":       {cctrusted.IMR{Space: cctrusted.SpacePCR, Index: 24}, cctrusted.AlgSHA256, "not a PCR"},
		"unallocated": {cctrusted.PCR(0).IMR(), cctrusted.AlgSM3256, "sm3_256 is not allocated"},
	} {
		if _, err := p.Measurement(ctx, tc.imr, tc.alg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestExtend(t *testing.T) {
	p := open(t, startTPM(t), Options{})
	ctx := context.Background()
	pcr := p.RuntimePCR()
	if pcr != 23 {
		t.Fatalf("runtime PCR = %d", pcr)
	}
	d1 := sha256.Sum256([]byte("workload one"))
	d2 := sha256.Sum256([]byte("workload two"))
	if err := p.Extend(ctx, pcr, cctrusted.AlgSHA256, d1[:]); err != nil {
		t.Fatal(err)
	}
	if err := p.Extend(ctx, pcr, cctrusted.AlgSHA256, d2[:]); err != nil {
		t.Fatal(err)
	}
	// Independent computation: PCR = H(H(0^32 || d1) || d2).
	s1 := sha256.Sum256(append(make([]byte, 32), d1[:]...))
	want := sha256.Sum256(append(s1[:], d2[:]...))
	got, err := p.Measurement(ctx, pcr.IMR(), cctrusted.AlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Value, want[:]) {
		t.Fatalf("pcr23 = %x, want %x", got.Value, want)
	}
	// Several banks in one extend; the SHA-1 bank stays untouched.
	h384 := sha512.Sum384([]byte("x"))
	h256 := sha256.Sum256([]byte("x"))
	if err := p.ExtendDigests(ctx, 16, []cctrusted.Digest{{Alg: cctrusted.AlgSHA384, Value: h384[:]}, {Alg: cctrusted.AlgSHA256, Value: h256[:]}}); err != nil {
		t.Fatal(err)
	}
	w384 := sha512.Sum384(append(make([]byte, 48), h384[:]...))
	if got, _ := p.Measurement(ctx, cctrusted.PCR(16).IMR(), cctrusted.AlgSHA384); !bytes.Equal(got.Value, w384[:]) {
		t.Errorf("pcr16 sha384 = %x, want %x", got.Value, w384)
	}
	if got, _ := p.Measurement(ctx, cctrusted.PCR(16).IMR(), cctrusted.AlgSHA1); !bytes.Equal(got.Value, make([]byte, sha1.Size)) {
		t.Errorf("pcr16 sha1 changed: %x", got.Value)
	}
	for name, err := range map[string]error{
		"short digest": p.Extend(ctx, pcr, cctrusted.AlgSHA256, d1[:31]),
		"pcr24":        p.Extend(ctx, 24, cctrusted.AlgSHA256, d1[:]),
		"unallocated":  p.Extend(ctx, pcr, cctrusted.AlgSM3256, d1[:]),
		"no digests":   p.ExtendDigests(ctx, pcr, nil),
	} {
		if err == nil {
			t.Errorf("%s: extend accepted", name)
		}
	}
}

func TestReportVerify(t *testing.T) {
	for _, akType := range []string{"ecc", "rsa"} {
		t.Run(akType, func(t *testing.T) {
			sw := startTPM(t)
			p := open(t, sw, Options{AKType: akType})
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
			if err := VerifyQuote(akPub, r.Quote, r.Signature, rd[:], r.Registers); err != nil {
				t.Fatal(err)
			}
			checkTampering(t, akPub, r, rd[:])

			// An AK of another TPM: its signature check must fail.
			other := open(t, startTPM(t), Options{AKType: akType})
			otherPub, _ := other.AttestationKeyPublic()
			wantCheck(t, VerifyQuote(otherPub, r.Quote, r.Signature, rd[:], r.Registers), CheckSignature)
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
	wantCheck(t, VerifyQuote(akPub, r.Quote, r.Signature, otherRD[:], r.Registers), CheckExtraData)

	sig := clone(r.Signature)
	sig[len(sig)-1] ^= 1
	wantCheck(t, VerifyQuote(akPub, r.Quote, sig, rd, r.Registers), CheckSignature)

	att := clone(r.Quote)
	att[len(att)-1] ^= 1 // a byte of the quoted PCR digest
	wantCheck(t, VerifyQuote(akPub, att, r.Signature, rd, r.Registers), CheckSignature)

	regs := cloneRegs()
	v, _ := regs.Get(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256)
	v = clone(v)
	v[0] ^= 1
	regs.Set(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256, v)
	qe := wantCheck(t, VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), CheckPCRDigest)
	if !strings.Contains(qe.Error(), "sha256 pcrs 0-23") {
		t.Errorf("digest error does not name the selection: %v", qe)
	}

	regs = cloneRegs()
	delete(regs, cctrusted.PCR(5).IMR())
	qe = wantCheck(t, VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), CheckPCRSelection)
	if qe.IMR != cctrusted.PCR(5).IMR() || qe.Alg != cctrusted.AlgSHA256 || !strings.Contains(qe.Error(), "pcr5 (sha256)") {
		t.Errorf("missing PCR error = %v", qe)
	}

	regs = cloneRegs()
	regs.Set(cctrusted.PCR(3).IMR(), cctrusted.AlgSHA1, make([]byte, 20))
	qe = wantCheck(t, VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), CheckPCRSelection)
	if qe.IMR != cctrusted.PCR(3).IMR() || qe.Alg != cctrusted.AlgSHA1 {
		t.Errorf("unquoted PCR error = %v", qe)
	}

	regs = cloneRegs()
	regs.Set(cctrusted.PCR(9).IMR(), cctrusted.AlgSHA256, make([]byte, 31))
	wantCheck(t, VerifyQuote(akPub, r.Quote, r.Signature, rd, regs), CheckPCRSelection)

	// An AK that is not restricted could have signed anything.
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPub)
	if err != nil {
		t.Fatal(err)
	}
	pub.ObjectAttributes.Restricted = false
	wantCheck(t, VerifyQuote(tpm2.Marshal(*pub), r.Quote, r.Signature, rd, r.Registers), CheckAK)
	wantCheck(t, VerifyQuote(append(clone(akPub), 0), r.Quote, r.Signature, rd, r.Registers), CheckAK)
	wantCheck(t, VerifyQuote(nil, r.Quote, r.Signature, rd, r.Registers), CheckAK)
	wantCheck(t, VerifyQuote(akPub, r.Quote, nil, rd, r.Registers), CheckSignature)
	wantCheck(t, VerifyQuote(akPub, r.Quote[:10], r.Signature, rd, r.Registers), CheckSignature)
}

func TestReportMultiBank(t *testing.T) {
	banks := []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384}
	p := open(t, startTPM(t), Options{QuoteBanks: banks, QuotePCRs: []cctrusted.PCR{0, 7, 14, 23}})
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
	if err := VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
		t.Fatal(err)
	}
	delete(r.Registers[cctrusted.PCR(14).IMR()], cctrusted.AlgSHA384)
	qe := wantCheck(t, VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers), CheckPCRSelection)
	if qe.IMR != cctrusted.PCR(14).IMR() || qe.Alg != cctrusted.AlgSHA384 {
		t.Fatalf("error names %v %v", qe.IMR, qe.Alg)
	}
}

func TestCredentialActivation(t *testing.T) {
	for _, ekType := range []swtpm.KeyType{swtpm.RSA, swtpm.ECC} {
		t.Run(string(ekType), func(t *testing.T) {
			ctx := context.Background()
			sw := startTPM(t)
			if _, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{ekType}}); err != nil {
				t.Fatal(err)
			}
			p := open(t, sw, Options{EKType: string(ekType)})
			ekPub, err := p.EKPublic(ctx)
			if err != nil {
				t.Fatal(err)
			}
			akPub, _ := p.AttestationKeyPublic()
			akName, err := AKName(akPub)
			if err != nil {
				t.Fatal(err)
			}
			// The TPM computed the name when it created the AK.
			if !bytes.Equal(akName, p.ak.name.Buffer) {
				t.Fatalf("AKName = %x, TPM says %x", akName, p.ak.name.Buffer)
			}
			secret := []byte("0123456789abcdef0123456789abcdef")
			blob, enc, err := MakeCredential(ekPub, akName, secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.ActivateCredential(ctx, blob, enc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, secret) {
				t.Fatalf("activated %x, want %x", got, secret)
			}

			// A challenge for another TPM's EK does not open here.
			other := startTPM(t)
			if _, err := swtpm.Provision(ctx, other, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{ekType}}); err != nil {
				t.Fatal(err)
			}
			op := open(t, other, Options{EKType: string(ekType)})
			otherEK, _ := op.EKPublic(ctx)
			blob2, enc2, err := MakeCredential(otherEK, akName, secret)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.ActivateCredential(ctx, blob2, enc2); err == nil {
				t.Fatal("credential for another EK activated")
			}
			// Nor one naming another AK.
			otherAK, _ := op.AttestationKeyPublic()
			otherName, _ := AKName(otherAK)
			blob3, enc3, _ := MakeCredential(ekPub, otherName, secret)
			if _, err := p.ActivateCredential(ctx, blob3, enc3); err == nil {
				t.Fatal("credential for another AK activated")
			}
			// The provider still works after refused activations.
			if _, err := p.ActivateCredential(ctx, blob, enc); err != nil {
				t.Fatalf("activation after refusals: %v", err)
			}
		})
	}
}

func TestMakeCredentialRejects(t *testing.T) {
	sw := startTPM(t)
	ctx := context.Background()
	if _, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{swtpm.ECC}}); err != nil {
		t.Fatal(err)
	}
	p := open(t, sw, Options{EKType: "ecc"})
	ekPub, _ := p.EKPublic(ctx)
	akPub, _ := p.AttestationKeyPublic()
	akName, _ := AKName(akPub)
	for name, tc := range map[string]struct{ ek, name, secret []byte }{
		"ak as ek":      {akPub, akName, []byte("s")},
		"empty secret":  {ekPub, akName, nil},
		"long secret":   {ekPub, akName, make([]byte, 33)},
		"short name":    {ekPub, akName[:1], []byte("s")},
		"sha1 name":     {ekPub, append([]byte{0, 4}, make([]byte, 20)...), []byte("s")},
		"truncated ek":  {ekPub[:len(ekPub)-1], akName, []byte("s")},
		"name size off": {ekPub, akName[:20], []byte("s")},
	} {
		if _, _, err := MakeCredential(tc.ek, tc.name, tc.secret); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := p.ActivateCredential(ctx, nil, []byte{1}); err == nil {
		t.Error("empty blob accepted")
	}
}

func TestEKCertificate(t *testing.T) {
	ctx := context.Background()
	sw := startTPM(t)
	prov, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{swtpm.RSA}})
	if err != nil {
		t.Fatal(err)
	}
	p := open(t, sw, Options{})
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
	cert, err := VerifyEKCertificate(der, ekPub, x509.VerifyOptions{Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	if cert.SerialNumber.Cmp(prov.EKs[swtpm.RSA].Cert.SerialNumber) != 0 {
		t.Fatal("serial differs")
	}
	// The EK hash is the same from the TPM and from the certificate.
	h, err := PublicKeyHash(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if h != hexString(spki[:]) {
		t.Fatalf("PublicKeyHash %s, certificate SPKI hash %x", h, spki)
	}

	if _, err := VerifyEKCertificate(der, ekPub, x509.VerifyOptions{Roots: x509.NewCertPool()}); err == nil {
		t.Error("EK certificate accepted without its root")
	}
	akPub, _ := p.AttestationKeyPublic()
	if _, err := VerifyEKCertificate(der, akPub, x509.VerifyOptions{Roots: roots}); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Errorf("certificate for another key: %v", err)
	}
	if _, err := VerifyEKCertificate(der[:100], ekPub, x509.VerifyOptions{Roots: roots}); err == nil {
		t.Error("truncated certificate accepted")
	}

	// No ECC certificate was provisioned: the error names the index.
	pe := open(t, startTPM(t), Options{EKType: "ecc"})
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

// TestEventLogReplayedIntoSwtpm replays a real machine's firmware log into
// swtpm, serves it from a fake securityfs, quotes, and hands log and quoted
// PCRs to eventlog.VerifyTPM as the server will.
func TestEventLogReplayedIntoSwtpm(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/tpmlog/ubuntu-2404-intel-tdx.bin")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sw := startTPM(t)
	if _, err := swtpm.ReplayLog(ctx, sw, raw); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	logPath := filepath.Join(root, EventLogPath)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	p := open(t, sw, Options{HostRoot: root, QuoteBanks: []cctrusted.Algorithm{cctrusted.AlgSHA256, cctrusted.AlgSHA384}})

	events, err := p.EventLog(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) < 50 || events[0].Type != cctrusted.EventNoAction {
		t.Fatalf("%d events, first type %d", len(events), events[0].Type)
	}
	page, err := p.EventLog(ctx, 5, 3)
	if err != nil || len(page) != 3 || page[0].IMR != events[5].IMR {
		t.Fatalf("page = %d events, %v", len(page), err)
	}
	if _, err := p.EventLog(ctx, len(events)+1, 0); err == nil {
		t.Fatal("start beyond the log accepted")
	}

	r, err := p.Report(ctx, []byte("nonce"), nil)
	if err != nil {
		t.Fatal(err)
	}
	akPub, _ := p.AttestationKeyPublic()
	if err := VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
		t.Fatal(err)
	}
	if _, err := eventlog.VerifyTPM(raw, r.Registers); err != nil {
		t.Fatalf("the replayed log does not verify against the quoted PCRs: %v", err)
	}
	// Extending a firmware PCR after the fact breaks the replay.
	d := sha256.Sum256([]byte("late"))
	if err := p.ExtendDigests(ctx, 4, []cctrusted.Digest{{Alg: cctrusted.AlgSHA256, Value: d[:]}}); err != nil {
		t.Fatal(err)
	}
	r2, err := p.Report(ctx, []byte("nonce"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var me *cctrusted.MismatchError
	if _, err := eventlog.VerifyTPM(raw, r2.Registers); !errors.As(err, &me) || me.IMR != cctrusted.PCR(4).IMR() {
		t.Fatalf("VerifyTPM after a late extend = %v, want a pcr4 mismatch", err)
	}

	if b, err := p.RawEventLog(ctx); err != nil || !bytes.Equal(b, raw) {
		t.Fatalf("RawEventLog: %d bytes, %v", len(b), err)
	}
	if _, err := p.RawIMALog(ctx); err == nil || !strings.Contains(err.Error(), "binary_runtime_measurements") {
		t.Fatalf("missing IMA log error = %v", err)
	}
}

func TestPersistentAK(t *testing.T) {
	ctx := context.Background()
	sw := startTPM(t)
	const h = 0x81000100
	p, err := Open(ctx, Options{Device: sw.Addr(), AKHandle: h, PersistAK: true})
	if err != nil {
		t.Fatal(err)
	}
	pub1, _ := p.AttestationKeyPublic()
	if p.AttestationKeyHandle() != h {
		t.Fatalf("AK at 0x%08x", p.AttestationKeyHandle())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p2 := open(t, sw, Options{AKHandle: h})
	pub2, _ := p2.AttestationKeyPublic()
	if !bytes.Equal(pub1, pub2) || p2.AttestationKeyHandle() != h {
		t.Fatal("persistent AK not reloaded")
	}
	r, err := p2.Report(ctx, []byte("n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyQuote(pub1, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	// The handle holds an ECC AK: asking for RSA there is an error, not an overwrite.
	if _, err := Open(ctx, Options{Device: sw.Addr(), AKHandle: h, AKType: "rsa"}); err == nil || !strings.Contains(err.Error(), "0x81000100") {
		t.Fatalf("rsa at an ecc AK handle: %v", err)
	}
	// An EK is not an AK.
	if _, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{swtpm.RSA}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, Options{Device: sw.Addr(), AKHandle: EKHandleRSA}); err == nil || !strings.Contains(err.Error(), "does not hold an AK") {
		t.Fatalf("EK as AK: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		opts Options
		want string
	}{
		"ak type":     {Options{AKType: "dsa"}, "ak_type"},
		"ek type":     {Options{EKType: "dsa"}, "ek_type"},
		"ak handle":   {Options{AKHandle: 0x01000000}, "not a persistent handle"},
		"persist":     {Options{PersistAK: true}, "persist_ak needs ak_handle"},
		"runtime pcr": {Options{RuntimePCR: 24}, "runtime_pcr"},
		"quote pcr":   {Options{QuotePCRs: []cctrusted.PCR{30}}, "quote pcr"},
		"quote bank":  {Options{QuoteBanks: []cctrusted.Algorithm{0x99}}, "quote bank"},
		"missing dev": {Options{Device: "/nonexistent/tpmrm0"}, "/nonexistent/tpmrm0"},
		"scheme":      {Options{Device: "unix:///tmp/x"}, "only tcp://"},
		"bad tcp":     {Options{Device: "tcp://nohostport"}, "host:port"},
		"refused":     {Options{Device: "tcp://127.0.0.1:1"}, "127.0.0.1:1"},
	} {
		if _, err := Open(ctx, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestContextAndClose(t *testing.T) {
	sw := startTPM(t)
	p, err := Open(context.Background(), Options{Device: sw.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Measurement(cctx, cctrusted.PCR(0).IMR(), cctrusted.AlgSHA256); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	// A cancelled call that never reached the TPM leaves the provider usable.
	if _, err := p.Report(context.Background(), []byte("n"), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.Report(context.Background(), nil, nil); !errors.Is(err, errClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := p.AttestationKeyPublic(); !errors.Is(err, errClosed) {
		t.Fatalf("after Close: %v", err)
	}
	// swtpm serves one client at a time: the closed provider freed it.
	open(t, sw, Options{})
}
