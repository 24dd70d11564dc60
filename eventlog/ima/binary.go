package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"unsafe"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// binHeader is the fixed part of a binary entry around the template hash:
// PCR and name length.
const binHeader = 4 + 4

// ParseBinary parses a binary_runtime_measurements list. Every entry's
// template hash is recomputed and checked; violations are kept and marked.
// The template hash width (20, 32 or 48 bytes) and, unless Options.ByteOrder
// fixes it, the byte order are found from the first entry: the one layout
// under which it decodes. The Log does not reference b.
func ParseBinary(b []byte, opts Options) (*Log, error) {
	o := opts.withDefaults()
	if len(b) > o.MaxBytes {
		return nil, &ParseError{Format: FormatBinary, Err: fmt.Errorf("%w: list is %d bytes, limit %d", ErrTooLarge, len(b), o.MaxBytes)}
	}
	p := binaryParser{o: o}
	// One private copy of the input backs every TemplateData and, viewed as
	// a string, every name: per-entry allocations would dominate the parse,
	// and a second (string) copy of a list of a million entries cost more
	// than its hashing (memmove and page faults). The copy is never written
	// after this point: Entry documents its slices as read-only, which is
	// what makes the string view sound.
	p.data = bytes.Clone(b)
	p.str = unsafe.String(unsafe.SliceData(p.data), len(p.data))
	p.legacy.chunk = 64 << 10
	if len(b) == 0 {
		bo := o.ByteOrder
		if bo == nil {
			bo = binary.LittleEndian
		}
		return &Log{Format: FormatBinary, ByteOrder: bo}, nil
	}
	if err := p.layout(); err != nil {
		return nil, err
	}
	n := countBinary(b, p.bo, p.width, o.MaxEntries)
	log := &Log{Format: FormatBinary, Entries: make([]Entry, 0, n), ByteOrder: p.bo}
	log.TemplateHashAlg, _ = TemplateHashAlgorithm(p.width)
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
			return nil, entryError(idx, off, err)
		}
		off = next
	}
	return log, nil
}

// layoutRank orders the errors of layouts that do not fit by how far the
// entry decoded: a layout under which only the template hash fails is most
// likely the list's own, one that fails in the header least.
func layoutRank(err error) int {
	var fe *fieldError
	switch {
	case errors.Is(err, ErrTemplateHash):
		return 3
	case errors.As(err, &fe) && fe.field != "pcr" && fe.field != "template-name":
		return 2
	}
	return 1
}

func entryError(idx, off int, err error) *ParseError {
	pe := &ParseError{Format: FormatBinary, Entry: idx, Offset: off, Err: err}
	var fe *fieldError
	if errors.As(err, &fe) {
		pe.Field, pe.Err = fe.field, fe.err
	}
	return pe
}

// layout finds the template hash width and byte order under which the
// first entry decodes (its template hash checked unless it is a
// violation). Exactly one must fit; when several do (conceivable only for
// a violation, whose hash is zeros), the second entry decides.
func (p *binaryParser) layout() error {
	orders := []binary.ByteOrder{binary.LittleEndian, binary.BigEndian}
	if p.o.ByteOrder != nil {
		orders = []binary.ByteOrder{p.o.ByteOrder}
	}
	type fit struct {
		bo         binary.ByteOrder
		width, end int
	}
	var fits []fit
	var best error
	for _, bo := range orders {
		for _, w := range templateHashWidths {
			p.bo, p.width = bo, w
			var e Entry
			next, err := p.entry(&e, 0)
			switch {
			case err == nil:
				fits = append(fits, fit{bo, w, next})
			case best == nil || layoutRank(err) > layoutRank(best):
				best = err
			}
		}
	}
	if len(fits) > 1 {
		var second []fit
		for _, f := range fits {
			p.bo, p.width = f.bo, f.width
			var e Entry
			if f.end == len(p.data) {
				second = append(second, f)
			} else if _, err := p.entry(&e, f.end); err == nil {
				second = append(second, f)
			}
		}
		fits = second
	}
	switch len(fits) {
	case 1:
		p.bo, p.width = fits[0].bo, fits[0].width
		return nil
	case 0:
		if best == nil {
			best = fmt.Errorf("%w: no layout fits", ErrMalformed)
		}
		tried := "little and big endian"
		if len(orders) == 1 {
			tried = orders[0].String()
		}
		pe := entryError(0, 0, best)
		pe.Err = fmt.Errorf("%w (tried 20, 32 and 48-byte template hashes, %s)", pe.Err, tried)
		return pe
	}
	return &ParseError{Format: FormatBinary, Field: "template-hash",
		Err: fmt.Errorf("%w: the first entries decode with %d template hash widths or byte orders", ErrMalformed, len(fits))}
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
	width  int    // template hash width
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
	w := p.width
	if err := p.need(off, uint64(binHeader+w), "entry header"); err != nil {
		return 0, err
	}
	pcr := p.bo.Uint32(d[off:])
	if pcr >= 24 {
		return 0, &fieldError{"pcr", fmt.Errorf("%w: PCR %d is outside 0..23", ErrMalformed, pcr)}
	}
	e.PCR = cctrusted.PCR(pcr)
	e.TemplateHash = d[off+4 : off+4+w : off+4+w]
	nameLen := p.bo.Uint32(d[off+4+w:])
	if nameLen == 0 || nameLen > maxTemplateName {
		return 0, &fieldError{"template-name", fmt.Errorf("%w: name length %d (want 1..%d)", ErrMalformed, nameLen, maxTemplateName)}
	}
	pos := off + binHeader + w
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
	e.Violation = allZero(e.TemplateHash)

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

// checkTemplateHash verifies the template hash with the algorithm its width
// names. Violations carry a zero hash and are not checked: their data is
// never extended either.
func checkTemplateHash(e *Entry) error {
	if e.Violation {
		return nil
	}
	alg, ok := TemplateHashAlgorithm(len(e.TemplateHash))
	if !ok {
		return &fieldError{"template-hash", fmt.Errorf("%w: %d bytes (want 20, 32 or 48)", ErrMalformed, len(e.TemplateHash))}
	}
	var got [maxTemplateHash]byte // on the stack: only its hex escapes
	sum(alg, got[:], e.TemplateData)
	if !bytes.Equal(got[:len(e.TemplateHash)], e.TemplateHash) {
		return &fieldError{"template-hash", fmt.Errorf("%w: list says %x, template data hashes to %s (%v)", ErrTemplateHash, e.TemplateHash, hex.EncodeToString(got[:len(e.TemplateHash)]), alg)}
	}
	return nil
}

// allZero reports whether b is all zero bytes: a violation's template hash.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
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
func countBinary(b []byte, bo binary.ByteOrder, width, maxEntries int) int {
	n, off := 0, 0
	for off < len(b) && n < maxEntries {
		if len(b)-off < binHeader+width {
			break
		}
		nl := uint64(bo.Uint32(b[off+4+width:]))
		pos := uint64(off + binHeader + width)
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
	for _, w := range templateHashWidths {
		if len(b) < binHeader+w+1 || bo.Uint32(b) >= 24 {
			continue
		}
		nl := bo.Uint32(b[4+w:])
		if nl == 0 || nl > maxTemplateName || uint64(nl) > uint64(len(b)-binHeader-w) {
			continue
		}
		if printableName(b[binHeader+w : binHeader+w+int(nl)]) {
			return true
		}
	}
	return false
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
	j := i
	for j < len(b) && j-i <= 2*maxTemplateHash && unhex(b[j]) <= 15 {
		j++
	}
	if _, ok := TemplateHashAlgorithm((j - i) / 2); !ok || (j-i)%2 != 0 || len(b)-j < 2 {
		return false
	}
	return b[j] == ' ' && b[j+1] > ' ' && b[j+1] <= '~'
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
