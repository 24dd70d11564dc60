package runtimelog

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-eventlog/cel"
)

// Decode reads a runtime log within lim. Every record must carry the next
// record number, the same register and bank as the first, exactly one
// digest, this package's content type with well-formed fields, and a digest
// that matches its content. An empty input is an error: a caller that
// accepts "no log yet" starts one with New.
//
// The TLV structure is checked here before go-eventlog/cel decodes it,
// because cel allocates whatever length a TLV header claims.
func Decode(b []byte, lim Limits) (*Log, error) { return DecodeFrom(b, 0, lim) }

// DecodeFrom reads the records of a runtime log from record number first
// on (a suffix cut at a record boundary, as an agent sends it from a
// checkpoint's offset), with every check Decode makes: the records must
// carry the numbers first, first+1, ... without a gap. Record numbers are
// not measured, so that is what ties the suffix to its place in the log;
// notices keep their numbers in the whole log. Replay the result from the
// register value before record first with VerifyFrom.
func DecodeFrom(b []byte, first int, lim Limits) (*Log, error) {
	lim = lim.withDefaults()
	if len(b) > lim.MaxBytes {
		return nil, fmt.Errorf("runtimelog: log is %d bytes, over the %d byte limit", len(b), lim.MaxBytes)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("runtimelog: log is empty")
	}
	if first < 0 {
		return nil, fmt.Errorf("runtimelog: first record number %d", first)
	}
	if !Sniff(b) {
		return nil, fmt.Errorf("runtimelog: not a runtime log (no CEL record at the start)")
	}
	n, err := scan(b, lim)
	if err != nil {
		return nil, err
	}
	c, err := cel.DecodeToCEL(bytes.NewBuffer(b))
	if err != nil {
		return nil, fmt.Errorf("runtimelog: %w", err)
	}
	recs := c.Records()
	if len(recs) != n {
		return nil, fmt.Errorf("runtimelog: cel decoded %d records, the bounds check saw %d", len(recs), n)
	}
	l := &Log{first: first, recs: make([]record, 0, len(recs))}
	for i, rec := range recs {
		if err := l.addDecoded(first+i, rec, lim); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// scan walks the TLV framing with every length checked against what is
// left, and counts records.
func scan(b []byte, lim Limits) (int, error) {
	maxContent := int(numFields) * (tlvHeader + lim.MaxFieldSize)
	off, n := 0, 0
	for off < len(b) {
		if n >= lim.MaxRecords {
			return 0, fmt.Errorf("runtimelog: more than %d records", lim.MaxRecords)
		}
		for f, want := range []struct {
			name string
			max  int
		}{{"record number", recnumLen}, {"register index", 1}, {"digests", 4 * (tlvHeader + 64)}, {"content", maxContent}} {
			if len(b)-off < tlvHeader {
				return 0, fmt.Errorf("runtimelog: record %d at offset %d: truncated %s header", n, off, want.name)
			}
			size := binary.BigEndian.Uint32(b[off+1:])
			if uint64(size) > uint64(want.max) {
				return 0, fmt.Errorf("runtimelog: record %d at offset %d: %s field is %d bytes, limit %d", n, off, want.name, size, want.max)
			}
			if int(size) > len(b)-off-tlvHeader {
				return 0, fmt.Errorf("runtimelog: record %d at offset %d: %s field of %d bytes runs past the end of the log", n, off, want.name, size)
			}
			if f == 2 {
				if err := scanDigests(b[off+tlvHeader : off+tlvHeader+int(size)]); err != nil {
					return 0, fmt.Errorf("runtimelog: record %d: %w", n, err)
				}
			}
			off += tlvHeader + int(size)
		}
		n++
	}
	return n, nil
}

func scanDigests(v []byte) error {
	count := 0
	for len(v) > 0 {
		if len(v) < tlvHeader {
			return fmt.Errorf("truncated digest")
		}
		size := binary.BigEndian.Uint32(v[1:])
		if int64(size) > int64(len(v)-tlvHeader) {
			return fmt.Errorf("digest of %d bytes runs past its field", size)
		}
		v = v[tlvHeader+int(size):]
		count++
	}
	if count != 1 {
		return fmt.Errorf("%d digests, want exactly one (the log's bank)", count)
	}
	return nil
}

// addDecoded appends rec, which must be record number i of the log.
func (l *Log) addDecoded(i int, rec cel.Record, lim Limits) error {
	if rec.RecNum != uint64(i) {
		if l.first > 0 && len(l.recs) == 0 {
			return fmt.Errorf("runtimelog: the first record carries record number %d, want %d (the suffix does not start where it was asked to)", rec.RecNum, i)
		}
		return fmt.Errorf("runtimelog: record %d carries record number %d (records removed or reordered)", i, rec.RecNum)
	}
	var imr cctrusted.IMR
	switch rec.IndexType {
	case cel.CCMRType:
		if rec.Index != rtmr3CCMR {
			return fmt.Errorf("runtimelog: record %d: CC MR %d is not RTMR3", i, rec.Index)
		}
		imr = cctrusted.RTMR(3).IMR()
	case cel.PCRType:
		imr = cctrusted.PCR(rec.Index).IMR()
	default:
		return fmt.Errorf("runtimelog: record %d: register type %d", i, rec.IndexType)
	}
	if len(rec.Digests) != 1 {
		return fmt.Errorf("runtimelog: record %d: %d digests, want one", i, len(rec.Digests))
	}
	var h crypto.Hash
	var d []byte
	for k, v := range rec.Digests {
		h, d = k, v
	}
	alg, err := cctrusted.AlgorithmFromHash(h)
	if err != nil {
		return fmt.Errorf("runtimelog: record %d: %w", i, err)
	}
	if len(l.recs) == 0 {
		l.imr, l.alg = imr, alg
		if err := l.check(); err != nil {
			return fmt.Errorf("runtimelog: record %d: %w", i, err)
		}
	} else if imr != l.imr || alg != l.alg {
		return fmt.Errorf("runtimelog: record %d is for %v/%v, the log for %v/%v", i, imr, alg, l.imr, l.alg)
	}
	r := record{}
	switch rec.Content.Type {
	case ContentType:
		w, err := decodeContent(rec.Content.Value, alg, lim)
		if err != nil {
			return fmt.Errorf("runtimelog: record %d: %w", i, err)
		}
		r.w = w
	case NoticeContentType:
		n, err := decodeNotice(rec.Content.Value)
		if err != nil {
			return fmt.Errorf("runtimelog: record %d: %w", i, err)
		}
		n.Record = i
		r.notice = &n
	default:
		return fmt.Errorf("runtimelog: record %d: content type 0x%02x, want 0x%02x (workload) or 0x%02x (notice)", i, rec.Content.Type, ContentType, NoticeContentType)
	}
	content := appendTLV(make([]byte, 0, tlvHeader+len(rec.Content.Value)), rec.Content.Type, rec.Content.Value)
	want, err := digest(alg, content)
	if err != nil {
		return err
	}
	if !bytes.Equal(want, d) {
		return fmt.Errorf("runtimelog: record %d: digest %x does not match its content (%v %x)", i, d, alg, want)
	}
	r.content, r.digest = content, want
	l.recs = append(l.recs, r)
	return nil
}

// eachField walks the TLV fields of a record's content: each at most
// maxSize bytes, of a type in 1..numTypes, in ascending order and each at
// most once, so one record has one encoding.
func eachField(v []byte, numTypes uint8, maxSize int, fn func(typ uint8, val []byte) error) error {
	last := uint8(0)
	for len(v) > 0 {
		if len(v) < tlvHeader {
			return fmt.Errorf("truncated field header")
		}
		typ := v[0]
		size := binary.BigEndian.Uint32(v[1:])
		if int64(size) > int64(len(v)-tlvHeader) {
			return fmt.Errorf("field %d of %d bytes runs past the content", typ, size)
		}
		if int64(size) > int64(maxSize) {
			return fmt.Errorf("field %d is %d bytes, over the %d byte limit", typ, size, maxSize)
		}
		if typ == 0 || typ > numTypes {
			return fmt.Errorf("unknown field type %d", typ)
		}
		if typ <= last {
			return fmt.Errorf("field %d out of order or repeated", typ)
		}
		last = typ
		if err := fn(typ, v[tlvHeader:tlvHeader+int(size)]); err != nil {
			return err
		}
		v = v[tlvHeader+int(size):]
	}
	return nil
}

func decodeContent(v []byte, alg cctrusted.Algorithm, lim Limits) (Workload, error) {
	var w Workload
	err := eachField(v, numFields, lim.MaxFieldSize, func(typ uint8, val []byte) error {
		switch typ {
		case fieldExeSHA256:
			if len(val) != 32 {
				return fmt.Errorf("exe SHA-256 is %d bytes", len(val))
			}
			w.ExeSHA256 = bytes.Clone(val)
		case fieldExeSHA384:
			if len(val) != 48 {
				return fmt.Errorf("exe SHA-384 is %d bytes", len(val))
			}
			w.ExeSHA384 = bytes.Clone(val)
		case fieldTime:
			if len(val) != 8 {
				return fmt.Errorf("time is %d bytes", len(val))
			}
			w.Time = time.Unix(0, int64(binary.BigEndian.Uint64(val))).UTC()
		default:
			if len(val) == 0 {
				return fmt.Errorf("field %d is empty (empty fields are omitted)", typ)
			}
			if !utf8.Valid(val) {
				return fmt.Errorf("field %d is not UTF-8", typ)
			}
			s := string(val)
			switch typ {
			case fieldExePath:
				w.ExePath = s
			case fieldContainerID:
				w.ContainerID = s
			case fieldCgroupPath:
				w.CgroupPath = s
			case fieldPodUID:
				w.PodUID = s
			case fieldRuntime:
				w.Runtime = s
			}
		}
		return nil
	})
	if err != nil {
		return w, err
	}
	if w.ExeSHA256 == nil {
		return w, fmt.Errorf("no exe SHA-256")
	}
	if alg == cctrusted.AlgSHA384 && w.ExeSHA384 == nil {
		return w, fmt.Errorf("a SHA-384 log record without exe SHA-384")
	}
	return w, nil
}
