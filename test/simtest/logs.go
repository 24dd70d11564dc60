package simtest

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// Testdata reads a file under the module's testdata directory. It finds
// the module root from the working directory (go test runs in the
// package's directory), so suites at any depth share one path.
func Testdata(t testing.TB, parts ...string) []byte {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = up
	}
	b, err := os.ReadFile(filepath.Join(append([]string{dir, "testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ZstdLog wraps raw log bytes as an evidence log of kind, zstd-compressed
// as the agent sends it, for tests that replace a log in the evidence.
func ZstdLog(t testing.TB, kind evidencepb.LogKind, b []byte) *evidencepb.Log {
	t.Helper()
	l, err := evidence.CompressLog(kind, b, evidencepb.Encoding_ENCODING_ZSTD)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// SHA384 is SHA-384 as a slice, the digest a CCNP kernel extends into
// RTMR2 for an IMA entry.
func SHA384(b []byte) []byte { s := sha512.Sum384(b); return s[:] }

// IMADigests returns, per entry of a little-endian binary IMA list, the
// PCR and the digest a kernel extends into bank hash of size bytes
// (H(template data), or all 0xFF for a violation). It walks the layout
// itself (u32 PCR, 20-byte template hash, u32 name length, name, u32 data
// length, data) so that the expected registers do not come from package
// ima, which the tests check.
func IMADigests(t testing.TB, list []byte, hash func([]byte) []byte, size int) (pcrs []uint32, digests [][]byte) {
	t.Helper()
	for off := 0; off < len(list); {
		u32 := func() int { v := binary.LittleEndian.Uint32(list[off:]); off += 4; return int(v) }
		pcr := u32()
		th := list[off : off+20]
		off += 20
		off += u32()
		n := u32()
		data := list[off : off+n]
		off += n
		d := hash(data)
		if bytes.Equal(th, make([]byte, 20)) {
			d = bytes.Repeat([]byte{0xff}, size)
		}
		pcrs = append(pcrs, uint32(pcr))
		digests = append(digests, d)
	}
	return pcrs, digests
}
