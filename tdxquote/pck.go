package tdxquote

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tdx-guest/pcs"
)

// PCKInfo is what the PCK leaf's SGX extension (OID 1.2.840.113741.1.13.1)
// says about the platform the key belongs to.
// TCB info collateral is looked up by FMSPC and matched against these SVNs.
type PCKInfo struct {
	FMSPC  [6]byte
	PCEID  [2]byte
	PPID   []byte
	CPUSVN [16]byte
	// SGXTCBComponents are SGX TCB component SVNs 1..16.
	SGXTCBComponents [16]byte
	PCESVN           uint16
}

// parsePCKInfo decodes the SGX extension through go-tdx-guest's pcs package,
// the same decoder the verification library uses, so the values the
// project shows and matches are those the library checked.
func parsePCKInfo(leaf *x509.Certificate) (*PCKInfo, error) {
	ext, err := pcs.PckCertificateExtensions(leaf)
	if err != nil {
		return nil, fmt.Errorf("SGX extension (OID 1.2.840.113741.1.13.1): %w", err)
	}
	info := &PCKInfo{PCESVN: ext.TCB.PCESvn}
	if err := decodeFixed("FMSPC", ext.FMSPC, info.FMSPC[:]); err != nil {
		return nil, err
	}
	if err := decodeFixed("PCEID", ext.PCEID, info.PCEID[:]); err != nil {
		return nil, err
	}
	if info.PPID, err = hex.DecodeString(ext.PPID); err != nil {
		return nil, fmt.Errorf("SGX extension PPID: %w", err)
	}
	if len(ext.TCB.CPUSvnComponents) != len(info.SGXTCBComponents) {
		return nil, fmt.Errorf("SGX extension: %d TCB components, want %d", len(ext.TCB.CPUSvnComponents), len(info.SGXTCBComponents))
	}
	copy(info.SGXTCBComponents[:], ext.TCB.CPUSvnComponents)
	if len(ext.TCB.CPUSvn) != 0 && len(ext.TCB.CPUSvn) != len(info.CPUSVN) {
		return nil, fmt.Errorf("SGX extension CPUSVN: %d bytes, want %d", len(ext.TCB.CPUSvn), len(info.CPUSVN))
	}
	copy(info.CPUSVN[:], ext.TCB.CPUSvn)
	return info, nil
}

func decodeFixed(field, h string, out []byte) error {
	b, err := hex.DecodeString(h)
	if err != nil {
		return fmt.Errorf("SGX extension %s: %w", field, err)
	}
	if len(b) != len(out) {
		return fmt.Errorf("SGX extension %s: %d bytes, want %d", field, len(b), len(out))
	}
	copy(out, b)
	return nil
}

// FMSPC returns the platform's FMSPC (family-model-stepping-platform-custom
// SKU) in lower-case hex: the key for TCB info.
func (q *Quote) FMSPC() string { return hex.EncodeToString(q.PCK.FMSPC[:]) }
