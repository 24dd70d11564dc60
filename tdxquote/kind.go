package tdxquote

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Sizes and markers of the evidence operators most often pass where a TDX
// quote belongs. They are only recognised here, to name them in an error;
// nothing else of them is read.
const (
	// TDReportSize is a TDREPORT_STRUCT, what TDG.MR.REPORT (and
	// /dev/tdx_guest's TDX_CMD_GET_REPORT0) return: a local report only
	// the same platform can check, not a quote.
	TDReportSize = 1024
	// tdReportTypeTDX is REPORTTYPE.TYPE, the first byte of a TDREPORT.
	tdReportTypeTDX = 0x81

	// tpmGenerated is TPM_GENERATED_VALUE, the magic that starts every
	// TPMS_ATTEST (big-endian, as TPM structures are).
	tpmGenerated = 0xff544347
	// hclReportMagic starts the report Azure's paravisor (HCL) writes to
	// the vTPM's NV index: "HCLA", a header, then the TDREPORT or SNP report.
	hclReportMagic = "HCLA"
)

// wrongEvidence names raw when it is recognisably something other than a
// TDX quote, in one line that says what to give instead; nil otherwise (raw
// may still be a malformed quote, which the parser then reports).
func wrongEvidence(raw []byte) error {
	why := ""
	switch {
	case len(raw) >= 4 && binary.BigEndian.Uint32(raw) == tpmGenerated,
		len(raw) >= 6 && binary.BigEndian.Uint32(raw[2:]) == tpmGenerated:
		// A bare TPMS_ATTEST, or a TPM2B_ATTEST with its u16 size first.
		typ := "attestation"
		off := 4
		if binary.BigEndian.Uint32(raw) != tpmGenerated {
			off = 6
		}
		if len(raw) >= off+2 && binary.BigEndian.Uint16(raw[off:]) == 0x8018 {
			typ = "quote (TPM_ST_ATTEST_QUOTE)"
		}
		why = fmt.Sprintf("looks like a TPM %s: a TPMS_ATTEST (TPM_GENERATED magic ff544347), which belongs in TPM evidence; a TDX quote is needed here", typ)
	case bytes.HasPrefix(raw, []byte(hclReportMagic)):
		why = "looks like an Azure HCL report (\"HCLA\" header, a TDREPORT or SNP report inside, read from the vTPM): it is not signed for a remote verifier; the TD quote the paravisor obtains for it is needed here"
	case len(raw) == TDReportSize && raw[0] == tdReportTypeTDX:
		why = fmt.Sprintf("looks like a TDREPORT (%d bytes, REPORTTYPE 0x%02x): a local report that only this platform can check; a quote is needed (from configfs-tsm or the quote generation service)", TDReportSize, tdReportTypeTDX)
	case len(raw) > 0 && printable(raw):
		first := raw[0]
		kind := "text"
		switch {
		case first == '{' || first == '[':
			kind = "JSON text"
		case bytes.HasPrefix(raw, []byte("-----BEGIN")):
			kind = "PEM text"
		}
		why = fmt.Sprintf("looks like %s, not a binary quote: decode it (hex, base64 or the JSON around it) and give the quote's bytes", kind)
	default:
		return nil
	}
	return formatErr("quote", 0, ErrWrongEvidence, "%s", why)
}

// printable reports whether the first bytes of b are all printable ASCII or
// whitespace: a binary quote starts with its little-endian version (a NUL
// as its second byte).
func printable(b []byte) bool {
	n := min(len(b), 64)
	for _, c := range b[:n] {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}
