package tdx

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestRawCCEL(t *testing.T) {
	table, log := readFile(t, ccelTableFile), readFile(t, ccelLogFile)
	root := t.TempDir()
	writeFile(t, root, "sys/firmware/acpi/tables/CCEL", table)
	writeFile(t, root, "sys/firmware/acpi/tables/data/CCEL", log)
	p := mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{}})
	gotTable, gotLog, err := p.RawCCEL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotTable, table) || !bytes.Equal(gotLog, log) {
		t.Fatal("RawCCEL did not return the host's files")
	}

	// Paths from Options, relative to HostRoot (a container's mount point).
	writeFile(t, root, "run/firmware/CCEL", table)
	writeFile(t, root, "run/firmware/data/CCEL", log)
	p = mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{},
		CCELTablePath: "run/firmware/CCEL", CCELPath: "/run/firmware/data/CCEL"})
	if gotTable, gotLog, err = p.RawCCEL(context.Background()); err != nil || !bytes.Equal(gotTable, table) || !bytes.Equal(gotLog, log) {
		t.Fatalf("RawCCEL with custom paths: %v", err)
	}
}

func TestRawCCELErrors(t *testing.T) {
	table, log := readFile(t, ccelTableFile), readFile(t, ccelLogFile)
	tests := []struct {
		name     string
		files    map[string][]byte
		wantErr  string
		notExist bool
	}{
		{"no table", map[string][]byte{"sys/firmware/acpi/tables/data/CCEL": log},
			"sys/firmware/acpi/tables/CCEL", true},
		{"no log", map[string][]byte{"sys/firmware/acpi/tables/CCEL": table},
			"sys/firmware/acpi/tables/data/CCEL", true},
		{"table is another ACPI table", map[string][]byte{"sys/firmware/acpi/tables/CCEL": append([]byte("TDEL"), table[4:]...), "sys/firmware/acpi/tables/data/CCEL": log},
			`signature is "TDEL"`, false},
		{"table for SEV", map[string][]byte{"sys/firmware/acpi/tables/CCEL": sevTable(table), "sys/firmware/acpi/tables/data/CCEL": log},
			"CC type 1, not TDX", false},
		{"table checksum", map[string][]byte{"sys/firmware/acpi/tables/CCEL": append(bytes.Clone(table[:55]), table[55]+1), "sys/firmware/acpi/tables/data/CCEL": log},
			"checksum", false},
		{"table truncated", map[string][]byte{"sys/firmware/acpi/tables/CCEL": table[:20], "sys/firmware/acpi/tables/data/CCEL": log},
			"20 bytes, want 56", false},
		{"table empty", map[string][]byte{"sys/firmware/acpi/tables/CCEL": nil, "sys/firmware/acpi/tables/data/CCEL": log},
			"0 bytes, want 56", false},
		{"table oversized", map[string][]byte{"sys/firmware/acpi/tables/CCEL": append(bytes.Clone(table), make([]byte, MaxCCELTableSize)...), "sys/firmware/acpi/tables/data/CCEL": log},
			"larger than the 4096-byte limit", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, b := range tc.files {
				writeFile(t, root, rel, b)
			}
			p := mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{}})
			_, _, err := p.RawCCEL(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", !tc.notExist, tc.notExist)
			}
		})
	}
}

func TestRawIMA(t *testing.T) {
	ima := []byte("\x0a\x00\x00\x00not parsed here")
	tests := []struct {
		name    string
		file    string // where the log is, "" for nowhere
		opt     string // Options.IMAPath
		wantErr []string
	}{
		{"default path", "sys/kernel/security/ima/binary_runtime_measurements", "", nil},
		{"integrity path", "sys/kernel/security/integrity/ima/binary_runtime_measurements", "", nil},
		{"option path", "run/kernel/security/ima/binary_runtime_measurements", "run/kernel/security/ima/binary_runtime_measurements", nil},
		{"missing", "", "", []string{"sys/kernel/security/ima/binary_runtime_measurements", "sys/kernel/security/integrity/ima/binary_runtime_measurements"}},
		{"option path missing", "sys/kernel/security/ima/binary_runtime_measurements", "run/ima", []string{"run/ima"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.file != "" {
				writeFile(t, root, tc.file, ima)
			}
			p := mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{}, IMAPath: tc.opt})
			got, err := p.RawIMA(context.Background())
			if tc.wantErr == nil {
				if err != nil || !bytes.Equal(got, ima) {
					t.Fatalf("RawIMA = %q, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatal("RawIMA succeeded without a log")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), filepath.Join(root, w)) {
					t.Errorf("error %v does not name %s", err, w)
				}
			}
		})
	}
}

// The bound is checked while reading (sysfs files stat as 0 bytes): a file of
// exactly the limit is read, one byte more is refused naming the file.
func TestReadBounded(t *testing.T) {
	root := t.TempDir()
	exact := writeFile(t, root, "exact", bytes.Repeat([]byte{1}, 100))
	over := writeFile(t, root, "over", bytes.Repeat([]byte{1}, 101))
	if b, err := readBounded(context.Background(), exact, 100); err != nil || len(b) != 100 {
		t.Fatalf("read of a file at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := readBounded(context.Background(), over, 100); err == nil || !strings.Contains(err.Error(), over+" is larger than the 100-byte limit") {
		t.Fatalf("read over the limit: %v", err)
	}
}

func TestReadBoundedCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := readBounded(ctx, ccelTableFile, 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

// sevTable turns the TDX CCEL table into an SEV one: CC type (offset 36)
// 2 -> 1, and the ACPI checksum byte (offset 9) adjusted so the sum stays 0.
func sevTable(table []byte) []byte {
	t := bytes.Clone(table)
	t[36]--
	t[9]++
	return t
}
