package eventlog

import (
	"testing"
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
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseCCEL(b)
		if err != nil {
			return
		}
		if len(l.Events) == 0 || l.Format != FormatCCEL {
			t.Fatalf("accepted a log with %d events, format %q", len(l.Events), l.Format)
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
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseTPM(b)
		if err != nil {
			return
		}
		if len(l.Events) == 0 || l.Format != FormatTPM {
			t.Fatalf("accepted a log with %d events, format %q", len(l.Events), l.Format)
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
