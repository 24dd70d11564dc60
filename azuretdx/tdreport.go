package azuretdx

import (
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// Layout of a TDREPORT_STRUCT (Intel TDX module ABI, TDG.MR.REPORT): a
// REPORTMACSTRUCT (256 bytes), TEE_TCB_INFO (239 bytes and 17 reserved),
// TDINFO (512 bytes).
const (
	// TDReportSize is the size of a TDREPORT_STRUCT.
	TDReportSize = tdxquote.TDReportSize

	offReportType     = 0
	offCPUSVN         = 16
	offTEETCBInfoHash = 32
	offTEEInfoHash    = 80
	offReportData     = 128
	offMAC            = 224

	offTEETCBInfo  = 256
	offTCBValid    = offTEETCBInfo
	offTEETCBSVN   = offTEETCBInfo + 8
	offMRSEAM      = offTEETCBInfo + 24
	offMRSignerSM  = offTEETCBInfo + 72
	offSEAMAttrs   = offTEETCBInfo + 120
	offTEETCBSVN2  = offTEETCBInfo + 128 // TDX 1.5
	offTDInfo      = 512
	offTDAttrs     = offTDInfo
	offXFAM        = offTDInfo + 8
	offMRTD        = offTDInfo + 16
	offMRConfigID  = offTDInfo + 64
	offMROwner     = offTDInfo + 112
	offMROwnerConf = offTDInfo + 160
	offRTMR        = offTDInfo + 208
	offServTDHash  = offTDInfo + 400 // TDX 1.5

	// reportTypeTDX is REPORTTYPE.TYPE of a TD's report (0x00 is SGX).
	reportTypeTDX = 0x81
)

// TDReport is a parsed TDREPORT_STRUCT. Its MAC can only be checked on the
// platform that made it, so a remote verifier learns nothing from it alone:
// its fields count only where they equal a signed TD quote's body.
type TDReport struct {
	// ReportType is REPORTTYPE: type (0x81 for TDX), subtype, version
	// (0 for TDX 1.0, 1 for TDX 1.5), reserved.
	ReportType     [4]byte
	CPUSVN         [16]byte
	TEETCBInfoHash [48]byte
	TEEInfoHash    [48]byte
	ReportData     [tdxquote.ReportDataSize]byte
	MAC            [32]byte

	// TEE_TCB_INFO: which fields are valid, then the TDX module's identity.
	TCBInfoValid   [8]byte
	TEETCBSVN      [16]byte
	MRSEAM         [tdxquote.MeasurementSize]byte
	MRSignerSEAM   [tdxquote.MeasurementSize]byte
	SEAMAttributes [8]byte
	TEETCBSVN2     [16]byte

	// TDINFO: the TD's measurements and configuration.
	TDAttributes  [8]byte
	XFAM          [8]byte
	MRTD          [tdxquote.MeasurementSize]byte
	MRConfigID    [tdxquote.MeasurementSize]byte
	MROwner       [tdxquote.MeasurementSize]byte
	MROwnerConfig [tdxquote.MeasurementSize]byte
	RTMR          [4][tdxquote.MeasurementSize]byte
	ServTDHash    [tdxquote.MeasurementSize]byte
}

// ParseTDReport parses a TDREPORT_STRUCT. It insists on the size and on a
// TDX report type; the reserved bytes are not read.
func ParseTDReport(b []byte) (*TDReport, error) {
	if len(b) != TDReportSize {
		return nil, fmt.Errorf("TD report is %d bytes, want %d", len(b), TDReportSize)
	}
	if b[offReportType] != reportTypeTDX {
		return nil, fmt.Errorf("TD report REPORTTYPE.TYPE is 0x%02x, want 0x%02x (TDX)", b[offReportType], reportTypeTDX)
	}
	r := &TDReport{}
	copy(r.ReportType[:], b[offReportType:])
	copy(r.CPUSVN[:], b[offCPUSVN:])
	copy(r.TEETCBInfoHash[:], b[offTEETCBInfoHash:])
	copy(r.TEEInfoHash[:], b[offTEEInfoHash:])
	copy(r.ReportData[:], b[offReportData:])
	copy(r.MAC[:], b[offMAC:])
	copy(r.TCBInfoValid[:], b[offTCBValid:])
	copy(r.TEETCBSVN[:], b[offTEETCBSVN:])
	copy(r.MRSEAM[:], b[offMRSEAM:])
	copy(r.MRSignerSEAM[:], b[offMRSignerSM:])
	copy(r.SEAMAttributes[:], b[offSEAMAttrs:])
	copy(r.TEETCBSVN2[:], b[offTEETCBSVN2:])
	copy(r.TDAttributes[:], b[offTDAttrs:])
	copy(r.XFAM[:], b[offXFAM:])
	copy(r.MRTD[:], b[offMRTD:])
	copy(r.MRConfigID[:], b[offMRConfigID:])
	copy(r.MROwner[:], b[offMROwner:])
	copy(r.MROwnerConfig[:], b[offMROwnerConf:])
	for i := range r.RTMR {
		copy(r.RTMR[i][:], b[offRTMR+i*tdxquote.MeasurementSize:])
	}
	copy(r.ServTDHash[:], b[offServTDHash:])
	return r, nil
}

// bodyField is one field a TD quote's body copies from the TD report.
type bodyField struct {
	name          string
	report, quote []byte
}

// MatchQuoteBody compares every field a TD quote body carries with the
// report's, and names the first that differs. TDX 1.5 bodies add
// TEE_TCB_SVN2 and MRSERVICETD; for older bodies those are not compared
// (the quote does not carry them). The verifier's td_report_match check;
// an agent runs it too, to refuse a metadata service's answer for another
// report before sending it.
func (r *TDReport) MatchQuoteBody(q *tdxquote.Quote) error {
	b := &q.Body
	fields := []bodyField{
		{"tee_tcb_svn", r.TEETCBSVN[:], b.TEETCBSVN[:]},
		{"mrseam", r.MRSEAM[:], b.MRSEAM[:]},
		{"mrsignerseam", r.MRSignerSEAM[:], b.MRSignerSEAM[:]},
		{"seam_attributes", r.SEAMAttributes[:], b.SEAMAttributes[:]},
		{"td_attributes", r.TDAttributes[:], b.TDAttributes[:]},
		{"xfam", r.XFAM[:], b.XFAM[:]},
		{"mrtd", r.MRTD[:], b.MRTD[:]},
		{"mrconfigid", r.MRConfigID[:], b.MRConfigID[:]},
		{"mrowner", r.MROwner[:], b.MROwner[:]},
		{"mrownerconfig", r.MROwnerConfig[:], b.MROwnerConfig[:]},
	}
	for i := range r.RTMR {
		fields = append(fields, bodyField{fmt.Sprintf("rtmr%d", i), r.RTMR[i][:], b.RTMR[i][:]})
	}
	fields = append(fields, bodyField{"report_data", r.ReportData[:], b.ReportData[:]})
	if q.TDX15() {
		fields = append(fields,
			bodyField{"tee_tcb_svn2", r.TEETCBSVN2[:], b.TEETCBSVN2[:]},
			bodyField{"mrservicetd", r.ServTDHash[:], b.MRServiceTD[:]})
	}
	for _, f := range fields {
		if string(f.report) != string(f.quote) {
			return fmt.Errorf("the HCL report's TD report has %s %x, the TD quote %x: the quote is not for this report (another TD, or another report of this one)", f.name, f.report, f.quote)
		}
	}
	return nil
}
