package cctrusted

import (
	"crypto/sha512"
	"fmt"
)

// TEE names a kind of trusted execution environment.
type TEE string

// The TEEs a Provider can be.
const (
	TEETDX TEE = "tdx"
	TEETPM TEE = "tpm"
	TEESim TEE = "sim"
	// TEEAzureTDX is an Azure TDX confidential VM: a TD whose guest reaches
	// TDX only through the paravisor's vTPM (HCL report, TD quote from the
	// instance metadata service, vTPM quotes).
	TEEAzureTDX TEE = "azure_tdx"
)

// ReportDataSize is the size of TDX REPORTDATA and of the TPM quote extraData
// this project uses.
const ReportDataSize = 64

// ReportData binds a nonce and user data into a report:
// SHA-512(nonce || userData).
func ReportData(nonce, userData []byte) [ReportDataSize]byte {
	h := sha512.New()
	h.Write(nonce)
	h.Write(userData)
	var out [ReportDataSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Report is evidence signed by the TEE.
type Report struct {
	TEE TEE
	// ReportData is what the report binds (TDX REPORTDATA, TPM extraData).
	ReportData []byte
	// Quote is a TDX quote (v4), or a TPM TPMS_ATTEST structure.
	Quote []byte
	// Signature is the TPMT_SIGNATURE over Quote (TPM only).
	Signature []byte
	// Registers holds register values the report covers when they are not
	// inside Quote itself (TPM PCRs: the quote only carries their digest).
	Registers Registers
}

// Registers maps a register and a bank to its value.
type Registers map[IMR]map[Algorithm][]byte

// Get returns the value of m in bank alg.
func (r Registers) Get(m IMR, alg Algorithm) ([]byte, bool) {
	b, ok := r[m]
	if !ok {
		return nil, false
	}
	v, ok := b[alg]
	return v, ok
}

// Set stores a copy of v as m's value in bank alg.
func (r Registers) Set(m IMR, alg Algorithm, v []byte) {
	b, ok := r[m]
	if !ok {
		b = make(map[Algorithm][]byte)
		r[m] = b
	}
	b[alg] = append([]byte(nil), v...)
}

// CheckReportData returns an error unless rd is exactly
// SHA-512(nonce || userData).
func CheckReportData(rd, nonce, userData []byte) error {
	want := ReportData(nonce, userData)
	if len(rd) != ReportDataSize || string(rd) != string(want[:]) {
		return fmt.Errorf("cctrusted: report data %x does not bind the nonce (want %x)", rd, want)
	}
	return nil
}
