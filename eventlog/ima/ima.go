// Package ima parses the Linux IMA runtime measurement lists
// (/sys/kernel/security/ima/{ascii,binary}_runtime_measurements), checks
// every entry's template hash and replays the lists into PCR banks.
//
// Supported templates: ima (legacy), ima-ng, ima-ngv2, ima-sig, ima-sigv2,
// ima-buf, and the two container templates of the out-of-tree patches CCNP
// kernels carry: ima-dep-cgn (dep|cgn|d-ng|n-ng) and ima-cgpath
// (dep|cg-path|d-ng|n-ng).
//
// Layouts follow the kernel (security/integrity/ima/ima_fs.c,
// ima_template_lib.c, ima_crypto.c):
//
//   - A binary entry is u32 PCR, the template hash, u32 name length, the
//     name, then the template data: for every template except "ima", a u32
//     length followed by the fields, each a u32 length and its bytes. The
//     legacy "ima" template has no template data length: a raw 20-byte
//     digest, then a u32 length and the name without its NUL.
//   - The template hash is a hash over the fields each prefixed by its u32
//     length; for the legacy template over the 20-byte digest followed by the
//     name zero-padded to 256 bytes (IMA_EVENT_NAME_LEN_MAX + 1), without
//     length prefixes. Entry.TemplateData holds exactly these hashed bytes.
//     Upstream kernels show a 20-byte SHA-1 template hash; CCNP-patched TDX
//     kernels a 48-byte SHA-384 one (and put the RTMR index, 2, in the
//     register field); kernels built for it a 32-byte SHA-256 one. The width
//     says the algorithm, and one list uses one width.
//   - The integer byte order is the host's unless the kernel booted with
//     ima_canonical_fmt (then little endian). It covers the length prefixes
//     inside the hashed template data too, which is why the byte order also
//     matters when an ascii list is turned back into template data. Unless
//     Options.ByteOrder fixes it, the parsers find it: a binary list from
//     its first entry, an ascii list by which order's template data hashes
//     to the template hashes.
//   - A violation is recorded with an all-zero template hash and extended as
//     all 0xFF bytes into every bank.
//
// A template hash is not a signature: anyone can recompute it. Checking it
// catches corrupt or inconsistent lists (and makes the ascii and binary
// forms interchangeable); what makes a list trustworthy is that Replay or
// Verify reproduces a register value the hardware signed.
package ima

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// The two list formats, as Log.Format and Sniff name them.
const (
	FormatASCII  = "ascii"
	FormatBinary = "binary"
)

// EventTypeIMA is the event type IMA entries carry as cctrusted events. It is
// the value the cc-api SDKs use (IMA_MEASUREMENT_EVENT) so events stay
// comparable with CCNP's; it is not EV_NO_ACTION, so replay extends them.
const EventTypeIMA uint32 = 0x14

// TemplateHashAlgorithm returns the algorithm of a template hash of width
// bytes: 20 SHA-1, 32 SHA-256, 48 SHA-384; ok is false for any other width.
func TemplateHashAlgorithm(width int) (alg cctrusted.Algorithm, ok bool) {
	switch width {
	case 20:
		return cctrusted.AlgSHA1, true
	case 32:
		return cctrusted.AlgSHA256, true
	case 48:
		return cctrusted.AlgSHA384, true
	}
	return 0, false
}

// templateHashWidths are the widths TemplateHashAlgorithm knows, in the
// order the binary parser tries them.
var templateHashWidths = [3]int{20, 32, 48}

// maxTemplateHash is the widest template hash (SHA-384).
const maxTemplateHash = 48

// Limits of the legacy "ima" template and of template names.
const (
	legacyDigestSize = 20
	legacyNameSize   = 256 // IMA_EVENT_NAME_LEN_MAX + 1: the hashed name is padded to this
	maxTemplateName  = 255
)

// Default limits, chosen well above what a real machine produces (a busy
// host after weeks of uptime has a few hundred thousand entries and tens of
// megabytes) and low enough that a hostile list cannot exhaust memory.
const (
	DefaultMaxBytes        = 256 << 20
	DefaultMaxEntries      = 2_000_000
	DefaultMaxFieldLen     = 1 << 20
	DefaultMaxTemplateData = 4 << 20
)

// Options bound parsing and select the binary byte order. The zero value
// means the defaults.
type Options struct {
	// MaxBytes is the largest list accepted (default DefaultMaxBytes).
	MaxBytes int
	// MaxEntries is the most entries accepted (default DefaultMaxEntries).
	MaxEntries int
	// MaxFieldLen bounds every template field and the template name
	// (default DefaultMaxFieldLen).
	MaxFieldLen int
	// MaxTemplateData bounds one entry's template data (default
	// DefaultMaxTemplateData).
	MaxTemplateData int
	// ByteOrder of the integers in the binary list and of the length
	// prefixes in the hashed template data: the host's order of the measured
	// machine, little endian with ima_canonical_fmt. Nil (the default): found
	// from the list, little endian first.
	ByteOrder binary.ByteOrder
	// AllowUnknownTemplates keeps binary entries of templates this package
	// does not know as opaque entries: their template data is still hashed
	// and checked against the template hash and replayed, only no field is
	// decoded. The binary format carries the data's length, so this is safe;
	// an ascii list cannot be turned back into template data without knowing
	// the fields, so unknown templates there are always an error.
	AllowUnknownTemplates bool
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxFieldLen <= 0 {
		o.MaxFieldLen = DefaultMaxFieldLen
	}
	if o.MaxTemplateData <= 0 {
		o.MaxTemplateData = DefaultMaxTemplateData
	}
	return o
}

// Entry is one measurement. Byte slices and strings share memory with the
// Log's internal buffers (not with the caller's input): treat them as
// read-only.
type Entry struct {
	// PCR is the register IMA extended (10 unless the policy says pcr=).
	// On TDX kernels that extend RTMRs, map it with PCR.IMR().TDX().
	PCR cctrusted.PCR
	// TemplateHash is the template hash the list carries (20, 32 or 48
	// bytes: Log.TemplateHashAlg); all zero for a violation.
	TemplateHash []byte
	// Template is the template name, e.g. "ima-ng".
	Template string
	// Violation marks a ToMToU or open-writers violation: the template hash
	// is zero and every bank is extended with all 0xFF bytes.
	Violation bool
	// Opaque marks an entry of an unknown template kept under
	// Options.AllowUnknownTemplates: only TemplateData is set.
	Opaque bool

	// FileDigest is the measured file's (or buffer's) digest from the d,
	// d-ng or d-ngv2 field. Its Alg is 0 when the kernel's algorithm has no
	// TCG identifier (md5, sha224, ...); DigestAlgo always names it.
	FileDigest cctrusted.Digest
	// DigestAlgo is the kernel's name of the digest algorithm ("sha256").
	DigestAlgo string
	// DigestType is the d-ngv2 digest type ("ima" or "verity"), else empty.
	DigestType string
	// FileName is the n or n-ng field (spaces were replaced by '_' by the
	// kernel; a buffer's name for ima-buf, "boot_aggregate" first).
	FileName string
	// Signature is the sig field (ima-sig, ima-sigv2), possibly empty.
	Signature []byte
	// Buf is the buf field (ima-buf): the measured buffer itself.
	Buf []byte
	// Dep is the dep field (ima-dep-cgn, ima-cgpath): the executables of
	// the measuring task's ancestors, colon separated.
	Dep string
	// CgroupName is the cgn field (ima-dep-cgn): the task's cgroup name.
	CgroupName string
	// CgroupPath is the cg-path field (ima-cgpath): the task's full cgroup
	// path, from which container and pod identities are derived; "-" when
	// the kernel had none.
	CgroupPath string

	// TemplateData is what the template hash covers (see the package
	// documentation); the SHA-256/384 banks extend its hash.
	TemplateData []byte

	// Line is the 1-based line of an ascii entry, 0 for binary.
	Line int
	// Offset is the entry's byte offset in the input.
	Offset int
}

// Log is a parsed measurement list.
type Log struct {
	Entries []Entry
	// Format is FormatASCII or FormatBinary.
	Format string
	// TemplateHashAlg is the algorithm of every entry's template hash
	// (sha1, sha256 or sha384, from its width); 0 for an empty list. Its
	// bank extends the template hash itself; the other banks extend
	// H_bank(TemplateData).
	TemplateHashAlg cctrusted.Algorithm
	// ByteOrder is the order the list's integers and rebuilt length
	// prefixes use (as given in Options, or as found).
	ByteOrder binary.ByteOrder
}

// Violations counts the ToMToU and open-writers entries: the kernel
// measured nothing for them (the template hash is zero and 0xFF is
// extended), so whatever their template data names was not hashed, and a
// replaying list says nothing about that file's content.
func (l *Log) Violations() int {
	n := 0
	for i := range l.Entries {
		if l.Entries[i].Violation {
			n++
		}
	}
	return n
}

// Errors that ParseError wraps, for errors.Is.
var (
	// ErrTemplateHash: the template data does not hash to the template hash.
	ErrTemplateHash = errors.New("template hash mismatch")
	// ErrUnknownTemplate: a template this package cannot decode.
	ErrUnknownTemplate = errors.New("unknown template")
	// ErrTruncated: the input ends inside an entry.
	ErrTruncated = errors.New("truncated entry")
	// ErrTooLarge: the input, a field or the template data exceeds a limit.
	ErrTooLarge = errors.New("too large")
	// ErrTooManyEntries: more entries than Options.MaxEntries.
	ErrTooManyEntries = errors.New("too many entries")
	// ErrMalformed: anything else that is not a valid entry.
	ErrMalformed = errors.New("malformed entry")
)

// ParseError locates a parse failure.
type ParseError struct {
	Format string // FormatASCII or FormatBinary
	Entry  int    // 0-based index of the entry
	Line   int    // 1-based line (ascii), 0 for binary
	Offset int    // byte offset of the entry's start
	Field  string // the field at fault ("template-hash", "d-ng", ...), or ""
	Err    error
}

func (e *ParseError) Error() string {
	where := ""
	if e.Format == FormatASCII {
		where = fmt.Sprintf("ima %s list: line %d (entry %d)", e.Format, e.Line, e.Entry)
	} else {
		where = fmt.Sprintf("ima %s list: entry %d at offset %d", e.Format, e.Entry, e.Offset)
	}
	if e.Field != "" {
		where += ", field " + e.Field
	}
	return where + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

// fieldKind is a template field as the kernel formats it.
type fieldKind uint8

const (
	fieldD      fieldKind = iota + 1 // legacy digest: 20 raw bytes
	fieldN                           // legacy name
	fieldDNG                         // "algo:\0" + digest
	fieldDNGv2                       // "type:algo:\0" + digest
	fieldNNG                         // NUL-terminated name
	fieldSig                         // hex
	fieldBuf                         // hex
	fieldDep                         // NUL-terminated string
	fieldCgn                         // NUL-terminated string
	fieldCgPath                      // NUL-terminated string
)

func (k fieldKind) String() string {
	switch k {
	case fieldD:
		return "d"
	case fieldN:
		return "n"
	case fieldDNG:
		return "d-ng"
	case fieldDNGv2:
		return "d-ngv2"
	case fieldNNG:
		return "n-ng"
	case fieldSig:
		return "sig"
	case fieldBuf:
		return "buf"
	case fieldDep:
		return "dep"
	case fieldCgn:
		return "cgn"
	case fieldCgPath:
		return "cg-path"
	}
	return "field?"
}

func (k fieldKind) isString() bool {
	return k == fieldNNG || k == fieldDep || k == fieldCgn || k == fieldCgPath
}

// template describes one known template; returned by value so lookups do not
// allocate and no table is shared mutable state.
type template struct {
	name   string
	n      int
	fields [4]fieldKind
}

// lookupTemplate finds a template by name. The string(name) conversions in
// the switch do not allocate.
func lookupTemplate(name []byte) (template, bool) {
	switch string(name) {
	case "ima":
		return template{"ima", 2, [4]fieldKind{fieldD, fieldN}}, true
	case "ima-ng":
		return template{"ima-ng", 2, [4]fieldKind{fieldDNG, fieldNNG}}, true
	case "ima-ngv2":
		return template{"ima-ngv2", 2, [4]fieldKind{fieldDNGv2, fieldNNG}}, true
	case "ima-sig":
		return template{"ima-sig", 3, [4]fieldKind{fieldDNG, fieldNNG, fieldSig}}, true
	case "ima-sigv2":
		return template{"ima-sigv2", 3, [4]fieldKind{fieldDNGv2, fieldNNG, fieldSig}}, true
	case "ima-buf":
		return template{"ima-buf", 3, [4]fieldKind{fieldDNG, fieldNNG, fieldBuf}}, true
	case "ima-dep-cgn":
		return template{"ima-dep-cgn", 4, [4]fieldKind{fieldDep, fieldCgn, fieldDNG, fieldNNG}}, true
	case "ima-cgpath":
		return template{"ima-cgpath", 4, [4]fieldKind{fieldDep, fieldCgPath, fieldDNG, fieldNNG}}, true
	}
	return template{}, false
}

// kernelHashSize returns the digest size of a kernel hash algorithm name
// (crypto/hash_info.c) and its TCG id when it has one. Unknown names return
// size -1: newer kernels may add algorithms, and the template hash already
// authenticates the bytes, so such digests are kept as they are.
func kernelHashSize(name []byte) (int, cctrusted.Algorithm) {
	switch string(name) {
	case "sha1":
		return 20, cctrusted.AlgSHA1
	case "sha256":
		return 32, cctrusted.AlgSHA256
	case "sha384":
		return 48, cctrusted.AlgSHA384
	case "sha512":
		return 64, cctrusted.AlgSHA512
	case "sm3":
		return 32, cctrusted.AlgSM3256
	case "md4", "md5", "rmd128", "tgr128":
		return 16, 0
	case "rmd160", "tgr160":
		return 20, 0
	case "tgr192":
		return 24, 0
	case "sha224":
		return 28, 0
	case "rmd256", "wp256", "streebog256", "sha3-256":
		return 32, 0
	case "rmd320":
		return 40, 0
	case "wp384", "sha3-384":
		return 48, 0
	case "wp512", "streebog512", "sha3-512":
		return 64, 0
	}
	return -1, 0
}

// fieldError is an error about one field, turned into a ParseError by the
// format's parser.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func errField(k fieldKind, sentinel error, format string, args ...any) error {
	return &fieldError{field: k.String(), err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

// decodeField fills e from one field's binary data (what the kernel hashes,
// without the length prefix). s holds the same bytes as data as a string
// over the ranges the decoder slices (the caller's string view of data, so
// names are substrings and cost no allocation): for string fields s[:len(data)-1]
// is the text, for digests s up to the ':' before the NUL is the prefix.
func decodeField(e *Entry, k fieldKind, data []byte, s string) error {
	switch k {
	case fieldDNG, fieldDNGv2:
		nul := -1
		for i, c := range data {
			if c == 0 {
				nul = i
				break
			}
		}
		if nul < 1 || data[nul-1] != ':' {
			return errField(k, ErrMalformed, "want \"algo:\" and a NUL before the digest")
		}
		prefix := s[:nul-1]
		typ, algo := "", prefix
		if k == fieldDNGv2 {
			i := indexByteString(prefix, ':')
			if i < 0 {
				return errField(k, ErrMalformed, "want \"type:algo:\" before the digest, got %q", prefix)
			}
			typ, algo = prefix[:i], prefix[i+1:]
			if typ == "" {
				return errField(k, ErrMalformed, "empty digest type")
			}
		}
		if algo == "" || indexByteString(algo, ':') >= 0 {
			return errField(k, ErrMalformed, "bad digest algorithm %q", algo)
		}
		digest := data[nul+1:]
		size, alg := kernelHashSize(data[nul-1-len(algo) : nul-1])
		if size >= 0 && len(digest) != size {
			return errField(k, ErrMalformed, "%s digest is %d bytes, want %d", algo, len(digest), size)
		}
		e.DigestType, e.DigestAlgo = typ, algo
		e.FileDigest = cctrusted.Digest{Alg: alg, Value: digest}
	case fieldNNG, fieldDep, fieldCgn, fieldCgPath:
		if len(data) == 0 || data[len(data)-1] != 0 {
			return errField(k, ErrMalformed, "string is not NUL-terminated")
		}
		for _, c := range data[:len(data)-1] {
			if c == 0 {
				return errField(k, ErrMalformed, "string has an embedded NUL")
			}
		}
		text := s[:len(data)-1]
		switch k {
		case fieldNNG:
			e.FileName = text
		case fieldDep:
			e.Dep = text
		case fieldCgn:
			e.CgroupName = text
		case fieldCgPath:
			e.CgroupPath = text
		}
	case fieldSig:
		e.Signature = data
	case fieldBuf:
		e.Buf = data
	default:
		return errField(k, ErrMalformed, "not a length-prefixed field")
	}
	return nil
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// arena hands out sub-slices of large blocks so that template data rebuilt
// from ascii (and legacy padded names) costs no allocation per entry.
// Handed-out slices are capped, so an append by a caller cannot overwrite a
// neighbour.
type arena struct {
	buf   []byte
	chunk int
}

func (a *arena) alloc(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(a.chunk, n))
	}
	l := len(a.buf)
	a.buf = a.buf[:l+n]
	return a.buf[l : l+n : l+n]
}
