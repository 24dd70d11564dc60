package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the CLI in-process and returns exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

const (
	cosQuote = "../testdata/tdx/cos-113-tdx-quote.dat"
	cosCCEL  = "../testdata/tdx/ccel_data.dat"
	cosTable = "../testdata/tdx/ccel_table.dat"
	sprQuote = "../testdata/tdx/tdx_prod_quote_SPR_E4.dat"
)

func readJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
}

func TestEventlogReplayMatchesExpected(t *testing.T) {
	var expected map[string]map[string]any
	b, err := os.ReadFile("../testdata/ccel/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	readJSON(t, string(b), &expected)
	for file, want := range expected {
		t.Run(file, func(t *testing.T) {
			// Flags after the positional argument, as cobra allows.
			code, out, errs := run(t, "eventlog", filepath.Join("../testdata/ccel", file), "--replay", "-o", "json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var got logOutput
			readJSON(t, out, &got)
			for _, r := range []string{"rtmr0", "rtmr1", "rtmr2"} {
				if got.Replayed[r] != want[r] {
					t.Errorf("%s = %s, independent replay says %v", r, got.Replayed[r], want[r])
				}
			}
			if got.Format != "ccel" || got.TotalEvents != int(want["events"].(float64)) {
				t.Errorf("format %s, %d events; want ccel, %v", got.Format, got.TotalEvents, want["events"])
			}
		})
	}
}

// The cos-113 CCEL replays to the RTMRs its real quote signed.
func TestEventlogReplayEqualsQuote(t *testing.T) {
	code, out, errs := run(t, "-o", "json", "eventlog", "--replay", cosCCEL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var lg logOutput
	readJSON(t, out, &lg)
	code, out, errs = run(t, "quote", "inspect", cosQuote, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var q map[string]any
	readJSON(t, out, &q)
	for _, r := range []string{"rtmr0", "rtmr1", "rtmr2"} {
		if lg.Replayed[r] == "" || lg.Replayed[r] != q[r] {
			t.Errorf("%s: log replays to %s, quote holds %v", r, lg.Replayed[r], q[r])
		}
	}
}

func TestEventlogPagingAndFormats(t *testing.T) {
	tests := []struct {
		args   []string
		format string
		events int
	}{
		{[]string{"eventlog", "../testdata/ccel/gdc-tdx.bin", "--start", "5", "--count", "3"}, "ccel", 3},
		{[]string{"eventlog", "../testdata/ccel/gdc-tdx.bin", "--start", "110"}, "ccel", 0},
		{[]string{"eventlog", "../testdata/tpmlog/rhel8-uefi.bin", "--replay"}, "tpm", -1},
		{[]string{"eventlog", "../testdata/ima/mixed.ascii", "--replay"}, "ima", -1},
		{[]string{"eventlog", "../testdata/ima/mixed.bin", "--format", "ima"}, "ima", -1},
	}
	for _, tt := range tests {
		code, out, errs := run(t, append(tt.args, "-o", "json")...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errs)
		}
		var got logOutput
		readJSON(t, out, &got)
		if string(got.Format) != tt.format || (tt.events >= 0 && len(got.Events) != tt.events) {
			t.Errorf("%v: format %s with %d events", tt.args, got.Format, len(got.Events))
		}
	}
}

func TestQuoteInspect(t *testing.T) {
	code, out, errs := run(t, "quote", "inspect", "-o", "json", cosQuote)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var q map[string]any
	readJSON(t, out, &q)
	for _, k := range []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "report_data", "td_attributes", "debug", "fmspc", "pck_chain"} {
		if _, ok := q[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	raw, _ := os.ReadFile(cosQuote)
	// MRTD at body offset 136 (quote offset 184), FACTS.md.
	if want := bytesHex(raw[184 : 184+48]); q["mrtd"] != want {
		t.Errorf("mrtd = %v, bytes at 184 are %s", q["mrtd"], want)
	}
}

func bytesHex(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// badInputs writes, for every command's input, the kinds of wrong input an
// operator or an attacker hands in.
func badInputs(t *testing.T) map[string]string {
	dir := t.TempDir()
	quote, _ := os.ReadFile(cosQuote)
	ccel, _ := os.ReadFile(cosCCEL)
	files := map[string][]byte{
		"empty":          {},
		"garbage":        bytes.Repeat([]byte("\x13\x37garbage"), 1000),
		"truncatedQuote": quote[:700],
		"truncatedCCEL":  ccel[:300],
		"ima-bad-hex":    []byte("10 zz ima-ng sha256:00 /x\n"),
	}
	paths := map[string]string{}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		paths[name] = p
	}
	big := filepath.Join(dir, "oversized")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file past the CLI's input bound costs no disk.
	if err := f.Truncate(maxInputFile + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	paths["oversized"] = big
	paths["missing"] = filepath.Join(dir, "does-not-exist")
	paths["directory"] = dir
	return paths
}

func TestBadInputOneLineError(t *testing.T) {
	p := badInputs(t)
	cases := [][]string{
		{"eventlog", p["empty"]},
		{"eventlog", p["garbage"]},
		{"eventlog", p["truncatedCCEL"]},
		{"eventlog", p["truncatedCCEL"], "--format", "ccel"},
		{"eventlog", p["oversized"]},
		{"eventlog", p["missing"]},
		{"eventlog", p["directory"]},
		{"eventlog", p["ima-bad-hex"], "--format", "ima"},
		{"eventlog", cosQuote}, // wrong format
		{"eventlog", cosCCEL, "--format", "tpm"},
		{"eventlog", cosCCEL, "--format", "runtime"},
		{"eventlog", cosCCEL, "--format", "nope"},
		{"eventlog", cosCCEL, "--start", "1000"},
		{"eventlog", cosCCEL, "--replay", "--alg", "sha1"},
		{"eventlog"},
		{"quote", "inspect", p["empty"]},
		{"quote", "inspect", p["garbage"]},
		{"quote", "inspect", p["truncatedQuote"]},
		{"quote", "inspect", p["oversized"]},
		{"quote", "inspect", p["missing"]},
		{"quote", "inspect", cosCCEL}, // wrong format
		{"-o", "yaml", "quote", "inspect", cosQuote},
		{"nosuchcommand"},
	}
	cases = append(cases, verifyBadCases(p)...)
	for _, args := range cases {
		code, out, errs := run(t, args...)
		if code == 0 {
			t.Errorf("%v: exit 0, want failure (stdout %q)", args, out)
			continue
		}
		lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "ccnp: ") || len(lines[0]) < 12 {
			t.Errorf("%v: want one clear error line, got %q", args, errs)
		}
		if strings.Contains(errs, "goroutine") || strings.Contains(errs, "panic") || strings.Contains(errs, "internal error") {
			t.Errorf("%v: crashed: %s", args, errs)
		}
	}
}

// TestQuoteInspectV5 shows the TDX 1.5 fields of the real v5 quote, in JSON
// and text, and names an SGX quote in one line.
func TestQuoteInspectV5(t *testing.T) {
	const v5 = "../testdata/tdx/quote_v5_sample.dat"
	code, out, errs := run(t, "quote", "inspect", "-o", "json", v5)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var q map[string]any
	readJSON(t, out, &q)
	if q["version"] != float64(5) || q["body_type"] != float64(3) || q["tee_tcb_svn2"] != "0d010400000000000000000000000000" || q["mrservicetd"] != strings.Repeat("0", 96) {
		t.Errorf("version %v body type %v tee_tcb_svn2 %v mrservicetd %v", q["version"], q["body_type"], q["tee_tcb_svn2"], q["mrservicetd"])
	}
	code, out, errs = run(t, "quote", "inspect", v5)
	if code != 0 || !strings.Contains(out, "TDX quote v5") || !strings.Contains(out, "tee_tcb_svn2:") || !strings.Contains(out, "mrservicetd:") {
		t.Errorf("exit %d: %s%s", code, out, errs)
	}
	code, _, errs = run(t, "quote", "inspect", "../testdata/dcap-qvl/sgx_quote")
	if code == 0 || !strings.Contains(errs, "SGX quote, not TDX") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("SGX quote: exit %d: %q", code, errs)
	}
}
