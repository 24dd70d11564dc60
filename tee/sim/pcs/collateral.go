// Package pcs is a simulated Intel Provisioning Certification Service for a simulated
// TDX platform (package tee/sim/pki): TCB info, QE identity, the PCK CRL and the root
// CRL, signed under the simulated root and served over HTTP at Intel's URL paths with
// Intel's issuer-chain headers, so go-tdx-guest's collateral fetcher runs unchanged
// against it.
//
// Collateral is signed when it is requested (issueDate = now, nextUpdate = now +
// Validity), from the PKI and the parameters Init stored in the sim directory, so a
// long-running demo never serves stale collateral.
package pcs

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"path/filepath"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

// Layout inside a sim directory.
const (
	// PKIDir is where package pki keeps the simulated PKI.
	PKIDir = "pki"
	// ParamsFile holds the collateral parameters.
	ParamsFile = "pcs.json"
)

// DefaultValidity is how long issued collateral and CRLs stay valid.
const DefaultValidity = 30 * 24 * time.Hour

// TCBStatuses returns the TCB statuses Intel's PCS uses, in the spelling of TCB info.
func TCBStatuses() []string {
	return []string{
		"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
		"OutOfDate", "OutOfDateConfigurationNeeded", "Revoked",
	}
}

// Params chooses what the simulated PCS says about the platform.
type Params struct {
	// TCBStatus is the status of the TCB level the platform matches (one of
	// TCBStatuses()). A status other than UpToDate also puts a higher UpToDate level
	// first, as Intel's TCB info does, so verifiers must really match levels.
	TCBStatus string `json:"tcb_status"`
	// RevokePCK lists the platform's PCK certificate on the PCK CRL.
	RevokePCK bool `json:"revoke_pck,omitempty"`
	// RevokePlatformCA lists the PCK platform CA on the root CRL.
	RevokePlatformCA bool `json:"revoke_platform_ca,omitempty"`
	// ValiditySeconds is the lifetime of issued collateral; 0 means DefaultValidity.
	ValiditySeconds int64 `json:"validity_seconds,omitempty"`
	// TCBEvaluationDataNumber is the tcbEvaluationDataNumber of the TCB info;
	// 0 means DefaultTCBEvaluationDataNumber. A lower number than a verifier's
	// minimum plays a PCCS still serving collateral from before a TCB recovery.
	TCBEvaluationDataNumber uint32 `json:"tcb_evaluation_data_number,omitempty"`
	// QEEvaluationDataNumber is the tcbEvaluationDataNumber of the QE
	// identity; 0 means the TCB info's.
	QEEvaluationDataNumber uint32 `json:"qe_evaluation_data_number,omitempty"`
	// AdvisoryIDs are the advisoryIDs of the TCB level the platform
	// matches; empty means DefaultAdvisoryID on a level that is not
	// UpToDate and none on an UpToDate one. They are not checked against
	// Intel's format, so tests can serve malformed ones.
	AdvisoryIDs []string `json:"advisory_ids,omitempty"`
}

// DefaultTCBEvaluationDataNumber is the evaluation data number of the
// simulated collateral unless Params choose another.
const DefaultTCBEvaluationDataNumber = 17

// DefaultAdvisoryID is the advisory a simulated TCB level that is not
// UpToDate carries unless Params choose others: Intel's format, a number
// no Intel advisory has.
const DefaultAdvisoryID = "INTEL-SA-00000"

// Bounds of Params.AdvisoryIDs.
const (
	maxAdvisoryIDs   = 64
	maxAdvisoryIDLen = 64
)

// Validate checks the status spelling and the validity.
func (p *Params) Validate() error {
	ok := false
	for _, s := range TCBStatuses() {
		ok = ok || p.TCBStatus == s
	}
	if !ok {
		return fmt.Errorf("pcs: tcb_status %q is not one of %v", p.TCBStatus, TCBStatuses())
	}
	if p.ValiditySeconds < 0 {
		return fmt.Errorf("pcs: validity_seconds %d is negative", p.ValiditySeconds)
	}
	if len(p.AdvisoryIDs) > maxAdvisoryIDs {
		return fmt.Errorf("pcs: %d advisory_ids, limit %d", len(p.AdvisoryIDs), maxAdvisoryIDs)
	}
	for i, a := range p.AdvisoryIDs {
		if a == "" || len(a) > maxAdvisoryIDLen {
			return fmt.Errorf("pcs: advisory_ids[%d]: %d bytes, want 1..%d", i, len(a), maxAdvisoryIDLen)
		}
	}
	return nil
}

func (p *Params) tcbEvaluationDataNumber() uint32 {
	if p.TCBEvaluationDataNumber == 0 {
		return DefaultTCBEvaluationDataNumber
	}
	return p.TCBEvaluationDataNumber
}

func (p *Params) qeEvaluationDataNumber() uint32 {
	if p.QEEvaluationDataNumber == 0 {
		return p.tcbEvaluationDataNumber()
	}
	return p.QEEvaluationDataNumber
}

func (p *Params) validity() time.Duration {
	if p.ValiditySeconds == 0 {
		return DefaultValidity
	}
	return time.Duration(p.ValiditySeconds) * time.Second
}

// maxParamsFile bounds pcs.json; the real one is under 200 bytes.
const maxParamsFile = 16 << 10

// ParseParams decodes and validates a parameters file.
func ParseParams(b []byte) (Params, error) {
	if len(b) > maxParamsFile {
		return Params{}, fmt.Errorf("pcs: params: %d bytes, limit %d", len(b), maxParamsFile)
	}
	var p Params
	if err := json.Unmarshal(b, &p); err != nil {
		return Params{}, fmt.Errorf("pcs: params: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// WriteParams stores p in the sim directory dir, replacing any earlier parameters
// atomically (temporary file, fsync, rename).
func WriteParams(dir string, p Params) error {
	if err := p.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(&p, "", "  ")
	if err != nil {
		return fmt.Errorf("pcs: encode params: %w", err)
	}
	return writeAtomic(filepath.Join(dir, ParamsFile), append(b, '\n'))
}

// LoadParams reads the parameters of the sim directory dir.
func LoadParams(dir string) (Params, error) {
	path := filepath.Join(dir, ParamsFile)
	b, err := readBounded(path, maxParamsFile)
	if err != nil {
		return Params{}, err
	}
	p, err := ParseParams(b)
	if err != nil {
		return Params{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Collateral is one issue of everything a verifier fetches from the PCS.
type Collateral struct {
	// FMSPC is the platform's FMSPC in lower-case hex, as it appears in the TCB info URL.
	FMSPC string
	// TCBInfo is the TCB info response body: {"tcbInfo":{...},"signature":"..."}.
	TCBInfo []byte
	// QEIdentity is the QE identity response body: {"enclaveIdentity":{...},"signature":"..."}.
	QEIdentity []byte
	// TCBIssuerChain is the PEM chain (TCB signing, root) of both JSON responses.
	TCBIssuerChain []byte
	// PCKCRL is the DER PCK CRL of the platform CA.
	PCKCRL []byte
	// PCKCRLIssuerChain is the PEM chain (platform CA, root) of the PCK CRL.
	PCKCRLIssuerChain []byte
	// RootCRL is the DER CRL of the root CA.
	RootCRL []byte
	// NextUpdate is when all of the above expire.
	NextUpdate time.Time
}

// Load reads the PKI and parameters of the sim directory dir and issues collateral
// valid from now.
func Load(dir string, now time.Time) (*Collateral, error) {
	auth, err := pki.Load(filepath.Join(dir, PKIDir))
	if err != nil {
		return nil, err
	}
	params, err := LoadParams(dir)
	if err != nil {
		return nil, err
	}
	return Build(auth, params, now)
}

// IssueSkew is how long before the request collateral says it was issued.
const IssueSkew = time.Minute

// Build issues collateral for auth's platform under params, valid from now.
func Build(auth *pki.Authority, params Params, now time.Time) (*Collateral, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	// Issued a little before the request: a verifier reads its clock before
	// it fetches, and real collateral is always issued well before it is served.
	issue := now.UTC().Add(-IssueSkew).Truncate(time.Second)
	next := issue.Add(params.validity())
	c := &Collateral{
		FMSPC:             hex.EncodeToString(auth.Platform.FMSPC),
		TCBIssuerChain:    auth.TCBSigningChainPEM(),
		PCKCRLIssuerChain: auth.PCKCRLIssuerChainPEM(),
		NextUpdate:        next,
	}
	var err error
	tcb, err := json.Marshal(tcbInfo(&auth.Platform, &params, issue, next))
	if err != nil {
		return nil, fmt.Errorf("pcs: encode TCB info: %w", err)
	}
	if c.TCBInfo, err = signedBody(auth, "tcbInfo", tcb); err != nil {
		return nil, err
	}
	qe, err := json.Marshal(qeIdentity(&auth.Platform, params.qeEvaluationDataNumber(), issue, next))
	if err != nil {
		return nil, fmt.Errorf("pcs: encode QE identity: %w", err)
	}
	if c.QEIdentity, err = signedBody(auth, "enclaveIdentity", qe); err != nil {
		return nil, err
	}
	var pckRevoked, rootRevoked []*big.Int
	if params.RevokePCK {
		pckRevoked = append(pckRevoked, auth.PCK.SerialNumber)
	}
	if params.RevokePlatformCA {
		rootRevoked = append(rootRevoked, auth.PlatformCA.SerialNumber)
	}
	if c.PCKCRL, err = auth.CreatePCKCRL(pckRevoked, issue, next); err != nil {
		return nil, err
	}
	if c.RootCRL, err = auth.CreateRootCRL(rootRevoked, issue, next); err != nil {
		return nil, err
	}
	return c, nil
}

// signedBody wraps raw JSON as {"<field>":raw,"signature":"<hex r||s>"}. The signature
// covers exactly the bytes of raw, which is what verifiers check, so raw is spliced in
// rather than re-encoded.
func signedBody(auth *pki.Authority, field string, raw []byte) ([]byte, error) {
	sig, err := auth.SignCollateral(raw)
	if err != nil {
		return nil, fmt.Errorf("pcs: sign %s: %w", field, err)
	}
	out := []byte(`{"` + field + `":`)
	out = append(out, raw...)
	out = append(out, `,"signature":"`+hex.EncodeToString(sig)+`"}`...)
	return out, nil
}

// JSON shapes of Intel's PCS v4 (TDX TCB info v3, TD QE identity v2). Times are
// written as Intel does: RFC 3339, UTC, whole seconds.

type tcbInfoJSON struct {
	ID                      string     `json:"id"`
	Version                 int        `json:"version"`
	IssueDate               string     `json:"issueDate"`
	NextUpdate              string     `json:"nextUpdate"`
	FMSPC                   string     `json:"fmspc"`
	PCEID                   string     `json:"pceId"`
	TCBType                 int        `json:"tcbType"`
	TCBEvaluationDataNumber uint32     `json:"tcbEvaluationDataNumber"`
	TDXModule               tdxModule  `json:"tdxModule"`
	TCBLevels               []tcbLevel `json:"tcbLevels"`
	Comment                 string     `json:"ccnpSimulation"`
}

type tdxModule struct {
	MRSigner       string `json:"mrsigner"`
	Attributes     string `json:"attributes"`
	AttributesMask string `json:"attributesMask"`
}

type tcbLevel struct {
	TCB         tcb      `json:"tcb"`
	TCBDate     string   `json:"tcbDate"`
	TCBStatus   string   `json:"tcbStatus"`
	AdvisoryIDs []string `json:"advisoryIDs,omitempty"`
}

type tcb struct {
	SGXComponents []component `json:"sgxtcbcomponents,omitempty"`
	PCESVN        *uint16     `json:"pcesvn,omitempty"`
	TDXComponents []component `json:"tdxtcbcomponents,omitempty"`
	ISVSVN        *uint16     `json:"isvsvn,omitempty"`
}

type component struct {
	SVN uint8 `json:"svn"`
}

type qeIdentityJSON struct {
	ID                      string     `json:"id"`
	Version                 int        `json:"version"`
	IssueDate               string     `json:"issueDate"`
	NextUpdate              string     `json:"nextUpdate"`
	TCBEvaluationDataNumber uint32     `json:"tcbEvaluationDataNumber"`
	MiscSelect              string     `json:"miscselect"`
	MiscSelectMask          string     `json:"miscselectMask"`
	Attributes              string     `json:"attributes"`
	AttributesMask          string     `json:"attributesMask"`
	MRSigner                string     `json:"mrsigner"`
	ISVProdID               uint16     `json:"isvprodid"`
	TCBLevels               []tcbLevel `json:"tcbLevels"`
}

// simulationNote goes into every JSON document the simulated PCS signs.
const simulationNote = "simulated by ccnp-spire tee/sim: not issued by Intel"

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func tcbInfo(p *pki.Platform, params *Params, issue, next time.Time) *tcbInfoJSON {
	status := params.TCBStatus
	level := func(cpu, tee []byte, pcesvn uint16, st string, advisories []string) tcbLevel {
		l := tcbLevel{TCBDate: stamp(issue.Add(-24 * time.Hour)), TCBStatus: st}
		for _, v := range cpu {
			l.TCB.SGXComponents = append(l.TCB.SGXComponents, component{SVN: v})
		}
		for _, v := range tee {
			l.TCB.TDXComponents = append(l.TCB.TDXComponents, component{SVN: v})
		}
		l.TCB.PCESVN = &pcesvn
		l.AdvisoryIDs = advisories
		return l
	}
	var levels []tcbLevel
	if status != "UpToDate" {
		// A newer TDX module (SVN one higher) would be UpToDate; this platform is not.
		newer := append([]byte{}, p.TeeTCBSVN...)
		newer[0]++
		levels = append(levels, level(p.CPUSVN, newer, p.PCESVN, "UpToDate", nil))
	}
	advisories := params.AdvisoryIDs
	if len(advisories) == 0 && status != "UpToDate" {
		advisories = []string{DefaultAdvisoryID}
	}
	levels = append(levels, level(p.CPUSVN, p.TeeTCBSVN, p.PCESVN, status, advisories))
	return &tcbInfoJSON{
		ID:                      "TDX",
		Version:                 3,
		IssueDate:               stamp(issue),
		NextUpdate:              stamp(next),
		FMSPC:                   hex.EncodeToString(p.FMSPC),
		PCEID:                   hex.EncodeToString(p.PCEID),
		TCBType:                 0,
		TCBEvaluationDataNumber: params.tcbEvaluationDataNumber(),
		TDXModule: tdxModule{
			MRSigner:       hex.EncodeToString(p.MRSignerSeam),
			Attributes:     hex.EncodeToString(p.SeamAttributes),
			AttributesMask: "ffffffffffffffff",
		},
		TCBLevels: levels,
		Comment:   simulationNote,
	}
}

func qeIdentity(p *pki.Platform, evalNum uint32, issue, next time.Time) *qeIdentityJSON {
	svn := p.QESVN
	misc := make([]byte, 4)
	misc[0], misc[1], misc[2], misc[3] = byte(p.QEMiscSelect), byte(p.QEMiscSelect>>8), byte(p.QEMiscSelect>>16), byte(p.QEMiscSelect>>24)
	// Intel's TD QE identity masks out the attribute bits that may differ between
	// platforms; the sim compares all of the low 8 bytes.
	mask := []byte{0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}
	attrs := make([]byte, len(mask))
	for i := range attrs {
		attrs[i] = p.QEAttributes[i] & mask[i]
	}
	return &qeIdentityJSON{
		ID:                      "TD_QE",
		Version:                 2,
		IssueDate:               stamp(issue),
		NextUpdate:              stamp(next),
		TCBEvaluationDataNumber: evalNum,
		MiscSelect:              hex.EncodeToString(misc),
		MiscSelectMask:          "ffffffff",
		Attributes:              hex.EncodeToString(attrs),
		AttributesMask:          hex.EncodeToString(mask),
		MRSigner:                hex.EncodeToString(p.QEMRSigner),
		ISVProdID:               p.QEProdID,
		TCBLevels: []tcbLevel{{
			TCB:       tcb{ISVSVN: &svn},
			TCBDate:   stamp(issue.Add(-24 * time.Hour)),
			TCBStatus: "UpToDate",
		}},
	}
}

func readBounded(path string, limit int64) ([]byte, error) {
	b, err := smallfile.Read(path, limit)
	if err != nil {
		return nil, fmt.Errorf("pcs: %w", err)
	}
	return b, nil
}

// writeAtomic replaces path with b so that readers see either the old or the new
// file, never a torn one, even across a crash.
func writeAtomic(path string, b []byte) error {
	if err := smallfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("pcs: %w", err)
	}
	return nil
}
