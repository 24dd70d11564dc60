package eventlog

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

const (
	ccelDir = "../testdata/ccel"
	tpmDir  = "../testdata/tpmlog"
)

func readFile(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// quoteRTMRs reads RTMR0..2 straight from the real TDX quote v4 at their
// byte offsets (header 48 bytes, RTMR0 at 376, then every 48 bytes), with no
// quote parser involved.
func quoteRTMRs(t testing.TB) [3][]byte {
	q := readFile(t, ccelDir, "cos-113-tdx-quote.dat")
	if binary.LittleEndian.Uint16(q) != 4 || binary.LittleEndian.Uint32(q[4:]) != 0x81 {
		t.Fatal("cos-113 quote is not a TDX quote v4")
	}
	var r [3][]byte
	for i := range r {
		off := 376 + 48*i
		r[i] = bytes.Clone(q[off : off+48])
	}
	return r
}

// ccelExpected reads the independent python replay (testdata/ccel/replay.py).
func ccelExpected(t testing.TB) map[string]map[string]any {
	var m map[string]map[string]any
	if err := json.Unmarshal(readFile(t, ccelDir, "expected.json"), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func expectedRTMRs(t testing.TB, file string) [3][]byte {
	e, ok := ccelExpected(t)[file]
	if !ok {
		t.Fatalf("no expected values for %s", file)
	}
	var r [3][]byte
	for i := range r {
		r[i] = unhex(t, e["rtmr"+string(rune('0'+i))].(string))
	}
	return r
}

// tpmExpected reads the PCR values go-eventlog's tests hold for the TPM logs
// (testdata/tpmlog/expected.json) as signed registers.
func tpmExpected(t testing.TB) map[string]cctrusted.Registers {
	var m map[string]struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	if err := json.Unmarshal(readFile(t, tpmDir, "expected.json"), &m); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]cctrusted.Registers)
	for file, e := range m {
		regs := make(cctrusted.Registers)
		for algName, pcrs := range e.Banks {
			alg, err := cctrusted.ParseAlgorithm(algName)
			if err != nil {
				t.Fatal(err)
			}
			for name, h := range pcrs {
				imr, err := cctrusted.ParseIMR(name)
				if err != nil {
					t.Fatal(err)
				}
				regs.Set(imr, alg, unhex(t, h))
			}
		}
		out[file] = regs
	}
	return out
}

// span is one event's byte range in a raw log, found by a walk written for
// the tests so edits do not depend on the parser under test.
type span struct {
	start, end int
	index      uint32
	typ        uint32
	sha384     int // offset of the SHA-384 digest, -1 if none
}

func spans(t testing.TB, raw []byte) []span {
	t.Helper()
	size := int(binary.LittleEndian.Uint32(raw[28:]))
	spec := raw[32 : 32+size]
	n := int(binary.LittleEndian.Uint32(spec[24:]))
	sizes := map[uint16]int{}
	for i := range n {
		sizes[binary.LittleEndian.Uint16(spec[28+4*i:])] = int(binary.LittleEndian.Uint16(spec[30+4*i:]))
	}
	out := []span{{start: 0, end: 32 + size, index: binary.LittleEndian.Uint32(raw), typ: 3, sha384: -1}}
	off := 32 + size
	for off+4 <= len(raw) && binary.LittleEndian.Uint32(raw[off:]) != 0xFFFFFFFF {
		s := span{start: off, index: binary.LittleEndian.Uint32(raw[off:]), typ: binary.LittleEndian.Uint32(raw[off+4:]), sha384: -1}
		count := int(binary.LittleEndian.Uint32(raw[off+8:]))
		p := off + 12
		for range count {
			alg := binary.LittleEndian.Uint16(raw[p:])
			if alg == 0x0c {
				s.sha384 = p + 2
			}
			p += 2 + sizes[alg]
		}
		p += 4 + int(binary.LittleEndian.Uint32(raw[p:]))
		s.end = p
		out = append(out, s)
		off = p
	}
	return out
}

// tcgEvent is one event for buildTCG.
type tcgEvent struct {
	index   uint32
	typ     uint32
	digests map[cctrusted.Algorithm][]byte
	data    []byte
}

// buildTCG writes a crypto-agile log from scratch, per the TCG PC Client PFP
// layout, for cases no real log has (startup locality, H-CRTM).
func buildTCG(algs []cctrusted.Algorithm, events []tcgEvent) []byte {
	le := binary.LittleEndian
	spec := []byte("Spec ID Event03\x00")
	spec = le.AppendUint32(spec, 0) // platform class
	spec = append(spec, 0, 2, 0, 2) // minor, major, errata, uintn size
	spec = le.AppendUint32(spec, uint32(len(algs)))
	for _, a := range algs {
		spec = le.AppendUint16(spec, uint16(a))
		spec = le.AppendUint16(spec, uint16(a.Size()))
	}
	spec = append(spec, 0) // vendor info size
	out := le.AppendUint32(nil, 0)
	out = le.AppendUint32(out, 3)
	out = append(out, make([]byte, 20)...)
	out = le.AppendUint32(out, uint32(len(spec)))
	out = append(out, spec...)
	for _, e := range events {
		out = le.AppendUint32(out, e.index)
		out = le.AppendUint32(out, e.typ)
		out = le.AppendUint32(out, uint32(len(algs)))
		for _, a := range algs {
			out = le.AppendUint16(out, uint16(a))
			d := e.digests[a]
			if d == nil {
				d = make([]byte, a.Size())
			}
			out = append(out, d...)
		}
		out = le.AppendUint32(out, uint32(len(e.data)))
		out = append(out, e.data...)
	}
	return out
}
