package appraisal

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"
	"github.com/google/go-tdx-guest/verify/trust"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// intelRootPEM is the Intel SGX Root CA (CN=Intel SGX Root CA, SHA-256
// fingerprint 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3),
// copied from go-tdx-guest's verify/trusted_root.pem.
//
//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// IntelRoots returns a new pool holding only the Intel SGX Root CA. Each call
// returns a fresh pool so no caller can change another's trust.
func IntelRoots() *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(intelRootPEM) {
		// The file is embedded at build time; failing here is a build defect.
		panic("appraisal: embedded Intel SGX Root CA does not parse")
	}
	return p
}

// TDXEvidence is what a TD presents.
type TDXEvidence struct {
	// Quote is a raw TDX quote: v4, or v5 with a TDX 1.0 or 1.5 body.
	Quote []byte
	// CCEL is the CC event log and CCELTable its ACPI table. Without CCEL
	// the replay check is skipped; the table is optional (see
	// eventlog.VerifyCCEL).
	CCEL      []byte
	CCELTable []byte
	// ReportData is the REPORTDATA the verifier expects (the nonce
	// binding). Empty skips the check: the CLI may verify a quote on its own,
	// the server always sets it.
	ReportData []byte
	// IMA is the IMA measurement list (binary or ascii) of a kernel that
	// extends RTMR2 (CCNP's patched kernels): RTMR2 must then equal the
	// CCEL's RTMR2 replay extended with every IMA entry. It needs CCEL.
	// Without it, RTMR2 must equal the CCEL replay alone.
	IMA []byte
	// Runtime is the runtime log, replayed against RTMR3.
	Runtime []byte
}

// TDXOptions configures TDX appraisal. The zero value verifies offline
// against the Intel SGX Root CA at the current time, accepting only
// UpToDate when collateral is used and rejecting DEBUG TDs.
type TDXOptions struct {
	// TrustedRoots the PCK chain must lead to; the collateral signing
	// chains must lead to the same root the PCK chain ends in. Nil means
	// the embedded Intel SGX Root CA.
	TrustedRoots *x509.CertPool
	// Now is the time certificates and collateral are checked at; zero
	// means time.Now().
	Now time.Time
	// Collateral fetches TCB info, QE identity and CRLs from Intel PCS
	// URLs (pcs.TcbInfoURL, pcs.QeIdentityURL, pcs.PckCrlURL and the root's
	// CRL distribution point). Nil means offline: no TCB status is
	// evaluated. A getter implementing trust.ContextHTTPSGetter receives
	// ctx.
	Collateral trust.HTTPSGetter
	// CheckRevocations fetches the PCK and root CRLs and rejects revoked
	// certificates. Needs Collateral.
	CheckRevocations bool
	// AcceptedTCBStatuses lists the platform TCB statuses accepted
	// (pcs.TcbComponentStatus names). Empty means {"UpToDate"}.
	AcceptedTCBStatuses []string
	// MinTCBEvaluationDataNumber refuses collateral whose TCB info or QE
	// identity has a lower tcbEvaluationDataNumber (collateral from before
	// the TCB recovery that number stands for), as CodeUnavailable: the
	// collateral source is stale, not the node. Zero sets no minimum.
	MinTCBEvaluationDataNumber uint32
	// AllowDebug accepts TDs with the DEBUG attribute.
	AllowDebug bool
	// Cache remembers checks of immutable inputs across calls (see Cache);
	// nil checks everything every time.
	Cache *Cache
	// TEE is what the node says it is, when the quote is a node's
	// evidence: cctrusted.TEETDX refuses a quote the simulator made (its QE
	// vendor ID) whatever the roots, cctrusted.TEESim is a simulator verified
	// as a TD under TrustedRoots (its own). Empty checks a quote on its
	// own and names no TEE in the selectors' tee:.
	TEE cctrusted.TEE
	// NodeOptions: IMA violations and the start of an incremental
	// appraisal. With a Start, CCEL and CCELTable are not read (RTMR0..1
	// must be as recorded) and IMA and Runtime are suffixes.
	NodeOptions
}

// SimQEVendorID is the QE vendor ID every quote of the simulator (package
// tee/sim) carries. Production code does not import the simulator, so the
// value is repeated here; a test checks that the two agree.
const SimQEVendorID = "CCNP-SIM-NOTINTL"

// TDXResult is what a successful (or, with an error, partial) appraisal
// established.
type TDXResult struct {
	// Quote is the parsed quote. With a Cache, the certificates in
	// Quote.PCKChain are shared with other results: treat them as
	// read-only.
	Quote *tdxquote.Quote
	// TCBStatus is the platform's converged TCB status; empty when no
	// collateral was used.
	TCBStatus string
	// TDXModuleTCBStatus and QETCBStatus are the statuses that went into
	// TCBStatus (empty when not evaluated).
	TDXModuleTCBStatus string
	QETCBStatus        string
	// AdvisoryIDs of the matching platform TCB level, TDX module identity
	// level and QE identity level: sorted, each once, each in Intel's
	// format (INTEL-SA-NNNNN, INTEL-DOC-NNNNN). Empty when no collateral
	// was used or the levels list none.
	AdvisoryIDs []string
	// TCBInfoEvaluationDataNumber and QEIdentityEvaluationDataNumber are
	// the tcbEvaluationDataNumber of the collateral the TCB status was
	// evaluated with; zero when no collateral was used.
	TCBInfoEvaluationDataNumber    uint32
	QEIdentityEvaluationDataNumber uint32
	FMSPC                          string
	Debug                          bool
	// Facts extracted from the replayed CCEL; nil without a CCEL. With a
	// Cache they are shared with other results: treat them as read-only.
	Facts *eventlog.Facts
	// IMAViolations counts the violation entries (ToMToU, open-writers) of
	// the replayed IMA list: measurements the kernel could not take.
	IMAViolations int
	// IMAEntries is the number of entries of the replayed IMA list (zero
	// without one or when it does not replay).
	IMAEntries int
	// Node is what the evidence established about the node, once every
	// check passed.
	Node *Node
	// LogsTime is the time spent on the logs, for a caller's metrics.
	LogsTime time.Duration
	Checks   []Check
}

func (r *TDXResult) pass(name, detail string) { r.Checks = pass(r.Checks, name, detail) }
func (r *TDXResult) skip(name, detail string) { r.Checks = skip(r.Checks, name, detail) }

func (r *TDXResult) fail(name string, code Code, err error) error {
	r.Checks = append(r.Checks, Check{Name: name, Detail: err.Error()})
	return &Error{Check: name, Code: code, Err: err}
}

// Failed returns the first failed check, if any.
func (r *TDXResult) Failed() (Check, bool) {
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			return c, true
		}
	}
	return Check{}, false
}

// validStatuses are the TCB statuses Intel's PCS assigns.
var validStatuses = []string{
	string(pcs.TcbComponentStatusUpToDate),
	string(pcs.TcbComponentStatusSwHardeningNeeded),
	string(pcs.TcbComponentStatusConfigurationNeeded),
	string(pcs.TcbComponentStatusConfigurationAndSWHardeningNeeded),
	string(pcs.TcbComponentStatusOutOfDate),
	string(pcs.TcbComponentStatusOutOfDateConfigurationNeeded),
	string(pcs.TcbComponentStatusRevoked),
}

// ValidTCBStatuses returns the TCB status names AcceptedTCBStatuses may hold.
func ValidTCBStatuses() []string { return slices.Clone(validStatuses) }

// TDX appraises TDX evidence. It returns the result with every check run so
// far, and a *Error naming the first failed check. The result is non-nil
// even on error.
func TDX(ctx context.Context, in TDXEvidence, opts TDXOptions) (*TDXResult, error) {
	res := &TDXResult{}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	roots := opts.TrustedRoots
	if roots == nil {
		// Never hand the library a nil pool: it then logs a warning to
		// stdout, which is a plugin's transport.
		roots = IntelRoots()
	}
	accepted := opts.AcceptedTCBStatuses
	if len(accepted) == 0 {
		accepted = []string{string(pcs.TcbComponentStatusUpToDate)}
	}
	for _, s := range accepted {
		if !slices.Contains(validStatuses, s) {
			return res, &Error{Check: CheckTCBStatus, Code: CodeConfig,
				Err: fmt.Errorf("accepted TCB status %q is not one of %s", s, strings.Join(validStatuses, ", "))}
		}
	}
	if opts.MinTCBEvaluationDataNumber > 0 && opts.Collateral == nil {
		return res, &Error{Check: CheckTCBEvaluation, Code: CodeConfig,
			Err: errors.New("a minimum TCB evaluation data number needs a collateral getter")}
	}
	if opts.CheckRevocations && opts.Collateral == nil {
		return res, &Error{Check: CheckCollateral, Code: CodeConfig,
			Err: errors.New("revocation checks need a collateral getter")}
	}

	// 1. Structure, with our own bounds checks, before any library sees
	// the bytes. With a cache, the certificates of a PCK chain that
	// verified before are not parsed again; everything below still checks
	// them at now.
	chains := opts.Cache.chainLookup()
	q, err := tdxquote.ParseWithOptions(in.Quote, chains.parseOptions())
	if err != nil {
		return res, res.fail(CheckQuoteFormat, CodeInvalidEvidence, err)
	}
	res.Quote, res.FMSPC, res.Debug = q, q.FMSPC(), q.Debug()
	res.pass(CheckQuoteFormat, fmt.Sprintf("TDX quote v%d (body type %d), %d bytes signature data, %d trailing bytes", q.Header.Version, q.BodyType, q.SignedDataSize, q.TrailingBytes))
	// The pinned go-tdx-guest reads v4 quotes only: a v5 quote gets this
	// package's checks (the same for both layouts) without the library's
	// second opinion.
	library := q.Header.Version == tdxquote.Version4

	// 2. PCK chain to the trusted roots.
	chainRoot, err := opts.Cache.pckChain(q, chains, roots, now)
	if err != nil {
		return res, res.fail(CheckPCKChain, CodeRejected, err)
	}
	res.pass(CheckPCKChain, fmt.Sprintf("PCK leaf %s chains to trusted root %q at %s", serialHex(q.PCKChain[0]), chainRoot.Subject.CommonName, now.UTC().Format(time.RFC3339)))
	pckIdx := len(res.Checks) - 1

	// 3. Signatures: our own checks name the failing one; go-tdx-guest then
	// runs its offline verification (chain, signatures, QE binding) as a
	// second, independent opinion.
	// The QE report and its signature are the same in every quote of a
	// platform's QE: with a cache, its PCK signature is verified once per
	// exact bytes (and stored only once every signature check passed).
	qeKey, qeKeyed := opts.Cache.qeReportKey(q, chains)
	qeKnown := opts.Cache.qeReportVerified(qeKey, qeKeyed, roots, now)
	if err := verifySignatures(q, qeKnown); err != nil {
		return res, res.fail(CheckQuoteSignature, CodeRejected, err)
	}
	sigDetail := "attestation key signs header and body; PCK signs the QE report; QE report binds the attestation key"
	var libBase [32]byte // what the library's verdicts depend on besides collateral
	if library {
		libBase = libraryBase(in.Quote, q)
		offlineKey := libraryKey(libBase, nil)
		if !opts.Cache.libraryAgreed(offlineKey, roots, now) {
			if err := verify.RawTdxQuoteContext(ctx, in.Quote, libraryOptions(roots, now, nil, false)); err != nil {
				return res, res.fail(CheckQuoteSignature, CodeRejected, fmt.Errorf("go-tdx-guest: %w", err))
			}
			opts.Cache.libraryAccepted(offlineKey, roots, certWindow(q.PCKChain[0], q.PCKChain[1], chainRoot))
		}
	} else {
		sigDetail = "attestation key signs header, body descriptor and body; PCK signs the QE report; QE report binds the attestation key (v5: no go-tdx-guest cross-check)"
	}
	if !qeKnown {
		opts.Cache.qeReportAccepted(qeKey, qeKeyed, roots, certWindow(q.PCKChain[0], q.PCKChain[1], chainRoot))
	}
	res.pass(CheckQuoteSignature, sigDetail)

	// 4. Collateral and TCB status.
	if opts.Collateral == nil {
		res.skip(CheckCollateral, "offline: no collateral getter")
		res.skip(CheckTCBEvaluation, "offline: no collateral")
		res.skip(CheckTCBStatus, "offline: TCB status not evaluated")
	} else {
		memo := newMemoGetter(opts.Collateral)
		fetched, err := fetchCollateral(ctx, memo, q, chainRoot, opts.CheckRevocations, opts.Cache)
		if err != nil {
			return res, res.fail(CheckCollateral, CodeUnavailable, err)
		}
		colDigest := fetched.digest(q.PCKChain[1], chainRoot)
		col, ok := opts.Cache.verifiedCollateral(colDigest, roots, now)
		if !ok {
			if col, err = fetched.parse(); err != nil {
				return res, res.fail(CheckCollateral, CodeUnavailable, err)
			}
			if err := col.verifyDocuments(q.PCKChain[1], chainRoot, now); err != nil {
				return res, res.fail(CheckCollateral, CodeRejected, err)
			}
			opts.Cache.collateralVerified(colDigest, roots, col)
		}
		if err := col.matchQuote(q); err != nil {
			return res, res.fail(CheckCollateral, CodeRejected, err)
		}
		res.pass(CheckCollateral, col.describe())
		if opts.CheckRevocations {
			if err := col.checkRevoked(q); err != nil {
				res.Checks[pckIdx] = Check{Name: CheckPCKChain, Detail: err.Error()}
				return res, &Error{Check: CheckPCKChain, Code: CodeRejected, Err: err}
			}
			res.Checks[pckIdx].Detail += "; not revoked"
		}
		res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber = col.evaluationNumbers()
		if opts.MinTCBEvaluationDataNumber == 0 {
			res.skip(CheckTCBEvaluation, fmt.Sprintf("no minimum configured (TCB info %d, QE identity %d)", res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber))
		} else if err := col.checkMinEvaluation(opts.MinTCBEvaluationDataNumber); err != nil {
			return res, res.fail(CheckTCBEvaluation, CodeUnavailable, err)
		} else {
			res.pass(CheckTCBEvaluation, fmt.Sprintf("TCB info %d and QE identity %d are at least %d", res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber, opts.MinTCBEvaluationDataNumber))
		}
		st, err := evaluateTCB(q, &col.tcbInfo.TcbInfo, &col.qeIdentity.EnclaveIdentity)
		if err != nil {
			return res, res.fail(CheckTCBStatus, CodeRejected, err)
		}
		res.TCBStatus, res.TDXModuleTCBStatus, res.QETCBStatus, res.AdvisoryIDs = st.status, st.module, st.qe, st.advisories
		if !slices.Contains(accepted, st.status) {
			return res, res.fail(CheckTCBStatus, CodeRejected,
				fmt.Errorf("TCB status %s (%s) is not accepted (accepted: %s)", st.status, st.describe(), strings.Join(accepted, ", ")))
		}
		if library && st.status == string(pcs.TcbComponentStatusUpToDate) {
			// The library accepts only UpToDate; where we agree, let it
			// check the same collateral (served from memory) too.
			libKey := libraryKey(libBase, colDigest[:])
			if !opts.Cache.libraryAgreed(libKey, roots, now) {
				lo := libraryOptions(roots, now, memo.replayOnly(), opts.CheckRevocations)
				if err := verify.RawTdxQuoteContext(ctx, in.Quote, lo); err != nil {
					return res, res.fail(CheckTCBStatus, CodeRejected, fmt.Errorf("go-tdx-guest rejects the collateral evaluation: %w", err))
				}
				opts.Cache.libraryAccepted(libKey, roots, certWindow(q.PCKChain[0], q.PCKChain[1], chainRoot).intersect(col.window()))
			}
		}
		res.pass(CheckTCBStatus, fmt.Sprintf("%s (%s), accepted", st.status, st.describe()))
	}

	// 5. DEBUG TDs expose their memory to the host: nothing they attest
	// can be trusted.
	if q.Debug() && !opts.AllowDebug {
		return res, res.fail(CheckDebug, CodeRejected, fmt.Errorf("TD has the DEBUG attribute (td_attributes %x) and debug TDs are not allowed", q.Body.TDAttributes))
	}
	if q.Debug() {
		res.pass(CheckDebug, "DEBUG TD, allowed by configuration")
	} else {
		res.pass(CheckDebug, "not a debug TD")
	}

	// 6. REPORTDATA binding.
	if len(in.ReportData) == 0 {
		res.skip(CheckReportData, "no expected REPORTDATA given")
	} else if len(in.ReportData) != tdxquote.ReportDataSize || subtle.ConstantTimeCompare(in.ReportData, q.Body.ReportData[:]) != 1 {
		return res, res.fail(CheckReportData, CodeRejected, fmt.Errorf("REPORTDATA %x is not the expected %x", q.Body.ReportData, in.ReportData))
	} else {
		res.pass(CheckReportData, "REPORTDATA equals the expected binding")
	}

	// 7. A simulator's quote verifies under a simulated root only; that
	// root among the TDX roots must still not make it a TD's.
	if opts.TEE == cctrusted.TEETDX && bytes.Equal(q.Header.QEVendorID[:], []byte(SimQEVendorID)) {
		return res, res.fail(CheckSimulatedQuote, CodeRejected, fmt.Errorf("the quote's QE vendor ID is the simulator's (%q): a simulated quote is never accepted as tdx", SimQEVendorID))
	}

	// 8. The logs: RTMR0..1 (and RTMR2 up to IMA) from the CCEL, or as
	// the start recorded; RTMR2 through IMA; RTMR3 through the runtime log.
	logsStart := time.Now()
	defer func() { res.LogsTime = time.Since(logsStart) }()
	node := &Node{}
	start := opts.Start
	body := &q.Body
	var rtmr2 []byte // RTMR2 before the first IMA entry sent
	if start == nil {
		if len(in.CCEL) == 0 {
			if len(in.IMA) > 0 {
				return res, res.fail(CheckIMAReplay, CodeInvalidEvidence, errors.New("an IMA log needs the CCEL: RTMR2 starts from the value the firmware log replays to"))
			}
			res.skip(CheckCCELReplay, "no CCEL given")
		} else if rtmr2, err = ccel(in, q, opts, res); err != nil {
			return res, err
		}
	} else {
		for i := range 2 {
			rec := start.register(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384)
			if !bytes.Equal(rec, body.RTMR[i][:]) {
				return res, startErr("rtmr%d is %x, the checkpoint recorded %x (rebooted?)", i, body.RTMR[i], rec)
			}
		}
		res.skip(CheckCCELReplay, "incremental: RTMR0..1 are as the checkpoint recorded")
		rtmr2 = start.register(cctrusted.RTMR(2).IMR(), cctrusted.AlgSHA384)
		if rtmr2 == nil {
			return res, startErr("the checkpoint records no %v value in the %v bank", cctrusted.RTMR(2).IMR(), cctrusted.AlgSHA384)
		}
	}
	var suffix imaSuffix
	switch {
	case start == nil && len(in.IMA) > 0, start != nil && start.IMA != nil:
		var field cctrusted.PCR
		if suffix, err = replayIMA(in.IMA, start, &node.Next, "CCEL then IMA", func(l *ima.Log) error {
			// The list itself says which register field its entries carry
			// (2 on CCNP's kernels, 10 where PCR10 is mapped onto RTMR2);
			// VerifyRTMR2 refuses a list with any other or with both, so
			// no entry is left out.
			field, err = l.VerifyRTMR2(body.RTMR[2][:], rtmr2)
			return err
		}); err != nil {
			if e, ok := AsError(err); ok {
				return res, res.fail(e.Check, e.Code, e.Err)
			}
			return res, err
		}
		res.IMAEntries, res.IMAViolations = suffix.entries, suffix.violations
		res.pass(CheckIMAReplay, fmt.Sprintf("CCEL then %d IMA entries on register field %d (%d violations) replay to RTMR2", suffix.entries, uint32(field), suffix.violations))
	case start != nil:
		if !bytes.Equal(rtmr2, body.RTMR[2][:]) {
			return res, startErr("%v moved since the checkpoint, and no IMA log is sent", cctrusted.RTMR(2).IMR())
		}
	default:
		// A checkpoint's empty IMA offset says "the list is empty up to
		// here": true only when the CCEL replayed to the signed RTMR2, so
		// no IMA entry is in it. Otherwise a node that withheld its list
		// could later send its newest entries as the whole list (and hide
		// the violations before them); with no offset, the token does not
		// cover IMA and the next round is a full one.
		if rtmr2 != nil && bytes.Equal(rtmr2, body.RTMR[2][:]) {
			node.Next.IMA = &Offset{}
		}
	}
	if len(in.CCEL) == 0 && start == nil && opts.TEE == "" {
		// A quote checked on its own: no node to describe.
		return res, nil
	}
	rl, err := decodeRuntime(in.Runtime, start)
	if err != nil {
		return res, failed(res, err)
	}
	rt, err := replayRuntime(rl, len(in.Runtime), start, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384, body.RTMR[3][:], &node.Next)
	if err != nil {
		return res, failed(res, err)
	}
	if opts.TEE != "" {
		res.pass(CheckRuntimeReplay, fmt.Sprintf("%d runtime records replay to RTMR3", rt.records))
	}
	for i := range body.RTMR {
		node.Next.register(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384, body.RTMR[i][:])
	}
	fw := res.Facts
	if start != nil {
		fw = start.Firmware
	}
	ir := suffix.with(start)
	if start == nil {
		ir.verified = len(in.IMA) > 0
	}
	// No boot_aggregate is computed on TDX: an upstream kernel without a
	// TPM writes zeros, a CCNP kernel a value of its own; neither is
	// checked against the RTMRs here, so a policy lists (or excludes) it.
	if ir.appraisals, err = appraiseIMA(ctx, opts.IMAPolicies, suffix, start, ir, nil); err != nil {
		return res, failed(res, err)
	}
	node.Next.record(fw, ir, rt)
	res.Node = tdxNode(node, res, fw, ir, rt, opts)
	return res, nil
}

// failed records a log check's failure on a TDX result.
func failed(res *TDXResult, err error) error {
	if e, ok := AsError(err); ok {
		return res.fail(e.Check, e.Code, e.Err)
	}
	return err
}

// ccel replays the CCEL against RTMR0..2, or against RTMR0..1 when an IMA
// list follows, and returns the RTMR2 value IMA starts from.
func ccel(in TDXEvidence, q *tdxquote.Quote, opts TDXOptions, res *TDXResult) ([]byte, error) {
	signed := [3][]byte{q.Body.RTMR[0][:], q.Body.RTMR[1][:], q.Body.RTMR[2][:]}
	replayed, err := opts.Cache.replayCCEL(in.CCELTable, in.CCEL)
	if err != nil {
		return nil, res.fail(CheckCCELReplay, CodeInvalidEvidence, err)
	}
	last := 2
	if len(in.IMA) > 0 {
		last = 1
	}
	for i := 0; i <= last; i++ {
		if !bytes.Equal(replayed.rtmr[i], signed[i]) {
			return nil, res.fail(CheckCCELReplay, CodeRejected, ccelMismatch(in, signed, replayed, i))
		}
	}
	res.Facts = replayed.facts
	if len(in.IMA) == 0 {
		res.pass(CheckCCELReplay, "CCEL replays to RTMR0..2")
	} else {
		res.pass(CheckCCELReplay, "CCEL replays to RTMR0..1 and to the RTMR2 value IMA starts from")
	}
	return replayed.rtmr[2], nil
}

// tdxNode fills in the facts and selectors of a TD (or simulator) whose
// evidence passed every check.
func tdxNode(node *Node, res *TDXResult, fw *eventlog.Facts, ir imaResult, rt *runtimeResult, opts TDXOptions) *Node {
	body := &res.Quote.Body
	f := &node.Facts
	f.TEE = opts.TEE
	if f.TEE == "" {
		f.TEE = cctrusted.TEETDX
	}
	f.MRTD, f.MRConfigID = body.MRTD[:], body.MRConfigID[:]
	for i := range body.RTMR {
		f.RTMR[i] = body.RTMR[i][:]
	}
	f.TCBStatus = res.TCBStatus
	f.TCBInfoEvaluationDataNumber, f.QEIdentityEvaluationDataNumber = res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber
	f.AdvisoryIDs = res.AdvisoryIDs
	debug := res.Debug
	f.Debug = &debug
	factsFromFirmware(f, fw)
	f.Workloads, f.WorkloadsKnown = rt.workloads, rt.known
	f.RuntimeNotice, f.RuntimeFull = rt.incomplete, rt.full
	f.IMAVerdicts, node.IMA = imaVerdicts(ir.appraisals), ir.appraisals

	// A simulator's register selectors are tdx: too; the server moves
	// every selector of a simulated node under sim: (never hardware's).
	pre := "tdx:"
	s := []string{
		"tee:" + string(f.TEE),
		pre + "mrtd:" + hex.EncodeToString(body.MRTD[:]),
		pre + "mrconfigid:" + hex.EncodeToString(body.MRConfigID[:]),
		pre + "mrowner:" + hex.EncodeToString(body.MROwner[:]),
		pre + "mrownerconfig:" + hex.EncodeToString(body.MROwnerConfig[:]),
		pre + "fmspc:" + strings.ToLower(res.FMSPC),
		pre + "debug:" + strconv.FormatBool(res.Debug),
	}
	for i := range body.RTMR {
		s = append(s, pre+"rtmr"+string(rune('0'+i))+":"+hex.EncodeToString(body.RTMR[i][:]))
	}
	if res.Quote.TDX15() {
		// Only TDX 1.5 bodies carry them: absent on older quotes, rather
		// than zeros that would read as "no service TD bound".
		s = append(s, pre+"mrservicetd:"+hex.EncodeToString(body.MRServiceTD[:]),
			pre+"tee_tcb_svn2:"+hex.EncodeToString(body.TEETCBSVN2[:]))
	}
	if res.TCBStatus != "" {
		s = append(s, pre+"tcb_status:"+res.TCBStatus)
		// The lower of the two documents' numbers: the node's collateral
		// is at least this recent, as min_tcb_evaluation_data_number asks.
		s = append(s, pre+"tcb_eval_num:"+strconv.FormatUint(uint64(min(res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber)), 10))
		// Only IDs in Intel's format are admitted (conf.ValidAdvisoryID).
		for _, id := range res.AdvisoryIDs {
			s = append(s, pre+"advisory:"+id)
		}
	}
	s = append(s, bootSelectors(f, fw)...)
	is, withheld := imaSelectors(ir, opts.AllowIMAViolations)
	s = append(s, is...)
	node.Selectors = append(s, rt.selectors()...)
	node.IMAWithheld = withheld
	return node
}

// replayCCEL parses and replays a CCEL and extracts its facts at the
// replayed values (so the extraction sees exactly the log's own registers).
// What it returns depends on the bytes alone, which is what lets a Cache keep
// it.
func replayCCEL(table, log []byte) (*ccelEntry, error) {
	l, err := eventlog.ParseCCEL(log)
	if err != nil {
		return nil, err
	}
	regs, err := l.Replay()
	if err != nil {
		return nil, err
	}
	e := &ccelEntry{}
	for i := range e.rtmr {
		v, ok := regs.Get(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384)
		if !ok {
			v = make([]byte, cctrusted.AlgSHA384.Size())
		}
		e.rtmr[i] = v
	}
	if e.facts, err = eventlog.VerifyCCEL(table, log, e.rtmr); err != nil {
		return nil, err
	}
	return e, nil
}

// ccelMismatch explains why RTMR i does not match: eventlog.VerifyCCEL
// names the register and the last event that extended it. It runs only on
// the (rare) failure path, so the cached replay costs nothing there.
func ccelMismatch(in TDXEvidence, signed [3][]byte, replayed *ccelEntry, i int) error {
	want := signed
	if len(in.IMA) > 0 {
		want[2] = replayed.rtmr[2]
	}
	if _, err := eventlog.VerifyCCEL(in.CCELTable, in.CCEL, want); err != nil {
		return err
	}
	return fmt.Errorf("CCEL replays rtmr%d to %x, the quote signed %x", i, replayed.rtmr[i], signed[i])
}

// libraryOptions builds a fresh verify.Options for one call: the library
// writes into the struct it is given, so sharing one is a data race.
func libraryOptions(roots *x509.CertPool, now time.Time, getter trust.HTTPSGetter, revocations bool) *verify.Options {
	return &verify.Options{
		TrustedRoots:     roots,
		GetCollateral:    getter != nil,
		CheckRevocations: revocations,
		Getter:           getter,
		Now: &verify.TimeSet{
			PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now,
		},
	}
}

// Subject common names of a PCK chain, as Intel issues them.
const (
	cnRoot         = "Intel SGX Root CA"
	cnPlatformCA   = "Intel SGX PCK Platform CA"
	cnProcessorCA  = "Intel SGX PCK Processor CA"
	cnPCKLeaf      = "Intel SGX PCK Certificate"
	cnTCBSigning   = "Intel SGX TCB Signing"
	caParamPlatfom = "platform"
	caParamProc    = "processor"
)

// verifyPCKChain checks the chain's shape (the CNs, P-256 keys, ECDSA-SHA256
// signatures the library also insists on) and that the leaf chains, through
// the quote's intermediate, to one of roots at now. It returns the trusted
// root the chain ends in.
func verifyPCKChain(q *tdxquote.Quote, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	leaf, inter, root := q.PCKChain[0], q.PCKChain[1], q.PCKChain[2]
	for _, c := range []struct {
		cert *x509.Certificate
		cn   []string
		role string
	}{
		{leaf, []string{cnPCKLeaf}, "leaf"},
		{inter, []string{cnPlatformCA, cnProcessorCA}, "intermediate CA"},
		{root, []string{cnRoot}, "root CA"},
	} {
		if !slices.Contains(c.cn, c.cert.Subject.CommonName) {
			return nil, fmt.Errorf("PCK %s subject CN %q, want %q", c.role, c.cert.Subject.CommonName, strings.Join(c.cn, `" or "`))
		}
		if err := checkP256(c.cert); err != nil {
			return nil, fmt.Errorf("PCK %s: %w", c.role, err)
		}
	}
	if leaf.Issuer.CommonName != inter.Subject.CommonName {
		return nil, fmt.Errorf("PCK leaf issuer %q is not the intermediate %q", leaf.Issuer.CommonName, inter.Subject.CommonName)
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("PCK leaf does not chain to a trusted root at %s: %w", now.UTC().Format(time.RFC3339), err)
	}
	return chains[0][len(chains[0])-1], nil
}

func checkP256(c *x509.Certificate) error {
	if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		return fmt.Errorf("signature algorithm %v, want ECDSA-SHA256", c.SignatureAlgorithm)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return errors.New("public key is not ECDSA P-256")
	}
	return nil
}

// verifySignatures checks the quote signature (attestation key over
// header||body), the QE report signature (PCK leaf key) unless qeVerified
// says these exact QE report, signature and PCK chain bytes verified before,
// and the QE report binding of the attestation key: SHA-256(key || QE auth
// data) || 32 zeros.
func verifySignatures(q *tdxquote.Quote, qeVerified bool) error {
	ak, err := rawP256Key(q.AttestationKey[:])
	if err != nil {
		return fmt.Errorf("attestation key: %w", err)
	}
	digest := sha256.Sum256(q.SignedBytes())
	if !verifyRaw(ak, digest[:], q.Signature[:]) {
		return errors.New("quote signature does not verify with the attestation key over header and body")
	}
	pck, ok := q.PCKChain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("PCK leaf key is not ECDSA")
	}
	if !qeVerified {
		digest = sha256.Sum256(q.QEReport.Raw[:])
		if !verifyRaw(pck, digest[:], q.QEReportSignature[:]) {
			return errors.New("QE report signature does not verify with the PCK leaf key")
		}
	}
	h := sha256.New()
	h.Write(q.AttestationKey[:])
	h.Write(q.QEAuthData)
	want := append(h.Sum(nil), make([]byte, 32)...)
	if !bytes.Equal(want, q.QEReport.ReportData[:]) {
		return errors.New("QE report data does not bind the attestation key and QE auth data")
	}
	return nil
}

func rawP256Key(b []byte) (*ecdsa.PublicKey, error) {
	// ParseUncompressedPublicKey checks the point is on the curve.
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, b...))
	if err != nil {
		return nil, err
	}
	return pub, nil
}

func verifyRaw(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest, r, s)
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("serial %x", c.SerialNumber) }
