package runtimelog

import (
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// BenchmarkAppendEncodeReplay10k appends 10,000 workload records to a TDX
// log, encodes it, decodes it and replays it.
func BenchmarkAppendEncodeReplay10k(b *testing.B) {
	ws := make([]Workload, 10000)
	for i := range ws {
		ws[i] = workload(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
		for _, w := range ws {
			if _, err := l.Append(w); err != nil {
				b.Fatal(err)
			}
		}
		enc, err := l.Encode()
		if err != nil {
			b.Fatal(err)
		}
		back, err := Decode(enc, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := back.Replay(); err != nil {
			b.Fatal(err)
		}
	}
}
