package ima

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// binHeader is the fixed part of a binary entry: PCR, template hash, name
// length.
const binHeader = 4 + TemplateHashSize + 4

// ParseBinary parses a binary_runtime_measurements list. Every entry's
// template hash is recomputed and checked; violations are kept and marked.
// The Log does not reference b.
func ParseBinary(b []byte, opts Options) (*Log, error) {
	o := opts.withDefaults()
	if len(b) > o.MaxBytes {
		return nil, &ParseError{Format: FormatBinary, Err: fmt.Errorf("%w: list is %d bytes, limit %d", ErrTooLarge, len(b), o.MaxBytes)}
	}
	p := binaryParser{o: o, bo: o.ByteOrder}
	// One copy of the input backs every TemplateData, and one string copy
	// backs every name: per-entry allocations would dominate the parse.
	p.data = bytes.Clone(b)
	p.str = string(b)
	p.legacy.chunk = 64 << 10
	n := countBinary(b, o)
	log := &Log{Format: FormatBinary, Entries: make([]Entry, 0, n)}
	off := 0
	for off < len(b) {
		idx := len(log.Entries)
		if idx >= o.MaxEntries {
			return nil, &ParseError{Format: FormatBinary, Entry: idx, Offset: off,
				Err: fmt.Errorf("%w: more than %d", ErrTooManyEntries, o.MaxEntries)}
		}
		e := grow(log)
		e.Offset = off
		next, err := p.entry(e, off)
		if err != nil {
			pe := &ParseError{Format: FormatBinary, Entry: idx, Offset: off, Err: err}
			var fe *fieldError
			if errors.As(err, &fe) {
				pe.Field, pe.Err = fe.field, fe.err
			}
			return nil, pe
		}
		off = next
	}
	return log, nil
}

// grow appends a zero entry and returns it. The slice was made with the
// counted capacity, so this normally only re-slices: appending a composite
// literal would copy the whole Entry through write barriers each time.
func grow(log *Log) *Entry {
	if len(log.Entries) < cap(log.Entries) {
		log.Entries = log.Entries[:len(log.Entries)+1]
	} else {
		log.Entries = append(log.Entries, Entry{})
	}
	return &log.Entries[len(log.Entries)-1]
}

type binaryParser struct {
	o      Options
	bo     binary.ByteOrder
	data   []byte // private copy of the input
	str    string // the input as a string, for names
	legacy arena  // padded template data of legacy "ima" entries
}

// need checks that n more bytes exist at off without overflowing.
func (p *binaryParser) need(off int, n uint64, what string) error {
	if n > uint64(len(p.data)-off) {
		return fmt.Errorf("%w: %s needs %d bytes at offset %d, %d left", ErrTruncated, what, n, off, len(p.data)-off)
	}
	return nil
}

// entry decodes the entry at off into e and returns the next entry's offset.
func (p *binaryParser) entry(e *Entry, off int) (int, error) {
	d := p.data
	if err := p.need(off, binHeader, "entry header"); err != nil {
		return 0, err
	}
	pcr := p.bo.Uint32(d[off:])
	if pcr >= 24 {
		return 0, &fieldError{"pcr", fmt.Errorf("%w: PCR %d is outside 0..23", ErrMalformed, pcr)}
	}
	e.PCR = cctrusted.PCR(pcr)
	copy(e.TemplateHash[:], d[off+4:off+24])
	nameLen := p.bo.Uint32(d[off+24:])
	if nameLen == 0 || nameLen > maxTemplateName {
		return 0, &fieldError{"template-name", fmt.Errorf("%w: name length %d (want 1..%d)", ErrMalformed, nameLen, maxTemplateName)}
	}
	pos := off + binHeader
	if err := p.need(pos, uint64(nameLen), "template name"); err != nil {
		return 0, err
	}
	name := d[pos : pos+int(nameLen)]
	if !printableName(name) {
		return 0, &fieldError{"template-name", fmt.Errorf("%w: template name %q is not printable", ErrMalformed, name)}
	}
	t, known := lookupTemplate(name)
	if known {
		e.Template = t.name
	} else {
		e.Template = p.str[pos : pos+int(nameLen)]
	}
	pos += int(nameLen)
	e.Violation = e.TemplateHash == [TemplateHashSize]byte{}

	if known && t.name == "ima" {
		next, err := p.legacyEntry(e, pos)
		if err != nil {
			return 0, err
		}
		return next, checkTemplateHash(e)
	}

	if err := p.need(pos, 4, "template data length"); err != nil {
		return 0, err
	}
	dataLen := p.bo.Uint32(d[pos:])
	if uint64(dataLen) > uint64(p.o.MaxTemplateData) {
		return 0, &fieldError{"template-data", fmt.Errorf("%w: template data of %d bytes, limit %d", ErrTooLarge, dataLen, p.o.MaxTemplateData)}
	}
	pos += 4
	if err := p.need(pos, uint64(dataLen), "template data"); err != nil {
		return 0, err
	}
	end := pos + int(dataLen)
	e.TemplateData = d[pos:end:end]
	if !known {
		if !p.o.AllowUnknownTemplates {
			return 0, &fieldError{"template-name", fmt.Errorf("%w %q", ErrUnknownTemplate, e.Template)}
		}
		e.Opaque = true
		return end, checkTemplateHash(e)
	}
	for i := 0; i < t.n; i++ {
		k := t.fields[i]
		if end-pos < 4 {
			return 0, errField(k, ErrMalformed, "template data ends before the field's length")
		}
		fl := p.bo.Uint32(d[pos:])
		pos += 4
		if uint64(fl) > uint64(p.o.MaxFieldLen) {
			return 0, errField(k, ErrTooLarge, "%d bytes, limit %d", fl, p.o.MaxFieldLen)
		}
		if uint64(fl) > uint64(end-pos) {
			return 0, errField(k, ErrMalformed, "%d bytes but the template data has %d left", fl, end-pos)
		}
		fend := pos + int(fl)
		if err := decodeField(e, k, d[pos:fend:fend], p.str[pos:fend]); err != nil {
			return 0, err
		}
		pos = fend
	}
	if pos != end {
		return 0, &fieldError{"template-data", fmt.Errorf("%w: %d bytes after the last field", ErrMalformed, end-pos)}
	}
	return end, checkTemplateHash(e)
}

// legacyEntry decodes the "ima" template: 20 raw digest bytes, u32 length,
// name without NUL. Its hashed form pads the name to 256 bytes.
func (p *binaryParser) legacyEntry(e *Entry, pos int) (int, error) {
	d := p.data
	if err := p.need(pos, legacyDigestSize+4, "ima template digest and name length"); err != nil {
		return 0, err
	}
	digest := d[pos : pos+legacyDigestSize]
	pos += legacyDigestSize
	nl := p.bo.Uint32(d[pos:])
	pos += 4
	if nl >= legacyNameSize {
		return 0, errField(fieldN, ErrMalformed, "name of %d bytes, the ima template allows %d", nl, legacyNameSize-1)
	}
	if err := p.need(pos, uint64(nl), "ima template name"); err != nil {
		return 0, err
	}
	name := d[pos : pos+int(nl)]
	if bytes.IndexByte(name, 0) >= 0 {
		return 0, errField(fieldN, ErrMalformed, "name has an embedded NUL")
	}
	td := p.legacy.alloc(legacyDigestSize + legacyNameSize)
	copy(td, digest)
	copy(td[legacyDigestSize:], name)
	e.TemplateData = td
	e.FileDigest.Alg, e.FileDigest.Value, e.DigestAlgo = cctrusted.AlgSHA1, td[:legacyDigestSize:legacyDigestSize], "sha1"
	e.FileName = p.str[pos : pos+int(nl)]
	return pos + int(nl), nil
}

// checkTemplateHash verifies the SHA-1 template hash. Violations carry a
// zero hash and are not checked: their data is never extended either.
func checkTemplateHash(e *Entry) error {
	if e.Violation {
		return nil
	}
	if got := sha1.Sum(e.TemplateData); got != e.TemplateHash {
		return &fieldError{"template-hash", fmt.Errorf("%w: list says %x, template data hashes to %x", ErrTemplateHash, e.TemplateHash, got)}
	}
	return nil
}

// printableName accepts template names the kernel can produce: visible
// ASCII without spaces.
func printableName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// countBinary walks the entry headers to size the entry slice exactly. It
// stops quietly at the first inconsistency: the real parse reports it.
func countBinary(b []byte, o Options) int {
	bo := o.ByteOrder
	n, off := 0, 0
	for off < len(b) && n < o.MaxEntries {
		if len(b)-off < binHeader {
			break
		}
		nl := uint64(bo.Uint32(b[off+24:]))
		pos := uint64(off + binHeader)
		if nl > uint64(len(b))-pos {
			break
		}
		name := b[pos : pos+nl]
		pos += nl
		if string(name) == "ima" {
			if uint64(len(b))-pos < legacyDigestSize+4 {
				break
			}
			pos += legacyDigestSize
			l := uint64(bo.Uint32(b[pos:]))
			pos += 4 + l
		} else {
			if uint64(len(b))-pos < 4 {
				break
			}
			pos += 4 + uint64(bo.Uint32(b[pos:]))
		}
		if pos > uint64(len(b)) {
			break
		}
		n++
		off = int(pos)
	}
	return n + 1
}

// Sniff tells an ascii list from a binary one by its first entry. It does
// not validate the list.
func Sniff(b []byte) (format string, ok bool) {
	if looksASCII(b) {
		return FormatASCII, true
	}
	if looksBinary(b, binary.LittleEndian) || looksBinary(b, binary.BigEndian) {
		return FormatBinary, true
	}
	return "", false
}

func looksBinary(b []byte, bo binary.ByteOrder) bool {
	if len(b) < binHeader+1 {
		return false
	}
	if bo.Uint32(b) >= 24 {
		return false
	}
	nl := bo.Uint32(b[24:])
	if nl == 0 || nl > maxTemplateName || uint64(nl) > uint64(len(b)-binHeader) {
		return false
	}
	return printableName(b[binHeader : binHeader+int(nl)])
}

func looksASCII(b []byte) bool {
	i := 0
	for i < len(b) && i < 2 && b[i] == ' ' {
		i++
	}
	d := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && d < 3 {
		i++
		d++
	}
	if d == 0 || i >= len(b) || b[i] != ' ' {
		return false
	}
	i++
	if len(b)-i < 2*TemplateHashSize+2 {
		return false
	}
	for _, c := range b[i : i+2*TemplateHashSize] {
		if unhex(c) > 15 {
			return false
		}
	}
	i += 2 * TemplateHashSize
	return b[i] == ' ' && b[i+1] > ' ' && b[i+1] <= '~'
}

// Parse detects the format with Sniff and parses the list.
func Parse(b []byte, opts Options) (*Log, error) {
	f, ok := Sniff(b)
	if !ok {
		if len(b) == 0 {
			return nil, errors.New("ima: empty measurement list")
		}
		return nil, errors.New("ima: input is neither an ascii nor a binary IMA measurement list")
	}
	if f == FormatASCII {
		return ParseASCII(b, opts)
	}
	return ParseBinary(b, opts)
}
