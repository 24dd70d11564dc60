// Package runtimelog is the runtime measurement log the workload attestor
// keeps: one record per workload identity it has seen, each extended into
// RTMR3 (TDX, SHA-384) or an application PCR (TPM, PCR23 by default,
// SHA-256), so the server can replay the log against the signed register
// at the next attestation.
//
// The log is a TCG Canonical Event Log (CEL) in its TLV encoding, written and
// read through go-eventlog/cel. Every record is
//
//	TLV(0 recnum, u64 BE)  TLV(index type, u8 index)  TLV(3 digests, TLV(alg, digest)...)  TLV(content)
//
// with the index type 1 (PCR) or 108 (CC MR: RTMR3 is CC MR 4), one digest in
// the log's bank, and the content TLV of type ContentType. A TLV is a u8 type,
// a u32 big-endian length and the value.
//
// The content value is a sequence of field TLVs, each at most once and in
// ascending type order (so one workload has one encoding):
//
//	1 exe SHA-256 (32 bytes, required)
//	2 exe SHA-384 (48 bytes, required when the log's bank is SHA-384)
//	3 exe path (UTF-8)
//	4 container ID
//	5 cgroup path
//	6 pod UID
//	7 container runtime (e.g. "containerd")
//	8 time first seen (u64 BE, Unix nanoseconds)
//
// Empty fields are omitted. The record digest, the value extended into the
// register, is H(content TLV), the whole TLV with its type and length, in the
// log's bank.
//
// Appending is designed for a log file: AppendEncoded returns the bytes of the
// new record alone, which the caller writes and fsyncs before it extends the
// register. A crash between the two leaves the log one record ahead of the
// register; Verify recognises that case (the register equals the replay of a
// prefix) and names the first record the register lacks.
package runtimelog

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-eventlog/cel"
)

// ContentType is the CEL content type of a workload record. CEL leaves
// content types to their users; 0xCC ("CC") is this project's.
const ContentType uint8 = 0xCC

// EventType is the cctrusted.Event type a runtime record carries. It is the
// content type, which no TCG event type collides with in replay (only
// EV_NO_ACTION, 3, is special).
const EventType = uint32(ContentType)

// Field types inside the content value.
const (
	fieldExeSHA256 uint8 = iota + 1
	fieldExeSHA384
	fieldExePath
	fieldContainerID
	fieldCgroupPath
	fieldPodUID
	fieldRuntime
	fieldTime
	numFields = fieldTime
)

// CEL wire constants (TCG CEL 5.1).
const (
	tlvHeader     = 5
	celRecnum     = 0
	celPCR        = uint8(cel.PCRType)
	celCCMR       = uint8(cel.CCMRType)
	celDigests    = 3
	recnumLen     = 8
	rtmr3CCMR     = 4
	defaultFields = 4096
	// recordOverhead is a record's size besides its digest and content:
	// recnum TLV, index TLV, digests TLV header, the digest's TLV header.
	recordOverhead = tlvHeader + recnumLen + tlvHeader + 1 + tlvHeader + tlvHeader
)

// Default bounds for Decode: PATH_MAX sized fields; a log several times
// larger than any node's set of distinct workloads.
const (
	DefaultMaxBytes     = 16 << 20
	DefaultMaxRecords   = 1 << 16
	DefaultMaxFieldSize = defaultFields
)

// Limits bound Decode. Zero fields mean the defaults.
type Limits struct {
	MaxBytes     int
	MaxRecords   int
	MaxFieldSize int
}

// DefaultLimits returns the default bounds.
func DefaultLimits() Limits {
	return Limits{MaxBytes: DefaultMaxBytes, MaxRecords: DefaultMaxRecords, MaxFieldSize: DefaultMaxFieldSize}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxRecords <= 0 {
		l.MaxRecords = d.MaxRecords
	}
	if l.MaxFieldSize <= 0 {
		l.MaxFieldSize = d.MaxFieldSize
	}
	return l
}

// Workload is what the attestor saw of one workload. Identity comes from the
// caller's PID, never from anything the workload says about itself.
type Workload struct {
	ExeSHA256   []byte    `json:"exe_sha256"`
	ExeSHA384   []byte    `json:"exe_sha384,omitempty"`
	ExePath     string    `json:"exe_path,omitempty"`
	ContainerID string    `json:"container_id,omitempty"`
	CgroupPath  string    `json:"cgroup_path,omitempty"`
	PodUID      string    `json:"pod_uid,omitempty"`
	Runtime     string    `json:"runtime,omitempty"`
	Time        time.Time `json:"time,omitzero"`
}

// Log is a runtime log for one register and one bank.
type Log struct {
	imr cctrusted.IMR
	alg cctrusted.Algorithm
	// first is the number of recs[0] in the node's log: 0 but for a
	// suffix (DecodeFrom).
	first int
	recs  []record
}

type record struct {
	w       Workload
	notice  *Notice // set for a notice record, which has no workload
	content []byte  // the content TLV, header included
	digest  []byte
}

// New starts an empty log for imr (RTMR3, or CC MR 4 which is the same
// register, or a TPM PCR) in bank alg (SHA-384 for RTMR3; SHA-256 or
// SHA-384 for a PCR). A register or bank outside those makes Append fail.
func New(imr cctrusted.IMR, alg cctrusted.Algorithm) *Log {
	if imr.Space == cctrusted.SpaceCCMR && imr.Index == rtmr3CCMR {
		imr = cctrusted.RTMR(3).IMR()
	}
	return &Log{imr: imr, alg: alg}
}

func (l *Log) check() error {
	switch l.imr.Space {
	case cctrusted.SpaceRTMR:
		if l.imr.Index != 3 {
			return fmt.Errorf("runtimelog: %v belongs to firmware and kernel; the runtime log extends rtmr3", l.imr)
		}
		if l.alg != cctrusted.AlgSHA384 {
			return fmt.Errorf("runtimelog: %v is a SHA-384 register, not %v", l.imr, l.alg)
		}
	case cctrusted.SpacePCR:
		if !l.imr.Valid() {
			return fmt.Errorf("runtimelog: %v is not a PCR", l.imr)
		}
		if l.alg != cctrusted.AlgSHA256 && l.alg != cctrusted.AlgSHA384 {
			return fmt.Errorf("runtimelog: bank %v is not supported for PCRs (want sha256 or sha384)", l.alg)
		}
	default:
		return fmt.Errorf("runtimelog: %v cannot hold runtime events (want rtmr3 or a PCR)", l.imr)
	}
	return nil
}

// IMR is the register the log extends.
func (l *Log) IMR() cctrusted.IMR { return l.imr }

// Algorithm is the log's bank.
func (l *Log) Algorithm() cctrusted.Algorithm { return l.alg }

// Len is the number of records.
func (l *Log) Len() int { return len(l.recs) }

// First is the record number of the log's first record: 0 for a whole log,
// where a suffix starts for one read with DecodeFrom.
func (l *Log) First() int { return l.first }

// Workloads returns the workloads in record order; notice records (see
// Notices) are left out, so the i-th workload need not be record i.
func (l *Log) Workloads() []Workload {
	out := make([]Workload, 0, len(l.recs))
	for _, r := range l.recs {
		if r.notice == nil {
			out = append(out, r.w)
		}
	}
	return out
}

// Append adds a record for w and returns the event whose digest the caller
// must extend into the register. The log is unchanged on error.
func (l *Log) Append(w Workload) (cctrusted.Event, error) {
	if err := l.check(); err != nil {
		return cctrusted.Event{}, err
	}
	content, err := encodeContent(w, l.alg)
	if err != nil {
		return cctrusted.Event{}, err
	}
	d, err := digest(l.alg, content)
	if err != nil {
		return cctrusted.Event{}, err
	}
	w.ExeSHA256 = bytes.Clone(w.ExeSHA256)
	w.ExeSHA384 = bytes.Clone(w.ExeSHA384)
	if !w.Time.IsZero() {
		w.Time = time.Unix(0, w.Time.UnixNano()).UTC() // what Decode will return
	}
	l.recs = append(l.recs, record{w: w, content: content, digest: d})
	return l.event(len(l.recs) - 1), nil
}

// AppendEncoded appends a record for w and also appends its CEL encoding to
// dst, so a log file grows by exactly the returned tail: write
// out[len(dst):], fsync, then extend the register with the event's digest.
func (l *Log) AppendEncoded(dst []byte, w Workload) ([]byte, cctrusted.Event, error) {
	ev, err := l.Append(w)
	return l.encodeAppended(dst, ev, err)
}

// encodeAppended finishes AppendEncoded and appendNoticeEncoded: it
// appends the encoding of the record just added (ev, unless err), and
// takes that record back when it cannot be encoded, so the log and the
// bytes written for it never differ.
func (l *Log) encodeAppended(dst []byte, ev cctrusted.Event, err error) ([]byte, cctrusted.Event, error) {
	if err != nil {
		return dst, cctrusted.Event{}, err
	}
	out, err := l.appendRecord(dst, len(l.recs)-1)
	if err != nil {
		l.recs = l.recs[:len(l.recs)-1]
		return dst, cctrusted.Event{}, err
	}
	return out, ev, nil
}

// Encode returns the whole log in CEL TLV encoding.
func (l *Log) Encode() ([]byte, error) {
	size := 0
	for _, r := range l.recs {
		size += recordOverhead + l.alg.Size() + len(r.content)
	}
	out := make([]byte, 0, size)
	for i := range l.recs {
		var err error
		if out, err = l.appendRecord(out, i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (l *Log) celIndex() (cel.MRType, uint8) {
	if l.imr.Space == cctrusted.SpaceRTMR {
		return cel.CCMRType, rtmr3CCMR
	}
	return cel.PCRType, uint8(l.imr.Index)
}

func (l *Log) appendRecord(dst []byte, i int) ([]byte, error) {
	h, err := l.alg.Hash()
	if err != nil {
		return dst, err
	}
	r := l.recs[i]
	typ, idx := l.celIndex()
	rec := cel.Record{
		RecNum:    uint64(i),
		Index:     idx,
		IndexType: typ,
		Digests:   map[crypto.Hash][]byte{h: r.digest},
		Content:   cel.TLV{Type: r.content[0], Value: r.content[tlvHeader:]},
	}
	buf := bytes.NewBuffer(dst)
	if err := rec.EncodeCELR(buf); err != nil {
		return dst, fmt.Errorf("runtimelog: encoding record %d: %w", i, err)
	}
	return buf.Bytes(), nil
}

// Events returns every record as an event in the register's own space
// (rtmr3 or pcrN), with its digest and the content value as data.
func (l *Log) Events() []cctrusted.Event {
	out := make([]cctrusted.Event, len(l.recs))
	for i := range l.recs {
		out[i] = l.event(i)
	}
	return out
}

func (l *Log) event(i int) cctrusted.Event {
	r := l.recs[i]
	typ := EventType
	if r.notice != nil {
		typ = NoticeEventType
	}
	return cctrusted.Event{
		IMR:     l.imr,
		Type:    typ,
		Digests: []cctrusted.Digest{{Alg: l.alg, Value: r.digest}},
		Data:    r.content[tlvHeader:],
	}
}

// Replay extends every record into a zero register.
func (l *Log) Replay() (cctrusted.Registers, error) {
	r, err := l.replay(nil, len(l.recs))
	if err != nil {
		return nil, err
	}
	return r.Registers(), nil
}

// replay extends the first n records into the register, starting from
// start (nil: zero).
func (l *Log) replay(start []byte, n int) (*cctrusted.Replayer, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	var initial cctrusted.Registers
	if start != nil {
		if len(start) != l.alg.Size() {
			return nil, fmt.Errorf("runtimelog: starting %v value is %d bytes, want %d for %v", l.imr, len(start), l.alg.Size(), l.alg)
		}
		initial = cctrusted.Registers{}
		initial.Set(l.imr, l.alg, start)
	}
	r := cctrusted.NewReplayer(initial)
	for i := range n {
		if err := r.ExtendDigest(l.imr, l.alg, l.recs[i].digest); err != nil {
			return nil, fmt.Errorf("runtimelog: record %d: %w", l.first+i, err)
		}
	}
	return r, nil
}

// Verify compares the replay with the register value the TEE signed. On a
// mismatch the error wraps *cctrusted.MismatchError; when the signed value
// equals the replay of the first k records, it says that record k is the
// first the register lacks (a log written but never extended, or records
// added to the log by someone else).
func (l *Log) Verify(signed []byte) error { return l.VerifyFrom(nil, signed) }

// VerifyFrom is Verify for a log whose register held start before its first
// record (nil: zero, a whole log): the value a checkpoint recorded before
// record First of a suffix. Record numbers in its errors are the node's.
func (l *Log) VerifyFrom(start, signed []byte) error {
	if len(signed) != l.alg.Size() {
		return fmt.Errorf("runtimelog: signed %v is %d bytes, want %d for %v", l.imr, len(signed), l.alg.Size(), l.alg)
	}
	r, err := l.replay(start, len(l.recs))
	if err != nil {
		return err
	}
	mismatch := r.Check(l.imr, l.alg, signed)
	if mismatch == nil {
		return nil
	}
	var me *cctrusted.MismatchError
	if errors.As(mismatch, &me) {
		me.LastEvent = l.first + len(l.recs) - 1
		me.Events = len(l.recs)
	}
	// Walk the prefixes once: the register is the replay of records [0, k).
	cur := make([]byte, l.alg.Size())
	copy(cur, start)
	h, _ := l.alg.Hash()
	for k := 0; k < len(l.recs); k++ {
		if bytes.Equal(cur, signed) {
			return fmt.Errorf("runtimelog: %v holds only the first %d of %d records; record %d is the first not extended: %w", l.imr, k, len(l.recs), l.first+k, mismatch)
		}
		hh := h.New()
		hh.Write(cur)
		hh.Write(l.recs[k].digest)
		cur = hh.Sum(cur[:0])
	}
	return fmt.Errorf("runtimelog: %v matches no prefix of the %d records (a record was edited, removed or reordered, or the register was extended outside this log): %w", l.imr, len(l.recs), mismatch)
}

// Sniff reports whether b starts like a runtime log record: a CEL recnum
// TLV followed by a PCR or CC MR index TLV.
func Sniff(b []byte) bool {
	if len(b) < 2*tlvHeader+recnumLen+1 {
		return false
	}
	if b[0] != celRecnum || binary.BigEndian.Uint32(b[1:]) != recnumLen {
		return false
	}
	i := b[tlvHeader+recnumLen:]
	return (i[0] == celPCR || i[0] == celCCMR) && binary.BigEndian.Uint32(i[1:]) == 1
}

func digest(alg cctrusted.Algorithm, content []byte) ([]byte, error) {
	h, err := alg.Hash()
	if err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(content)
	return hh.Sum(nil), nil
}

// encodeContent builds the content TLV (header included) of w.
func encodeContent(w Workload, alg cctrusted.Algorithm) ([]byte, error) {
	if len(w.ExeSHA256) != 32 {
		return nil, fmt.Errorf("runtimelog: exe SHA-256 is %d bytes, want 32", len(w.ExeSHA256))
	}
	if alg == cctrusted.AlgSHA384 && len(w.ExeSHA384) == 0 {
		return nil, fmt.Errorf("runtimelog: a SHA-384 log needs the exe SHA-384")
	}
	if len(w.ExeSHA384) != 0 && len(w.ExeSHA384) != 48 {
		return nil, fmt.Errorf("runtimelog: exe SHA-384 is %d bytes, want 48", len(w.ExeSHA384))
	}
	strs := []struct {
		typ  uint8
		name string
		v    string
	}{
		{fieldExePath, "exe path", w.ExePath},
		{fieldContainerID, "container ID", w.ContainerID},
		{fieldCgroupPath, "cgroup path", w.CgroupPath},
		{fieldPodUID, "pod UID", w.PodUID},
		{fieldRuntime, "runtime", w.Runtime},
	}
	n := tlvHeader + tlvHeader + 32
	if len(w.ExeSHA384) > 0 {
		n += tlvHeader + 48
	}
	for _, s := range strs {
		if len(s.v) > DefaultMaxFieldSize {
			return nil, fmt.Errorf("runtimelog: %s is %d bytes, over the %d byte limit", s.name, len(s.v), DefaultMaxFieldSize)
		}
		if !utf8.ValidString(s.v) {
			return nil, fmt.Errorf("runtimelog: %s is not UTF-8", s.name)
		}
		if s.v != "" {
			n += tlvHeader + len(s.v)
		}
	}
	if !w.Time.IsZero() {
		n += tlvHeader + 8
	}
	out := make([]byte, tlvHeader, n)
	out[0] = ContentType
	binary.BigEndian.PutUint32(out[1:], uint32(n-tlvHeader))
	out = appendTLV(out, fieldExeSHA256, w.ExeSHA256)
	if len(w.ExeSHA384) > 0 {
		out = appendTLV(out, fieldExeSHA384, w.ExeSHA384)
	}
	for _, s := range strs {
		if s.v != "" {
			out = appendTLV(out, s.typ, []byte(s.v))
		}
	}
	if !w.Time.IsZero() {
		var t [8]byte
		binary.BigEndian.PutUint64(t[:], uint64(w.Time.UnixNano()))
		out = appendTLV(out, fieldTime, t[:])
	}
	return out, nil
}

func appendTLV(dst []byte, typ uint8, v []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(v)))
	return append(dst, v...)
}
