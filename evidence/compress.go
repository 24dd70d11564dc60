package evidence

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/bits"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// Budget is the decompressed size still allowed for one payload. All logs
// of a payload draw on one Budget, so four logs cannot each take the whole
// limit. A Budget belongs to one payload and one goroutine.
type Budget struct {
	limit, used uint64
}

// NewBudget returns a budget of limit bytes; limit <= 0 takes
// DefaultMaxDecompressedBytes.
func NewBudget(limit int64) *Budget {
	if limit <= 0 {
		limit = DefaultMaxDecompressedBytes
	}
	return &Budget{limit: uint64(limit)}
}

// Remaining returns how many bytes may still be produced.
func (b *Budget) Remaining() uint64 { return b.limit - b.used }

// reserve takes n bytes from the budget, or fails naming what wanted them.
func (b *Budget) reserve(what string, n uint64) error {
	if n > b.Remaining() {
		return &LimitError{What: what, Size: addSat(b.used, n), Limit: b.limit}
	}
	b.used += n
	return nil
}

// zstdWindow is the window a log of n bytes needs: the whole log, rounded
// up to the power of two zstd takes. The default 8 MiB window cost 3-5 ms
// for a 64 KiB log (55% of a simulated agent's CPU in the end-to-end
// benchmark).
func zstdWindow(n int) int {
	w := zstd.MinWindowSize
	for w < n && w < zstdMaxWindow {
		w <<= 1
	}
	return w
}

const zstdMaxWindow = 8 << 20

// zstdEncoders pools encoders by window (one pool per power of two from
// zstd.MinWindowSize to zstdMaxWindow). A new encoder allocates and clears
// its hash tables, 1.4 MB for a 64 KiB log, which cost more than the
// compression itself; a pooled one is reused by the next log of its size,
// and the garbage collector still drops idle ones, so a quiet agent keeps
// no encoder memory for good (a single long-lived encoder did).
var zstdEncoders [24 - 10]sync.Pool // 1 KiB (zstd.MinWindowSize) .. 8 MiB

func zstdEncode(data []byte) ([]byte, error) {
	w := zstdWindow(len(data))
	pool := &zstdEncoders[bits.TrailingZeros(uint(w))-bits.TrailingZeros(zstd.MinWindowSize)]
	enc, _ := pool.Get().(*zstd.Encoder)
	if enc == nil {
		// One goroutine: compressing a log is a one-off on the agent.
		var err error
		if enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(w), zstd.WithLowerEncoderMem(true)); err != nil {
			return nil, err
		}
	}
	// EncodeAll writes the content size into the frame header.
	out := enc.EncodeAll(data, make([]byte, 0, len(data)/4+64))
	pool.Put(enc)
	return out, nil
}

// CompressLog wraps an event log of the given kind for Evidence, compressed
// with enc. raw_size is set from data, so the receiver can check its budget
// before inflating anything.
func CompressLog(kind evidencepb.LogKind, data []byte, enc evidencepb.Encoding) (*evidencepb.Log, error) {
	l := &evidencepb.Log{Kind: kind, Encoding: enc, RawSize: uint64(len(data))}
	switch enc {
	case evidencepb.Encoding_ENCODING_NONE:
		l.Data = data
	case evidencepb.Encoding_ENCODING_ZSTD:
		out, err := zstdEncode(data)
		if err != nil {
			return nil, &MalformedError{Field: logName(kind), Reason: "zstd encoder", Err: err}
		}
		l.Data = out
	case evidencepb.Encoding_ENCODING_GZIP:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(data); err != nil {
			return nil, &MalformedError{Field: logName(kind), Reason: "gzip", Err: err}
		}
		if err := w.Close(); err != nil {
			return nil, &MalformedError{Field: logName(kind), Reason: "gzip", Err: err}
		}
		l.Data = buf.Bytes()
	default:
		return nil, malformed(logName(kind), "unknown encoding %d (this version knows none, zstd, gzip)", int32(enc))
	}
	return l, nil
}

// DecompressLog returns l's raw bytes, drawing their size from budget (nil:
// a fresh default budget). l's raw_size is reserved before anything is
// inflated, and decompression stops as soon as the output exceeds it, so a
// decompression bomb costs a small multiple of raw_size (itself bounded by
// the budget), never what it would inflate to. The output must be exactly
// raw_size bytes and the stream must end cleanly (checksums verified). A nil
// l is an absent log: nil, nil. With ENCODING_NONE the result aliases l.Data.
func DecompressLog(l *evidencepb.Log, budget *Budget) ([]byte, error) {
	if l == nil {
		return nil, nil
	}
	if budget == nil {
		budget = NewBudget(0)
	}
	name := logName(l.GetKind())
	raw := l.GetRawSize()
	if err := budget.reserve(name+" (raw_size)", raw); err != nil {
		return nil, err
	}
	switch l.GetEncoding() {
	case evidencepb.Encoding_ENCODING_NONE:
		if uint64(len(l.GetData())) != raw {
			return nil, malformed(name, "raw_size says %d bytes, the uncompressed data is %d", raw, len(l.GetData()))
		}
		return l.GetData(), nil
	case evidencepb.Encoding_ENCODING_ZSTD:
		return unzstd(name, l.GetData(), raw)
	case evidencepb.Encoding_ENCODING_GZIP:
		return gunzip(name, l.GetData(), raw)
	}
	return nil, malformed(name, "unknown encoding %d (this version knows none, zstd, gzip)", int32(l.GetEncoding()))
}

// unzstd decodes all of data into a buffer of capacity raw. With
// WithDecodeAllCapLimit the decoder refuses frames whose header declares
// more than the capacity up front, and stops a frame without a declared
// size after the first block that outgrows the buffer. That block (at most
// 128 KiB) makes append grow the buffer once, so a lying stream costs at
// most about 2.25x raw_size before it is refused (measured: 38 MB for a
// 16 MiB raw_size and 1 GiB of zeros). Decoding in memory (DecodeAll)
// rather than streaming avoids the window ring, which would cost up to the
// declared window on top of raw_size for every honest log.
func unzstd(name string, data []byte, raw uint64) ([]byte, error) {
	// A window larger than the output is legal (streaming encoders declare
	// theirs before knowing the size) and costs nothing when decoding in
	// memory; 8 MiB covers every standard level. The decoder caps the window
	// at its max memory too, so both follow.
	mem := max(raw, 8<<20)
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(mem),
		zstd.WithDecoderMaxWindow(min(mem, zstd.MaxWindowSize)),
	)
	if err != nil {
		return nil, &MalformedError{Field: name, Reason: "zstd decoder", Err: err}
	}
	defer d.Close()
	out, err := d.DecodeAll(data, make([]byte, 0, raw))
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrFrameSizeExceeded) {
		return nil, malformed(name, "zstd data inflates to more than its raw_size of %d bytes", raw)
	}
	if err != nil {
		return nil, &MalformedError{Field: name, Reason: "zstd", Err: err}
	}
	if uint64(len(out)) != raw {
		return nil, malformed(name, "raw_size says %d bytes, zstd data inflates to %d", raw, len(out))
	}
	return out, nil
}

// gunzip reads exactly raw bytes, then insists on a clean end of stream
// (which is where gzip checks its CRC and length), reading at most one byte
// more: a bomb is never inflated past raw+1.
func gunzip(name string, data []byte, raw uint64) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, &MalformedError{Field: name, Reason: "gzip header", Err: err}
	}
	out := make([]byte, raw)
	n, err := io.ReadFull(r, out)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return nil, malformed(name, "raw_size says %d bytes, gzip data inflates to %d", raw, n)
	}
	if err != nil {
		return nil, &MalformedError{Field: name, Reason: "gzip", Err: err}
	}
	var one [1]byte
	switch _, err := io.ReadFull(r, one[:]); {
	case err == nil:
		return nil, malformed(name, "gzip data inflates to more than its raw_size of %d bytes", raw)
	case !errors.Is(err, io.EOF):
		return nil, &MalformedError{Field: name, Reason: "gzip", Err: err}
	}
	return out, nil
}

// Logs are the decompressed event logs of one Evidence; absent logs are nil.
type Logs struct {
	CCEL, TPM, IMA, Runtime []byte
}

// DecompressLogs inflates every log of e under one budget of
// lim.MaxDecompressedBytes, which also pays for the rest of the message
// (quote, certificates...), so the whole evidence after decompression stays
// within the limit.
func DecompressLogs(e *evidencepb.Evidence, lim Limits) (*Logs, error) {
	lim = lim.withDefaults()
	budget := NewBudget(lim.MaxDecompressedBytes)
	if err := budget.reserve("evidence without its logs", evidenceBase(e)); err != nil {
		return nil, err
	}
	out := new(Logs)
	for _, sl := range evidenceLogs(e) {
		if err := validateLog(sl.field, sl.log, sl.kind); err != nil {
			return nil, err
		}
		// The slot names the log, whatever its kind field says.
		l := sl.log
		if l.GetKind() != sl.kind {
			l = &evidencepb.Log{Kind: sl.kind, Encoding: l.GetEncoding(), Data: l.GetData(), RawSize: l.GetRawSize()}
		}
		b, err := DecompressLog(l, budget)
		if err != nil {
			return nil, err
		}
		switch sl.kind {
		case evidencepb.LogKind_LOG_KIND_CCEL:
			out.CCEL = b
		case evidencepb.LogKind_LOG_KIND_TPM:
			out.TPM = b
		case evidencepb.LogKind_LOG_KIND_IMA:
			out.IMA = b
		case evidencepb.LogKind_LOG_KIND_RUNTIME:
			out.Runtime = b
		}
	}
	return out, nil
}
