package azuretdx

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Layout of the report Azure's paravisor (the HCL) writes to the vTPM's NV
// index HCLReportNVIndex: an attestation header (8 little-endian u32:
// "HCLA", version, report size, request type, status, 3 reserved), the
// hardware report in a slot sized for the larger of a TDREPORT and an SNP
// report (1184 bytes), then the IGVM request data (5 u32: data size,
// version, report type, hash type of REPORTDATA, runtime data size) and the
// runtime data itself, a JSON document. The NV index is padded past the end.
const (
	// HCLReportNVIndex is the vTPM NV index the paravisor keeps the
	// report in.
	HCLReportNVIndex = 0x01400001

	// MaxHCLReportSize bounds the input: real reports are 2600 bytes (the
	// NV index size); the runtime data is a few KiB at most.
	MaxHCLReportSize = 16 << 10

	hclHeaderSize     = 32
	hclHWReportSize   = 1184
	hclReqDataOffset  = hclHeaderSize + hclHWReportSize
	hclReqDataSize    = 20
	hclRuntimeOffset  = hclReqDataOffset + hclReqDataSize
	hclMagic          = "HCLA"
	hclVersion        = 2
	hclReqDataVersion = 1

	// HCL report types (IGVM request data): which hardware report the
	// slot holds.
	hclReportTypeSNP = 2
	hclReportTypeTDX = 4
)

// HashType is the IGVM hash type of the runtime data: the hash of the
// runtime data that starts REPORTDATA.
type HashType uint32

// The IGVM hash types.
const (
	HashSHA256 HashType = 1
	HashSHA384 HashType = 2
	HashSHA512 HashType = 3
)

// Hash returns the hash function, or an error for a type this package does
// not know (0 is "invalid" in IGVM).
func (h HashType) Hash() (crypto.Hash, error) {
	switch h {
	case HashSHA256:
		return crypto.SHA256, nil
	case HashSHA384:
		return crypto.SHA384, nil
	case HashSHA512:
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("runtime data hash type %d is not SHA-256 (1), SHA-384 (2) or SHA-512 (3)", uint32(h))
}

func (h HashType) String() string {
	if c, err := h.Hash(); err == nil {
		return c.String()
	}
	return fmt.Sprintf("hash type %d", uint32(h))
}

// HCLReport is a parsed HCL report of a TDX confidential VM.
type HCLReport struct {
	// Version, ReportSize, RequestType and Status are the attestation
	// header's. ReportSize counts the bytes up to the end of the runtime
	// data.
	Version     uint32
	ReportSize  uint32
	RequestType uint32
	Status      uint32
	// TDReport is the embedded TDREPORT; TDReportRaw its bytes.
	TDReport    *TDReport
	TDReportRaw []byte
	// HashType says how RuntimeData is hashed into REPORTDATA.
	HashType HashType
	// RuntimeData is the paravisor's JSON document (the AK, user data, VM
	// configuration), exactly as hashed into REPORTDATA.
	RuntimeData []byte
}

// ParseHCLReport parses the HCL report read from the vTPM's NV index. It
// refuses anything but a TDX report with a successful status, and checks
// that the header's sizes agree with each other and with the input; the
// runtime data is not interpreted here (see ParseRuntimeData).
func ParseHCLReport(raw []byte) (*HCLReport, error) {
	if len(raw) > MaxHCLReportSize {
		return nil, fmt.Errorf("HCL report is %d bytes, more than the %d allowed", len(raw), MaxHCLReportSize)
	}
	if len(raw) < len(hclMagic) || !bytes.Equal(raw[:len(hclMagic)], []byte(hclMagic)) {
		return nil, fmt.Errorf("%w: it starts with %x, not %q", ErrNotHCLReport, raw[:min(len(raw), len(hclMagic))], hclMagic)
	}
	if len(raw) < hclRuntimeOffset {
		return nil, fmt.Errorf("HCL report is %d bytes, shorter than its fixed part (%d)", len(raw), hclRuntimeOffset)
	}
	u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(raw[off:]) }
	r := &HCLReport{Version: u32(4), ReportSize: u32(8), RequestType: u32(12), Status: u32(16)}
	if r.Version != hclVersion {
		return nil, fmt.Errorf("HCL report header version %d: this verifier reads version %d", r.Version, hclVersion)
	}
	if r.Status != 0 {
		return nil, fmt.Errorf("HCL report header status is 0x%x: the paravisor did not produce a valid report", r.Status)
	}
	dataSize, reqVersion, reportType, hashType, runtimeSize :=
		u32(hclReqDataOffset), u32(hclReqDataOffset+4), u32(hclReqDataOffset+8), HashType(u32(hclReqDataOffset+12)), u32(hclReqDataOffset+16)
	if reqVersion != hclReqDataVersion {
		return nil, fmt.Errorf("HCL request data version %d (at offset %d): this verifier reads version %d", reqVersion, hclReqDataOffset+4, hclReqDataVersion)
	}
	switch reportType {
	case hclReportTypeTDX:
	case hclReportTypeSNP:
		return nil, fmt.Errorf("%w (report type 2): this verifier reads TDX ones (report type 4)", ErrSNPReport)
	default:
		return nil, fmt.Errorf("HCL report type %d (at offset %d) is not TDX (4)", reportType, hclReqDataOffset+8)
	}
	if _, err := hashType.Hash(); err != nil {
		return nil, fmt.Errorf("HCL request data (offset %d): %w", hclReqDataOffset+12, err)
	}
	// Sizes: compare in uint64 so no u32 from the input can wrap.
	if uint64(runtimeSize) > uint64(len(raw)-hclRuntimeOffset) {
		return nil, fmt.Errorf("HCL runtime data size %d runs past the report's %d bytes", runtimeSize, len(raw))
	}
	if uint64(dataSize) != hclReqDataSize+uint64(runtimeSize) {
		return nil, fmt.Errorf("HCL request data size %d is not %d + the runtime data size %d", dataSize, hclReqDataSize, runtimeSize)
	}
	if uint64(r.ReportSize) != hclRuntimeOffset+uint64(runtimeSize) {
		return nil, fmt.Errorf("HCL report header size %d is not where the runtime data ends (%d)", r.ReportSize, hclRuntimeOffset+uint64(runtimeSize))
	}
	if runtimeSize == 0 {
		return nil, errors.New("HCL report carries no runtime data: there is no attestation key to check the vTPM quote with")
	}
	r.TDReportRaw = bytes.Clone(raw[hclHeaderSize : hclHeaderSize+TDReportSize])
	td, err := ParseTDReport(r.TDReportRaw)
	if err != nil {
		return nil, fmt.Errorf("HCL report (offset %d): %w", hclHeaderSize, err)
	}
	r.TDReport, r.HashType = td, hashType
	r.RuntimeData = bytes.Clone(raw[hclRuntimeOffset : hclRuntimeOffset+int(runtimeSize)])
	return r, nil
}

// ErrNotHCLReport says the bytes are not an HCL report at all (no "HCLA"
// header): an agent may take such a vTPM for a plain TPM. Every other
// ParseHCLReport error is about an HCL report it cannot read, which must
// not be mistaken for the absence of one.
var ErrNotHCLReport = errors.New("not an HCL report")

// ErrSNPReport says the HCL report is an AMD SEV-SNP paravisor's: an Azure
// confidential VM, but not a TDX one.
var ErrSNPReport = errors.New("HCL report holds an AMD SEV-SNP report")

// AKKeyID is the JWK key ID of the vTPM attestation key in the runtime data.
const AKKeyID = "HCLAkPub"

// RuntimeData is what the paravisor's runtime data says.
type RuntimeData struct {
	// AK is the vTPM attestation key (kid HCLAkPub): the key the vTPM
	// quotes with.
	AK *rsa.PublicKey
	// KeyIDs lists every key's kid, in order (HCLAkPub, HCLEkPub on Azure).
	KeyIDs []string
	// UserData is the "user-data" the guest asked the paravisor to bind
	// (hex in the JSON); nil when absent.
	UserData []byte
	// VMConfiguration is what the paravisor reports about the VM's
	// configuration; nil when absent. It is the paravisor's word, bound
	// into the TD quote's REPORTDATA.
	VMConfiguration *VMConfiguration
}

// VMConfiguration is the runtime data's "vm-configuration" object.
type VMConfiguration struct {
	ConsoleEnabled     bool   `json:"console-enabled"`
	SecureBoot         bool   `json:"secure-boot"`
	TPMEnabled         bool   `json:"tpm-enabled"`
	TPMPersisted       bool   `json:"tpm-persisted"`
	RootCertThumbprint string `json:"root-cert-thumbprint"`
	VMUniqueID         string `json:"vmUniqueId"`
}

// jwk is the subset of a JSON Web Key (RFC 7517/7518) the runtime data uses.
type jwk struct {
	KeyID  string   `json:"kid"`
	Type   string   `json:"kty"`
	KeyOps []string `json:"key_ops"`
	N      string   `json:"n"`
	E      string   `json:"e"`
}

type runtimeJSON struct {
	Keys            []jwk            `json:"keys"`
	UserData        *string          `json:"user-data"`
	VMConfiguration *VMConfiguration `json:"vm-configuration"`
}

// AK sizes the vTPM's RSA attestation key may have.
const (
	minAKBits = 2048
	maxAKBits = 4096
)

// ParseRuntimeData parses the runtime data's JSON and extracts the
// attestation key. Exactly one key must carry kid HCLAkPub, and it must be
// an RSA key of 2048 to 4096 bits with a sane public exponent: a second
// HCLAkPub would leave the choice of key to whoever reads first.
func ParseRuntimeData(b []byte) (*RuntimeData, error) {
	var j runtimeJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("runtime data is not the expected JSON: %w", err)
	}
	if rest := bytes.TrimRight(b[dec.InputOffset():], " \t\r\n\x00"); len(rest) > 0 {
		return nil, fmt.Errorf("runtime data has %d bytes after its JSON document", len(rest))
	}
	rd := &RuntimeData{VMConfiguration: j.VMConfiguration}
	var ak *jwk
	for i := range j.Keys {
		k := &j.Keys[i]
		rd.KeyIDs = append(rd.KeyIDs, k.KeyID)
		if k.KeyID != AKKeyID {
			continue
		}
		if ak != nil {
			return nil, fmt.Errorf("runtime data holds more than one key with kid %q", AKKeyID)
		}
		ak = k
	}
	if ak == nil {
		return nil, fmt.Errorf("runtime data holds no key with kid %q (kids: %q)", AKKeyID, rd.KeyIDs)
	}
	pub, err := rsaFromJWK(ak)
	if err != nil {
		return nil, fmt.Errorf("runtime data key %q: %w", AKKeyID, err)
	}
	rd.AK = pub
	if j.UserData != nil {
		if rd.UserData, err = hex.DecodeString(*j.UserData); err != nil {
			return nil, fmt.Errorf("runtime data user-data is not hex: %w", err)
		}
	}
	return rd, nil
}

func rsaFromJWK(k *jwk) (*rsa.PublicKey, error) {
	if k.Type != "RSA" {
		return nil, fmt.Errorf("key type %q, want RSA", k.Type)
	}
	// RFC 7518: base64url without padding, no leading zero octets.
	n, err := base64.RawURLEncoding.Strict().DecodeString(k.N)
	if err != nil {
		return nil, fmt.Errorf("modulus n is not base64url: %w", err)
	}
	e, err := base64.RawURLEncoding.Strict().DecodeString(k.E)
	if err != nil {
		return nil, fmt.Errorf("exponent e is not base64url: %w", err)
	}
	if len(n) == 0 || n[0] == 0 {
		return nil, errors.New("modulus n is empty or has a leading zero octet")
	}
	bits := len(n) * 8
	if bits < minAKBits || bits > maxAKBits || bits%1024 != 0 {
		return nil, fmt.Errorf("modulus is %d bits, want 2048, 3072 or 4096", bits)
	}
	if len(e) == 0 || len(e) > 4 || e[0] == 0 {
		return nil, fmt.Errorf("exponent e is %d bytes: want 1 to 4 without a leading zero", len(e))
	}
	ev := new(big.Int).SetBytes(e).Int64()
	if ev < 3 || ev%2 == 0 {
		return nil, fmt.Errorf("exponent %d is not an odd number above 1", ev)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}, nil
}
