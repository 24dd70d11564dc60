package pki

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// QEVendorID is the QE vendor ID the simulated quoting enclave puts into every quote
// header: the ASCII bytes "CCNP-SIM-NOTINTL". Intel's QE uses
// 939a7233f79c4ca9940a0db3957f0607, so a sim quote is recognisable from its first
// 28 bytes even before its certificate chain is looked at.
const QEVendorID = "CCNP-SIM-NOTINTL"

// SimulationOU is the organizational unit every simulated certificate carries in its
// subject. go-tdx-guest checks only the common names, so the marker costs nothing and
// tells anyone reading the chain that no Intel key signed it.
const SimulationOU = "CCNP-SPIRE SIMULATION - NOT INTEL"

// Platform describes the simulated machine as Intel's PKI and PCS see it: what the
// PCK certificate's SGX extension says, what the TDX module reports about itself, and
// the identity of the quoting enclave. It is fixed when the PKI is created because the
// PCK certificate encodes part of it.
type Platform struct {
	// FMSPC names the platform family; TCB info is looked up by it.
	FMSPC Hex `json:"fmspc"`
	// PCEID identifies the provisioning certification enclave.
	PCEID Hex `json:"pce_id"`
	// PPID is the platform provisioning ID in the PCK certificate.
	PPID Hex `json:"ppid"`
	// CPUSVN holds the 16 SGX TCB component SVNs.
	CPUSVN Hex `json:"cpu_svn"`
	// PCESVN is the PCE security version.
	PCESVN uint16 `json:"pce_svn"`

	// TeeTCBSVN is the TDX module's TCB SVN array (16 bytes). Byte 1 stays 0 so that
	// TCB info needs no tdxModuleIdentities entry.
	TeeTCBSVN Hex `json:"tee_tcb_svn"`
	// MRSEAM measures the (simulated) TDX module.
	MRSEAM Hex `json:"mrseam"`
	// MRSignerSeam is the TDX module signer; TCB info's tdxModule.mrsigner must equal it.
	MRSignerSeam Hex `json:"mrsigner_seam"`
	// SeamAttributes are the TDX module attributes (8 bytes).
	SeamAttributes Hex `json:"seam_attributes"`

	// QuoteVersion is the quote format the simulated QE mints: 4 (also when
	// zero), or 5 with the TDX 1.5 body (body type 3), as a TDX 1.5 module's
	// quotes are.
	QuoteVersion uint16 `json:"quote_version,omitempty"`
	// TeeTCBSVN2 (v5 only, 16 bytes) is the TEE TCB SVN of the module running
	// now; empty means TeeTCBSVN (no TD-preserving update happened).
	TeeTCBSVN2 Hex `json:"tee_tcb_svn2,omitempty"`
	// MRServiceTD (v5 only, 48 bytes) measures the service TDs bound to the
	// TD; empty means none (zeros). The simulator binds the same ones to
	// every TD of the platform.
	MRServiceTD Hex `json:"mrservicetd,omitempty"`

	// QESVN is the quoting enclave's ISV SVN; the QE identity's TCB levels match on it.
	QESVN uint16 `json:"qe_svn"`
	// QEProdID is the quoting enclave's ISV product ID.
	QEProdID uint16 `json:"qe_prod_id"`
	// QEMiscSelect is the QE report's MISCSELECT.
	QEMiscSelect uint32 `json:"qe_misc_select"`
	// QEAttributes is the QE report's ATTRIBUTES (16 bytes).
	QEAttributes Hex `json:"qe_attributes"`
	// QEMREnclave is the QE's MRENCLAVE (32 bytes).
	QEMREnclave Hex `json:"qe_mrenclave"`
	// QEMRSigner is the QE's MRSIGNER (32 bytes); the QE identity must list it.
	QEMRSigner Hex `json:"qe_mrsigner"`
}

// Sizes of the fixed-size platform fields.
const (
	FMSPCSize          = 6
	PCEIDSize          = 2
	PPIDSize           = 16
	CPUSVNSize         = 16
	TeeTCBSVNSize      = 16
	MRSize             = 48
	SeamAttributesSize = 8
	QEAttributesSize   = 16
	QEMRSize           = 32
)

// DefaultPlatform returns the platform every sim uses unless told otherwise. Values
// are derived from fixed labels so that they are stable across runs and obviously not
// taken from real hardware (the FMSPC spells "SIM").
func DefaultPlatform() Platform {
	seam := sha512.Sum384([]byte("ccnp-spire simulated TDX module"))
	seamSigner := sha512.Sum384([]byte("ccnp-spire simulated TDX module signer"))
	qeEnclave := sha256.Sum256([]byte("ccnp-spire simulated TD quoting enclave"))
	qeSigner := sha256.Sum256([]byte("ccnp-spire simulated TD quoting enclave signer"))
	return Platform{
		FMSPC:          Hex{'S', 'I', 'M', 0, 0, 0},
		PCEID:          Hex{0, 0},
		PPID:           Hex([]byte("ccnp-sim-ppid-01")),
		CPUSVN:         Hex{3, 3, 2, 2, 4, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0},
		PCESVN:         13,
		TeeTCBSVN:      Hex{5, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		MRSEAM:         Hex(seam[:]),
		MRSignerSeam:   Hex(seamSigner[:]),
		SeamAttributes: make(Hex, SeamAttributesSize),
		QESVN:          8,
		QEProdID:       2,
		QEMiscSelect:   0,
		QEAttributes:   Hex{0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		QEMREnclave:    Hex(qeEnclave[:]),
		QEMRSigner:     Hex(qeSigner[:]),
	}
}

// Validate checks every field's size.
func (p *Platform) Validate() error {
	for _, f := range []struct {
		name string
		v    Hex
		size int
	}{
		{"fmspc", p.FMSPC, FMSPCSize},
		{"pce_id", p.PCEID, PCEIDSize},
		{"ppid", p.PPID, PPIDSize},
		{"cpu_svn", p.CPUSVN, CPUSVNSize},
		{"tee_tcb_svn", p.TeeTCBSVN, TeeTCBSVNSize},
		{"mrseam", p.MRSEAM, MRSize},
		{"mrsigner_seam", p.MRSignerSeam, MRSize},
		{"seam_attributes", p.SeamAttributes, SeamAttributesSize},
		{"qe_attributes", p.QEAttributes, QEAttributesSize},
		{"qe_mrenclave", p.QEMREnclave, QEMRSize},
		{"qe_mrsigner", p.QEMRSigner, QEMRSize},
	} {
		if len(f.v) != f.size {
			return fmt.Errorf("platform field %s: %d bytes, want %d", f.name, len(f.v), f.size)
		}
	}
	switch p.QuoteVersion {
	case 0, QuoteVersion, QuoteVersion5:
	default:
		return fmt.Errorf("platform field quote_version: %d, want %d or %d", p.QuoteVersion, QuoteVersion, QuoteVersion5)
	}
	for _, f := range []struct {
		name string
		v    Hex
		size int
	}{{"tee_tcb_svn2", p.TeeTCBSVN2, TeeTCBSVNSize}, {"mrservicetd", p.MRServiceTD, MRSize}} {
		if len(f.v) != 0 && (len(f.v) != f.size || p.QuoteVersion != QuoteVersion5) {
			return fmt.Errorf("platform field %s: %d bytes, want %d, and only with quote_version %d", f.name, len(f.v), f.size, QuoteVersion5)
		}
	}
	return nil
}

// ParsePlatform decodes and validates a platform file.
func ParsePlatform(b []byte) (Platform, error) {
	if len(b) > maxPlatformFile {
		return Platform{}, fmt.Errorf("platform file: %d bytes, limit %d", len(b), maxPlatformFile)
	}
	var p Platform
	if err := json.Unmarshal(b, &p); err != nil {
		return Platform{}, fmt.Errorf("platform file: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Platform{}, err
	}
	return p, nil
}

// maxPlatformFile bounds platform.json: the real one is under 1 KiB.
const maxPlatformFile = 64 << 10

// Hex is a byte string that JSON encodes as lower-case hex, the way Intel's PCS writes
// binary fields.
type Hex []byte

// MarshalText encodes h as lower-case hex.
func (h Hex) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h)), nil
}

// UnmarshalText decodes hex (either case).
func (h *Hex) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("hex field: %w", err)
	}
	*h = v
	return nil
}

// String returns the lower-case hex.
func (h Hex) String() string { return hex.EncodeToString(h) }
