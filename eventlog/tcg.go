// Package eventlog reads the measurement logs a node presents as evidence and
// replays them against the registers its TEE signed: TCG PC Client
// crypto-agile logs (the TDX CCEL and the TPM binary_bios_measurements),
// and extracts boot facts (secure boot, bootloader, kernel command line)
// from them through go-eventlog. IMA lives in eventlog/ima and the runtime
// log the workload attestor keeps in eventlog/runtimelog.
//
// Event numbering is the log's own: event 0 is the Spec ID event (the
// SHA-1-format header every crypto-agile log starts with), so an index in an
// error is the position a tool such as tpm2_eventlog shows. A TPM log in the
// legacy SHA-1 format (TCG PC Client 1.2 style, no Spec ID Event03) has no
// such header: its event 0 is its first measurement.
package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Format names a kind of measurement log.
type Format string

// The log formats the project reads. IMA and runtime logs are parsed by
// their own packages; the constants live here so detection and the CLI
// share one list.
const (
	FormatCCEL    Format = "ccel"    // TDX CC event log, CC MR indexes, 0xFF padded or zero filled
	FormatTPM     Format = "tpm"     // TPM binary_bios_measurements, PCR indexes, crypto-agile or legacy SHA-1
	FormatIMA     Format = "ima"     // IMA runtime measurement list (eventlog/ima)
	FormatRuntime Format = "runtime" // this project's runtime log (eventlog/runtimelog)
)

// Formats lists every format in the order detection should try them.
func Formats() []Format {
	return []Format{FormatCCEL, FormatTPM, FormatIMA, FormatRuntime}
}

// ParseFormat accepts one of the format names.
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(strings.TrimSpace(s)))
	for _, k := range Formats() {
		if f == k {
			return f, nil
		}
	}
	return "", fmt.Errorf("eventlog: unknown log format %q (want ccel, tpm, ima or runtime)", s)
}

// Default bounds of a TCG log. A real CCEL area is 64 KiB to 256 KiB and a
// real TPM firmware log tens of KiB with a few hundred events; the limits
// leave room for large platforms while keeping a hostile log from pinning
// memory on the server.
const (
	DefaultMaxLogSize = 16 << 20
	DefaultMaxEvents  = 1 << 16
)

// Limits bounds what a parser accepts. Zero fields mean the defaults.
type Limits struct {
	MaxBytes  int // largest input accepted, in bytes
	MaxEvents int // most events accepted, the Spec ID event included
}

// DefaultLimits returns DefaultMaxLogSize and DefaultMaxEvents.
func DefaultLimits() Limits {
	return Limits{MaxBytes: DefaultMaxLogSize, MaxEvents: DefaultMaxEvents}
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxLogSize
	}
	if l.MaxEvents <= 0 {
		l.MaxEvents = DefaultMaxEvents
	}
	return l
}

// Log is a parsed, not yet verified TCG log.
type Log struct {
	Format Format
	// Legacy marks a TPM log in the SHA-1 format of the TCG PC Client 1.2
	// era (older firmware, Windows, TPM 1.2): no Spec ID Event03, every
	// event a TCG_PCR_EVENT with one SHA-1 digest. Such a log can only be
	// checked against the SHA-1 PCR bank.
	Legacy bool
	// Algorithms are the digest banks the Spec ID event declares, in its
	// order; [sha1] for a legacy log.
	Algorithms []cctrusted.Algorithm
	// End is the offset just past the last event. What follows in a CCEL
	// is the unused log area: 0xFF padding (after an end marker or not) or
	// zero fill, never read as events.
	End int
	// Events are every event, the Spec ID event first. CCEL events are in
	// the SpaceCCMR index space, TPM events in SpacePCR. Each event keeps all
	// of its digests; Data and digest values share one copy of the input.
	Events []cctrusted.Event
}

// ParseCCEL parses a CCEL (the content of /sys/firmware/acpi/tables/data/CCEL)
// with the default limits. Linux exposes the whole log area, so the events
// are followed by the unused rest of it, which firmware leaves either 0xFF
// (with or without an end marker) or zero. At an event boundary, a rest that
// starts with a zero register index and a zero event type is zero fill and
// must be zero to the end; a rest that starts with the 0xFFFFFFFF end marker
// must be 0xFF to the end. Anything else there must parse as an event.
func ParseCCEL(log []byte) (*Log, error) { return DefaultLimits().ParseCCEL(log) }

// ParseTPM parses a TPM binary_bios_measurements log with the default
// limits: crypto-agile when the first event is the Spec ID Event03 header,
// else the legacy SHA-1 format. The kernel exports exactly the events, so
// neither padding nor fill is accepted.
func ParseTPM(log []byte) (*Log, error) { return DefaultLimits().ParseTPM(log) }

// ParseCCEL parses a CCEL within l.
func (l Limits) ParseCCEL(log []byte) (*Log, error) {
	return parseTCG(log, FormatCCEL, l.withDefaults())
}

// ParseTPM parses a TPM log within l.
func (l Limits) ParseTPM(log []byte) (*Log, error) {
	return parseTCG(log, FormatTPM, l.withDefaults())
}

// Wire constants of the TCG PC Client PFP crypto-agile log.
const (
	specIDSignature   = "Spec ID Event03\x00"
	legacyHeaderSize  = 32 // index, type, SHA-1 digest, event size
	agileHeaderSize   = 12 // index, type, digest count
	specIDFixedSize   = 28 // signature, platform class, versions, uintn size, algorithm count
	maxSpecAlgorithms = 16
	maxDigestSize     = 128
	endMarker         = 0xFFFFFFFF
)

// ErrNotTCG is wrapped by errors for input that is not a crypto-agile TCG
// log at all, so format detection can tell "wrong format" from "damaged log".
var ErrNotTCG = errors.New("not a TCG crypto-agile event log (no Spec ID Event03 header)")

// LooksTCG reports whether data starts like a crypto-agile TCG log: an
// EV_NO_ACTION event in SHA-1 format carrying "Spec ID Event03".
func LooksTCG(data []byte) bool {
	if len(data) < legacyHeaderSize+len(specIDSignature) {
		return false
	}
	return binary.LittleEndian.Uint32(data[4:]) == cctrusted.EventNoAction &&
		string(data[legacyHeaderSize:legacyHeaderSize+len(specIDSignature)]) == specIDSignature
}

// DetectTCG tells a CCEL from a TPM log: a CCEL declares SHA-384 as its only
// bank (the TDX RTMRs have no other) or ends in 0xFF padding; a TPM log
// does neither. A log without the Spec ID Event03 header is a TPM log when
// the whole input walks as a legacy SHA-1 log. ok is false when data is no
// TCG log.
func DetectTCG(data []byte) (f Format, ok bool) {
	if !LooksTCG(data) {
		if len(data) > 0 && len(data) <= DefaultMaxLogSize {
			w := walker{format: FormatTPM, space: cctrusted.SpacePCR, lim: DefaultLimits()}
			if w.walkLegacy(data, nil) == nil {
				return FormatTPM, true
			}
		}
		return "", false
	}
	if data[len(data)-1] == 0xFF {
		return FormatCCEL, true
	}
	size := int(binary.LittleEndian.Uint32(data[28:]))
	spec := data[legacyHeaderSize:]
	if size >= specIDFixedSize+4 && len(spec) >= specIDFixedSize+4 &&
		binary.LittleEndian.Uint32(spec[24:]) == 1 &&
		cctrusted.Algorithm(binary.LittleEndian.Uint16(spec[28:])) == cctrusted.AlgSHA384 {
		return FormatCCEL, true
	}
	return FormatTPM, true
}

type specAlg struct {
	alg  cctrusted.Algorithm
	size int
}

// parseTCG walks the log itself rather than through go-eventlog's
// tcg.ParseEventLog: that parser returns one bank per call, drops digests of
// algorithms without a Go hash, hides the Spec ID event and counts nothing
// before allocating. Verification still replays through go-eventlog for
// fact extraction, so the two parsers check each other.
//
// The first pass checks the framing and counts events and digests without
// allocating; the second copies the used part of the input once (padding
// excluded) and points every event into that copy.
func parseTCG(in []byte, format Format, lim Limits) (*Log, error) {
	if len(in) > lim.MaxBytes {
		return nil, fmt.Errorf("eventlog: %s log is %d bytes, over the %d byte limit", format, len(in), lim.MaxBytes)
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("eventlog: %s log is empty", format)
	}
	w := walker{format: format, space: cctrusted.SpacePCR, lim: lim}
	if format == FormatCCEL {
		w.space = cctrusted.SpaceCCMR
	}
	if !LooksTCG(in) {
		if format == FormatTPM {
			return parseLegacy(in, &w)
		}
		return nil, fmt.Errorf("eventlog: %s log: %w", format, ErrNotTCG)
	}
	first := binary.LittleEndian.Uint32(in[0:])
	size := binary.LittleEndian.Uint32(in[28:])
	if uint64(size) > uint64(len(in)-legacyHeaderSize) {
		return nil, fmt.Errorf("eventlog: %s event 0 (Spec ID): data size %d runs past the end of the %d byte log", format, size, len(in))
	}
	specEnd := legacyHeaderSize + int(size)
	algs, err := parseSpecID(in[legacyHeaderSize:specEnd])
	if err != nil {
		return nil, fmt.Errorf("eventlog: %s event 0 (Spec ID): %w", format, err)
	}
	w.algs = algs
	imr0 := cctrusted.IMR{Space: w.space, Index: first}
	if !imr0.Valid() {
		return nil, fmt.Errorf("eventlog: %s event 0 (Spec ID): register index %d is outside the %v space", format, first, w.space)
	}
	if err := w.walk(in, specEnd, nil); err != nil {
		return nil, err
	}

	buf := append([]byte(nil), in[:w.end]...) // events alias this copy, never the caller's buffer
	l := &Log{Format: format, Algorithms: make([]cctrusted.Algorithm, len(algs)), End: w.end}
	for i, a := range algs {
		l.Algorithms[i] = a.alg
	}
	l.Events = make([]cctrusted.Event, 1, w.events+1)
	l.Events[0] = cctrusted.Event{
		IMR:     imr0,
		Type:    cctrusted.EventNoAction,
		Digests: []cctrusted.Digest{{Alg: cctrusted.AlgSHA1, Value: buf[8:28:28]}},
		Data:    buf[legacyHeaderSize:specEnd:specEnd],
	}
	w.digests = make([]cctrusted.Digest, 0, w.digestCount)
	if err := w.walk(buf, specEnd, l); err != nil {
		return nil, err // cannot happen: the first pass checked the same bytes
	}
	return l, nil
}

// walker holds the state of one parse.
type walker struct {
	format Format
	space  cctrusted.Space
	lim    Limits
	algs   []specAlg

	// Results of the counting pass.
	events, digestCount, end int
	// Backing array for every event's digests in the building pass.
	digests []cctrusted.Digest
}

// walk checks every event after the Spec ID event. With l nil it only
// counts; otherwise it appends the events to l.
func (w *walker) walk(buf []byte, off int, l *Log) error {
	format := w.format
	n := 1
	w.end = len(buf)
	for off < len(buf) {
		if zeroStart(buf[off:]) {
			if format != FormatCCEL {
				return fmt.Errorf("eventlog: %s event %d at offset %d: zero register index and event type: zero fill, which only a CCEL's log area may have", format, n, off)
			}
			if i := notByte(buf[off:], 0x00); i >= 0 {
				return fmt.Errorf("eventlog: %s: byte 0x%02x at offset %d inside the zero fill that starts after event %d at offset %d (a zero index and type start the unused log area, which must then be zero to the end)", format, buf[off+i], off+i, n-1, off)
			}
			w.end = off
			break
		}
		if len(buf)-off < 4 {
			return fmt.Errorf("eventlog: %s event %d at offset %d: truncated header (%d bytes left)", format, n, off, len(buf)-off)
		}
		index := binary.LittleEndian.Uint32(buf[off:])
		if index == endMarker {
			if format != FormatCCEL {
				return fmt.Errorf("eventlog: %s event %d at offset %d: end-of-log marker in a log that has no padding", format, n, off)
			}
			if i := notByte(buf[off:], 0xFF); i >= 0 {
				return fmt.Errorf("eventlog: %s: byte 0x%02x at offset %d after the end-of-log marker at %d (padding must be 0xFF)", format, buf[off+i], off+i, off)
			}
			w.end = off
			break
		}
		if n >= w.lim.MaxEvents {
			return fmt.Errorf("eventlog: %s log has more than %d events", format, w.lim.MaxEvents)
		}
		if len(buf)-off < agileHeaderSize {
			return fmt.Errorf("eventlog: %s event %d at offset %d: truncated header (%d bytes left)", format, n, off, len(buf)-off)
		}
		imr := cctrusted.IMR{Space: w.space, Index: index}
		if !imr.Valid() {
			return fmt.Errorf("eventlog: %s event %d at offset %d: register index %d is outside the %v space", format, n, off, index, w.space)
		}
		typ := binary.LittleEndian.Uint32(buf[off+4:])
		count := binary.LittleEndian.Uint32(buf[off+8:])
		if count > uint32(len(w.algs)) {
			return fmt.Errorf("eventlog: %s event %d: %d digests, but the log declares %d banks", format, n, count, len(w.algs))
		}
		if count == 0 && typ != cctrusted.EventNoAction {
			// A measured event that extends nothing would replay as if it
			// were not there: a phantom the log could be padded with.
			return fmt.Errorf("eventlog: %s event %d at offset %d: event type 0x%x with no digests (a measured event carries one per bank)", format, n, off, typ)
		}
		p := off + agileHeaderSize
		first := len(w.digests)
		var seen [maxSpecAlgorithms]cctrusted.Algorithm
		for i := range int(count) {
			if len(buf)-p < 2 {
				return fmt.Errorf("eventlog: %s event %d: truncated digest %d", format, n, i)
			}
			id := cctrusted.Algorithm(binary.LittleEndian.Uint16(buf[p:]))
			p += 2
			sz := -1
			for _, a := range w.algs {
				if a.alg == id {
					sz = a.size
				}
			}
			if sz < 0 {
				return fmt.Errorf("eventlog: %s event %d: digest %d uses %v, which the Spec ID event does not declare", format, n, i, id)
			}
			for _, prev := range seen[:i] {
				if prev == id {
					return fmt.Errorf("eventlog: %s event %d: two %v digests", format, n, id)
				}
			}
			seen[i] = id
			if len(buf)-p < sz {
				return fmt.Errorf("eventlog: %s event %d: truncated %v digest", format, n, id)
			}
			if typ == cctrusted.EventNoAction && !isZero(buf[p:p+sz]) {
				return fmt.Errorf("eventlog: %s event %d: EV_NO_ACTION event with a non-zero %v digest (TCG PFP: its digests are zero, it is never extended)", format, n, id)
			}
			if l != nil {
				w.digests = append(w.digests, cctrusted.Digest{Alg: id, Value: buf[p : p+sz : p+sz]})
			}
			p += sz
		}
		if len(buf)-p < 4 {
			return fmt.Errorf("eventlog: %s event %d: truncated event size", format, n)
		}
		dsize := binary.LittleEndian.Uint32(buf[p:])
		p += 4
		if uint64(dsize) > uint64(len(buf)-p) {
			return fmt.Errorf("eventlog: %s event %d at offset %d: data size %d runs past the end of the log (%d bytes left)", format, n, off, dsize, len(buf)-p)
		}
		if typ == cctrusted.EventNoAction && bytes.HasPrefix(buf[p:p+int(dsize)], []byte(specIDSignature)) {
			return fmt.Errorf("eventlog: %s event %d at offset %d: a second Spec ID event (only the first event may declare the banks)", format, n, off)
		}
		if l != nil {
			l.Events = append(l.Events, cctrusted.Event{
				IMR:     imr,
				Type:    typ,
				Digests: w.digests[first:len(w.digests):len(w.digests)],
				Data:    buf[p : p+int(dsize) : p+int(dsize)],
			})
		}
		w.digestCount += int(count)
		off = p + int(dsize)
		n++
	}
	w.events = n - 1
	return nil
}

// parseSpecID reads TCG_EfiSpecIDEvent: the banks and their digest sizes.
func parseSpecID(spec []byte) ([]specAlg, error) {
	if len(spec) < specIDFixedSize+1 || string(spec[:len(specIDSignature)]) != specIDSignature {
		return nil, fmt.Errorf("%w (%d byte header)", ErrNotTCG, len(spec))
	}
	if major, minor := spec[21], spec[20]; major != 2 || minor != 0 {
		return nil, fmt.Errorf("spec version %d.%d, want 2.0", major, minor)
	}
	n := binary.LittleEndian.Uint32(spec[24:])
	if n == 0 || n > maxSpecAlgorithms {
		return nil, fmt.Errorf("declares %d digest algorithms, want 1..%d", n, maxSpecAlgorithms)
	}
	end := specIDFixedSize + 4*int(n)
	if len(spec) < end+1 {
		return nil, fmt.Errorf("truncated: %d algorithms need %d bytes, have %d", n, end+1, len(spec))
	}
	algs := make([]specAlg, n)
	for i := range algs {
		a := cctrusted.Algorithm(binary.LittleEndian.Uint16(spec[specIDFixedSize+4*i:]))
		sz := int(binary.LittleEndian.Uint16(spec[specIDFixedSize+4*i+2:]))
		if sz == 0 || sz > maxDigestSize {
			return nil, fmt.Errorf("algorithm %v has digest size %d", a, sz)
		}
		if a.Known() && a.Size() != sz {
			return nil, fmt.Errorf("algorithm %v declared with digest size %d, want %d", a, sz, a.Size())
		}
		for _, b := range algs[:i] {
			if b.alg == a {
				return nil, fmt.Errorf("algorithm %v declared twice", a)
			}
		}
		algs[i] = specAlg{a, sz}
	}
	if vendor := int(spec[end]); len(spec) != end+1+vendor {
		return nil, fmt.Errorf("vendor info of %d bytes does not fill the %d bytes left", vendor, len(spec)-end-1)
	}
	return algs, nil
}

// zeroStart reports whether b starts the way zero fill does: a zero
// register index and a zero event type (fewer bytes: all of them zero).
// No firmware logs event type 0 (EV_PREBOOT_CERT, deprecated) into register
// 0, so this is never the start of a real event.
func zeroStart(b []byte) bool {
	return isZero(b[:min(len(b), 8)])
}

// notByte returns the index of the first byte of b that is not v, or -1.
// Real CCEL areas are mostly padding or fill, so it compares 8 bytes at a
// time.
func notByte(b []byte, v byte) int {
	word := uint64(v) * 0x0101010101010101
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != word {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] != v {
			return i
		}
	}
	return -1
}

// parseLegacy parses a TPM log in the SHA-1 format: the same two passes as
// the crypto-agile walk.
func parseLegacy(in []byte, w *walker) (*Log, error) {
	if err := w.walkLegacy(in, nil); err != nil {
		if w.events == 0 {
			// Not even one event: most likely not a TPM log at all.
			return nil, fmt.Errorf("eventlog: %s log: %w, nor a legacy SHA-1 log: %w", w.format, ErrNotTCG, err)
		}
		return nil, err
	}
	buf := append([]byte(nil), in...)
	l := &Log{
		Format: w.format, Legacy: true, End: len(buf),
		Algorithms: []cctrusted.Algorithm{cctrusted.AlgSHA1},
		Events:     make([]cctrusted.Event, 0, w.events),
	}
	w.digests = make([]cctrusted.Digest, 0, w.events)
	if err := w.walkLegacy(buf, l); err != nil {
		return nil, err // cannot happen: the first pass checked the same bytes
	}
	return l, nil
}

// walkLegacy checks every TCG_PCR_EVENT of a SHA-1 format log (index,
// type, 20-byte SHA-1 digest, data size, data). With l nil it only counts.
// The rules are those of the crypto-agile walk: registers in range, no end
// marker, no fill, EV_NO_ACTION digests zero, no Spec ID Event03 anywhere
// (a log that has one is crypto-agile and must start with it).
func (w *walker) walkLegacy(buf []byte, l *Log) error {
	format := w.format
	n, off := 0, 0
	defer func() { w.events = n }()
	for off < len(buf) {
		if len(buf)-off < legacyHeaderSize {
			return fmt.Errorf("eventlog: %s legacy SHA-1 log: event %d at offset %d: truncated header (%d bytes left, want %d)", format, n, off, len(buf)-off, legacyHeaderSize)
		}
		if n >= w.lim.MaxEvents {
			return fmt.Errorf("eventlog: %s log has more than %d events", format, w.lim.MaxEvents)
		}
		index := binary.LittleEndian.Uint32(buf[off:])
		typ := binary.LittleEndian.Uint32(buf[off+4:])
		if index == endMarker {
			return fmt.Errorf("eventlog: %s legacy SHA-1 log: event %d at offset %d: end-of-log marker in a log that has no padding", format, n, off)
		}
		if zeroStart(buf[off:]) && isZero(buf[off+28:off+32]) {
			// Linux ends a TPM 1.2 log walk at type 0 with no data.
			return fmt.Errorf("eventlog: %s legacy SHA-1 log: event %d at offset %d: zero event type and size: fill, not an event", format, n, off)
		}
		imr := cctrusted.IMR{Space: w.space, Index: index}
		if !imr.Valid() {
			return fmt.Errorf("eventlog: %s legacy SHA-1 log: event %d at offset %d: register index %d is outside the %v space", format, n, off, index, w.space)
		}
		digest := buf[off+8 : off+28 : off+28]
		size := binary.LittleEndian.Uint32(buf[off+28:])
		p := off + legacyHeaderSize
		if uint64(size) > uint64(len(buf)-p) {
			return fmt.Errorf("eventlog: %s legacy SHA-1 log: event %d at offset %d: data size %d runs past the end of the log (%d bytes left)", format, n, off, size, len(buf)-p)
		}
		data := buf[p : p+int(size) : p+int(size)]
		if typ == cctrusted.EventNoAction {
			if !isZero(digest) {
				return fmt.Errorf("eventlog: %s legacy SHA-1 log: event %d: EV_NO_ACTION event with a non-zero sha1 digest (TCG PFP: its digests are zero, it is never extended)", format, n)
			}
			if bytes.HasPrefix(data, []byte(specIDSignature)) {
				return fmt.Errorf("eventlog: %s legacy SHA-1 log: event %d at offset %d: a Spec ID Event03 that is not the first event", format, n, off)
			}
		}
		if l != nil {
			w.digests = append(w.digests, cctrusted.Digest{Alg: cctrusted.AlgSHA1, Value: digest})
			l.Events = append(l.Events, cctrusted.Event{
				IMR: imr, Type: typ,
				Digests: w.digests[len(w.digests)-1 : len(w.digests) : len(w.digests)],
				Data:    data,
			})
		}
		off = p + int(size)
		n++
	}
	if n == 0 {
		return fmt.Errorf("eventlog: %s log is empty", format)
	}
	return nil
}
