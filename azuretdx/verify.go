package azuretdx

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// The checks Verify records, in the order it runs them. Stable: tests, the
// CLI's output and (once integrated) the server's audit lines name them.
const (
	CheckEvidenceFormat = "azure_evidence_format" // the HCL report and the vTPM quote parse, within bounds
	CheckTDQuote        = "td_quote"              // the TD quote verifies (the callback: chain, signatures, collateral, TCB, debug)
	CheckTDReportMatch  = "td_report_match"       // the HCL report's TD report equals the TD quote's body, field by field
	CheckRuntimeData    = "runtime_data_hash"     // H(runtime data) starts the quote's REPORTDATA, the rest is zero
	CheckHCLAK          = "hcl_ak"                // the runtime data carries one RSA HCLAkPub
	CheckTPMSignature   = "tpm_quote_signature"   // HCLAkPub's signature over the TPMS_ATTEST
	CheckTPMAttest      = "tpm_quote_attest"      // TPM_GENERATED magic, a quote, canonical encoding
	CheckTPMNonce       = "tpm_quote_nonce"       // the quote's extraData is the nonce
	CheckPCRSelection   = "tpm_pcr_selection"     // the PCR values given are exactly the quoted selection
	CheckPCRDigest      = "tpm_pcr_digest"        // their digest is the quoted pcrDigest
)

// TDQuoteCheckPrefix starts the names of the checks the TD quote verifier
// reports ("td_quote.pck_chain", ...), so they cannot be confused with the
// vTPM quote's.
const TDQuoteCheckPrefix = CheckTDQuote + "."

// MaxNonce is the longest nonce a TPM quote can carry (TPM2B_DATA holds a
// digest of at most 64 bytes).
const MaxNonce = 64

// Kind says what kind of failure an Error is, so a caller can choose a gRPC
// code without reading messages.
type Kind int

// Failure kinds.
const (
	// KindInvalidEvidence: malformed evidence (gRPC InvalidArgument).
	KindInvalidEvidence Kind = iota + 1
	// KindRejected: well-formed evidence that fails a security check
	// (gRPC PermissionDenied).
	KindRejected
	// KindConfig: the verifier was called wrongly (no TD quote verifier,
	// no nonce).
	KindConfig
)

func (k Kind) String() string {
	switch k {
	case KindInvalidEvidence:
		return "invalid_evidence"
	case KindRejected:
		return "rejected"
	case KindConfig:
		return "config"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failed check. For CheckTDQuote, Err is the TD quote verifier's
// own error, unchanged in the chain: a caller whose verifier returns typed
// errors (appraisal.Error with its code: collateral unavailable is not a
// rejection) finds them with errors.As and should prefer them to Kind.
type Error struct {
	Check string
	Kind  Kind
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("azure tdx: %s check failed: %v", e.Check, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Check is the outcome of one check.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Skipped: the check did not run because its input was not supplied
	// (the TD quote verifier reports collateral not checked this way).
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail"`
}

// TDQuoteVerifier verifies a TD quote on its own: its PCK chain, its
// signatures and, where the caller has collateral, the platform's TCB
// status, and the DEBUG attribute; not its REPORTDATA, which Verify checks.
// It returns the parsed quote and the checks it made (a skipped check says
// what was not checked), or an error. appraisal.TDX is the one to use;
// this package cannot import it (appraisal calls this package).
type TDQuoteVerifier func(ctx context.Context, quote []byte) (*tdxquote.Quote, []Check, error)

// Options configures Verify.
type Options struct {
	// VerifyTDQuote verifies the TD quote. Required.
	VerifyTDQuote TDQuoteVerifier
}

// Result is what Verify established; with an error, as far as it got.
type Result struct {
	// HCL is the parsed HCL report and Runtime its runtime data.
	HCL     *HCLReport
	Runtime *RuntimeData
	// TDQuote is the verified TD quote.
	TDQuote *tdxquote.Quote
	// PCRs holds the vTPM's PCR values, set only once the quote's digest
	// over them verified.
	PCRs cctrusted.Registers
	// ExtraData is the vTPM quote's extraData (the nonce it was made for).
	ExtraData []byte
	Checks    []Check
}

func (r *Result) pass(name, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: detail})
}

func (r *Result) fail(name string, kind Kind, err error) error {
	r.Checks = append(r.Checks, Check{Name: name, Detail: err.Error()})
	return &Error{Check: name, Kind: kind, Err: err}
}

// Failed returns the first failed check, if any.
func (r *Result) Failed() (Check, bool) {
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			return c, true
		}
	}
	return Check{}, false
}

// Verify checks the chain from Intel's signature to the vTPM's PCRs:
//
//  1. The HCL report and the vTPM quote parse within bounds.
//  2. The TD quote verifies (opts.VerifyTDQuote: chain to Intel's root,
//     signatures, collateral and TCB status where available, DEBUG).
//  3. The HCL report's TD report is the one the TD quote signs: every body
//     field equal (MRTD, RTMRs, attributes, TEE TCB, REPORTDATA...).
//  4. The runtime data's hash (of the report's hash type) starts the TD
//     quote's signed REPORTDATA and the rest of it is zero: the paravisor's
//     runtime data, the attestation key in it, is what the TD attested.
//  5. The runtime data names exactly one RSA attestation key, HCLAkPub.
//  6. That key signed the vTPM quote, a genuine TPMS_ATTEST of a quote,
//     whose extraData is nonce and whose PCR digest is the digest of the
//     given PCR values over exactly the quoted selection.
//
// Nothing in the result is set unless the check that vouches for it passed.
// What the paravisor is trusted for (that HCLAkPub is a restricted key of
// the vTPM, that the vTPM's PCRs are honest) is in docs/azure.md.
func Verify(ctx context.Context, ev *Evidence, nonce []byte, opts Options) (*Result, error) {
	res := &Result{}
	if opts.VerifyTDQuote == nil {
		return res, &Error{Check: CheckTDQuote, Kind: KindConfig, Err: errors.New("no TD quote verifier given")}
	}
	if len(nonce) == 0 || len(nonce) > MaxNonce {
		return res, &Error{Check: CheckTPMNonce, Kind: KindConfig, Err: fmt.Errorf("the expected nonce is %d bytes: want 1 to %d", len(nonce), MaxNonce)}
	}
	if ev == nil {
		return res, res.fail(CheckEvidenceFormat, KindInvalidEvidence, errors.New("no evidence"))
	}

	// 1. Structure.
	if err := ev.checkBounds(); err != nil {
		return res, res.fail(CheckEvidenceFormat, KindInvalidEvidence, err)
	}
	hcl, err := ParseHCLReport(ev.HCLReport)
	if err != nil {
		return res, res.fail(CheckEvidenceFormat, KindInvalidEvidence, err)
	}
	sel, err := quoteSelection(ev.TPMQuote.Message)
	if err != nil {
		return res, res.fail(CheckEvidenceFormat, KindInvalidEvidence, err)
	}
	res.HCL = hcl
	res.pass(CheckEvidenceFormat, fmt.Sprintf("HCL report v%d (TDX, %d bytes runtime data hashed with %v); vTPM quote of %d bytes over %s", hcl.Version, len(hcl.RuntimeData), hcl.HashType, len(ev.TPMQuote.Message), sel))

	// 2. The TD quote on its own.
	q, checks, err := opts.VerifyTDQuote(ctx, ev.TDQuote)
	for _, c := range checks {
		c.Name = TDQuoteCheckPrefix + c.Name
		res.Checks = append(res.Checks, c)
	}
	if err != nil {
		return res, res.fail(CheckTDQuote, KindRejected, err)
	}
	if q == nil {
		return res, res.fail(CheckTDQuote, KindConfig, errors.New("the TD quote verifier returned no quote and no error"))
	}
	res.pass(CheckTDQuote, fmt.Sprintf("TD quote v%d verifies (MRTD %x)", q.Header.Version, q.Body.MRTD[:8]))

	// 3. The report the quote signs is the HCL report's.
	if err := hcl.TDReport.MatchQuoteBody(q); err != nil {
		return res, res.fail(CheckTDReportMatch, KindRejected, err)
	}
	res.TDQuote = q
	res.pass(CheckTDReportMatch, "every TD quote body field equals the HCL report's TD report")

	// 4. The runtime data is what the quote's REPORTDATA binds. The
	// quote's REPORTDATA is the signed one; the report's equals it (3).
	h, _ := hcl.HashType.Hash() // ParseHCLReport accepted it
	hh := h.New()
	hh.Write(hcl.RuntimeData)
	sum := hh.Sum(nil)
	rd := q.Body.ReportData[:]
	if subtle.ConstantTimeCompare(sum, rd[:len(sum)]) != 1 {
		return res, res.fail(CheckRuntimeData, KindRejected, fmt.Errorf("%v of the runtime data is %x, the TD quote's REPORTDATA starts %x: the runtime data (the attestation key in it) is not what the TD attested", h, sum, rd[:len(sum)]))
	}
	if !allZero(rd[len(sum):]) {
		return res, res.fail(CheckRuntimeData, KindRejected, fmt.Errorf("REPORTDATA after the %v of the runtime data is %x, not zero", h, rd[len(sum):]))
	}
	res.pass(CheckRuntimeData, fmt.Sprintf("%v(runtime data) = REPORTDATA[0:%d], rest zero", h, len(sum)))

	// 5. The attestation key.
	rt, err := ParseRuntimeData(hcl.RuntimeData)
	if err != nil {
		return res, res.fail(CheckHCLAK, KindInvalidEvidence, err)
	}
	res.Runtime = rt
	res.pass(CheckHCLAK, fmt.Sprintf("RSA-%d key %q (exponent %d)", rt.AK.N.BitLen(), AKKeyID, rt.AK.E))

	// 6. The vTPM quote, through the project's one TPM quote verifier. The
	// runtime data gives only the key's modulus and exponent, so its
	// public area is built from the template a restricted RSASSA-SHA256
	// signing key has: what the paravisor is trusted to have created.
	pcrs, err := sel.registers(ev.TPMQuote.PCRs)
	if err != nil {
		return res, res.fail(CheckPCRSelection, KindInvalidEvidence, err)
	}
	if err := tpmquote.VerifyQuote(akArea(rt.AK), ev.TPMQuote.Message, rsassaSignature(ev.TPMQuote.Signature), nonce, pcrs); err != nil {
		return res, tpmFailure(res, err)
	}
	res.ExtraData = bytes.Clone(sel.extraData)
	res.pass(CheckTPMSignature, fmt.Sprintf("%s signs the TPMS_ATTEST (RSASSA-PKCS1-v1_5, SHA-256)", AKKeyID))
	res.pass(CheckTPMAttest, "TPM_GENERATED magic, TPM_ST_ATTEST_QUOTE, canonical encoding")
	res.pass(CheckTPMNonce, fmt.Sprintf("extraData is the nonce %x", nonce))
	res.pass(CheckPCRSelection, fmt.Sprintf("%d values for %s", len(ev.TPMQuote.PCRs), sel))
	res.pass(CheckPCRDigest, "the values digest to the quoted pcrDigest")
	res.PCRs = pcrs
	return res, nil
}

// tpmOrder is the order tpmquote.VerifyQuote makes its checks in, with the
// names this package records them under.
var tpmOrder = []struct{ tpm, ours, pass string }{
	{tpmquote.CheckAK, CheckHCLAK, ""},
	{tpmquote.CheckSignature, CheckTPMSignature, "HCLAkPub signs the TPMS_ATTEST"},
	{tpmquote.CheckAttest, CheckTPMAttest, "TPM_GENERATED magic, TPM_ST_ATTEST_QUOTE, canonical encoding"},
	{tpmquote.CheckExtraData, CheckTPMNonce, "extraData is the nonce"},
	{tpmquote.CheckPCRSelection, CheckPCRSelection, "the values cover exactly the quoted selection"},
	{tpmquote.CheckPCRDigest, CheckPCRDigest, ""},
}

// tpmFailure records the checks tpmquote.VerifyQuote passed before the one that
// failed, and that one under this package's name.
func tpmFailure(res *Result, err error) error {
	var qe *tpmquote.QuoteError
	if !errors.As(err, &qe) {
		return res.fail(CheckTPMSignature, KindRejected, err)
	}
	for _, o := range tpmOrder {
		if o.tpm == qe.Check {
			kind := KindRejected
			if o.tpm == tpmquote.CheckAttest || o.tpm == tpmquote.CheckPCRSelection {
				kind = KindInvalidEvidence
			}
			return res.fail(o.ours, kind, qe)
		}
		if o.pass != "" {
			res.pass(o.ours, o.pass)
		}
	}
	return res.fail(CheckTPMSignature, KindRejected, err)
}

// akArea is the TPMT_PUBLIC of a restricted RSASSA-SHA256 signing key with
// this modulus and exponent (0 stands for 65537, as the TPM writes it).
func akArea(k *rsa.PublicKey) []byte {
	exp := uint32(k.E)
	if k.E == 65537 {
		exp = 0
	}
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits:  tpm2.TPMKeyBits(k.N.BitLen()),
			Exponent: exp,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()}),
	}
	return tpm2.Marshal(pub)
}

// rsassaSignature wraps Azure's raw RSA signature in the TPMT_SIGNATURE the
// vTPM returned it in (RSASSA, SHA-256).
func rsassaSignature(sig []byte) []byte {
	return tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgRSASSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
			Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig},
		}),
	})
}

// selection is what the TPMS_ATTEST says it quotes, read only to know which
// PCR each given value belongs to: tpmquote.VerifyQuote checks everything after
// the signature.
type selection struct {
	regs      []pcrRef
	extraData []byte
}

type pcrRef struct {
	pcr cctrusted.PCR
	alg cctrusted.Algorithm
}

func (s selection) String() string {
	if len(s.regs) == 0 {
		return "no PCR"
	}
	first, last := s.regs[0], s.regs[len(s.regs)-1]
	contiguous := true
	for i, r := range s.regs {
		if r.alg != first.alg || r.pcr != first.pcr+cctrusted.PCR(i) {
			contiguous = false
		}
	}
	if contiguous {
		return fmt.Sprintf("%v PCRs %d-%d", first.alg, uint32(first.pcr), uint32(last.pcr))
	}
	return fmt.Sprintf("%d PCRs", len(s.regs))
}

// quoteSelection reads the PCR selection and extraData of a TPMS_ATTEST.
// go-tpm's decoder is not written for hostile input: a panic becomes an
// error.
func quoteSelection(msg []byte) (sel selection, err error) {
	if len(msg) > MaxTPMAttest {
		return sel, fmt.Errorf("tpm_quote.message is %d bytes, more than the %d allowed", len(msg), MaxTPMAttest)
	}
	if len(msg) < 6 || binary.BigEndian.Uint32(msg) != uint32(tpm2.TPMGeneratedValue) || binary.BigEndian.Uint16(msg[4:]) != uint16(tpm2.TPMSTAttestQuote) {
		return sel, errors.New("tpm_quote.message is not a TPMS_ATTEST of a quote (TPM_GENERATED_VALUE ff544347, then TPM_ST_ATTEST_QUOTE 8018)")
	}
	defer func() {
		if r := recover(); r != nil {
			sel, err = selection{}, fmt.Errorf("tpm_quote.message does not parse (decoder panic: %v)", r)
		}
	}()
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](msg)
	if err != nil {
		return sel, fmt.Errorf("tpm_quote.message does not parse as a TPMS_ATTEST: %w", err)
	}
	q, err := att.Attested.Quote()
	if err != nil {
		return sel, fmt.Errorf("tpm_quote.message: %w", err)
	}
	for _, s := range q.PCRSelect.PCRSelections {
		alg := cctrusted.Algorithm(s.Hash)
		if !alg.Known() {
			return sel, fmt.Errorf("tpm_quote.message selects unknown bank 0x%04x", uint16(s.Hash))
		}
		for byteIdx, bits := range s.PCRSelect {
			for bit := range 8 {
				if bits&(1<<bit) != 0 {
					sel.regs = append(sel.regs, pcrRef{cctrusted.PCR(byteIdx*8 + bit), alg})
				}
			}
		}
	}
	if len(sel.regs) > MaxPCRs {
		return sel, fmt.Errorf("tpm_quote.message selects %d PCRs, more than the %d allowed", len(sel.regs), MaxPCRs)
	}
	sel.extraData = bytes.Clone(att.ExtraData.Buffer)
	return sel, nil
}

// SelectionOrder lists a node's PCR values in the order the quote msg
// selects them (banks as listed, PCRs ascending), as the TPM digested them
// and as TPMQuote.PCRs takes them. A quote that does not parse gives nil
// (Verify reports why); values the quote does not select are appended, so
// that Verify refuses the count instead of ignoring what was sent.
func SelectionOrder(msg []byte, pcrs cctrusted.Registers) [][]byte {
	sel, err := quoteSelection(msg)
	if err != nil {
		return nil
	}
	out := make([][]byte, 0, len(sel.regs))
	used := cctrusted.Registers{}
	for _, r := range sel.regs {
		if v, ok := pcrs.Get(r.pcr.IMR(), r.alg); ok {
			out = append(out, v)
			used.Set(r.pcr.IMR(), r.alg, v)
		}
	}
	for imr, banks := range pcrs {
		for alg, v := range banks {
			if _, ok := used.Get(imr, alg); !ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// registers gives each value the PCR the quote's selection puts it at: the
// values come in selection order (banks as listed, PCRs ascending), as the
// TPM digests them.
func (s selection) registers(vals [][]byte) (cctrusted.Registers, error) {
	if len(vals) != len(s.regs) {
		return nil, fmt.Errorf("%d PCR values given, the quote selects %d (%s)", len(vals), len(s.regs), s)
	}
	out := cctrusted.Registers{}
	for i, r := range s.regs {
		if !r.pcr.IMR().Valid() {
			return nil, fmt.Errorf("the quote selects PCR %d, beyond 23", uint32(r.pcr))
		}
		if len(vals[i]) != r.alg.Size() {
			return nil, fmt.Errorf("tpm_quote.pcrs[%d] (%v %v) is %d bytes, want %d", i, r.pcr.IMR(), r.alg, len(vals[i]), r.alg.Size())
		}
		if _, dup := out.Get(r.pcr.IMR(), r.alg); dup {
			return nil, fmt.Errorf("the quote selects %v in %v twice", r.pcr.IMR(), r.alg)
		}
		out.Set(r.pcr.IMR(), r.alg, vals[i])
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
