package tpm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

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

func TestMeasurementsEveryBank(t *testing.T) {
	p := open(t, swtpm.StartT(t), Options{})
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
	p := open(t, swtpm.StartT(t), Options{})
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

func TestCredentialActivation(t *testing.T) {
	for _, ekType := range []swtpm.KeyType{swtpm.RSA, swtpm.ECC} {
		t.Run(string(ekType), func(t *testing.T) {
			ctx := context.Background()
			sw := swtpm.StartT(t)
			if _, err := swtpm.Provision(ctx, sw, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{ekType}}); err != nil {
				t.Fatal(err)
			}
			p := open(t, sw, Options{EKType: string(ekType)})
			ekPub, err := p.EKPublic(ctx)
			if err != nil {
				t.Fatal(err)
			}
			akPub, _ := p.AttestationKeyPublic()
			akName, err := tpmquote.AKName(akPub)
			if err != nil {
				t.Fatal(err)
			}
			// The TPM computed the name when it created the AK.
			if !bytes.Equal(akName, p.ak.name.Buffer) {
				t.Fatalf("AKName = %x, TPM says %x", akName, p.ak.name.Buffer)
			}
			secret := []byte("0123456789abcdef0123456789abcdef")
			blob, enc, err := tpmquote.MakeCredential(ekPub, akName, secret)
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
			other := swtpm.StartT(t)
			if _, err := swtpm.Provision(ctx, other, swtpm.ProvisionOptions{EKs: []swtpm.KeyType{ekType}}); err != nil {
				t.Fatal(err)
			}
			op := open(t, other, Options{EKType: string(ekType)})
			otherEK, _ := op.EKPublic(ctx)
			blob2, enc2, err := tpmquote.MakeCredential(otherEK, akName, secret)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.ActivateCredential(ctx, blob2, enc2); err == nil {
				t.Fatal("credential for another EK activated")
			}
			// Nor one naming another AK.
			otherAK, _ := op.AttestationKeyPublic()
			otherName, _ := tpmquote.AKName(otherAK)
			blob3, enc3, _ := tpmquote.MakeCredential(ekPub, otherName, secret)
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

// TestEventLogReplayedIntoSwtpm replays a real machine's firmware log into
// swtpm, serves it from a fake securityfs, quotes, and hands log and quoted
// PCRs to eventlog.VerifyTPM as the server will.
func TestEventLogReplayedIntoSwtpm(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/tpmlog/ubuntu-2404-intel-tdx.bin")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sw := swtpm.StartT(t)
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
	if err := tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
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
	sw := swtpm.StartT(t)
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
	if err := tpmquote.VerifyQuote(pub1, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
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
	sw := swtpm.StartT(t)
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
