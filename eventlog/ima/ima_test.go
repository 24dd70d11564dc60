package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// The fixtures and expected.json come from testdata/ima/gen.py, an
// independent Python (hashlib) implementation of the kernel's layouts; no
// expected value here was produced by this package.
const fixtureDir = "../../testdata/ima"

type wantEntry struct {
	PCR          uint32 `json:"pcr"`
	Template     string `json:"template"`
	Violation    bool   `json:"violation"`
	TemplateHash string `json:"template_hash"`
	DigestAlgo   string `json:"digest_algo"`
	DigestType   string `json:"digest_type"`
	Digest       string `json:"digest"`
	Name         string `json:"name"`
	Sig          string `json:"sig"`
	Buf          string `json:"buf"`
	Dep          string `json:"dep"`
	CgroupName   string `json:"cgroup_name"`
	CgroupPath   string `json:"cgroup_path"`
}

type wantFixture struct {
	ByteOrder string                       `json:"byte_order"`
	Entries   []wantEntry                  `json:"entries"`
	PCRs      map[string]map[string]string `json:"pcrs"`
}

func loadExpected(t testing.TB) map[string]wantFixture {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]wantFixture
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w wantFixture) opts() Options {
	if w.ByteOrder == "big" {
		return Options{ByteOrder: binary.BigEndian}
	}
	return Options{}
}

func unhexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var banks = map[string]cctrusted.Algorithm{
	"sha1": cctrusted.AlgSHA1, "sha256": cctrusted.AlgSHA256, "sha384": cctrusted.AlgSHA384,
}

func TestFixtures(t *testing.T) {
	exp := loadExpected(t)
	for _, fx := range []string{"mixed", "mixed-be", "cgpath"} {
		want := exp[fx]
		for _, tc := range []struct {
			file, format string
			parse        func([]byte, Options) (*Log, error)
		}{
			{fx + ".ascii", FormatASCII, ParseASCII},
			{fx + ".bin", FormatBinary, ParseBinary},
			{fx + ".ascii", FormatASCII, Parse},
			{fx + ".bin", FormatBinary, Parse},
		} {
			t.Run(tc.file, func(t *testing.T) {
				log, err := tc.parse(readFixture(t, tc.file), want.opts())
				if err != nil {
					t.Fatal(err)
				}
				if log.Format != tc.format {
					t.Errorf("format %q, want %q", log.Format, tc.format)
				}
				checkEntries(t, log, want.Entries)
				checkReplay(t, log, want.PCRs)
			})
		}
	}
}

func checkEntries(t *testing.T, log *Log, want []wantEntry) {
	t.Helper()
	if len(log.Entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(log.Entries), len(want))
	}
	if log.Entries[0].FileName != "boot_aggregate" {
		t.Errorf("first entry is %q, want boot_aggregate", log.Entries[0].FileName)
	}
	for i, w := range want {
		e := log.Entries[i]
		got := wantEntry{
			PCR: uint32(e.PCR), Template: e.Template, Violation: e.Violation,
			TemplateHash: hex.EncodeToString(e.TemplateHash[:]),
			DigestAlgo:   e.DigestAlgo, DigestType: e.DigestType, Digest: hex.EncodeToString(e.FileDigest.Value),
			Name: e.FileName, Sig: hex.EncodeToString(e.Signature), Buf: hex.EncodeToString(e.Buf),
			Dep: e.Dep, CgroupName: e.CgroupName, CgroupPath: e.CgroupPath,
		}
		if got != w {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got, w)
		}
		if size, alg := kernelHashSize([]byte(e.DigestAlgo)); size != len(e.FileDigest.Value) || alg != e.FileDigest.Alg {
			t.Errorf("entry %d: digest %v of %d bytes for %s", i, e.FileDigest.Alg, len(e.FileDigest.Value), e.DigestAlgo)
		}
	}
}

func checkReplay(t *testing.T, log *Log, want map[string]map[string]string) {
	t.Helper()
	for bankName, alg := range banks {
		regs, err := log.Replay(alg)
		if err != nil {
			t.Fatal(err)
		}
		if len(regs) != len(want) {
			t.Errorf("%s: %d registers replayed, want %d", bankName, len(regs), len(want))
		}
		for pcr, vals := range want {
			m, err := cctrusted.ParseIMR("pcr" + pcr)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := regs.Get(m, alg)
			if hex.EncodeToString(got) != vals[bankName] {
				t.Errorf("%v %s: replayed %x, want %s", m, bankName, got, vals[bankName])
			}
			// The same through cctrusted events and its generic replay.
			evs, err := log.Events(alg)
			if err != nil {
				t.Fatal(err)
			}
			regs2, err := cctrusted.Replay(evs)
			if err != nil {
				t.Fatal(err)
			}
			got2, _ := regs2.Get(m, alg)
			if !bytes.Equal(got, got2) {
				t.Errorf("%v %s: events replay to %x, Replay to %x", m, bankName, got2, got)
			}
			// Verify accepts the independent value.
			if err := log.Verify(alg, m, unhexT(t, vals[bankName]), nil); err != nil {
				t.Errorf("Verify(%v, %s): %v", m, bankName, err)
			}
		}
	}
}

// Both formats of one list decode to the same entries.
func TestASCIIAndBinaryAgree(t *testing.T) {
	for _, fx := range []string{"mixed", "mixed-be", "cgpath"} {
		opts := loadExpected(t)[fx].opts()
		a, err := ParseASCII(readFixture(t, fx+".ascii"), opts)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseBinary(readFixture(t, fx+".bin"), opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a.Entries {
			ea, eb := a.Entries[i], b.Entries[i]
			if ea.Line != i+1 || eb.Line != 0 {
				t.Errorf("%s entry %d: lines %d/%d", fx, i, ea.Line, eb.Line)
			}
			ea.Line, ea.Offset, eb.Offset = 0, 0, 0
			if !reflect.DeepEqual(ea, eb) {
				t.Errorf("%s entry %d differs:\nascii  %+v\nbinary %+v", fx, i, ea, eb)
			}
		}
	}
}

// The parsed log must not alias the caller's buffer.
func TestNoAliasing(t *testing.T) {
	for _, f := range []string{"mixed.ascii", "mixed.bin"} {
		b := readFixture(t, f)
		log, err := Parse(b, Options{})
		if err != nil {
			t.Fatal(err)
		}
		before, _ := log.Replay(cctrusted.AlgSHA256)
		for i := range b {
			b[i] ^= 0xFF
		}
		after, _ := log.Replay(cctrusted.AlgSHA256)
		if !reflect.DeepEqual(before, after) || log.Entries[1].FileName != "/usr/lib/systemd/systemd" {
			t.Errorf("%s: log changed when the input buffer did", f)
		}
	}
}

func TestVerify(t *testing.T) {
	want := loadExpected(t)["cgpath"]
	log, err := ParseBinary(readFixture(t, "cgpath.bin"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	pcr10 := cctrusted.PCR(10).IMR()
	good := unhexT(t, want.PCRs["10"]["sha384"])
	lastIdx := len(log.Entries) - 1

	// On TDX, PCR10 entries extend RTMR2 on top of what boot extended.
	fw := bytes.Repeat([]byte{0x5a}, 48)
	rtmr2 := append([]byte(nil), fw...)
	var d [48]byte
	for i := range log.Entries {
		if err := EntryDigest(cctrusted.AlgSHA384, &log.Entries[i], d[:]); err != nil {
			t.Fatal(err)
		}
		sum(cctrusted.AlgSHA384, rtmr2, append(rtmr2[:48:48], d[:]...))
	}

	flipped := append([]byte(nil), good...)
	flipped[47] ^= 1
	tests := []struct {
		name      string
		alg       cctrusted.Algorithm
		imr       cctrusted.IMR
		signed    []byte
		initial   []byte
		mismatch  bool
		wantError bool
	}{
		{"pcr10 ok", cctrusted.AlgSHA384, pcr10, good, nil, false, false},
		{"pcr10 flipped", cctrusted.AlgSHA384, pcr10, flipped, nil, true, true},
		{"pcr11 untouched", cctrusted.AlgSHA384, cctrusted.PCR(11).IMR(), make([]byte, 48), nil, false, false},
		{"pcr10 with wrong initial", cctrusted.AlgSHA384, pcr10, good, fw, true, true},
		{"rtmr2 ok", cctrusted.AlgSHA384, cctrusted.RTMR(2).IMR(), rtmr2, fw, false, false},
		{"rtmr2 without initial", cctrusted.AlgSHA384, cctrusted.RTMR(2).IMR(), rtmr2, nil, true, true},
		{"rtmr1 has no IMA entries", cctrusted.AlgSHA384, cctrusted.RTMR(1).IMR(), rtmr2, fw, true, true},
		{"wrong size", cctrusted.AlgSHA384, pcr10, good[:32], nil, false, true},
		{"sm3 bank", cctrusted.AlgSM3256, pcr10, make([]byte, 32), nil, false, true},
		{"invalid register", cctrusted.AlgSHA384, cctrusted.IMR{Space: cctrusted.SpacePCR, Index: 30}, good, nil, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := log.Verify(tc.alg, tc.imr, tc.signed, tc.initial)
			if (err != nil) != tc.wantError {
				t.Fatalf("err = %v, want error %v", err, tc.wantError)
			}
			var me *cctrusted.MismatchError
			if errors.As(err, &me) != tc.mismatch {
				t.Fatalf("err = %v, want mismatch %v", err, tc.mismatch)
			}
			if me != nil {
				if me.IMR != tc.imr || !bytes.Equal(me.Expected, tc.signed) {
					t.Errorf("mismatch names %v / %x", me.IMR, me.Expected)
				}
				if tc.imr != cctrusted.RTMR(1).IMR() && (me.LastEvent != lastIdx || me.Events != len(log.Entries)) {
					t.Errorf("mismatch names last event %d of %d, want %d of %d", me.LastEvent, me.Events, lastIdx, len(log.Entries))
				}
			}
		})
	}
}

func TestReplayRejects(t *testing.T) {
	log, err := Parse(readFixture(t, "mixed.bin"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log.Replay(cctrusted.AlgSM3256); err == nil {
		t.Error("replayed an SM3 bank")
	}
	if _, err := log.Events(cctrusted.Algorithm(0x99)); err == nil {
		t.Error("events for an unknown bank")
	}
	log.Entries[2].PCR = 24
	if _, err := log.Replay(cctrusted.AlgSHA256); err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Errorf("PCR 24 replayed: %v", err)
	}
}

// Violations extend all 0xFF, whatever their template data says.
func TestViolationExtendsFF(t *testing.T) {
	log, err := Parse(readFixture(t, "mixed.ascii"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	for i, e := range log.Entries {
		if e.Violation {
			v = i
		}
	}
	if v != 7 {
		t.Fatalf("violation at entry %d, want 7", v)
	}
	if n := log.Violations(); n != 1 {
		t.Errorf("Violations() = %d, want 1", n)
	}
	before, _ := log.Replay(cctrusted.AlgSHA256)
	log.Entries[v].TemplateData = []byte("anything")
	after, _ := log.Replay(cctrusted.AlgSHA256)
	if !reflect.DeepEqual(before, after) {
		t.Error("a violation's template data changed the replay")
	}
	log.Entries[v].Violation = false
	changed, _ := log.Replay(cctrusted.AlgSHA256)
	if reflect.DeepEqual(before, changed) {
		t.Error("clearing the violation mark did not change the replay")
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		format string
		ok     bool
	}{
		{"ascii", readFixture(t, "mixed.ascii"), FormatASCII, true},
		{"binary", readFixture(t, "mixed.bin"), FormatBinary, true},
		{"binary big endian", readFixture(t, "mixed-be.bin"), FormatBinary, true},
		{"cgpath ascii", readFixture(t, "cgpath.ascii"), FormatASCII, true},
		{"pcr below 10", []byte(" 9 " + strings.Repeat("ab", 20) + " ima-ng sha1:00 x\n"), FormatASCII, true},
		{"empty", nil, "", false},
		{"text", []byte("hello world\n"), "", false},
		{"json", []byte(`{"entries": []}`), "", false},
		{"short hash", []byte("10 abcd ima-ng x\n"), "", false},
		{"binary pcr 99", append([]byte{99, 0, 0, 0}, make([]byte, 40)...), "", false},
		{"tcg log", append([]byte{0, 0, 0, 0, 3, 0, 0, 0}, make([]byte, 60)...), "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := Sniff(tc.in)
			if f != tc.format || ok != tc.ok {
				t.Errorf("Sniff = %q, %v; want %q, %v", f, ok, tc.format, tc.ok)
			}
		})
	}
}

// mutateASCII replaces the first occurrence of old in line n (0-based).
func mutateASCII(t *testing.T, b []byte, n int, old, repl string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(b), "\n")
	if !strings.Contains(lines[n], old) {
		t.Fatalf("line %d has no %q", n, old)
	}
	lines[n] = strings.Replace(lines[n], old, repl, 1)
	return []byte(strings.Join(lines, ""))
}

func TestASCIINegative(t *testing.T) {
	good := readFixture(t, "mixed.ascii")
	lines := strings.SplitAfter(string(good), "\n")
	hash5 := lines[5][3:43]
	tests := []struct {
		name   string
		in     []byte
		opts   Options
		is     error
		line   int
		field  string
		substr string
	}{
		{"template hash altered", mutateASCII(t, good, 5, hash5, strings.Repeat("0", 39)+"1"), Options{}, ErrTemplateHash, 6, "template-hash", ""},
		{"file digest altered", mutateASCII(t, good, 1, "sha256:62", "sha256:63"), Options{}, ErrTemplateHash, 2, "template-hash", ""},
		{"file name altered", mutateASCII(t, good, 2, "ld-linux", "ld-Linux"), Options{}, ErrTemplateHash, 3, "template-hash", ""},
		{"legacy name altered", mutateASCII(t, good, 3, "legacy_tool", "legacy_tooL"), Options{}, ErrTemplateHash, 4, "template-hash", ""},
		{"cgroup path altered", mutateASCII(t, good, 12, "besteffort-pod", "burstable-pod"), Options{}, ErrTemplateHash, 13, "template-hash", ""},
		{"signature altered", mutateASCII(t, good, 5, " 030204", " 030205"), Options{}, ErrTemplateHash, 6, "template-hash", ""},
		{"bad hex in hash", mutateASCII(t, good, 1, lines[1][3:5], "zz"), Options{}, ErrMalformed, 2, "template-hash", "invalid byte"},
		{"bad hex in digest", mutateASCII(t, good, 1, "sha256:62", "sha256:g2"), Options{}, ErrMalformed, 2, "d-ng", "invalid byte"},
		{"odd hex in digest", mutateASCII(t, good, 1, "sha256:62", "sha256:6"), Options{}, ErrMalformed, 2, "d-ng", "odd"},
		{"bad hex in sig", mutateASCII(t, good, 5, " 030204", " 03020x"), Options{}, ErrMalformed, 6, "sig", "invalid byte"},
		{"bad hex in legacy digest", mutateASCII(t, good, 3, " 9b33", " 9x33"), Options{}, ErrMalformed, 4, "d", "invalid byte"},
		{"digest without algo", mutateASCII(t, good, 1, "sha256:", ""), Options{}, ErrMalformed, 2, "d-ng", "algo:hex"},
		{"digest of wrong size", mutateASCII(t, good, 1, "sha256:62", "sha384:62"), Options{}, ErrMalformed, 2, "d-ng", "want 48"},
		{"unknown template", mutateASCII(t, good, 4, " ima ", " ima-foo "), Options{}, ErrUnknownTemplate, 5, "template-name", "ima-foo"},
		{"unknown template opaque is still ascii error", mutateASCII(t, good, 4, " ima ", " ima-foo "), Options{AllowUnknownTemplates: true}, ErrUnknownTemplate, 5, "template-name", ""},
		{"pcr too large", mutateASCII(t, good, 0, "10 ", "24 "), Options{}, ErrMalformed, 1, "pcr", "outside"},
		{"pcr three digits", mutateASCII(t, good, 0, "10 ", "100 "), Options{}, ErrMalformed, 1, "pcr", "two digits"},
		{"no pcr", mutateASCII(t, good, 0, "10 ", "x "), Options{}, ErrMalformed, 1, "pcr", ""},
		{"empty line", []byte(lines[0] + "\n" + lines[1]), Options{}, ErrMalformed, 2, "", "empty line"},
		{"missing name", []byte(lines[0][:strings.LastIndexByte(lines[0], ' ')]), Options{}, ErrTruncated, 1, "n-ng", ""},
		{"extra field", mutateASCII(t, good, 1, "systemd\n", "systemd extra\n"), Options{}, ErrMalformed, 2, "template-data", "after the last field"},
		{"truncated hash", []byte("10 abcdef"), Options{}, ErrTruncated, 1, "template-hash", ""},
		{"too many entries", good, Options{MaxEntries: 3}, ErrTooManyEntries, 4, "", ""},
		{"too many bytes", good, Options{MaxBytes: 100}, ErrTooLarge, 1, "", ""},
		{"field too long", good, Options{MaxFieldLen: 40}, ErrTooLarge, 3, "n-ng", ""},
		{"template data too long", good, Options{MaxTemplateData: 60}, ErrTooLarge, 1, "template-data", ""},
		{"binary input", readFixture(t, "mixed.bin"), Options{}, ErrMalformed, 1, "", ""},
		{"garbage", []byte("\x00\x01\x02garbage\xff"), Options{}, ErrMalformed, 1, "pcr", ""},
		{"legacy name too long", mutateASCII(t, good, 4, " /opt/", " /opt/y"), Options{}, ErrMalformed, 5, "n", "allows 255"},
		{"nul in name", mutateASCII(t, good, 1, "systemd\n", "syst\x00emd\n"), Options{}, ErrMalformed, 2, "n-ng", "NUL"},
		{"big endian list read as little", readFixture(t, "mixed-be.ascii"), Options{ByteOrder: binary.LittleEndian}, ErrTemplateHash, 1, "template-hash", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, err := ParseASCII(tc.in, tc.opts)
			if err == nil {
				t.Fatalf("parsed %d entries, want an error", len(log.Entries))
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if pe.Line != tc.line || pe.Entry != tc.line-1 || pe.Format != FormatASCII {
				t.Errorf("error names line %d entry %d (%s), want line %d: %v", pe.Line, pe.Entry, pe.Format, tc.line, err)
			}
			if tc.field != "" && pe.Field != tc.field {
				t.Errorf("error names field %q, want %q: %v", pe.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.substr) || !strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q does not say %q", err, tc.substr)
			}
		})
	}
}

// Blank-trimming tools drop an empty last sig; an empty sig still parses.
func TestASCIITrailingEmptySig(t *testing.T) {
	good := readFixture(t, "mixed.ascii")
	trimmed := mutateASCII(t, good, 6, "unsigned \n", "unsigned\n")
	a, err := ParseASCII(trimmed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseASCII(good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Entries[6].TemplateData, b.Entries[6].TemplateData) {
		t.Error("trimmed line rebuilt different template data")
	}
	// Without the final newline too.
	if _, err := ParseASCII(good[:len(good)-1], Options{}); err != nil {
		t.Errorf("no final newline: %v", err)
	}
}

// binaryOffsets returns where each entry of a fixture starts, computed by
// walking the layout here independently of the parser.
func binaryOffsets(t *testing.T, b []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off < len(b); {
		offs = append(offs, off)
		nl := int(binary.LittleEndian.Uint32(b[off+24:]))
		pos := off + 28 + nl
		if string(b[off+28:pos]) == "ima" {
			pos += 20
			pos += 4 + int(binary.LittleEndian.Uint32(b[pos:]))
		} else {
			pos += 4 + int(binary.LittleEndian.Uint32(b[pos:]))
		}
		off = pos
	}
	return offs
}

// Cutting the list at every byte: a cut between entries leaves a valid
// shorter list, any other cut is a truncation error naming that entry.
func TestBinaryTruncatedEverywhere(t *testing.T) {
	good := readFixture(t, "mixed.bin")
	offs := binaryOffsets(t, good)
	boundary := map[int]int{}
	for i, o := range offs {
		boundary[o] = i
	}
	for n := 0; n < len(good); n++ {
		log, err := ParseBinary(good[:n], Options{})
		if k, ok := boundary[n]; ok {
			if err != nil || len(log.Entries) != k {
				t.Fatalf("cut at entry boundary %d: %v", n, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("cut at %d parsed", n)
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("cut at %d: %T", n, err)
		}
		want := 0
		for i, o := range offs {
			if o < n {
				want = i
			}
		}
		if pe.Entry != want || pe.Offset != offs[want] {
			t.Fatalf("cut at %d: error names entry %d at %d, want %d: %v", n, pe.Entry, pe.Offset, want, err)
		}
		// Truncation inside the template data's declared length is
		// ErrTruncated; a cut inside a field of the declared data cannot
		// happen since the data length is checked first.
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v is not ErrTruncated", n, err)
		}
	}
}

func putU32(b []byte, off int, v uint32) []byte {
	c := bytes.Clone(b)
	binary.LittleEndian.PutUint32(c[off:], v)
	return c
}

func TestBinaryNegative(t *testing.T) {
	good := readFixture(t, "mixed.bin")
	offs := binaryOffsets(t, good)
	e1 := offs[1]      // ima-ng entry
	e5 := offs[5]      // ima-sig entry
	dl1 := e1 + 28 + 6 // template data length of entry 1
	f1 := dl1 + 4      // first field length of entry 1
	legacy := offs[3]  // ima entry
	lname := legacy + 28 + 3 + 20
	flip := func(off int) []byte {
		c := bytes.Clone(good)
		c[off] ^= 1
		return c
	}
	withName := func(off int, name string) []byte {
		c := bytes.Clone(good[:off+24])
		c = binary.LittleEndian.AppendUint32(c, uint32(len(name)))
		c = append(c, name...)
		return append(c, good[off+28+6:]...) // entry 1's name is "ima-ng"
	}
	tests := []struct {
		name  string
		in    []byte
		opts  Options
		is    error
		entry int
		field string
	}{
		{"template hash altered", flip(e1 + 4), Options{}, ErrTemplateHash, 1, "template-hash"},
		{"template data altered", flip(f1 + 4 + 10), Options{}, ErrTemplateHash, 1, "template-hash"},
		{"signature altered", flip(offs[6] - 1), Options{}, ErrTemplateHash, 5, "template-hash"},
		{"legacy digest altered", flip(legacy + 28 + 3), Options{}, ErrTemplateHash, 3, "template-hash"},
		{"legacy name altered", flip(lname + 4), Options{}, ErrTemplateHash, 3, "template-hash"},
		{"oversized name length", putU32(good, e1+24, 0xFFFFFFFF), Options{}, ErrMalformed, 1, "template-name"},
		{"oversized template data length", putU32(good, dl1, 0xFFFFFFF0), Options{}, ErrTooLarge, 1, "template-data"},
		{"template data longer than input", putU32(good, dl1, 1<<20), Options{}, ErrTruncated, 1, ""},
		{"oversized field length", putU32(good, f1, 0xFFFFFFF0), Options{}, ErrTooLarge, 1, "d-ng"},
		{"field longer than template data", putU32(good, f1, 1000), Options{}, ErrMalformed, 1, "d-ng"},
		{"field shorter than template data", putU32(good, f1, 10), Options{}, ErrMalformed, 1, ""},
		{"oversized legacy name length", putU32(good, lname, 0xFFFFFFFF), Options{}, ErrMalformed, 3, "n"},
		{"pcr too large", putU32(good, e5, 24), Options{}, ErrMalformed, 5, "pcr"},
		{"zero name length", putU32(good, e1+24, 0), Options{}, ErrMalformed, 1, "template-name"},
		{"unknown template", withName(e1, "ima-XX"), Options{}, ErrUnknownTemplate, 1, "template-name"},
		{"unprintable name", withName(e1, "ima\x01ng"), Options{}, ErrMalformed, 1, "template-name"},
		{"too many entries", good, Options{MaxEntries: 4}, ErrTooManyEntries, 4, ""},
		{"too many bytes", good, Options{MaxBytes: len(good) - 1}, ErrTooLarge, 0, ""},
		{"field too long", good, Options{MaxFieldLen: 40}, ErrTooLarge, 2, "n-ng"},
		{"big endian list read as little", readFixture(t, "mixed-be.bin"), Options{ByteOrder: binary.LittleEndian}, ErrMalformed, 0, "pcr"},
		{"ascii input", readFixture(t, "mixed.ascii"), Options{}, ErrMalformed, 0, "pcr"},
		{"garbage", bytes.Repeat([]byte{0xA5}, 100), Options{}, ErrMalformed, 0, "pcr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, err := ParseBinary(tc.in, tc.opts)
			if err == nil {
				t.Fatalf("parsed %d entries, want an error", len(log.Entries))
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if pe.Entry != tc.entry || pe.Format != FormatBinary {
				t.Errorf("error names entry %d (%s), want %d: %v", pe.Entry, pe.Format, tc.entry, err)
			}
			if tc.field != "" && pe.Field != tc.field {
				t.Errorf("error names field %q, want %q: %v", pe.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), "offset") {
				t.Errorf("error %q does not give the offset", err)
			}
		})
	}
}

// Oversized length fields must be rejected without allocating what they
// claim.
func TestBinaryOversizedDoesNotAllocate(t *testing.T) {
	good := readFixture(t, "mixed.bin")
	offs := binaryOffsets(t, good)
	dl1 := offs[1] + 28 + 6
	for _, in := range [][]byte{
		putU32(good, dl1, 0xFFFFFFF0),
		putU32(good, dl1, 1<<30),
		putU32(good, dl1+4, 0xFFFFFFF0),
		putU32(good, offs[1]+24, 0x7FFFFFFF),
	} {
		allocs := testing.AllocsPerRun(5, func() { _, _ = ParseBinary(in, Options{MaxTemplateData: 1 << 31}) })
		var ms0, ms1 runtimeMem
		ms0.read()
		_, err := ParseBinary(in, Options{MaxTemplateData: 1 << 31, MaxFieldLen: 1 << 31})
		ms1.read()
		if err == nil {
			t.Fatal("parsed")
		}
		if d := ms1.total - ms0.total; d > 1<<20 {
			t.Errorf("rejecting a %d-byte input allocated %d bytes (%v allocs)", len(in), d, allocs)
		}
	}
}

// Unknown binary templates are kept opaque, and still hash-checked, only
// when asked.
func TestBinaryOpaque(t *testing.T) {
	raw := readFixture(t, "mixed.bin")
	offs := binaryOffsets(t, raw)
	// Rename entry 1 ("ima-ng") and fix its template hash: the name is not
	// hashed, so only the template check changes.
	c := bytes.Clone(raw[:offs[1]+24])
	c = binary.LittleEndian.AppendUint32(c, 8)
	c = append(c, "ima-next"...)
	c = append(c, raw[offs[1]+28+6:]...)
	if _, err := ParseBinary(c, Options{}); !errors.Is(err, ErrUnknownTemplate) || !strings.Contains(err.Error(), "ima-next") {
		t.Fatalf("unknown template: %v", err)
	}
	log, err := ParseBinary(c, Options{AllowUnknownTemplates: true})
	if err != nil {
		t.Fatal(err)
	}
	e := log.Entries[1]
	if !e.Opaque || e.Template != "ima-next" || e.FileName != "" || len(e.TemplateData) == 0 {
		t.Errorf("opaque entry: %+v", e)
	}
	want := loadExpected(t)["mixed"].PCRs["10"]["sha256"]
	if err := log.Verify(cctrusted.AlgSHA256, cctrusted.PCR(10).IMR(), unhexT(t, want), nil); err != nil {
		t.Errorf("opaque entry replays differently: %v", err)
	}
	c[offs[1]+4] ^= 1
	if _, err := ParseBinary(c, Options{AllowUnknownTemplates: true}); !errors.Is(err, ErrTemplateHash) {
		t.Errorf("opaque entry's hash not checked: %v", err)
	}
}

func TestParseRejectsUnknownFormats(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("garbage"), {0xFF, 0xFF}} {
		if _, err := Parse(in, Options{}); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
	if log, err := ParseASCII(nil, Options{}); err != nil || len(log.Entries) != 0 {
		t.Errorf("empty ascii list: %v", err)
	}
	if log, err := ParseBinary(nil, Options{}); err != nil || len(log.Entries) != 0 {
		t.Errorf("empty binary list: %v", err)
	}
}
