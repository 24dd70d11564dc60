package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// ParseASCII parses an ascii_runtime_measurements list: one entry per line,
// "PCR template-hash template-name field...", each field after exactly one
// space (an empty field leaves two spaces, or a trailing one). The template
// data is rebuilt from the fields as the kernel laid it out, so the template
// hash is checked exactly as for a binary list. The rebuilt length prefixes
// use Options.ByteOrder; without one, little endian, and big endian when
// that is what makes the template hashes match. The Log does not reference b.
func ParseASCII(b []byte, opts Options) (*Log, error) {
	o := opts.withDefaults()
	if o.ByteOrder != nil {
		return parseASCII(b, o)
	}
	o.ByteOrder = binary.LittleEndian
	log, err := parseASCII(b, o)
	var le *ParseError
	if err == nil || !errors.Is(err, ErrTemplateHash) || !errors.As(err, &le) {
		return log, err
	}
	o.ByteOrder = binary.BigEndian
	log, err = parseASCII(b, o)
	var be *ParseError
	if err == nil {
		return log, nil
	}
	// Report the order that got further: it is the list's, and the entry
	// it stops at is the damaged one.
	if errors.As(err, &be) && be.Entry > le.Entry {
		be.Err = fmt.Errorf("%w (with big-endian length prefixes; little endian fails at entry %d)", be.Err, le.Entry)
		return nil, be
	}
	le.Err = fmt.Errorf("%w (with little-endian length prefixes; big endian fails too)", le.Err)
	return nil, le
}

func parseASCII(b []byte, o Options) (*Log, error) {
	if len(b) > o.MaxBytes {
		return nil, &ParseError{Format: FormatASCII, Line: 1, Err: fmt.Errorf("%w: list is %d bytes, limit %d", ErrTooLarge, len(b), o.MaxBytes)}
	}
	p := asciiParser{o: o, bo: o.ByteOrder, b: b, str: string(b)}
	// Rebuilt template data lives in 1 MiB blocks: large enough that the
	// allocations do not matter, small enough that the runtime does not
	// zero far more than the data needs (it is about half the ascii size).
	p.arena.chunk = min(len(b)+4096, 1<<20)
	n := min(bytes.Count(b, []byte{'\n'})+1, o.MaxEntries+1)
	log := &Log{Format: FormatASCII, Entries: make([]Entry, 0, n), ByteOrder: o.ByteOrder}
	off, line := 0, 0
	for off < len(b) {
		line++
		end := len(b)
		if i := bytes.IndexByte(b[off:], '\n'); i >= 0 {
			end = off + i
		}
		idx := len(log.Entries)
		fail := func(err error) (*Log, error) {
			pe := &ParseError{Format: FormatASCII, Entry: idx, Line: line, Offset: off, Err: err}
			var fe *fieldError
			if errors.As(err, &fe) {
				pe.Field, pe.Err = fe.field, fe.err
			}
			return nil, pe
		}
		if end == off {
			return fail(fmt.Errorf("%w: empty line", ErrMalformed))
		}
		if idx >= o.MaxEntries {
			return fail(fmt.Errorf("%w: more than %d", ErrTooManyEntries, o.MaxEntries))
		}
		e := grow(log)
		e.Line, e.Offset = line, off
		if err := p.line(e, off, end); err != nil {
			return fail(err)
		}
		off = end + 1
	}
	if p.width > 0 {
		log.TemplateHashAlg, _ = TemplateHashAlgorithm(p.width)
	}
	return log, nil
}

type asciiParser struct {
	o     Options
	bo    binary.ByteOrder
	b     []byte
	str   string
	arena arena
	width int // template hash width of the first entry
}

func malformed(field, format string, args ...any) error {
	return &fieldError{field: field, err: fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)}
}

// line parses the entry in b[start:end].
func (p *asciiParser) line(e *Entry, start, end int) error {
	b := p.b
	i := start
	for i < end && i-start < 2 && b[i] == ' ' { // the kernel prints "%2d "
		i++
	}
	pcr, digits := uint32(0), 0
	for i < end && b[i] >= '0' && b[i] <= '9' {
		if digits == 2 {
			return malformed("pcr", "PCR has more than two digits")
		}
		pcr = pcr*10 + uint32(b[i]-'0')
		digits++
		i++
	}
	if digits == 0 {
		return malformed("pcr", "line does not start with a PCR number")
	}
	if pcr >= 24 {
		return malformed("pcr", "PCR %d is outside 0..23", pcr)
	}
	e.PCR = cctrusted.PCR(pcr)
	if i >= end || b[i] != ' ' {
		return malformed("pcr", "want a space after the PCR")
	}
	i++
	j := i
	for j < end && b[j] != ' ' {
		j++
	}
	if j == end {
		return &fieldError{"template-hash", fmt.Errorf("%w: line ends inside the template hash or before the template name", ErrTruncated)}
	}
	width := (j - i) / 2
	if _, ok := TemplateHashAlgorithm(width); !ok || (j-i)%2 != 0 {
		return malformed("template-hash", "%d hex digits; want 40, 64 or 96 (a 20-byte SHA-1, 32-byte SHA-256 or 48-byte SHA-384 template hash)", j-i)
	}
	if p.width == 0 {
		p.width = width
	} else if width != p.width {
		return malformed("template-hash", "%d bytes, but the list's first entry has a %d-byte template hash (a list uses one algorithm)", width, p.width)
	}
	th := p.arena.alloc(width)
	if _, err := hex.Decode(th, b[i:j]); err != nil {
		return malformed("template-hash", "bad hex: %v", err)
	}
	e.TemplateHash = th
	e.Violation = allZero(th)
	i = j + 1 // the space after the template hash
	j = i
	for j < end && b[j] != ' ' {
		j++
	}
	if j == i {
		return malformed("template-name", "empty template name")
	}
	t, ok := lookupTemplate(b[i:j])
	if !ok {
		return &fieldError{"template-name", fmt.Errorf("%w %q", ErrUnknownTemplate, b[i:j])}
	}
	e.Template = t.name
	i = j

	// Split the fields: exactly one space before each.
	var fs [4][2]int
	for k := 0; k < t.n; k++ {
		if i >= end {
			// Tools that trim trailing blanks drop an empty last sig/buf.
			if k == t.n-1 && (t.fields[k] == fieldSig || t.fields[k] == fieldBuf) {
				fs[k] = [2]int{end, end}
				continue
			}
			return &fieldError{t.fields[k].String(), fmt.Errorf("%w: line ends before the field", ErrTruncated)}
		}
		i++ // the separating space
		j := i
		for j < end && b[j] != ' ' {
			j++
		}
		fs[k] = [2]int{i, j}
		i = j
	}
	if i < end {
		return malformed("template-data", "unexpected text after the last field: %q", clip(b[i:end]))
	}
	if t.name == "ima" {
		return p.legacy(e, fs[0], fs[1])
	}

	// Size the rebuilt template data, then fill it.
	total := 0
	var colon [4]int
	for k := 0; k < t.n; k++ {
		kind, f := t.fields[k], b[fs[k][0]:fs[k][1]]
		var n int
		switch {
		case kind == fieldDNG || kind == fieldDNGv2:
			c := bytes.LastIndexByte(f, ':')
			if c < 0 {
				return malformed(kind.String(), "want \"algo:hex\", got %q", clip(f))
			}
			colon[k] = c
			if (len(f)-c-1)%2 != 0 {
				return malformed(kind.String(), "odd number of hex digits")
			}
			n = c + 2 + (len(f)-c-1)/2
		case kind.isString():
			n = len(f) + 1
		default: // sig, buf
			if len(f)%2 != 0 {
				return malformed(kind.String(), "odd number of hex digits")
			}
			n = len(f) / 2
		}
		if n > p.o.MaxFieldLen {
			return &fieldError{kind.String(), fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, p.o.MaxFieldLen)}
		}
		total += 4 + n
	}
	if total > p.o.MaxTemplateData {
		return &fieldError{"template-data", fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, total, p.o.MaxTemplateData)}
	}
	td := p.arena.alloc(total)
	pos := 0
	for k := 0; k < t.n; k++ {
		kind, f := t.fields[k], b[fs[k][0]:fs[k][1]]
		lenAt := pos
		pos += 4
		start := pos
		switch {
		case kind == fieldDNG || kind == fieldDNGv2:
			c := colon[k]
			pos += copy(td[pos:], f[:c+1])
			td[pos] = 0
			pos++
			nd, err := hex.Decode(td[pos:], f[c+1:])
			if err != nil {
				return malformed(kind.String(), "bad hex: %v", err)
			}
			pos += nd
		case kind.isString():
			pos += copy(td[pos:], f)
			td[pos] = 0
			pos++
		default:
			nd, err := hex.Decode(td[pos:], f)
			if err != nil {
				return malformed(kind.String(), "bad hex: %v", err)
			}
			pos += nd
		}
		p.bo.PutUint32(td[lenAt:], uint32(pos-start))
		if err := decodeField(e, kind, td[start:pos:pos], p.str[fs[k][0]:fs[k][1]]); err != nil {
			return err
		}
	}
	e.TemplateData = td
	return checkTemplateHash(e)
}

// legacy rebuilds the "ima" template: 20-byte digest, name padded to 256.
func (p *asciiParser) legacy(e *Entry, d, n [2]int) error {
	b := p.b
	if d[1]-d[0] != 2*legacyDigestSize {
		return malformed("d", "want %d hex digits, got %d", 2*legacyDigestSize, d[1]-d[0])
	}
	if n[1]-n[0] >= legacyNameSize {
		return malformed("n", "name of %d bytes, the ima template allows %d", n[1]-n[0], legacyNameSize-1)
	}
	if bytes.IndexByte(b[n[0]:n[1]], 0) >= 0 {
		return malformed("n", "name has an embedded NUL")
	}
	td := p.arena.alloc(legacyDigestSize + legacyNameSize)
	if _, err := hex.Decode(td[:legacyDigestSize], b[d[0]:d[1]]); err != nil {
		return malformed("d", "bad hex: %v", err)
	}
	copy(td[legacyDigestSize:], b[n[0]:n[1]])
	e.TemplateData = td
	e.FileDigest = cctrusted.Digest{Alg: cctrusted.AlgSHA1, Value: td[:legacyDigestSize:legacyDigestSize]}
	e.DigestAlgo = "sha1"
	e.FileName = p.str[n[0]:n[1]]
	return checkTemplateHash(e)
}

// clip shortens text quoted in an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// unhex returns the value of a hex digit, or 16 for anything else.
func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 16
}
