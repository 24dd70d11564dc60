package ima

import (
	"testing"
)

// FuzzParse is the entry point the server and the CLI use: Sniff picks the
// format and Parse dispatches. Whatever is accepted holds the invariants of
// checkParsed, and Sniff's answer agrees with the parser that accepted it.
func FuzzParse(f *testing.F) {
	seedFuzz(f, ".ascii")
	seedFuzz(f, ".bin")
	f.Add([]byte("10 "), false, false)
	f.Add([]byte{}, false, false)
	f.Fuzz(func(t *testing.T, b []byte, big, unknown bool) {
		format, ok := Sniff(b)
		opts := fuzzOpts(big, unknown)
		log, err := Parse(b, opts)
		if err != nil {
			if log != nil {
				t.Fatal("log and error")
			}
			return
		}
		if ok && log.Format != format {
			t.Fatalf("Sniff says %q, Parse accepted it as %q", format, log.Format)
		}
		checkParsed(t, log, opts)
	})
}
