package eventlog

import (
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// The fuzz targets check that the parsers never panic and that whatever they
// accept replays without error or with a clean error.
func FuzzParseCCEL(f *testing.F) {
	for _, name := range ccelFiles {
		raw := readFile(f, ccelDir, name)
		f.Add(raw)
		sp := spans(f, raw)
		f.Add(raw[:sp[len(sp)-1].end]) // unpadded
		f.Add(raw[:sp[3].end])         // short, so the fuzzer mutates a small input
	}
	f.Add(readFile(f, ccelDir, "cos-113-intel-tdx.table.bin"))
	// The real zero-filled CCEL, its fill cut short so mutations stay fast.
	f.Add(readFile(f, zeroFillDir, "CCEL_data")[:9822+64])
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseCCEL(b)
		if err != nil {
			return
		}
		if len(l.Events) == 0 || l.Format != FormatCCEL || l.Legacy {
			t.Fatalf("accepted a log with %d events, format %q, legacy %v", len(l.Events), l.Format, l.Legacy)
		}
		// What follows the events is all 0xFF or all zero, never events.
		if rest := b[l.End:]; len(rest) > 0 && notByte(rest, rest[0]) >= 0 || len(rest) > 0 && rest[0] != 0 && rest[0] != 0xFF {
			t.Fatalf("accepted %d bytes after the events that are neither padding nor fill", len(rest))
		}
		_, _ = l.Replay()
		_, _ = DetectTCG(b)
	})
}

func FuzzParseTPM(f *testing.F) {
	for _, name := range tpmFiles {
		raw := readFile(f, tpmDir, name)
		f.Add(raw)
		sp := spans(f, raw)
		f.Add(raw[:sp[4].end])
	}
	legacy := readFile(f, tpmDir, "debian-10.bin")
	f.Add(legacy)
	f.Add(legacy[:2733]) // the first five events
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseTPM(b)
		if err != nil {
			return
		}
		if len(l.Events) == 0 || l.Format != FormatTPM || l.End != len(b) {
			t.Fatalf("accepted a log with %d events, format %q, ending at %d of %d", len(l.Events), l.Format, l.End, len(b))
		}
		if l.Legacy && (len(l.Algorithms) != 1 || l.Algorithms[0] != cctrusted.AlgSHA1) {
			t.Fatalf("legacy log with banks %v", l.Algorithms)
		}
		if f, ok := DetectTCG(b); !ok || (l.Legacy && f != FormatTPM) {
			t.Fatalf("parsed as a TPM log (legacy %v) but detected as %q, %v", l.Legacy, f, ok)
		}
		_, _ = l.Replay()
	})
}

func FuzzParseCCELTable(f *testing.F) {
	f.Add(readFile(f, ccelDir, "cos-113-intel-tdx.table.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if tab, err := ParseCCELTable(b); err == nil && int(tab.Length) != len(b) {
			t.Fatalf("accepted a table whose length field %d is not its size %d", tab.Length, len(b))
		}
	})
}
