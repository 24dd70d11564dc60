package ima

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// benchList builds an n-entry ima-ng list (boot_aggregate first, then files
// with SHA-256 digests) in both formats, plus the template data of each
// entry for the hashing floor.
func benchList(n int) (ascii, bin []byte, tds [][]byte) {
	ascii = make([]byte, 0, n*160)
	bin = make([]byte, 0, n*130)
	tds = make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		name := "boot_aggregate"
		if i > 0 {
			name = "/usr/lib/x86_64-linux-gnu/libexample-" + strconv.Itoa(i) + ".so.1"
		}
		digest := sha256.Sum256([]byte(name))
		var td []byte
		td = binary.LittleEndian.AppendUint32(td, uint32(8+len(digest)))
		td = append(td, "sha256:\x00"...)
		td = append(td, digest[:]...)
		td = binary.LittleEndian.AppendUint32(td, uint32(len(name)+1))
		td = append(td, name...)
		td = append(td, 0)
		th := sha1.Sum(td)
		tds = append(tds, td)

		ascii = append(ascii, "10 "...)
		ascii = hex.AppendEncode(ascii, th[:])
		ascii = append(ascii, " ima-ng sha256:"...)
		ascii = hex.AppendEncode(ascii, digest[:])
		ascii = append(ascii, ' ')
		ascii = append(ascii, name...)
		ascii = append(ascii, '\n')

		bin = binary.LittleEndian.AppendUint32(bin, 10)
		bin = append(bin, th[:]...)
		bin = binary.LittleEndian.AppendUint32(bin, 6)
		bin = append(bin, "ima-ng"...)
		bin = binary.LittleEndian.AppendUint32(bin, uint32(len(td)))
		bin = append(bin, td...)
	}
	return ascii, bin, tds
}

// BenchmarkIMAParseReplay100k measures parsing (with every template hash
// checked) plus replay of the SHA-256 bank of a 100,000-entry list.
func BenchmarkIMAParseReplay100k(b *testing.B) {
	const n = 100_000
	ascii, bin, _ := benchList(n)
	for _, tc := range []struct {
		name  string
		in    []byte
		parse func([]byte, Options) (*Log, error)
	}{
		{"ascii", ascii, ParseASCII},
		{"binary", bin, ParseBinary},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.in)))
			c0 := cpuTime()
			for b.Loop() {
				log, err := tc.parse(tc.in, Options{})
				if err != nil {
					b.Fatal(err)
				}
				regs, err := log.Replay(cctrusted.AlgSHA256)
				if err != nil || len(log.Entries) != n || len(regs) != 1 {
					b.Fatal(fmt.Sprint(err, len(log.Entries), len(regs)))
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

// BenchmarkHashFloor only SHA-256-hashes the same template data, the least
// any SHA-256 replay must do, so parse+replay can be reported as a ratio.
func BenchmarkHashFloor(b *testing.B) {
	_, _, tds := benchList(100_000)
	b.ReportAllocs()
	var acc byte
	c0 := cpuTime()
	for b.Loop() {
		for _, td := range tds {
			h := sha256.Sum256(td)
			acc ^= h[0]
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e6, "cpu-ms/op")
	_ = acc
}

// cpuTime is the process's user+system CPU time. The benchmarks report it
// per op next to wall time because the shared build machine is often
// oversubscribed, which inflates wall time but not CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
