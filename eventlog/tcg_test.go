package eventlog

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-eventlog/tcg"
)

var ccelFiles = []string{"cos-113-intel-tdx.bin", "ubuntu-2404-intel-tdx.bin", "gdc-tdx.bin"}

var tpmFiles = []string{"rhel8-uefi.bin", "ubuntu-2104-no-secure-boot.bin", "ubuntu-2404-amd-sevsnp.bin",
	"ubuntu-2404-intel-tdx.bin", "cos-125-intel-tdx-secure-boot.bin"}

// TestParseAgreesWithGoEventlog checks the project's walk against
// go-eventlog's parser, event by event and bank by bank.
func TestParseAgreesWithGoEventlog(t *testing.T) {
	type tc struct {
		dir, file string
		parse     func([]byte) (*Log, error)
		space     cctrusted.Space
	}
	var cases []tc
	for _, f := range ccelFiles {
		cases = append(cases, tc{ccelDir, f, ParseCCEL, cctrusted.SpaceCCMR})
	}
	for _, f := range tpmFiles {
		cases = append(cases, tc{tpmDir, f, ParseTPM, cctrusted.SpacePCR})
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			raw := readFile(t, c.dir, c.file)
			l, err := c.parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := tcg.ParseEventLog(raw, tcg.ParseOpts{AllowPadding: c.space == cctrusted.SpaceCCMR})
			if err != nil {
				t.Fatal(err)
			}
			if len(ref.Algs) != len(l.Algorithms) {
				t.Fatalf("banks %v, go-eventlog %v", l.Algorithms, ref.Algs)
			}
			for _, ha := range ref.Algs {
				alg := cctrusted.Algorithm(ha)
				refEvents := ref.Events(ha)
				// go-eventlog leaves out the Spec ID event.
				if len(refEvents) != len(l.Events)-1 {
					t.Fatalf("%d events, go-eventlog %d (+1 Spec ID)", len(l.Events), len(refEvents))
				}
				for i, re := range refEvents {
					e := l.Events[i+1]
					d, _ := e.Digest(alg)
					if e.IMR.Space != c.space || int(e.IMR.Index) != re.Index || e.Type != uint32(re.Type) ||
						!bytes.Equal(e.Data, re.Data) || !bytes.Equal(d, re.Digest) {
						t.Fatalf("event %d (%v) differs from go-eventlog", i+1, alg)
					}
				}
			}
			if l.Events[0].Type != cctrusted.EventNoAction || !bytes.HasPrefix(l.Events[0].Data, []byte("Spec ID Event03")) {
				t.Fatalf("event 0 is not the Spec ID event: %+v", l.Events[0])
			}
		})
	}
}

func TestCCELReplayMatchesQuoteAndPython(t *testing.T) {
	exp := ccelExpected(t)
	for _, f := range ccelFiles {
		t.Run(f, func(t *testing.T) {
			l, err := ParseCCEL(readFile(t, ccelDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if want := int(exp[f]["events"].(float64)); len(l.Events) != want {
				t.Errorf("%d events, python counts %d", len(l.Events), want)
			}
			regs, err := l.Replay()
			if err != nil {
				t.Fatal(err)
			}
			want := expectedRTMRs(t, f)
			if f == "cos-113-intel-tdx.bin" {
				want = quoteRTMRs(t) // the hardware-signed values
			}
			for i, w := range want {
				got, _ := regs.Get(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384)
				if !bytes.Equal(got, w) {
					t.Errorf("rtmr%d = %x, want %x", i, got, w)
				}
			}
		})
	}
}

func TestTPMReplayMatchesUpstreamPCRs(t *testing.T) {
	for file, regs := range tpmExpected(t) {
		t.Run(file, func(t *testing.T) {
			l, err := ParseTPM(readFile(t, tpmDir, file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.Replay()
			if err != nil {
				t.Fatal(err)
			}
			checked := 0
			for m, banks := range regs {
				if !firmwarePCR(m.Index) {
					continue
				}
				for alg, want := range banks {
					g, ok := got.Get(m, alg)
					if !ok {
						g = make([]byte, alg.Size())
					}
					if !bytes.Equal(g, want) {
						t.Errorf("%v %v = %x, want %x", m, alg, g, want)
					}
					checked++
				}
			}
			if checked < 10 {
				t.Fatalf("only %d registers compared", checked)
			}
		})
	}
}

func TestTPMStartRules(t *testing.T) {
	d := bytes.Repeat([]byte{0xAB}, 32)
	ext := func(start byte) []byte {
		init := make([]byte, 32)
		init[31] = start
		h := sha256.Sum256(append(init, d...))
		return h[:]
	}
	post := tcgEvent{index: 0, typ: 1, digests: map[cctrusted.Algorithm][]byte{cctrusted.AlgSHA256: d}}
	locality := tcgEvent{index: 0, typ: 3, data: append([]byte("StartupLocality\x00"), 3)}
	hcrtm := tcgEvent{index: 0, typ: 0x80000010, digests: map[cctrusted.Algorithm][]byte{cctrusted.AlgSHA256: d}}
	algs := []cctrusted.Algorithm{cctrusted.AlgSHA256}
	tests := []struct {
		name    string
		events  []tcgEvent
		want    []byte
		wantErr string
	}{
		{"zero start", []tcgEvent{post}, ext(0), ""},
		{"startup locality 3", []tcgEvent{locality, post}, ext(3), ""},
		{"h-crtm", []tcgEvent{hcrtm}, ext(4), ""},
		{"h-crtm after a measurement", []tcgEvent{post, hcrtm}, nil, "H-CRTM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseTPM(buildTCG(algs, tt.events))
			if err != nil {
				t.Fatal(err)
			}
			regs, err := l.Replay()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := regs.Get(cctrusted.PCR(0).IMR(), cctrusted.AlgSHA256); !bytes.Equal(got, tt.want) {
				t.Fatalf("pcr0 = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	cos := readFile(t, ccelDir, "cos-113-intel-tdx.bin")
	sp := spans(t, cos)
	end := sp[len(sp)-1].end
	tpm := readFile(t, tpmDir, "rhel8-uefi.bin")

	badPadding := bytes.Clone(cos)
	badPadding[len(badPadding)-1] = 0
	badIndex := bytes.Clone(cos)
	copy(badIndex[sp[3].start:], []byte{5, 0, 0, 0}) // CC MR 5 does not exist
	badAlg := bytes.Clone(cos)
	badAlg[sp[3].start+12] = 0x0b // digest claims SHA-256, which the log does not declare
	hugeData := bytes.Clone(cos[:sp[2].end])
	// cos-113 has one bank (SHA-384): the data size follows 12 header bytes
	// and one 2+48 byte digest.
	copy(hugeData[sp[2].start+12+50:], []byte{0xff, 0xff, 0xff, 0x7f})
	tpmWithMarker := append(bytes.Clone(tpm), 0xff, 0xff, 0xff, 0xff)

	tests := []struct {
		name   string
		parse  func([]byte) (*Log, error)
		in     []byte
		want   string
		notTCG bool
	}{
		{"empty", ParseCCEL, nil, "empty", false},
		{"garbage", ParseCCEL, bytes.Repeat([]byte("garbage!"), 100), "Spec ID", true},
		{"ima ascii", ParseTPM, []byte("10 91f3 ima-ng sha256:00 boot_aggregate\n"), "Spec ID", true},
		{"truncated spec id", ParseCCEL, cos[:60], "event 0 (Spec ID)", false},
		{"too short to tell", ParseCCEL, cos[:40], "Spec ID", true},
		{"truncated mid-event", ParseCCEL, cos[:sp[5].start+20], "event 5", false},
		{"truncated mid-header", ParseCCEL, cos[:sp[5].start+6], "event 5", false},
		{"non-FF after end marker", ParseCCEL, badPadding, "padding", false},
		{"CC MR out of range", ParseCCEL, badIndex, "register index 5", false},
		{"undeclared bank", ParseCCEL, badAlg, "does not declare", false},
		{"data size past end", ParseCCEL, hugeData, "runs past the end", false},
		{"end marker in a TPM log", ParseTPM, tpmWithMarker, "end-of-log marker", false},
		{"PCR out of range", ParseTPM, buildTCG([]cctrusted.Algorithm{cctrusted.AlgSHA256}, []tcgEvent{{index: 24, typ: 1}}), "register index 24", false},
		{"oversized", ParseCCEL, make([]byte, DefaultMaxLogSize+1), "limit", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := tt.parse(tt.in)
			if err == nil {
				t.Fatalf("accepted (%d events)", len(l.Events))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if errors.Is(err, ErrNotTCG) != tt.notTCG {
				t.Errorf("errors.Is(ErrNotTCG) = %v, want %v", !tt.notTCG, tt.notTCG)
			}
		})
	}

	// The log without its padding is still the same log.
	if l, err := ParseCCEL(cos[:end]); err != nil || len(l.Events) != len(sp) {
		t.Errorf("unpadded CCEL: %v", err)
	}
	// Limits.
	if _, err := (Limits{MaxEvents: 10}).ParseCCEL(cos); err == nil || !strings.Contains(err.Error(), "more than 10 events") {
		t.Errorf("event limit: %v", err)
	}
	if _, err := (Limits{MaxBytes: 1000}).ParseCCEL(cos); err == nil || !strings.Contains(err.Error(), "1000 byte limit") {
		t.Errorf("size limit: %v", err)
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		dir, file string
		want      Format
	}{
		{ccelDir, "cos-113-intel-tdx.bin", FormatCCEL},
		{ccelDir, "gdc-tdx.bin", FormatCCEL},
		{tpmDir, "rhel8-uefi.bin", FormatTPM},
		{tpmDir, "ubuntu-2404-intel-tdx.bin", FormatTPM},
	}
	for _, tt := range tests {
		raw := readFile(t, tt.dir, tt.file)
		if got, ok := DetectTCG(raw); !ok || got != tt.want {
			t.Errorf("%s: DetectTCG = %q, %v; want %q", tt.file, got, ok, tt.want)
		}
		// An unpadded CCEL is still told apart by its single SHA-384 bank.
		if tt.want == FormatCCEL {
			sp := spans(t, raw)
			if got, _ := DetectTCG(raw[:sp[len(sp)-1].end]); got != FormatCCEL {
				t.Errorf("%s unpadded: DetectTCG = %q", tt.file, got)
			}
		}
	}
	for _, b := range [][]byte{nil, []byte("Spec ID Event03"), []byte("10 abc ima-ng sha1:00 x\n"), readFile(t, ccelDir, "cos-113-intel-tdx.table.bin")} {
		if LooksTCG(b) {
			t.Errorf("LooksTCG(%q) = true", b)
		}
	}
	for _, s := range []string{"ccel", "TPM", " ima ", "runtime"} {
		if _, err := ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q): %v", s, err)
		}
	}
	if _, err := ParseFormat("json"); err == nil {
		t.Error("ParseFormat(json) accepted")
	}
}

func TestCCELTable(t *testing.T) {
	good := readFile(t, ccelDir, "cos-113-intel-tdx.table.bin")
	tab, err := ParseCCELTable(good)
	if err != nil {
		t.Fatal(err)
	}
	// Values read off the real table with xxd.
	if tab.CCType != CCTypeTDX || tab.LAML != 0x40000 || tab.LASA != 0xbedbf000 || tab.OEMID != "INTEL" || tab.Revision != 1 {
		t.Fatalf("table = %+v", tab)
	}
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	fixSum := func(b []byte) {
		b[9] = 0
		var s byte
		for _, x := range b {
			s += x
		}
		b[9] = -s
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"short", good[:40], "want 56"},
		{"oversized", make([]byte, 5000), "limit"},
		{"signature", mod(func(b []byte) { b[0] = 'X'; fixSum(b) }), "signature"},
		{"length field", mod(func(b []byte) { b[4] = 60; fixSum(b) }), "length field"},
		{"checksum", mod(func(b []byte) { b[20] ^= 1 }), "checksum"},
		{"cc type", mod(func(b []byte) { b[36] = 9; fixSum(b) }), "CC type"},
		{"empty log area", mod(func(b []byte) { copy(b[40:48], make([]byte, 8)); fixSum(b) }), "empty log area"},
		{"garbage", bytes.Repeat([]byte{0x5a}, 56), "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCCELTable(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
