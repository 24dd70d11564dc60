package evidence

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

var encodings = []evidencepb.Encoding{
	evidencepb.Encoding_ENCODING_NONE,
	evidencepb.Encoding_ENCODING_ZSTD,
	evidencepb.Encoding_ENCODING_GZIP,
}

func TestCompressRoundTrip(t *testing.T) {
	ccel := readTestdata(t, "cos-113-intel-tdx.bin")
	inputs := map[string][]byte{"empty": nil, "one byte": {0x42}, "real ccel": ccel}
	for _, enc := range encodings {
		for name, in := range inputs {
			t.Run(enc.String()+"/"+name, func(t *testing.T) {
				l, err := CompressLog(evidencepb.LogKind_LOG_KIND_CCEL, in, enc)
				if err != nil {
					t.Fatal(err)
				}
				if l.GetRawSize() != uint64(len(in)) || l.GetKind() != evidencepb.LogKind_LOG_KIND_CCEL || l.GetEncoding() != enc {
					t.Fatalf("log header %v", l)
				}
				if enc != evidencepb.Encoding_ENCODING_NONE && len(in) == len(ccel) && len(l.GetData()) >= len(in)/4 {
					t.Fatalf("%v compressed the 256 KiB CCEL (mostly 0xFF padding) to only %d bytes", enc, len(l.GetData()))
				}
				b := NewBudget(int64(len(in)) + 1)
				out, err := DecompressLog(l, b)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, in) {
					t.Fatal("decompressed log differs")
				}
				if b.Remaining() != 1 {
					t.Fatalf("budget remaining %d, want 1", b.Remaining())
				}
			})
		}
	}
	if _, err := CompressLog(evidencepb.LogKind_LOG_KIND_IMA, ccel, 9); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown encoding: err = %v", err)
	}
}

// TestDecompressThirdParty: logs compressed by other encoders than
// CompressLog's (streaming zstd with no content size and a big declared
// window, multi-frame zstd, multi-member gzip) are accepted.
func TestDecompressThirdParty(t *testing.T) {
	in := readTestdata(t, "cos-113-intel-tdx.bin")
	var zs bytes.Buffer
	w, err := zstd.NewWriter(&zs, zstd.WithWindowSize(8<<20), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(in[:1000])
	w.Close()
	w.Reset(&zs) // a second frame
	w.Write(in[1000:])
	w.Close()
	var gz bytes.Buffer
	for _, part := range [][]byte{in[:5000], in[5000:]} {
		g := gzip.NewWriter(&gz)
		g.Write(part)
		g.Close()
	}
	for name, l := range map[string]*evidencepb.Log{
		"zstd stream": {Encoding: evidencepb.Encoding_ENCODING_ZSTD, Data: zs.Bytes(), RawSize: uint64(len(in))},
		"gzip multi":  {Encoding: evidencepb.Encoding_ENCODING_GZIP, Data: gz.Bytes(), RawSize: uint64(len(in))},
	} {
		out, err := DecompressLog(l, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("%s: output differs", name)
		}
	}
}

func TestDecompressLogErrors(t *testing.T) {
	in := readTestdata(t, "cos-113-intel-tdx.bin")[:20000]
	comp := func(enc evidencepb.Encoding) *evidencepb.Log {
		l, err := CompressLog(evidencepb.LogKind_LOG_KIND_IMA, in, enc)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	flip := func(l *evidencepb.Log, off int) *evidencepb.Log {
		l.Data = bytes.Clone(l.Data)
		l.Data[off] ^= 0x01
		return l
	}
	withRaw := func(l *evidencepb.Log, n uint64) *evidencepb.Log { l.RawSize = n; return l }
	trailing := func(l *evidencepb.Log) *evidencepb.Log { l.Data = append(bytes.Clone(l.Data), "junk"...); return l }
	tests := []struct {
		name string
		l    *evidencepb.Log
		want string
	}{
		{"zstd raw_size short", withRaw(comp(evidencepb.Encoding_ENCODING_ZSTD), 19999), "inflates to more than its raw_size of 19999"},
		{"zstd raw_size long", withRaw(comp(evidencepb.Encoding_ENCODING_ZSTD), 20001), "zstd"},
		{"zstd corrupt checksum", flip(comp(evidencepb.Encoding_ENCODING_ZSTD), len(comp(evidencepb.Encoding_ENCODING_ZSTD).Data)-1), "zstd"},
		{"zstd bad magic", flip(comp(evidencepb.Encoding_ENCODING_ZSTD), 0), "zstd"},
		{"zstd trailing junk", trailing(comp(evidencepb.Encoding_ENCODING_ZSTD)), "zstd"},
		{"zstd empty data", &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_IMA, Encoding: evidencepb.Encoding_ENCODING_ZSTD, RawSize: 10}, "inflates to 0"},
		{"gzip raw_size short", withRaw(comp(evidencepb.Encoding_ENCODING_GZIP), 19999), "inflates to more than its raw_size of 19999"},
		{"gzip raw_size long", withRaw(comp(evidencepb.Encoding_ENCODING_GZIP), 20001), "raw_size says 20001 bytes, gzip data inflates to 20000"},
		{"gzip corrupt crc", flip(comp(evidencepb.Encoding_ENCODING_GZIP), len(comp(evidencepb.Encoding_ENCODING_GZIP).Data)-6), "gzip"},
		{"gzip bad header", flip(comp(evidencepb.Encoding_ENCODING_GZIP), 0), "gzip header"},
		{"gzip trailing junk", trailing(comp(evidencepb.Encoding_ENCODING_GZIP)), "gzip"},
		{"none raw_size", withRaw(comp(evidencepb.Encoding_ENCODING_NONE), 1), "raw_size says 1 bytes"},
		{"unknown encoding", &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_IMA, Encoding: 5}, "unknown encoding 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := DecompressLog(tt.l, nil)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "ima log") {
				t.Fatalf("err = %v does not name the log", err)
			}
			if out != nil {
				t.Fatal("output returned with an error")
			}
		})
	}
	if out, err := DecompressLog(nil, nil); out != nil || err != nil {
		t.Fatalf("nil log: %v, %v", out, err)
	}
}

func TestBudgetShared(t *testing.T) {
	in := bytes.Repeat([]byte("ima entry "), 60<<10) // 600 KiB
	l, err := CompressLog(evidencepb.LogKind_LOG_KIND_IMA, in, evidencepb.Encoding_ENCODING_ZSTD)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBudget(1 << 20)
	if _, err := DecompressLog(l, b); err != nil {
		t.Fatal(err)
	}
	_, err = DecompressLog(l, b)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != 1<<20 || le.Size != 2*uint64(len(in)) || !strings.Contains(le.What, "ima log") {
		t.Fatalf("second log: err = %v, want a LimitError over the shared 1 MiB", err)
	}
	if NewBudget(0).Remaining() != DefaultMaxDecompressedBytes {
		t.Fatal("NewBudget(0) is not the default")
	}
}

func TestDecompressLogs(t *testing.T) {
	ev := sampleTDXEvidence(t)
	b := mustEncode(t, NewEvidence(ev))
	got, err := DecodeEvidence(b, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	logs, err := DecompressLogs(got, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(logs.CCEL, readTestdata(t, "cos-113-intel-tdx.bin")) || logs.TPM != nil ||
		!strings.HasPrefix(string(logs.IMA), "10 abab") || !bytes.Equal(logs.Runtime, seq(100, 7)) {
		t.Fatalf("logs = %+v", logs)
	}
	// The whole evidence after decompression counts: the 256 KiB CCEL, the
	// 8000-byte quote and the rest. A budget of just the logs' raw sizes is
	// too small, because the quote also needs room.
	rawLogs := int64(len(logs.CCEL) + len(logs.IMA) + len(logs.Runtime))
	if _, err := DecompressLogs(got, Limits{MaxDecompressedBytes: rawLogs}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := DecompressLogs(got, Limits{MaxDecompressedBytes: rawLogs + int64(evidenceBase(got))}); err != nil {
		t.Fatalf("exact budget: %v", err)
	}
	// A kind field that contradicts the slot is refused here too (Decode
	// refuses it earlier; this guards callers that skip Decode).
	got.Ccel.Kind = evidencepb.LogKind_LOG_KIND_RUNTIME
	if _, err := DecompressLogs(got, DefaultLimits()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	// An unspecified kind is named after its slot in errors.
	got.Ccel.Kind = evidencepb.LogKind_LOG_KIND_UNSPECIFIED
	got.Ccel.RawSize++
	if _, err := DecompressLogs(got, DefaultLimits()); err == nil || !strings.Contains(err.Error(), "ccel log") {
		t.Fatalf("err = %v, want it to name the ccel log", err)
	}
}

// bomb returns 1 GiB of zeros compressed as 1024 frames (or gzip members)
// of 1 MiB each: building it costs one 1 MiB compression, and it fits in a
// payload (zstd: 17 KiB, gzip: 1 MiB). streamed zstd frames carry no content size, so the decoder
// cannot refuse them from the header and must stop while inflating.
func bomb(t testing.TB, enc evidencepb.Encoding, streamed bool) []byte {
	t.Helper()
	zeros := make([]byte, 1<<20)
	var one bytes.Buffer
	switch {
	case enc == evidencepb.Encoding_ENCODING_GZIP:
		w, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
		w.Write(zeros)
		w.Close()
	case streamed:
		w, _ := zstd.NewWriter(&one, zstd.WithEncoderConcurrency(1))
		w.Write(zeros)
		w.Close()
	default:
		w, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		one.Write(w.EncodeAll(zeros, nil))
	}
	return bytes.Repeat(one.Bytes(), 1024)
}

// TestDecompressionBomb: 1 GiB of zeros is refused quickly and without
// allocating anywhere near it, whatever raw_size it claims.
func TestDecompressionBomb(t *testing.T) {
	const gib = 1 << 30
	for _, enc := range []evidencepb.Encoding{evidencepb.Encoding_ENCODING_ZSTD, evidencepb.Encoding_ENCODING_GZIP} {
		for _, streamed := range []bool{false, true} {
			if enc == evidencepb.Encoding_ENCODING_GZIP && streamed {
				continue
			}
			data := bomb(t, enc, streamed)
			if len(data) > DefaultMaxPayloadBytes {
				t.Fatalf("bomb of %d bytes does not fit a payload", len(data))
			}
			for _, c := range []struct {
				raw     uint64
				want    error
				maxHeap uint64 // bytes allocated during the call
			}{
				// honest: refused before inflating
				{gib, ErrTooLarge, 1 << 20},
				// lying: stops at once
				{0, ErrMalformed, 4 << 20},
				// lying: stops after raw_size, having allocated at most
				// 2.25x raw_size (see unzstd) plus the decoder's buffers.
				{1 << 20, ErrMalformed, 8 << 20},
				{DefaultMaxDecompressedBytes, ErrMalformed, 40 << 20},
			} {
				name := fmt.Sprintf("%v/streamed=%v/raw_size=%d", enc, streamed, c.raw)
				l := &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_IMA, Encoding: enc, Data: data, RawSize: c.raw}
				alloc, took, err := measure(func() error {
					_, err := DecompressLog(l, NewBudget(DefaultMaxDecompressedBytes))
					return err
				})
				if !errors.Is(err, c.want) {
					t.Fatalf("%s: err = %v, want %v", name, err, c.want)
				}
				if alloc > c.maxHeap {
					t.Errorf("%s: allocated %d bytes, more than %d", name, alloc, c.maxHeap)
				}
				// Stopping takes milliseconds (50 ms for 16 MiB here);
				// the bound is loose because the machine is shared and
				// -race is slow. Allocation is the sharp check above.
				if took > 10*time.Second {
					t.Errorf("%s: took %v", name, took)
				}
				t.Logf("%s: %v after %v, %d bytes allocated", name, err, took, alloc)
			}
		}
	}
}

// TestBombInPayload: the same bomb inside an evidence payload, honest about
// its size, is refused by Decode from the declared raw_size; lying, by
// DecompressLogs.
func TestBombInPayload(t *testing.T) {
	data := bomb(t, evidencepb.Encoding_ENCODING_ZSTD, true)
	ev := sampleTDXEvidence(t)
	ev.ImaLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_IMA, Encoding: evidencepb.Encoding_ENCODING_ZSTD, Data: data, RawSize: 1 << 30}
	b := mustEncode(t, NewEvidence(ev))
	if _, err := Decode(b, DefaultLimits()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("honest bomb: err = %v, want ErrTooLarge", err)
	}
	ev.ImaLog.RawSize = 1 << 20
	got, err := DecodeEvidence(mustEncode(t, NewEvidence(ev)), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	alloc, _, err := measure(func() error { _, err := DecompressLogs(got, DefaultLimits()); return err })
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "ima log") {
		t.Fatalf("lying bomb: err = %v", err)
	}
	if alloc > 12<<20 {
		t.Fatalf("lying bomb: allocated %d bytes", alloc)
	}
}

// measure runs f and returns the bytes it allocated (TotalAlloc grows with
// every allocation, so it bounds the peak from above) and its duration.
func measure(f func() error) (uint64, time.Duration, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took, err
}

// imaLikeLog returns about n bytes of IMA ascii lines with distinct
// digests, compressible about as well as a real list.
func imaLikeLog(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		t := sha256.Sum256(d[:])
		fmt.Fprintf(&b, "10 %x ima-ng sha256:%x /usr/lib/x86_64-linux-gnu/lib%d.so\n", t[:20], d, i%500)
	}
	return b.Bytes()[:n]
}

// BenchmarkDecodeEvidence decodes a payload with the real quote and CCEL
// and a 1 MiB IMA log (zstd) and decompresses every log.
func BenchmarkDecodeEvidence(b *testing.B) {
	ev := sampleTDXEvidence(b)
	ima, err := CompressLog(evidencepb.LogKind_LOG_KIND_IMA, imaLikeLog(1<<20), evidencepb.Encoding_ENCODING_ZSTD)
	if err != nil {
		b.Fatal(err)
	}
	ev.ImaLog = ima
	payload := mustEncode(b, NewEvidence(ev))
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e, err := DecodeEvidence(payload, DefaultLimits())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecompressLogs(e, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompressLogZstd is the agent's cost of compressing a 64 KiB log
// (a CCEL's size) for one attestation.
func BenchmarkCompressLogZstd(b *testing.B) {
	data := bytes.Repeat([]byte("measured event log entry "), 64<<10/25)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CompressLog(evidencepb.LogKind_LOG_KIND_CCEL, data, evidencepb.Encoding_ENCODING_ZSTD); err != nil {
			b.Fatal(err)
		}
	}
}
