package tdxquote

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"
)

// TDAttribute is a bit of the 64-bit TD_ATTRIBUTES (little-endian in the
// quote), as the Intel TDX module ABI specification assigns them.
type TDAttribute uint64

// TD attribute bits.
const (
	// TDAttrDebug: the TD runs in debug mode; the host can read and write
	// its memory and registers, so nothing it attests can be trusted.
	TDAttrDebug TDAttribute = 1 << 0
	// TDAttrSEPTVEDisable: EPT violations on pending pages are not turned
	// into #VE for the guest.
	TDAttrSEPTVEDisable TDAttribute = 1 << 28
	// TDAttrMigratable: the TD may be migrated (TDX 1.5).
	TDAttrMigratable TDAttribute = 1 << 29
	// TDAttrPKS: supervisor protection keys are enabled.
	TDAttrPKS TDAttribute = 1 << 30
	// TDAttrKL: Key Locker is enabled.
	TDAttrKL TDAttribute = 1 << 31
	// TDAttrPerfmon: the TD may use the performance monitoring counters.
	TDAttrPerfmon TDAttribute = 1 << 63
)

var tdAttributeNames = []struct {
	bit  TDAttribute
	name string
}{
	{TDAttrDebug, "DEBUG"},
	{TDAttrSEPTVEDisable, "SEPT_VE_DISABLE"},
	{TDAttrMigratable, "MIGRATABLE"},
	{TDAttrPKS, "PKS"},
	{TDAttrKL, "KL"},
	{TDAttrPerfmon, "PERFMON"},
}

// TDAttributesValue returns TD_ATTRIBUTES as a number.
func (b *Body) TDAttributesValue() TDAttribute {
	return TDAttribute(binary.LittleEndian.Uint64(b.TDAttributes[:]))
}

// Has reports whether every bit of bit is set.
func (a TDAttribute) Has(bit TDAttribute) bool { return a&bit == bit }

// Names spells out the set bits the specification names, in bit order;
// other set bits appear as "BIT<n>" so nothing set goes unseen.
func (a TDAttribute) Names() []string {
	names := []string{}
	known := TDAttribute(0)
	for _, n := range tdAttributeNames {
		known |= n.bit
		if a.Has(n.bit) {
			names = append(names, n.name)
		}
	}
	for i := range 64 {
		bit := TDAttribute(1) << i
		if a&bit != 0 && known&bit == 0 {
			names = append(names, "BIT"+strconv.Itoa(i))
		}
	}
	return names
}

// Debug reports whether the TD is a debug TD (TD_ATTRIBUTES bit 0).
func (q *Quote) Debug() bool { return q.Body.TDAttributes[0]&1 == 1 }

// CertSummary describes one certificate of the PCK chain.
type CertSummary struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Inspection is every field of a quote, ready for JSON (snake_case keys,
// lower-case hex). Byte fields are shown as they appear in the quote; only
// header integers and the QE report's integers are decoded.
type Inspection struct {
	Version            uint16 `json:"version"`
	AttestationKeyType uint16 `json:"attestation_key_type"`
	TEEType            uint32 `json:"tee_type"`
	HeaderReserved     string `json:"header_reserved"`
	QEVendorID         string `json:"qe_vendor_id"`
	UserData           string `json:"user_data"`

	// BodyType is the v5 body type (2 TDX 1.0, 3 TDX 1.5); v4 shows 2.
	BodyType uint16 `json:"body_type"`

	TEETCBSVN        string   `json:"tee_tcb_svn"`
	MRSEAM           string   `json:"mrseam"`
	MRSignerSEAM     string   `json:"mrsignerseam"`
	SEAMAttributes   string   `json:"seam_attributes"`
	TDAttributes     string   `json:"td_attributes"`
	TDAttributeFlags []string `json:"td_attribute_flags"`
	Debug            bool     `json:"debug"`
	XFAM             string   `json:"xfam"`
	MRTD             string   `json:"mrtd"`
	MRConfigID       string   `json:"mrconfigid"`
	MROwner          string   `json:"mrowner"`
	MROwnerConfig    string   `json:"mrownerconfig"`
	RTMR0            string   `json:"rtmr0"`
	RTMR1            string   `json:"rtmr1"`
	RTMR2            string   `json:"rtmr2"`
	RTMR3            string   `json:"rtmr3"`
	ReportData       string   `json:"report_data"`
	// TEETCBSVN2 and MRServiceTD exist only in TDX 1.5 bodies (body type 3).
	TEETCBSVN2  string `json:"tee_tcb_svn2,omitempty"`
	MRServiceTD string `json:"mrservicetd,omitempty"`

	SignedDataSize    uint32 `json:"signed_data_size"`
	Signature         string `json:"signature"`
	AttestationKey    string `json:"attestation_key"`
	QEMRENCLAVE       string `json:"qe_mrenclave"`
	QEMRSIGNER        string `json:"qe_mrsigner"`
	QEISVProdID       uint16 `json:"qe_isv_prod_id"`
	QEISVSVN          uint16 `json:"qe_isv_svn"`
	QEReportData      string `json:"qe_report_data"`
	QEReportSignature string `json:"qe_report_signature"`
	QEAuthData        string `json:"qe_auth_data"`

	FMSPC            string        `json:"fmspc"`
	PCEID            string        `json:"pceid"`
	PCESVN           uint16        `json:"pcesvn"`
	CPUSVN           string        `json:"cpusvn"`
	SGXTCBComponents []int         `json:"sgx_tcb_components"`
	PCKChain         []CertSummary `json:"pck_chain"`

	TrailingBytes int `json:"trailing_bytes"`
}

// Inspect returns every field of q for display.
func (q *Quote) Inspect() Inspection {
	h := hex.EncodeToString
	b := &q.Body
	in := Inspection{
		Version:            q.Header.Version,
		AttestationKeyType: q.Header.AttestationKeyType,
		TEEType:            q.Header.TEEType,
		HeaderReserved:     h(q.Header.Reserved[:]),
		QEVendorID:         h(q.Header.QEVendorID[:]),
		UserData:           h(q.Header.UserData[:]),
		BodyType:           q.BodyType,

		TEETCBSVN:        h(b.TEETCBSVN[:]),
		MRSEAM:           h(b.MRSEAM[:]),
		MRSignerSEAM:     h(b.MRSignerSEAM[:]),
		SEAMAttributes:   h(b.SEAMAttributes[:]),
		TDAttributes:     h(b.TDAttributes[:]),
		TDAttributeFlags: b.TDAttributesValue().Names(),
		Debug:            q.Debug(),
		XFAM:             h(b.XFAM[:]),
		MRTD:             h(b.MRTD[:]),
		MRConfigID:       h(b.MRConfigID[:]),
		MROwner:          h(b.MROwner[:]),
		MROwnerConfig:    h(b.MROwnerConfig[:]),
		RTMR0:            h(b.RTMR[0][:]),
		RTMR1:            h(b.RTMR[1][:]),
		RTMR2:            h(b.RTMR[2][:]),
		RTMR3:            h(b.RTMR[3][:]),
		ReportData:       h(b.ReportData[:]),

		SignedDataSize:    q.SignedDataSize,
		Signature:         h(q.Signature[:]),
		AttestationKey:    h(q.AttestationKey[:]),
		QEMRENCLAVE:       h(q.QEReport.MREnclave[:]),
		QEMRSIGNER:        h(q.QEReport.MRSigner[:]),
		QEISVProdID:       q.QEReport.ISVProdID,
		QEISVSVN:          q.QEReport.ISVSVN,
		QEReportData:      h(q.QEReport.ReportData[:]),
		QEReportSignature: h(q.QEReportSignature[:]),
		QEAuthData:        h(q.QEAuthData),

		TrailingBytes: q.TrailingBytes,
	}
	if q.TDX15() {
		in.TEETCBSVN2, in.MRServiceTD = h(b.TEETCBSVN2[:]), h(b.MRServiceTD[:])
	}
	if q.PCK != nil {
		in.FMSPC = h(q.PCK.FMSPC[:])
		in.PCEID = h(q.PCK.PCEID[:])
		in.PCESVN = q.PCK.PCESVN
		in.CPUSVN = h(q.PCK.CPUSVN[:])
		for _, c := range q.PCK.SGXTCBComponents {
			in.SGXTCBComponents = append(in.SGXTCBComponents, int(c))
		}
	}
	for _, c := range q.PCKChain {
		in.PCKChain = append(in.PCKChain, summarize(c))
	}
	return in
}

func summarize(c *x509.Certificate) CertSummary {
	return CertSummary{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    hex.EncodeToString(c.SerialNumber.Bytes()),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
	}
}
