package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-eventlog/tcg"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

const zeroFillDir = "../testdata/ccel-zerofill"

// independent is the shape of the *.expected.json files an independent
// Python replay wrote next to the shared evidence.
type independent struct {
	Format string                       `json:"format"`
	Events int                          `json:"events"`
	Banks  map[string]map[string]string `json:"banks"`
}

func readIndependent(t testing.TB, dir, name string) independent {
	t.Helper()
	var v independent
	if err := json.Unmarshal(readFile(t, dir, name), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// trusteeRTMRs are RTMR0..2 of the trustee CCEL as the independent replay
// gives them (RTMR2 is not extended: zero).
func trusteeRTMRs(t testing.TB) [3][]byte {
	exp := readIndependent(t, zeroFillDir, "CCEL_data.expected.json")
	r := [3][]byte{nil, nil, make([]byte, 48)}
	for i := range 2 {
		r[i] = unhex(t, exp.Banks["sha384"]["rtmr"+string(rune('0'+i))])
	}
	return r
}

func TestZeroFilledCCEL(t *testing.T) {
	raw := readFile(t, zeroFillDir, "CCEL_data")
	exp := readIndependent(t, zeroFillDir, "CCEL_data.expected.json")
	l, err := ParseCCEL(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Events) != exp.Events || l.End != 9822 {
		t.Fatalf("%d events ending at %d, want %d ending at 9822", len(l.Events), l.End, exp.Events)
	}
	regs, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range exp.Banks["sha384"] {
		m, _ := cctrusted.ParseIMR(name)
		if got, _ := regs.Get(m, cctrusted.AlgSHA384); string(got) != string(unhex(t, want)) {
			t.Errorf("%s = %x, independent replay %s", name, got, want)
		}
	}
	if len(regs) != len(exp.Banks["sha384"]) {
		t.Errorf("%d registers extended, independent replay %d: phantom events?", len(regs), len(exp.Banks["sha384"]))
	}
	if f, ok := DetectTCG(raw); !ok || f != FormatCCEL {
		t.Errorf("DetectTCG = %q, %v", f, ok)
	}
	facts, err := VerifyCCEL(nil, raw, trusteeRTMRs(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(facts.VerifiedRegisters) != 3 {
		t.Errorf("verified %v", facts.VerifiedRegisters)
	}
	// The same events read by go-eventlog from the log without its fill.
	ref, err := tcg.ParseEventLog(raw[:l.End], tcg.ParseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ref.Events(0x0c)); n != len(l.Events)-1 {
		t.Errorf("go-eventlog reads %d events before the fill, we %d (+1 Spec ID)", n, len(l.Events))
	}
}

// TestZeroFillRejects: the fill is zero from an event boundary to the end;
// anything else there must be a well-formed event.
func TestZeroFillRejects(t *testing.T) {
	raw := readFile(t, zeroFillDir, "CCEL_data")
	const end = 9822
	sp := spans(t, raw[:end])
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(raw)) }
	last := sp[len(sp)-1]
	for _, c := range []struct {
		name  string
		log   []byte
		parts []string
	}{
		{"non-zero byte deep in the fill", mut(func(b []byte) []byte { b[len(b)-1000] = 1; return b }),
			[]string{"byte 0x01 at offset 1047576", "zero fill that starts after event 5 at offset 9822"}},
		{"phantom event after a zero gap", func() []byte {
			b := bytes.Clone(raw[:end+4096])
			ev := bytes.Clone(raw[last.start:last.end])
			return append(b, ev...)
		}(), []string{"zero fill that starts after event 5 at offset 9822"}},
		{"0xFF after the zero fill", mut(func(b []byte) []byte { b[len(b)-1] = 0xFF; return b }),
			[]string{"byte 0xff", "zero fill"}},
		{"zeros after the end marker", func() []byte {
			b := bytes.Clone(raw)
			for i := end; i < end+64; i++ {
				b[i] = 0xFF
			}
			return b
		}(), []string{"byte 0x00 at offset 9886", "padding must be 0xFF"}},
		{"one byte of the last header changed (index)", mut(func(b []byte) []byte { b[last.start] = 9; return b }),
			[]string{"event 5 at offset", "register index 9"}},
		{"one byte of the last header changed (digest count)", mut(func(b []byte) []byte { b[last.start+8] = 0; return b }),
			[]string{"event 5", "no digests"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCCEL(c.log)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, p := range c.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
		})
	}
}

// TestZeroFillOnlyInCCEL: a TPM log has no unused area: zeros where an
// event should start are refused, never read as empty events.
func TestZeroFillOnlyInCCEL(t *testing.T) {
	raw := readFile(t, tpmDir, "rhel8-uefi.bin")
	padded := append(bytes.Clone(raw), make([]byte, 64)...)
	_, err := ParseTPM(padded)
	if err == nil || !strings.Contains(err.Error(), "zero fill, which only a CCEL") {
		t.Fatalf("zero-padded TPM log: %v", err)
	}
	legacy := append(readFile(t, tpmDir, "debian-10.bin"), make([]byte, 64)...)
	if _, err := ParseTPM(legacy); err == nil || !strings.Contains(err.Error(), "event 25 at offset 22220: zero event type and size") {
		t.Fatalf("zero-padded legacy TPM log: %v", err)
	}
}

// debianSHA1 are the signed SHA-1 PCRs of the legacy log as the
// independent replay computed them.
func debianSHA1(t testing.TB) cctrusted.Registers {
	exp := readIndependent(t, tpmDir, "debian-10.expected.json")
	regs := make(cctrusted.Registers)
	for name, v := range exp.Banks["sha1"] {
		m, err := cctrusted.ParseIMR(name)
		if err != nil {
			t.Fatal(err)
		}
		regs.Set(m, cctrusted.AlgSHA1, unhex(t, v))
	}
	return regs
}

func TestLegacySHA1TPMLog(t *testing.T) {
	raw := readFile(t, tpmDir, "debian-10.bin")
	exp := readIndependent(t, tpmDir, "debian-10.expected.json")
	l, err := ParseTPM(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Legacy || len(l.Events) != exp.Events || len(l.Algorithms) != 1 || l.Algorithms[0] != cctrusted.AlgSHA1 {
		t.Fatalf("legacy %v, %d events, banks %v; want legacy, %d events, [sha1]", l.Legacy, len(l.Events), l.Algorithms, exp.Events)
	}
	regs, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	want := debianSHA1(t)
	if len(regs) != len(want) {
		t.Errorf("%d PCRs extended, independent replay %d", len(regs), len(want))
	}
	for m, banks := range want {
		if got, _ := regs.Get(m, cctrusted.AlgSHA1); string(got) != string(banks[cctrusted.AlgSHA1]) {
			t.Errorf("%v sha1 = %x, independent replay %x", m, got, banks[cctrusted.AlgSHA1])
		}
	}
	// Event by event, the same as go-eventlog reads it.
	ref, err := tcg.ParseEventLog(raw, tcg.ParseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	refEvents := ref.Events(0x04)
	if len(refEvents) != len(l.Events) {
		t.Fatalf("go-eventlog reads %d events, we %d", len(refEvents), len(l.Events))
	}
	for i, re := range refEvents {
		e := l.Events[i]
		d, _ := e.Digest(cctrusted.AlgSHA1)
		if int(e.IMR.Index) != re.Index || e.Type != uint32(re.Type) || !bytes.Equal(d, re.Digest) || !bytes.Equal(e.Data, re.Data) {
			t.Fatalf("event %d differs from go-eventlog", i)
		}
	}
	if f, ok := DetectTCG(raw); !ok || f != FormatTPM {
		t.Errorf("DetectTCG = %q, %v", f, ok)
	}
	// The quote covers SHA-1 (and SHA-256, which the log cannot check).
	signed := debianSHA1(t)
	signed.Set(cctrusted.PCR(0).IMR(), cctrusted.AlgSHA256, make([]byte, 32))
	facts, err := VerifyTPM(raw, signed)
	if err != nil {
		t.Fatal(err)
	}
	if facts.Hash != "sha1" || len(facts.VerifiedRegisters) != 8 || !facts.SecureBootKnown || !facts.SecureBoot {
		t.Errorf("facts: hash %s, verified %v, secure boot %v/%v", facts.Hash, facts.VerifiedRegisters, facts.SecureBoot, facts.SecureBootKnown)
	}
	if !strings.Contains(strings.Join(facts.Warnings, "\n"), "legacy SHA-1 format") {
		t.Errorf("no warning that the facts rest on SHA-1: %v", facts.Warnings)
	}
}

// TestLegacySHA1TPMLogRejects: one byte changed, or the wrong bank signed.
func TestLegacySHA1TPMLogRejects(t *testing.T) {
	raw := readFile(t, tpmDir, "debian-10.bin")
	const ev7 = 17950 // event 7: EV_SEPARATOR on PCR7
	flip := func(off int, v byte) []byte { b := bytes.Clone(raw); b[off] = v; return b }
	onlySHA256 := make(cctrusted.Registers)
	for i := range 8 {
		onlySHA256.Set(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256, make([]byte, 32))
	}
	flippedPCR7 := debianSHA1(t)
	v, _ := flippedPCR7.Get(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA1)
	v[19] ^= 1
	for _, c := range []struct {
		name   string
		log    []byte
		pcrs   cctrusted.Registers
		parts  []string
		mismat bool
	}{
		{"digest byte changed", flip(ev7+8, raw[ev7+8]^1), debianSHA1(t), []string{"pcr7 (sha1)", "8 events extend it, the last is event 23"}, true},
		{"signed PCR7 differs", raw, flippedPCR7, []string{"pcr7 (sha1)"}, true},
		{"register index changed", flip(ev7, 24), debianSHA1(t), []string{"event 7 at offset 17950", "register index 24"}, false},
		{"data size changed", flip(ev7+31, 0xff), debianSHA1(t), []string{"event 7 at offset 17950", "data size 4278190084 runs past the end"}, false},
		{"type changed to EV_NO_ACTION", flip(ev7+4, 3), debianSHA1(t), []string{"event 7", "EV_NO_ACTION", "non-zero sha1 digest"}, false},
		{"quote covers no SHA-1 bank", raw, onlySHA256, []string{"legacy SHA-1 format", "sha1 PCRs", "signed banks [sha256]"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyTPM(c.log, c.pcrs)
			if err == nil {
				t.Fatal("accepted")
			}
			var me *cctrusted.MismatchError
			if errors.As(err, &me) != c.mismat {
				t.Errorf("mismatch error %v, want %v: %v", !c.mismat, c.mismat, err)
			}
			for _, p := range c.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
		})
	}
	// A crypto-agile header is never taken for a legacy log: the Spec ID
	// event anywhere but first is refused.
	withSpec := append(bytes.Clone(raw), readFile(t, tpmDir, "rhel8-uefi.bin")[:spans(t, readFile(t, tpmDir, "rhel8-uefi.bin"))[0].end]...)
	if _, err := ParseTPM(withSpec); err == nil || !strings.Contains(err.Error(), "Spec ID Event03 that is not the first event") {
		t.Errorf("legacy log with a Spec ID event appended: %v", err)
	}
	// Not a TPM log at all: says what it is not.
	if _, err := ParseTPM(bytes.Repeat([]byte("x"), 64)); !errors.Is(err, ErrNotTCG) || !strings.Contains(err.Error(), "nor a legacy SHA-1 log") {
		t.Errorf("garbage: %v", err)
	}
}
