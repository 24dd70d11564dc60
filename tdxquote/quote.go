// Package tdxquote parses Intel TDX quotes (version 4, and version 5 with a
// TDX 1.0 or TDX 1.5 body; ECDSA P-256 attestation key, QE report
// certification data with a PCK certificate chain) into typed fields.
//
// Input that is some other kind of evidence (an SGX quote, a TDREPORT, a TPM
// quote, an Azure HCL report) is refused with an error that says what it
// looks like, so an operator who passed the wrong file learns which.
//
// The parser is the project's own and checks every length before it slices,
// so that hostile input is rejected with an error naming the field and its
// offset before any library that assumes a well-formed quote sees it. It does
// not verify signatures: package appraisal does that.
package tdxquote

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// Sizes and offsets of the quote v4 layout (Intel TDX DCAP quote format).
// In a v5 quote a body descriptor (u16 body type, u32 body size) sits
// between header and body, so its offsets after the header are larger: use
// Quote.BodyOffset and Quote.SignedDataOffset there.
const (
	HeaderSize       = 48
	BodySize         = 584
	BodyOffset       = HeaderSize
	SignedDataLenOff = HeaderSize + BodySize // u32 length of the signature data
	SignedDataOffset = SignedDataLenOff + 4

	// BodyDescriptorSize is the v5 body descriptor: u16 type, u32 size.
	BodyDescriptorSize = 6
	// BodySizeTDX15 is the TDX 1.5 body (body type 3): the TDX 1.0 body,
	// then TEE_TCB_SVN2 (16 bytes) and MRSERVICETD (48 bytes).
	BodySizeTDX15 = BodySize + 16 + MeasurementSize

	// SignatureSize is an ECDSA P-256 signature as r||s.
	SignatureSize = 64
	// AttestationKeySize is an uncompressed P-256 point without the 0x04 prefix.
	AttestationKeySize = 64
	// EnclaveReportSize is an SGX enclave report (the QE report).
	EnclaveReportSize = 384
	// MeasurementSize is a SHA-384 register (MRTD, RTMRs, MRSEAM...).
	MeasurementSize = 48
	// ReportDataSize is the TD's REPORTDATA.
	ReportDataSize = 64

	// MaxQuoteSize bounds the input. Real quotes are about 5 KiB (the PCK
	// chain dominates); quote buffers handed out by the quote service are
	// padded to a few KiB more.
	MaxQuoteSize = 64 << 10
)

// Values the header and the certification data must carry.
const (
	Version4 = 4
	Version5 = 5
	// BodyTypeTDX10 and BodyTypeTDX15 are the v5 body types of a TD
	// report: TDX 1.0 (584 bytes, the v4 body) and TDX 1.5 (648 bytes).
	// Body type 1 is an SGX enclave report, never a TD's.
	BodyTypeTDX10 = 2
	BodyTypeTDX15 = 3
	// TEETypeSGX is the TEE type of SGX quotes.
	TEETypeSGX              = 0x00000000
	AttestationKeyECDSAP256 = 2
	TEETypeTDX              = 0x00000081
	// CertDataQEReport is certification data type 6: QE report certification data.
	CertDataQEReport = 6
	// CertDataPCKChain is certification data type 5: a PEM PCK certificate chain.
	CertDataPCKChain = 5
)

// Errors a parse failure wraps, so callers can tell the classes apart with
// errors.Is.
var (
	ErrTruncated      = errors.New("truncated")
	ErrTooLarge       = errors.New("too large")
	ErrVersion        = errors.New("unsupported quote version")
	ErrAttestationKey = errors.New("unsupported attestation key type")
	ErrTEEType        = errors.New("not a TDX quote")
	ErrLength         = errors.New("length field inconsistent with the data")
	ErrCertDataType   = errors.New("unexpected certification data type")
	ErrPCKChain       = errors.New("malformed PCK certificate chain")
	ErrBodyType       = errors.New("unsupported quote body type")
	// ErrWrongEvidence is other evidence given where a TDX quote belongs
	// (a TDREPORT, a TPM quote, an Azure HCL report, text).
	ErrWrongEvidence = errors.New("not a TDX quote")
)

// FormatError says which field of a quote is malformed and where it starts.
type FormatError struct {
	Field  string
	Offset int
	Err    error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("tdxquote: %s at offset %d: %v", e.Field, e.Offset, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(field string, off int, err error, format string, args ...any) error {
	if format != "" {
		err = fmt.Errorf("%w: "+format, append([]any{err}, args...)...)
	}
	return &FormatError{Field: field, Offset: off, Err: err}
}

// Header is the 48-byte quote header.
type Header struct {
	Version            uint16
	AttestationKeyType uint16
	TEEType            uint32
	// Reserved holds bytes 8..11. The v4 format reserves them; SGX-era
	// layouts (and go-tdx-guest) read a PCE SVN and a QE SVN there.
	Reserved   [4]byte
	QEVendorID [16]byte
	UserData   [20]byte
}

// Body is the TD quote body (the TD report the quote signs): 584 bytes in
// v4 and in v5 body type 2, 648 bytes in v5 body type 3, whose two extra
// fields are zero in the other layouts.
type Body struct {
	TEETCBSVN      [16]byte
	MRSEAM         [MeasurementSize]byte
	MRSignerSEAM   [MeasurementSize]byte
	SEAMAttributes [8]byte
	TDAttributes   [8]byte
	XFAM           [8]byte
	MRTD           [MeasurementSize]byte
	MRConfigID     [MeasurementSize]byte
	MROwner        [MeasurementSize]byte
	MROwnerConfig  [MeasurementSize]byte
	RTMR           [4][MeasurementSize]byte
	ReportData     [ReportDataSize]byte

	// TEETCBSVN2 (TDX 1.5) is the TEE TCB SVN of the TDX module running
	// now, which a TD-preserving module update can raise above TEETCBSVN
	// (the module the TD was built on).
	TEETCBSVN2 [16]byte
	// MRServiceTD (TDX 1.5) measures the service TDs bound to this TD
	// (e.g. a migration TD); zero when none is bound.
	MRServiceTD [MeasurementSize]byte
}

// EnclaveReport is the SGX report of the quoting enclave.
type EnclaveReport struct {
	CPUSVN     [16]byte
	MiscSelect uint32
	Attributes [16]byte
	MREnclave  [32]byte
	MRSigner   [32]byte
	ISVProdID  uint16
	ISVSVN     uint16
	ReportData [ReportDataSize]byte
	// Raw is the report as signed by the PCK key.
	Raw [EnclaveReportSize]byte
}

// Quote is a parsed TDX quote v4 or v5.
type Quote struct {
	Header Header
	// BodyType is the v5 body descriptor's type; a v4 quote's body is the
	// TDX 1.0 layout and gets BodyTypeTDX10.
	BodyType uint16
	Body     Body
	// BodyOffset and SignedDataOffset are where the body and the signature
	// data start in the input (they move with the v5 body descriptor).
	BodyOffset, SignedDataOffset int

	// SignedDataSize is the u32 just before the signature data.
	SignedDataSize uint32
	// Signature is the attestation key's ECDSA signature (r||s) over
	// header||body (v4) or header||body descriptor||body (v5).
	Signature [SignatureSize]byte
	// AttestationKey is the QE's P-256 attestation public key (x||y).
	AttestationKey [AttestationKeySize]byte

	// QEReport is the quoting enclave's report; its REPORTDATA binds the
	// attestation key and QEAuthData.
	QEReport EnclaveReport
	// QEReportSignature is the PCK key's signature (r||s) over QEReport.Raw.
	QEReportSignature [SignatureSize]byte
	QEAuthData        []byte

	// PCKChainPEM is the PEM chain as carried in the quote; PCKChain the same
	// certificates parsed: leaf, intermediate CA, root CA.
	PCKChainPEM []byte
	PCKChain    []*x509.Certificate
	// PCK is what the leaf's SGX extension says about the platform.
	PCK *PCKInfo

	// TrailingBytes counts bytes after the signature data. They are not
	// signed; quote buffers are often padded, so they are tolerated and
	// reported rather than rejected.
	TrailingBytes int

	signed []byte
}

// SignedBytes returns what the attestation key signed, exactly as it
// appeared in the input: header||body in v4, header||body descriptor||body
// in v5.
func (q *Quote) SignedBytes() []byte { return bytes.Clone(q.signed) }

// TDX15 reports whether the body is the TDX 1.5 layout (v5 body type 3), the
// only one that carries TEETCBSVN2 and MRServiceTD.
func (q *Quote) TDX15() bool { return q.BodyType == BodyTypeTDX15 }

// reader walks a byte slice and fails, naming the field and its absolute
// offset, when a read would run past the end.
type reader struct {
	b    []byte
	off  int // absolute offset of b[0] in the quote
	pos  int
	err  error
	zone string // what region the reader covers, for truncation errors
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.pos {
		r.err = formatErr(field, r.off+r.pos, ErrTruncated, "need %d bytes, %s has %d left", n, r.zone, len(r.b)-r.pos)
		return nil
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s
}

func (r *reader) u16(field string) uint16 {
	b := r.take(field, 2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *reader) u32(field string) uint32 {
	b := r.take(field, 4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *reader) abs() int { return r.off + r.pos }

func (r *reader) rest() int { return len(r.b) - r.pos }

// Parse parses a raw TDX quote (v4 or v5). It never panics and never allocates more
// than a small multiple of len(raw).
func Parse(raw []byte) (*Quote, error) {
	return ParseWithOptions(raw, ParseOptions{})
}

// PCKCertChain is a PCK certificate chain as Parse parsed it from a quote:
// the certificates (leaf, intermediate CA, root CA) and what the leaf's SGX
// extension says, with the bytes they were parsed from. It depends on those
// bytes alone, not on the time or on any trust decision, which is what lets
// a cache keep it. Its contents are Parse's own, so that nothing but Parse
// can make or change one; a Quote exposes them as PCKChain and PCK.
type PCKCertChain struct {
	pem   []byte
	certs []*x509.Certificate
	info  *PCKInfo
}

// PCKChainCache lets Parse skip parsing a PCK chain it has parsed before:
// a node sends the same chain with every quote, and the PEM, X.509 and
// ASN.1 parsing of it costs more than everything else Parse does.
//
// Parse gives Get the chain's exact PEM bytes and uses what it returns only
// if it is a chain Parse itself parsed from identical bytes, so a cache
// cannot make a quote carry certificates other than its own, whatever its
// keys. Add is called only with chains that parsed. Neither may retain or
// change pem (it belongs to the quote). Implementations must be safe for
// concurrent use if Parse is called concurrently.
type PCKChainCache interface {
	Get(pem []byte) (*PCKCertChain, bool)
	Add(pem []byte, chain *PCKCertChain)
}

// ParseOptions configures ParseWithOptions. The zero value parses
// everything, as Parse does.
type ParseOptions struct {
	// PCKChains, when set, is asked for the quote's PCK chain before it is
	// parsed, and given every chain that parsed. A malformed chain is
	// rejected with the same error with or without it.
	PCKChains PCKChainCache
}

// ParseWithOptions is Parse with options. With a PCKChainCache, the returned
// Quote's PCKChain certificates may be shared with other quotes of the same
// chain: treat them as read-only (the slice and PCK are the quote's own).
func ParseWithOptions(raw []byte, opts ParseOptions) (*Quote, error) {
	if len(raw) > MaxQuoteSize {
		return nil, formatErr("quote", 0, ErrTooLarge, "%d bytes, limit %d", len(raw), MaxQuoteSize)
	}
	q := &Quote{}
	r := &reader{b: raw, zone: "the quote"}

	if err := parseHeader(r, &q.Header); err != nil {
		return nil, err
	}
	q.BodyType = BodyTypeTDX10
	if q.Header.Version == Version5 {
		if err := parseBodyDescriptor(r, q); err != nil {
			return nil, err
		}
	}
	q.BodyOffset = r.abs()
	parseBody(r, &q.Body, q.BodyType)
	if r.err != nil {
		return nil, r.err
	}
	q.signed = bytes.Clone(raw[:r.abs()])

	lenOff := r.abs()
	q.SignedDataSize = r.u32("signature data length")
	if r.err != nil {
		return nil, r.err
	}
	if int64(q.SignedDataSize) > int64(r.rest()) {
		return nil, formatErr("signature data length", lenOff, ErrLength,
			"says %d bytes, %d follow", q.SignedDataSize, r.rest())
	}
	q.SignedDataOffset = r.abs()
	end := q.SignedDataOffset + int(q.SignedDataSize)
	sd := &reader{b: raw[q.SignedDataOffset:end], off: q.SignedDataOffset, zone: "the signature data"}
	if err := parseSignedData(sd, q, opts.PCKChains); err != nil {
		return nil, err
	}
	q.TrailingBytes = len(raw) - end
	return q, nil
}

// parseBodyDescriptor reads the v5 body type and size. Only TD report
// bodies are accepted, each with exactly its specified size: a size that
// disagrees with the type would shift every field after it.
func parseBodyDescriptor(r *reader, q *Quote) error {
	off := r.abs()
	q.BodyType = r.u16("body_descriptor.type")
	size := r.u32("body_descriptor.size")
	if r.err != nil {
		return r.err
	}
	var want uint32
	switch q.BodyType {
	case BodyTypeTDX10:
		want = BodySize
	case BodyTypeTDX15:
		want = BodySizeTDX15
	case 1:
		return formatErr("body_descriptor.type", off, ErrBodyType, "type 1 is an SGX enclave report body, not a TD report (want %d, TDX 1.0, or %d, TDX 1.5)", BodyTypeTDX10, BodyTypeTDX15)
	default:
		return formatErr("body_descriptor.type", off, ErrBodyType, "type %d, want %d (TDX 1.0) or %d (TDX 1.5)", q.BodyType, BodyTypeTDX10, BodyTypeTDX15)
	}
	if size != want {
		return formatErr("body_descriptor.size", off+2, ErrLength, "body type %d is %d bytes, the descriptor says %d", q.BodyType, want, size)
	}
	return nil
}

func parseHeader(r *reader, h *Header) error {
	// Other evidence is named before any field of it is read as a quote's,
	// so the error says what was given rather than which byte is off.
	if err := wrongEvidence(r.b); err != nil {
		return err
	}
	if len(r.b) < HeaderSize {
		return formatErr("header", 0, ErrTruncated, "need %d bytes, have %d", HeaderSize, len(r.b))
	}
	h.Version = r.u16("header.version")
	h.AttestationKeyType = r.u16("header.attestation_key_type")
	h.TEEType = r.u32("header.tee_type")
	if h.TEEType == TEETypeSGX && h.Version >= 3 && h.Version <= Version5 {
		return formatErr("header.tee_type", 4, ErrTEEType, "SGX quote, not TDX (version %d, TEE type 0): an SGX enclave's quote cannot attest a TD; a TDX quote (TEE type 0x81) is needed", h.Version)
	}
	if h.Version != Version4 && h.Version != Version5 {
		return formatErr("header.version", 0, ErrVersion, "version %d, want %d or %d", h.Version, Version4, Version5)
	}
	if h.AttestationKeyType != AttestationKeyECDSAP256 {
		return formatErr("header.attestation_key_type", 2, ErrAttestationKey, "type %d, want %d (ECDSA P-256)", h.AttestationKeyType, AttestationKeyECDSAP256)
	}
	if h.TEEType != TEETypeTDX {
		return formatErr("header.tee_type", 4, ErrTEEType, "tee type 0x%x, want 0x%x", h.TEEType, TEETypeTDX)
	}
	copy(h.Reserved[:], r.take("header.reserved", 4))
	copy(h.QEVendorID[:], r.take("header.qe_vendor_id", 16))
	copy(h.UserData[:], r.take("header.user_data", 20))
	return r.err
}

func parseBody(r *reader, b *Body, typ uint16) {
	size := BodySize
	if typ == BodyTypeTDX15 {
		size = BodySizeTDX15
	}
	if r.rest() < size && r.err == nil {
		r.err = formatErr("body", r.abs(), ErrTruncated, "need %d bytes, have %d", size, r.rest())
		return
	}
	copy(b.TEETCBSVN[:], r.take("body.tee_tcb_svn", 16))
	copy(b.MRSEAM[:], r.take("body.mrseam", MeasurementSize))
	copy(b.MRSignerSEAM[:], r.take("body.mrsignerseam", MeasurementSize))
	copy(b.SEAMAttributes[:], r.take("body.seam_attributes", 8))
	copy(b.TDAttributes[:], r.take("body.td_attributes", 8))
	copy(b.XFAM[:], r.take("body.xfam", 8))
	copy(b.MRTD[:], r.take("body.mrtd", MeasurementSize))
	copy(b.MRConfigID[:], r.take("body.mrconfigid", MeasurementSize))
	copy(b.MROwner[:], r.take("body.mrowner", MeasurementSize))
	copy(b.MROwnerConfig[:], r.take("body.mrownerconfig", MeasurementSize))
	for i := range b.RTMR {
		copy(b.RTMR[i][:], r.take(fmt.Sprintf("body.rtmr%d", i), MeasurementSize))
	}
	copy(b.ReportData[:], r.take("body.report_data", ReportDataSize))
	if typ == BodyTypeTDX15 {
		copy(b.TEETCBSVN2[:], r.take("body.tee_tcb_svn2", 16))
		copy(b.MRServiceTD[:], r.take("body.mrservicetd", MeasurementSize))
	}
}

func parseSignedData(r *reader, q *Quote, cache PCKChainCache) error {
	copy(q.Signature[:], r.take("quote_signature", SignatureSize))
	copy(q.AttestationKey[:], r.take("attestation_key", AttestationKeySize))

	certOff := r.abs()
	typ := r.u16("certification_data.type")
	size := r.u32("certification_data.size")
	if r.err != nil {
		return r.err
	}
	if typ != CertDataQEReport {
		return formatErr("certification_data.type", certOff, ErrCertDataType, "type %d, want %d (QE report certification data)", typ, CertDataQEReport)
	}
	// The certification data must fill the signature data exactly: slack
	// inside the length-prefixed region would be bytes nobody accounts for.
	if int64(size) != int64(r.rest()) {
		return formatErr("certification_data.size", certOff+2, ErrLength, "says %d bytes, the signature data has %d left", size, r.rest())
	}
	cd := &reader{b: r.take("certification_data", int(size)), off: certOff + 6, zone: "the QE report certification data"}

	rep := cd.take("qe_report", EnclaveReportSize)
	if cd.err != nil {
		return cd.err
	}
	parseEnclaveReport(rep, &q.QEReport)
	copy(q.QEReportSignature[:], cd.take("qe_report_signature", SignatureSize))

	authOff := cd.abs()
	authLen := cd.u16("qe_auth_data.size")
	if cd.err != nil {
		return cd.err
	}
	if int(authLen) > cd.rest() {
		return formatErr("qe_auth_data.size", authOff, ErrLength, "says %d bytes, %d left", authLen, cd.rest())
	}
	q.QEAuthData = bytes.Clone(cd.take("qe_auth_data", int(authLen)))

	innerOff := cd.abs()
	innerType := cd.u16("pck_cert_chain.type")
	innerSize := cd.u32("pck_cert_chain.size")
	if cd.err != nil {
		return cd.err
	}
	if innerType != CertDataPCKChain {
		return formatErr("pck_cert_chain.type", innerOff, ErrCertDataType, "type %d, want %d (PCK certificate chain)", innerType, CertDataPCKChain)
	}
	if int64(innerSize) != int64(cd.rest()) {
		return formatErr("pck_cert_chain.size", innerOff+2, ErrLength, "says %d bytes, the certification data has %d left", innerSize, cd.rest())
	}
	chainOff := cd.abs()
	q.PCKChainPEM = bytes.Clone(cd.take("pck_cert_chain", int(innerSize)))
	if cd.err != nil {
		return cd.err
	}
	if cache != nil {
		if c, ok := cache.Get(q.PCKChainPEM); ok && parsedFrom(c, q.PCKChainPEM) {
			q.setPCKChain(c)
			return nil
		}
	}
	certs, err := parsePEMChain(q.PCKChainPEM)
	if err != nil {
		return formatErr("pck_cert_chain", chainOff, ErrPCKChain, "%v", err)
	}
	info, err := parsePCKInfo(certs[0])
	if err != nil {
		return formatErr("pck_cert_chain leaf", chainOff, ErrPCKChain, "%v", err)
	}
	c := &PCKCertChain{certs: certs, info: info}
	if cache != nil {
		// A copy: the caller may change the quote's PCKChainPEM.
		c.pem = bytes.Clone(q.PCKChainPEM)
		cache.Add(q.PCKChainPEM, c)
	}
	q.setPCKChain(c)
	return nil
}

// parsedFrom reports whether c was parsed from exactly pem. Parse does not
// take a cache's word for it; only Parse fills a PCKCertChain, and only
// with a chain that parsed.
func parsedFrom(c *PCKCertChain, pem []byte) bool {
	return c != nil && len(c.pem) != 0 && bytes.Equal(c.pem, pem)
}

// setPCKChain gives q its own copies of the chain's slice and of the PCK
// info, so that a caller changing them cannot change what a cache hands to
// other quotes; the certificates themselves are shared.
func (q *Quote) setPCKChain(c *PCKCertChain) {
	q.PCKChain = slices.Clone(c.certs)
	info := *c.info
	info.PPID = bytes.Clone(c.info.PPID)
	q.PCK = &info
}

func parseEnclaveReport(b []byte, e *EnclaveReport) {
	copy(e.Raw[:], b)
	copy(e.CPUSVN[:], b[0:16])
	e.MiscSelect = binary.LittleEndian.Uint32(b[16:20])
	copy(e.Attributes[:], b[48:64])
	copy(e.MREnclave[:], b[64:96])
	copy(e.MRSigner[:], b[128:160])
	e.ISVProdID = binary.LittleEndian.Uint16(b[256:258])
	e.ISVSVN = binary.LittleEndian.Uint16(b[258:260])
	copy(e.ReportData[:], b[320:384])
}

// pckChainLen is the number of certificates a PCK chain has: leaf,
// intermediate (platform or processor CA), root.
const pckChainLen = 3

// parsePEMChain accepts exactly three CERTIFICATE blocks separated by
// whitespace, optionally followed by NUL terminators or whitespace (the
// quote library writes a C string).
func parsePEMChain(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for i := 0; ; i++ {
		trimmed := bytes.TrimLeft(rest, " \t\r\n")
		if len(bytes.Trim(trimmed, "\x00 \t\r\n")) == 0 {
			break
		}
		if i == pckChainLen {
			return nil, fmt.Errorf("more than %d PEM blocks or trailing data after certificate %d", pckChainLen, i)
		}
		if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("certificate %d: data that is not PEM", i)
		}
		blk, next := pem.Decode(trimmed)
		if blk == nil {
			return nil, fmt.Errorf("certificate %d: malformed PEM block", i)
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("certificate %d: PEM block type %q, want CERTIFICATE", i, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		certs = append(certs, c)
		rest = next
	}
	if len(certs) != pckChainLen {
		return nil, fmt.Errorf("%d certificates, want %d (leaf, intermediate CA, root CA)", len(certs), pckChainLen)
	}
	return certs, nil
}
