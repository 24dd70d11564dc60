package pki

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// TDQuoteBody holds the fields of a TDX v4 quote body that belong to the TD. The TDX
// module's own fields (TEE TCB SVN, MRSEAM, MRSIGNERSEAM, SEAM attributes) come from
// the Platform, as on hardware, where the TD cannot choose them.
type TDQuoteBody struct {
	TDAttributes  [8]byte
	XFAM          [8]byte
	MRTD          [48]byte
	MRConfigID    [48]byte
	MROwner       [48]byte
	MROwnerConfig [48]byte
	RTMR          [4][48]byte
}

// Layout of a v4 quote (Intel TDX DCAP Quote Generation Library, "Quote Format").
const (
	QuoteVersion       = 4
	QuoteVersion5      = 5
	bodyTypeTDX15      = 3
	quoteBodySizeTDX15 = QuoteBodySize + 16 + 48
	AttestationKeyType = 2 // ECDSA-256 with P-256
	TEETypeTDX         = 0x81
	QuoteHeaderSize    = 48
	QuoteBodySize      = 584
	qeReportSize       = 384
	certDataTypeQE     = 6 // QE report certification data
	certDataTypePCK    = 5 // PCK certificate chain, PEM
	qeAuthDataSize     = 32
)

// SignQuote mints a TDX quote (v4, or v5 with a TDX 1.5 body when the platform's
// QuoteVersion is 5) for body and reportData as the simulated quoting
// enclave would: header || body (v5: header || body descriptor || body) signed by the attestation key, then the QE report
// (whose report data is SHA-256(attestation key || QE auth data) || 32 zero bytes)
// signed by the PCK key, then the PCK chain as certification data type 5 inside type 6.
func (a *Authority) SignQuote(body TDQuoteBody, reportData [64]byte) ([]byte, error) {
	p := &a.Platform
	if err := p.Validate(); err != nil {
		return nil, err
	}
	attKey, err := a.attestationPublicKey()
	if err != nil {
		return nil, err
	}

	// v5 puts a body descriptor (type, size) between header and body and
	// signs it with them.
	v5 := p.QuoteVersion == QuoteVersion5
	version, bodyOff, bodySize := uint16(QuoteVersion), QuoteHeaderSize, QuoteBodySize
	if v5 {
		version, bodyOff, bodySize = QuoteVersion5, QuoteHeaderSize+6, quoteBodySizeTDX15
	}
	hb := make([]byte, bodyOff+bodySize)
	h := hb[:QuoteHeaderSize]
	binary.LittleEndian.PutUint16(h[0:], version)
	binary.LittleEndian.PutUint16(h[2:], AttestationKeyType)
	binary.LittleEndian.PutUint32(h[4:], TEETypeTDX)
	binary.LittleEndian.PutUint16(h[8:], p.QESVN)
	binary.LittleEndian.PutUint16(h[10:], p.PCESVN)
	copy(h[12:28], QEVendorID)
	// h[28:48] is user data; Intel's QE puts the PCE/QE IDs there, zeros are valid.

	if v5 {
		binary.LittleEndian.PutUint16(hb[QuoteHeaderSize:], bodyTypeTDX15)
		binary.LittleEndian.PutUint32(hb[QuoteHeaderSize+2:], uint32(bodySize))
	}
	b := hb[bodyOff:]
	copy(b[0:16], p.TeeTCBSVN)
	copy(b[16:64], p.MRSEAM)
	copy(b[64:112], p.MRSignerSeam)
	copy(b[112:120], p.SeamAttributes)
	copy(b[120:128], body.TDAttributes[:])
	copy(b[128:136], body.XFAM[:])
	copy(b[136:184], body.MRTD[:])
	copy(b[184:232], body.MRConfigID[:])
	copy(b[232:280], body.MROwner[:])
	copy(b[280:328], body.MROwnerConfig[:])
	for i := range body.RTMR {
		copy(b[328+48*i:376+48*i], body.RTMR[i][:])
	}
	copy(b[520:584], reportData[:])
	if v5 {
		svn2 := p.TeeTCBSVN2
		if len(svn2) == 0 {
			svn2 = p.TeeTCBSVN
		}
		copy(b[584:600], svn2)
		copy(b[600:648], p.MRServiceTD)
	}

	quoteSig, err := signRaw(a.attestationKey, hb)
	if err != nil {
		return nil, fmt.Errorf("pki: quote signature: %w", err)
	}

	authData := make([]byte, qeAuthDataSize)
	for i := range authData {
		authData[i] = byte(i)
	}
	qeReport := a.qeReport(attKey, authData)
	qeSig, err := signRaw(a.pckKey, qeReport)
	if err != nil {
		return nil, fmt.Errorf("pki: QE report signature: %w", err)
	}
	chain := a.PCKChainPEM()

	// Certification data type 6: QE report, its signature, auth data, then the
	// nested type-5 PCK chain.
	var qeCert []byte
	qeCert = append(qeCert, qeReport...)
	qeCert = append(qeCert, qeSig...)
	qeCert = binary.LittleEndian.AppendUint16(qeCert, uint16(len(authData)))
	qeCert = append(qeCert, authData...)
	qeCert = binary.LittleEndian.AppendUint16(qeCert, certDataTypePCK)
	qeCert = binary.LittleEndian.AppendUint32(qeCert, uint32(len(chain)))
	qeCert = append(qeCert, chain...)

	var signed []byte
	signed = append(signed, quoteSig...)
	signed = append(signed, attKey...)
	signed = binary.LittleEndian.AppendUint16(signed, certDataTypeQE)
	signed = binary.LittleEndian.AppendUint32(signed, uint32(len(qeCert)))
	signed = append(signed, qeCert...)

	out := make([]byte, 0, len(hb)+4+len(signed))
	out = append(out, hb...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(signed)))
	return append(out, signed...), nil
}

// qeReport builds the 384-byte SGX report of the quoting enclave.
func (a *Authority) qeReport(attKey, authData []byte) []byte {
	p := &a.Platform
	r := make([]byte, qeReportSize)
	copy(r[0:16], p.CPUSVN)
	binary.LittleEndian.PutUint32(r[16:], p.QEMiscSelect)
	copy(r[48:64], p.QEAttributes)
	copy(r[64:96], p.QEMREnclave)
	copy(r[128:160], p.QEMRSigner)
	binary.LittleEndian.PutUint16(r[256:], p.QEProdID)
	binary.LittleEndian.PutUint16(r[258:], p.QESVN)
	sum := sha256.Sum256(append(append([]byte{}, attKey...), authData...))
	copy(r[320:352], sum[:])
	return r
}
