package eventlog

import (
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func BenchmarkCCELParseReplay(b *testing.B) {
	raw := readFile(b, ccelDir, "cos-113-intel-tdx.bin")
	want := quoteRTMRs(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		l, err := ParseCCEL(raw)
		if err != nil {
			b.Fatal(err)
		}
		r, err := l.replayer()
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Check(cctrusted.RTMR(2).IMR(), cctrusted.AlgSHA384, want[2]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTPMLogParseReplay(b *testing.B) {
	raw := readFile(b, tpmDir, "ubuntu-2404-intel-tdx.bin")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		l, err := ParseTPM(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Replay(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCCEL includes go-eventlog's second parse and fact extraction.
func BenchmarkVerifyCCEL(b *testing.B) {
	raw := readFile(b, ccelDir, "cos-113-intel-tdx.bin")
	table := readFile(b, ccelDir, "cos-113-intel-tdx.table.bin")
	rtmr := quoteRTMRs(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyCCEL(table, raw, rtmr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyTPM(b *testing.B) {
	raw := readFile(b, tpmDir, "ubuntu-2404-intel-tdx.bin")
	regs := tpmExpected(b)["ubuntu-2404-intel-tdx.bin"]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyTPM(raw, regs); err != nil {
			b.Fatal(err)
		}
	}
}
