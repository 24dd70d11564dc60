package runtimelog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// NoticeContentType is the CEL content type of a notice record: a record
// that names no workload but says that the log stops being complete from
// there on. Its content value is a sequence of field TLVs in ascending
// type order, as a workload record's:
//
//	1 kind (u8: 1 = log full, 2 = quota exceeded; required)
//	2 subject (UTF-8, at most MaxNoticeSubject bytes; required for a
//	  quota notice, absent from a full notice)
//	3 time (u64 BE, Unix nanoseconds)
//
// A notice is extended into the register like any record, so the signed
// register, not only a file, says that the log is incomplete. Logs written
// before notices existed hold only ContentType records and decode as
// before; a verifier that predates notices refuses a log that holds one
// (an unknown content type), which fails closed.
const NoticeContentType uint8 = 0xCD

// NoticeEventType is the cctrusted.Event type of a notice record.
const NoticeEventType = uint32(NoticeContentType)

// NoticeKind says why a notice was written.
type NoticeKind uint8

const (
	// NoticeFull: the log reached its capacity; it is the last record.
	NoticeFull NoticeKind = 1
	// NoticeQuota: one caller (the Subject) reached its quota of new
	// records; its later new workloads are not recorded.
	NoticeQuota NoticeKind = 2
)

func (k NoticeKind) String() string {
	switch k {
	case NoticeFull:
		return "log full"
	case NoticeQuota:
		return "quota exceeded"
	}
	return fmt.Sprintf("notice kind %d", uint8(k))
}

// MaxNoticeSubject bounds a notice's subject ("uid:1000", "pod:<uid>",
// "container:<id>").
const MaxNoticeSubject = 128

// Notice fields.
const (
	noticeKind uint8 = iota + 1
	noticeSubject
	noticeTime
	numNoticeFields = noticeTime
)

// maxNoticeContent is the largest notice content TLV, header included.
const maxNoticeContent = tlvHeader + (tlvHeader + 1) + (tlvHeader + MaxNoticeSubject) + (tlvHeader + 8)

// Notice is a record that says the log is incomplete from here on.
type Notice struct {
	// Record is the notice's record number in its log (set by the log).
	Record  int
	Kind    NoticeKind
	Subject string
	Time    time.Time
}

func encodeNotice(n Notice) ([]byte, error) {
	switch n.Kind {
	case NoticeFull:
		if n.Subject != "" {
			return nil, fmt.Errorf("runtimelog: a full notice has no subject")
		}
	case NoticeQuota:
		if n.Subject == "" {
			return nil, fmt.Errorf("runtimelog: a quota notice needs a subject")
		}
	default:
		return nil, fmt.Errorf("runtimelog: unknown notice kind %d", n.Kind)
	}
	if len(n.Subject) > MaxNoticeSubject || !utf8.ValidString(n.Subject) {
		return nil, fmt.Errorf("runtimelog: notice subject is not UTF-8 of at most %d bytes", MaxNoticeSubject)
	}
	out := make([]byte, tlvHeader, maxNoticeContent)
	out[0] = NoticeContentType
	out = appendTLV(out, noticeKind, []byte{byte(n.Kind)})
	if n.Subject != "" {
		out = appendTLV(out, noticeSubject, []byte(n.Subject))
	}
	if !n.Time.IsZero() {
		var t [8]byte
		binary.BigEndian.PutUint64(t[:], uint64(n.Time.UnixNano()))
		out = appendTLV(out, noticeTime, t[:])
	}
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-tlvHeader))
	return out, nil
}

func decodeNotice(v []byte) (Notice, error) {
	var n Notice
	err := eachField(v, numNoticeFields, maxNoticeContent, func(typ uint8, val []byte) error {
		switch typ {
		case noticeKind:
			if len(val) != 1 {
				return fmt.Errorf("kind is %d bytes", len(val))
			}
			n.Kind = NoticeKind(val[0])
		case noticeSubject:
			if len(val) == 0 || len(val) > MaxNoticeSubject || !utf8.Valid(val) {
				return fmt.Errorf("subject is not UTF-8 of 1..%d bytes", MaxNoticeSubject)
			}
			n.Subject = string(val)
		case noticeTime:
			if len(val) != 8 {
				return fmt.Errorf("time is %d bytes", len(val))
			}
			n.Time = time.Unix(0, int64(binary.BigEndian.Uint64(val))).UTC()
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("notice: %w", err)
	}
	switch {
	case n.Kind != NoticeFull && n.Kind != NoticeQuota:
		return n, fmt.Errorf("notice: kind %d is not known", n.Kind)
	case n.Kind == NoticeFull && n.Subject != "":
		return n, fmt.Errorf("notice: a full notice with a subject")
	case n.Kind == NoticeQuota && n.Subject == "":
		return n, fmt.Errorf("notice: a quota notice without a subject")
	}
	return n, nil
}

// MaxStoredField bounds every string a Store writes into a record (exe
// path, cgroup path, container ID, pod UID, runtime), so the size of a log
// follows from its number of records. Decode still accepts the older,
// larger DefaultMaxFieldSize.
const MaxStoredField = 256

// truncMarker joins a cut string's prefix to the SHA-256 of the whole.
const truncMarker = "...sha256:"

// BoundField returns s when it fits MaxStoredField bytes. A longer s
// becomes its first bytes (cut on a UTF-8 boundary), "...sha256:" and the
// lower-case hex SHA-256 of the whole of s: exactly MaxStoredField bytes or
// fewer, still telling distinct long paths apart.
func BoundField(s string) string {
	if len(s) <= MaxStoredField {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	cut := MaxStoredField - len(truncMarker) - 2*len(sum)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncMarker + hex.EncodeToString(sum[:])
}

// Bounded returns w with every string field bounded by BoundField.
func (w Workload) Bounded() Workload {
	w.ExePath = BoundField(w.ExePath)
	w.ContainerID = BoundField(w.ContainerID)
	w.CgroupPath = BoundField(w.CgroupPath)
	w.PodUID = BoundField(w.PodUID)
	w.Runtime = BoundField(w.Runtime)
	return w
}

// maxBoundedContent is the largest content TLV of a bounded workload.
const maxBoundedContent = tlvHeader + (tlvHeader + 32) + (tlvHeader + 48) + 5*(tlvHeader+MaxStoredField) + (tlvHeader + 8)

// MaxStoredRecordBytes is the largest record a Store writes, in the largest
// bank: a bounded workload or a notice.
const MaxStoredRecordBytes = recordOverhead + 64 + maxBoundedContent

// AppendNotice adds notice n and returns the event whose digest the caller
// must extend into the register. The log is unchanged on error.
func (l *Log) AppendNotice(n Notice) (cctrusted.Event, error) {
	if err := l.check(); err != nil {
		return cctrusted.Event{}, err
	}
	content, err := encodeNotice(n)
	if err != nil {
		return cctrusted.Event{}, err
	}
	d, err := digest(l.alg, content)
	if err != nil {
		return cctrusted.Event{}, err
	}
	if !n.Time.IsZero() {
		n.Time = time.Unix(0, n.Time.UnixNano()).UTC()
	}
	n.Record = len(l.recs)
	l.recs = append(l.recs, record{notice: &n, content: content, digest: d})
	return l.event(len(l.recs) - 1), nil
}

// appendNoticeEncoded is AppendNotice that also appends the record's
// encoding to dst, as AppendEncoded.
func (l *Log) appendNoticeEncoded(dst []byte, n Notice) ([]byte, cctrusted.Event, error) {
	ev, err := l.AppendNotice(n)
	return l.encodeAppended(dst, ev, err)
}

// Notices returns the notice records in order, each with its record number.
func (l *Log) Notices() []Notice {
	var out []Notice
	for _, r := range l.recs {
		if r.notice != nil {
			out = append(out, *r.notice)
		}
	}
	return out
}

// Incomplete returns the log's first notice: from that record on the log
// does not name every workload the node ran (a caller over its quota, or
// the log full). False when the log holds no notice.
func (l *Log) Incomplete() (Notice, bool) {
	for _, r := range l.recs {
		if r.notice != nil {
			return *r.notice, true
		}
	}
	return Notice{}, false
}

// Full returns the log's first log-full notice, false when there is none.
func (l *Log) Full() (Notice, bool) {
	for _, r := range l.recs {
		if r.notice != nil && r.notice.Kind == NoticeFull {
			return *r.notice, true
		}
	}
	return Notice{}, false
}

// Workload returns record i's workload; false when record i is a notice
// or out of range.
func (l *Log) Workload(i int) (Workload, bool) {
	if i < 0 || i >= len(l.recs) || l.recs[i].notice != nil {
		return Workload{}, false
	}
	return l.recs[i].w, true
}
