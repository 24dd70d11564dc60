package cli

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// expectedBanks reads an independent replay's *.expected.json.
func expectedBanks(t *testing.T, path string) (events int, banks map[string]map[string]string) {
	t.Helper()
	var v struct {
		Events int                          `json:"events"`
		Banks  map[string]map[string]string `json:"banks"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.Events, v.Banks
}

// TestEventlogRealFormats: `ccnp eventlog --replay` on the real formats of
// issue 15 prints the values the independent replays hold.
func TestEventlogRealFormats(t *testing.T) {
	for _, c := range []struct {
		file, expected, format, alg string
	}{
		{"../testdata/ccel-zerofill/CCEL_data", "../testdata/ccel-zerofill/CCEL_data.expected.json", "ccel", "sha384"},
		{"../testdata/tpmlog/debian-10.bin", "../testdata/tpmlog/debian-10.expected.json", "tpm", "sha1"},
	} {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			code, out, errs := run(t, "eventlog", c.file, "--replay", "-o", "json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var got logOutput
			readJSON(t, out, &got)
			events, banks := expectedBanks(t, c.expected)
			if string(got.Format) != c.format || got.TotalEvents != events || got.ReplayedAlg != c.alg {
				t.Errorf("format %s, %d events, replayed %s; want %s, %d, %s", got.Format, got.TotalEvents, got.ReplayedAlg, c.format, events, c.alg)
			}
			if len(got.Replayed) != len(banks[c.alg]) {
				t.Errorf("%d registers replayed, independent replay %d", len(got.Replayed), len(banks[c.alg]))
			}
			for r, v := range banks[c.alg] {
				if got.Replayed[r] != v {
					t.Errorf("%s = %s, independent replay %s", r, got.Replayed[r], v)
				}
			}
		})
	}
	// The CCNP kernel's IMA list: its bank is the template hash's (SHA-384),
	// register 2 = SHA-384(zeros || the template hash the kernel printed).
	const imaList = "../testdata/ima/cc-trusted-api/ima_log.ascii"
	raw, err := os.ReadFile(imaList)
	if err != nil {
		t.Fatal(err)
	}
	stated, _ := hex.DecodeString(strings.Fields(string(raw))[1])
	want := sha512.Sum384(append(make([]byte, 48), stated...))
	code, out, errs := run(t, "eventlog", imaList, "--replay", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got logOutput
	readJSON(t, out, &got)
	if got.Format != "ima" || got.ReplayedAlg != "sha384" || got.Replayed["pcr2"] != hex.EncodeToString(want[:]) ||
		got.Events[0].Digests["sha384"] != hex.EncodeToString(stated) {
		t.Errorf("IMA: %+v", got)
	}
}

// sm3CCEL is a CCEL whose only bank is SM3 (as Hygon CSV firmware writes),
// laid out per the TCG PC Client PFP: Spec ID event, one measured event.
func sm3CCEL() []byte {
	le := binary.LittleEndian
	spec := []byte("Spec ID Event03\x00")
	spec = le.AppendUint32(spec, 0)
	spec = append(spec, 0, 2, 0, 2)
	spec = le.AppendUint32(spec, 1)
	spec = le.AppendUint16(spec, 0x12) // TPM_ALG_SM3_256
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0)
	b := le.AppendUint32(nil, 0)
	b = le.AppendUint32(b, 3)
	b = append(b, make([]byte, 20)...)
	b = le.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	b = le.AppendUint32(b, 1)          // CC MR 1 (RTMR0)
	b = le.AppendUint32(b, 0x80000008) // EV_EFI_PLATFORM_FIRMWARE_BLOB
	b = le.AppendUint32(b, 1)
	b = le.AppendUint16(b, 0x12)
	b = append(b, bytes.Repeat([]byte{0x5a}, 32)...)
	b = le.AppendUint32(b, 16)
	b = append(b, make([]byte, 16)...)
	return append(b, bytes.Repeat([]byte{0xff}, 64)...)
}

// TestEventlogWrongKindsAndSM3: inputs that are no event log, or a log of
// another format than the one asked for, say what they are in one line;
// an SM3 bank is never called missing.
func TestEventlogWrongKindsAndSM3(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tdreport := make([]byte, 1024)
	tdreport[0] = 0x81
	sgx := make([]byte, 1024)
	binary.LittleEndian.PutUint16(sgx, 3)
	binary.LittleEndian.PutUint16(sgx[2:], 2)
	sm3 := write("sm3.ccel", sm3CCEL())
	imaList := "../testdata/ima/mixed.ascii"
	for _, c := range []struct {
		args  []string
		parts []string
	}{
		{[]string{"eventlog", sprQuote}, []string{"a TDX quote (version 4", "not an event log"}},
		{[]string{"eventlog", sprQuote, "--format", "ccel"}, []string{"Spec ID", "looks like a TDX quote"}},
		{[]string{"eventlog", write("tdreport", tdreport)}, []string{"TDREPORT", "not an event log"}},
		{[]string{"eventlog", write("sgx", sgx)}, []string{"an SGX quote (version 3"}},
		{[]string{"eventlog", "../testdata/ccel/cos-113-intel-tdx.table.bin"}, []string{"CCEL ACPI table", "/sys/firmware/acpi/tables/data/CCEL"}},
		{[]string{"eventlog", imaList, "--format", "ccel"}, []string{"Spec ID", "looks like an IMA ascii measurement list (use --format ima)"}},
		{[]string{"eventlog", imaList, "--format", "tpm"}, []string{"nor a legacy SHA-1 log", "looks like an IMA ascii measurement list"}},
		{[]string{"eventlog", cosCCEL, "--format", "ima"}, []string{"looks like a ccel log (use --format ccel)"}},
		{[]string{"eventlog", "../testdata/tpmlog/debian-10.bin", "--format", "ccel"}, []string{"looks like a tpm log (use --format tpm)"}},
		{[]string{"eventlog", sm3, "--replay", "--alg", "sm3"}, []string{"has a sm3_256 bank, but replaying sm3_256 is not supported"}},
		{[]string{"eventlog", sm3, "--replay"}, []string{"has a sm3_256 bank, but replaying sm3_256 is not supported"}},
		{[]string{"eventlog", sm3, "--replay", "--alg", "sha384"}, []string{"no sha384 bank (its banks: [sm3_256])"}},
	} {
		code, out, errs := run(t, c.args...)
		if code == 0 {
			t.Errorf("%v: exit 0 (%s)", c.args, out)
			continue
		}
		lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
		if len(lines) != 1 || strings.Contains(errs, "panic") {
			t.Errorf("%v: want one error line, got %q", c.args, errs)
		}
		for _, p := range c.parts {
			if !strings.Contains(errs, p) {
				t.Errorf("%v: %q does not say %q", c.args, errs, p)
			}
		}
	}
	// Without --replay the SM3 digests are printed.
	code, out, errs := run(t, "eventlog", sm3, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got logOutput
	readJSON(t, out, &got)
	if got.TotalEvents != 2 || got.Events[1].Digests["sm3_256"] != strings.Repeat("5a", 32) {
		t.Errorf("SM3 log: %+v", got)
	}
}
