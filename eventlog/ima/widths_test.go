package ima

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// fixtureMeta reads the fields of expected.json the older tests ignore.
func fixtureMeta(t *testing.T) map[string]struct {
	ByteOrder       string `json:"byte_order"`
	TemplateHashAlg string `json:"template_hash_alg"`
} {
	t.Helper()
	var m map[string]struct {
		ByteOrder       string `json:"byte_order"`
		TemplateHashAlg string `json:"template_hash_alg"`
	}
	if err := json.Unmarshal(readFixture(t, "expected.json"), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTemplateHashWidthsAndOrders parses every fixture (template hashes of
// 20, 32 and 48 bytes, little and big endian) with no options: the parsers
// find the width and the order, and decode and replay exactly what the
// independent generator wrote.
func TestTemplateHashWidthsAndOrders(t *testing.T) {
	exp := loadExpected(t)
	meta := fixtureMeta(t)
	for _, fx := range []string{"mixed", "mixed-be", "cgpath", "rtmr2-sha384", "rtmr2-sha384-be", "mixed-sha256", "mixed-sha256-be"} {
		want, m := exp[fx], meta[fx]
		wantAlg, err := cctrusted.ParseAlgorithm(m.TemplateHashAlg)
		if err != nil {
			t.Fatalf("%s: %v", fx, err)
		}
		for _, tc := range []struct {
			file  string
			parse func([]byte, Options) (*Log, error)
		}{
			{fx + ".ascii", ParseASCII}, {fx + ".bin", ParseBinary}, {fx + ".ascii", Parse}, {fx + ".bin", Parse},
		} {
			t.Run(tc.file, func(t *testing.T) {
				log, err := tc.parse(readFixture(t, tc.file), Options{})
				if err != nil {
					t.Fatal(err)
				}
				if log.TemplateHashAlg != wantAlg {
					t.Errorf("template hash %v, want %v", log.TemplateHashAlg, wantAlg)
				}
				wantOrder := binary.ByteOrder(binary.LittleEndian)
				if m.ByteOrder == "big" {
					wantOrder = binary.BigEndian
				}
				if log.ByteOrder != wantOrder {
					t.Errorf("byte order %v, want %v", log.ByteOrder, wantOrder)
				}
				checkEntries(t, log, want.Entries)
				checkReplay(t, log, want.PCRs)
			})
		}
	}
}

const ccnpSample = "cc-trusted-api/ima_log.ascii"

// TestCCNPKernelList reads the real list of a CCNP-patched TDX kernel: one
// ima-ng entry on register 2 with a SHA-384 template hash.
func TestCCNPKernelList(t *testing.T) {
	raw := readFixture(t, ccnpSample)
	fields := strings.Fields(string(raw))
	stated := unhexT(t, fields[1]) // the template hash the kernel printed
	log, err := Parse(raw, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Entries) != 1 || log.TemplateHashAlg != cctrusted.AlgSHA384 || log.ByteOrder != binary.LittleEndian {
		t.Fatalf("%d entries, %v template hash, %v", len(log.Entries), log.TemplateHashAlg, log.ByteOrder)
	}
	e := log.Entries[0]
	if e.PCR != 2 || e.Template != "ima-ng" || e.FileName != "boot_aggregate" || e.DigestAlgo != "sha384" ||
		!bytes.Equal(e.TemplateHash, stated) || hex.EncodeToString(e.FileDigest.Value) != fields[3][len("sha384:"):] {
		t.Fatalf("entry %+v", e)
	}
	// RTMR2 after IMA, from a value the CCEL left: SHA-384(start || stated).
	start := bytes.Repeat([]byte{0xab}, 48)
	want := sha512.Sum384(append(bytes.Clone(start), stated...))
	got, n, err := log.ReplayFrom(cctrusted.AlgSHA384, 2, start)
	if err != nil || n != 1 || !bytes.Equal(got, want[:]) {
		t.Fatalf("ReplayFrom = %x, %d, %v; want %x, 1", got, n, err, want)
	}
	if _, n, _ := log.ReplayFrom(cctrusted.AlgSHA384, 10, nil); n != 0 {
		t.Errorf("%d entries on register 10", n)
	}
	// The same entry in binary form, from the generator's layout rules.
	bin := binaryEntry(binary.LittleEndian, 2, stated, "ima-ng", e.TemplateData)
	blog, err := Parse(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if blog.Format != FormatBinary || blog.TemplateHashAlg != cctrusted.AlgSHA384 || !bytes.Equal(blog.Entries[0].TemplateHash, stated) {
		t.Fatalf("binary form: %+v", blog)
	}
	bbe := binaryEntry(binary.BigEndian, 2, stated, "ima-ng", e.TemplateData)
	// Its template data keeps little-endian prefixes: under a big-endian
	// header the field lengths do not fit, and the error says so.
	if _, err := Parse(bbe, Options{}); err == nil || !strings.Contains(err.Error(), "field d-ng") {
		t.Errorf("big-endian header around little-endian data: %v", err)
	}
}

// binaryEntry lays out one binary entry: u32 PCR, template hash, u32 name
// length, name, u32 data length, data.
func binaryEntry(bo binary.AppendByteOrder, pcr uint32, hash []byte, name string, data []byte) []byte {
	b := bo.AppendUint32(nil, pcr)
	b = append(b, hash...)
	b = bo.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = bo.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// TestTemplateHashWidthRejects: one byte changed, widths mixed or unknown.
func TestTemplateHashWidthRejects(t *testing.T) {
	sample := readFixture(t, ccnpSample)
	sha1List := readFixture(t, "mixed.ascii")
	binList := readFixture(t, "rtmr2-sha384.bin")
	good, err := ParseBinary(binList, Options{})
	if err != nil || !good.Entries[7].Violation || good.Entries[6].Violation {
		t.Fatalf("fixture: %v", err) // entry 7 is the violation, entry 6 is not
	}
	flip := func(b []byte, off int) []byte { b = bytes.Clone(b); b[off] ^= 1; return b }
	sha1Line := sha1List[:bytes.IndexByte(sha1List, '\n')+1]
	for _, c := range []struct {
		name  string
		parse func([]byte, Options) (*Log, error)
		in    []byte
		err   error
		field string
		parts []string
	}{
		{"ascii: file digest byte changed", ParseASCII, []byte(strings.Replace(string(sample), "sha384:cd01", "sha384:cd02", 1)),
			ErrTemplateHash, "template-hash", []string{"line 1", "(sha384)", "big endian fails too"}},
		{"ascii: template hash byte changed", ParseASCII, []byte(strings.Replace(string(sample), " 67c7", " 67c8", 1)),
			ErrTemplateHash, "template-hash", []string{"line 1", "list says 67c8"}},
		{"ascii: a SHA-1 entry after a SHA-384 one", ParseASCII, append(bytes.Clone(sample), sha1Line...),
			ErrMalformed, "template-hash", []string{"line 2", "20 bytes, but the list's first entry has a 48-byte template hash"}},
		{"ascii: 21-byte template hash", ParseASCII, []byte(strings.Replace(string(sha1Line), " ima-ng", "00 ima-ng", 1)),
			ErrMalformed, "template-hash", []string{"42 hex digits", "want 40, 64 or 96"}},
		{"binary: template data byte changed", ParseBinary, flip(binList, good.Entries[7].Offset-3),
			ErrTemplateHash, "template-hash", []string{"entry 6", "(sha384)"}},
		{"binary: template hash byte changed", ParseBinary, flip(binList, 4),
			ErrTemplateHash, "template-hash", []string{"entry 0", "tried 20, 32 and 48-byte template hashes, little and big endian"}},
		{"binary: name length no width fits", ParseBinary, flip(binList, 4+48+1),
			ErrMalformed, "template-name", []string{"entry 0", "tried 20, 32 and 48-byte template hashes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.parse(c.in, Options{})
			var pe *ParseError
			if !errors.Is(err, c.err) || !errors.As(err, &pe) || pe.Field != c.field {
				t.Fatalf("err = %v, want %v in field %s", err, c.err, c.field)
			}
			for _, p := range c.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
		})
	}
}
