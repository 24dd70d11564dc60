package ima

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func seedFuzz(f *testing.F, ext string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*"+ext))
	if err != nil || len(files) == 0 {
		f.Fatalf("no %s fixtures: %v", ext, err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		big := bytes.Contains([]byte(p), []byte("-be"))
		f.Add(b, big, false)
		f.Add(b[:len(b)/2], big, true)
	}
	if ext == ".ascii" {
		// The real list of a CCNP-patched TDX kernel (SHA-384 template hash).
		b, err := os.ReadFile(filepath.Join(fixtureDir, "cc-trusted-api", "ima_log.ascii"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false, false)
	}
}

// checkParsed asserts what must hold for every list a parser accepts.
func checkParsed(t *testing.T, log *Log, opts Options) {
	if len(log.Entries) > opts.MaxEntries {
		t.Fatalf("%d entries, limit %d", len(log.Entries), opts.MaxEntries)
	}
	for i := range log.Entries {
		e := &log.Entries[i]
		if len(e.TemplateHash) != log.TemplateHashAlg.Size() {
			t.Fatalf("entry %d: %d-byte template hash in a %v list", i, len(e.TemplateHash), log.TemplateHashAlg)
		}
		if !e.Violation && !bytes.Equal(stdHash(log.TemplateHashAlg, e.TemplateData), e.TemplateHash) {
			t.Fatalf("entry %d accepted with a wrong template hash", i)
		}
		if uint32(e.PCR) >= cctrusted.NumPCRs {
			t.Fatalf("entry %d: PCR %d accepted", i, e.PCR)
		}
	}
	for _, alg := range []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384} {
		regs, err := log.Replay(alg)
		if err != nil {
			t.Fatalf("replay %v: %v", alg, err)
		}
		evs, err := log.Events(alg)
		if err != nil {
			t.Fatal(err)
		}
		regs2, err := cctrusted.Replay(evs)
		if err != nil {
			t.Fatal(err)
		}
		if len(log.Entries) > 0 && !reflect.DeepEqual(regs, regs2) {
			t.Fatalf("%v: Replay and cctrusted.Replay(Events) disagree", alg)
		}
	}
}

// stdHash hashes with the standard library directly, not through the
// package's own sum.
func stdHash(alg cctrusted.Algorithm, b []byte) []byte {
	switch alg {
	case cctrusted.AlgSHA1:
		h := sha1.Sum(b)
		return h[:]
	case cctrusted.AlgSHA256:
		h := sha256.Sum256(b)
		return h[:]
	case cctrusted.AlgSHA384:
		h := sha512.Sum384(b)
		return h[:]
	}
	return nil
}

// fuzzOpts: big fixes big endian; otherwise the parsers find the order.
func fuzzOpts(big, unknown bool) Options {
	o := Options{MaxEntries: 5000, MaxFieldLen: 1 << 16, MaxTemplateData: 1 << 17, AllowUnknownTemplates: unknown}
	if big {
		o.ByteOrder = binary.BigEndian
	}
	return o.withDefaults()
}

func FuzzParseASCII(f *testing.F) {
	seedFuzz(f, ".ascii")
	f.Add([]byte(" 9 0000000000000000000000000000000000000000 ima-sig sha1: x \n"), false, false)
	f.Fuzz(func(t *testing.T, b []byte, big, unknown bool) {
		opts := fuzzOpts(big, unknown)
		log, err := ParseASCII(b, opts)
		if err != nil {
			if log != nil {
				t.Fatal("log and error")
			}
			return
		}
		checkParsed(t, log, opts)
	})
}

func FuzzParseBinary(f *testing.F) {
	seedFuzz(f, ".bin")
	f.Fuzz(func(t *testing.T, b []byte, big, unknown bool) {
		opts := fuzzOpts(big, unknown)
		log, err := ParseBinary(b, opts)
		if err != nil {
			if log != nil {
				t.Fatal("log and error")
			}
			return
		}
		checkParsed(t, log, opts)
		// Whatever Sniff says, Parse must not panic either.
		_, _ = Parse(b, opts)
	})
}
