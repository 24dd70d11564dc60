// Package scale holds the benchmarks of how log verification grows with the
// number of events, next to their anchors and floors: this project's IMA
// parse and replay against the time to hash the same bytes, and
// go-eventlog's parse and replay of a TCG log of the same length (the anchor
// of the server's verification-time plot). make bench runs them.
package scale

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"

	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// imaList builds an n-entry little-endian binary ima-ng list, laid out as
// the kernel writes it (u32 PCR, SHA-1 template hash, u32 name length,
// name, u32 data length, template data of d-ng and n-ng fields each behind
// a u32 length), with SHA-256 file digests.
func imaList(n int) []byte {
	le := binary.LittleEndian
	out := make([]byte, 0, n*130)
	for i := range n {
		name := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%d.so.1", i)
		d := sha256.Sum256([]byte(name))
		var td []byte
		td = le.AppendUint32(td, uint32(8+len(d)))
		td = append(td, "sha256:\x00"...)
		td = append(td, d[:]...)
		td = le.AppendUint32(td, uint32(len(name)+1))
		td = append(td, name...)
		td = append(td, 0)
		th := sha1.Sum(td)
		out = le.AppendUint32(out, 10)
		out = append(out, th[:]...)
		out = le.AppendUint32(out, 6)
		out = append(out, "ima-ng"...)
		out = le.AppendUint32(out, uint32(len(td)))
		out = append(out, td...)
	}
	return out
}

var imaSizes = []int{1_000, 10_000, 100_000, 1_000_000}

// BenchmarkIMAParseReplay parses a binary list (every template hash
// checked with SHA-1) and replays its SHA-256 bank.
func BenchmarkIMAParseReplay(b *testing.B) {
	for _, n := range imaSizes {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			list := imaList(n)
			b.SetBytes(int64(len(list)))
			b.ReportAllocs()
			for b.Loop() {
				l, err := ima.ParseBinary(list, ima.Options{})
				if err != nil {
					b.Fatal(err)
				}
				regs, err := l.Replay(cctrusted.AlgSHA256)
				if err != nil || len(l.Entries) != n || len(regs) != 1 {
					b.Fatal(err, len(l.Entries))
				}
			}
		})
	}
}

// BenchmarkIMAHashFloor is the hashing any parse and SHA-256 replay of the
// same list must do: SHA-1 of every entry's template data (the template
// hash check), SHA-256 of it (the bank's digest) and one SHA-256 extend
// (64 bytes) per entry. It walks the framing with fixed offsets, which the
// generator's layout allows.
func BenchmarkIMAHashFloor(b *testing.B) {
	le := binary.LittleEndian
	for _, n := range imaSizes {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			list := imaList(n)
			b.SetBytes(int64(len(list)))
			var pcr [32]byte
			var buf [64]byte
			var acc byte
			for b.Loop() {
				for off := 0; off < len(list); {
					off += 4 + 20 + 4 + 6
					l := int(le.Uint32(list[off:]))
					td := list[off+4 : off+4+l]
					off += 4 + l
					h1 := sha1.Sum(td)
					d := sha256.Sum256(td)
					copy(buf[:32], pcr[:])
					copy(buf[32:], d[:])
					pcr = sha256.Sum256(buf[:])
					acc ^= h1[0] // keep the SHA-1 result live
				}
			}
			_ = acc
		})
	}
}

// tcgLog builds a crypto-agile TCG log (Spec ID event, then n EV_IPL
// events on PCR 10 with a SHA-384 digest of about as much event data as an
// IMA entry) and the PCR 10 value it replays to.
func tcgLog(n int) ([]byte, []byte) {
	le := binary.LittleEndian
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = le.AppendUint32(spec, 0)    // platform class
	spec = append(spec, 0, 2, 0, 2)    // version minor, major, errata, uintn size
	spec = le.AppendUint32(spec, 1)    // algorithms
	spec = le.AppendUint16(spec, 0x0C) // SHA-384
	spec = le.AppendUint16(spec, 48)
	spec = append(spec, 0) // vendor info size
	var out []byte
	out = le.AppendUint32(out, 0)
	out = le.AppendUint32(out, 3) // EV_NO_ACTION
	out = append(out, make([]byte, 20)...)
	out = le.AppendUint32(out, uint32(len(spec)))
	out = append(out, spec...)
	pcr := make([]byte, 48)
	for i := range n {
		data := fmt.Appendf(nil, "sha256:%064x /usr/lib/x86_64-linux-gnu/libexample-%d.so.1", i, i)
		d := sha512.Sum384(data)
		out = le.AppendUint32(out, 10)
		out = le.AppendUint32(out, 0x0D) // EV_IPL
		out = le.AppendUint32(out, 1)
		out = le.AppendUint16(out, 0x0C)
		out = append(out, d[:]...)
		out = le.AppendUint32(out, uint32(len(data)))
		out = append(out, data...)
		h := sha512.New384()
		h.Write(pcr)
		h.Write(d[:])
		pcr = h.Sum(nil)
	}
	return out, pcr
}

// BenchmarkGoEventlogReplay is go-eventlog's tcg.ParseAndReplay of an
// n-event log against its PCR value: the plain library replay the server's
// verification time is plotted against.
func BenchmarkGoEventlogReplay(b *testing.B) {
	for _, n := range []int{10, 100, 1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			log, pcr := tcgLog(n)
			mrs := []register.MR{register.PCR{Index: 10, Digest: pcr, DigestAlg: crypto.SHA384}}
			b.SetBytes(int64(len(log)))
			b.ReportAllocs()
			for b.Loop() {
				evs, err := tcg.ParseAndReplay(log, mrs, tcg.ParseOpts{})
				if err != nil || len(evs) != n {
					b.Fatal(err, len(evs))
				}
			}
		})
	}
}
