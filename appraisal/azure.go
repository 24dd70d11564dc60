package appraisal

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// AzureEvidence is what an Azure TDX confidential VM presents (docs/azure.md):
// the paravisor's HCL report, the TD quote of its TD report, the vTPM's
// quote with HCLAkPub over the binding, and the logs a TPM node sends.
type AzureEvidence struct {
	// HCLReport is the raw vTPM NV index 0x01400001.
	HCLReport []byte
	// TDQuote is the TD quote of the HCL report's TD report.
	TDQuote []byte
	// AKPublic is the vTPM attestation key as the node read it
	// (TPMT_PUBLIC, or TPM2B_PUBLIC); optional. When present it must be
	// the key the runtime data names: the node cannot point elsewhere.
	AKPublic []byte
	// Quote is the vTPM's TPMS_ATTEST and Signature HCLAkPub's signature
	// over it: a TPMT_SIGNATURE (RSASSA, SHA-256) as a TPM node sends it,
	// or the bare RSA signature as trustee stores it.
	Quote, Signature []byte
	// PCRs are the quoted values; the quote's selection says which.
	PCRs cctrusted.Registers
	// ExtraData is the binding the vTPM quote must carry.
	ExtraData []byte
	// TPMLog, IMA and Runtime are whole logs, as a TPM node sends them.
	TPMLog, IMA, Runtime []byte
}

// AzureOptions configures AzureTDX.
type AzureOptions struct {
	// TDX verifies the TD quote exactly as a TDX node's: roots,
	// collateral, accepted TCB statuses, DEBUG, the cache, the time. Its
	// TEE and NodeOptions are not read.
	TDX TDXOptions
	// SimRoots, when set, are a simulator's PCK roots: a TD quote whose
	// chain does not lead to TDX.TrustedRoots but to one of these is a
	// simulated paravisor's (AzureResult.Simulated), which the caller must
	// keep apart from hardware. Nil: such a quote fails the PCK chain.
	SimRoots *x509.CertPool
	// ParavisorMRTDs are the MRTDs (48 bytes each) of the paravisor builds
	// trusted to run an honest vTPM. Empty skips the check (a quote checked
	// by hand); the server always sets it, because without it any TD can
	// play paravisor and vouch for any PCR value it likes.
	ParavisorMRTDs [][]byte
	// RuntimePCR is the vTPM PCR (11..15) that carries the runtime record
	// (azure_tdx.runtime_pcr), as TPMOptions.RuntimePCR; zero for none.
	RuntimePCR cctrusted.PCR
	// NodeOptions: IMA violations and policies. A Start is refused as a
	// *StartError: Azure nodes are always appraised in full.
	NodeOptions
}

// AzureResult is what an Azure TDX appraisal established.
type AzureResult struct {
	// AKHash is SHA-256 of HCLAkPub in PKIX DER form (lower-case hex):
	// the node's agent ID component.
	AKHash string
	// Simulated: the TD quote chains to AzureOptions.SimRoots.
	Simulated bool
	// TD is the TD quote's appraisal; Azure the chain's (HCL report, runtime
	// data, vTPM quote). Each is set once its checks ran.
	TD    *TDXResult
	Azure *azuretdx.Result
	Node  *Node
	// LogsTime is the time spent on the logs, for a caller's metrics.
	LogsTime time.Duration
	Checks   []Check
}

func (r *AzureResult) pass(name, detail string) { r.Checks = pass(r.Checks, name, detail) }
func (r *AzureResult) skip(name, detail string) { r.Checks = skip(r.Checks, name, detail) }

func (r *AzureResult) fail(name string, code Code, err error) error {
	r.Checks = append(r.Checks, Check{Name: name, Detail: err.Error()})
	return &Error{Check: name, Code: code, Err: err}
}

// Failed returns the first failed check, if any.
func (r *AzureResult) Failed() (Check, bool) {
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			return c, true
		}
	}
	return Check{}, false
}

// AzureTDX appraises an Azure TDX confidential VM, in this order:
//
//  1. azuretdx.Verify, with TDX as its TD quote verifier (PCK chain,
//     signatures, collateral and TCB status, DEBUG: the checks of a TDX
//     node, named td_quote.<check>) and ExtraData as the nonce: the TD
//     report matches the quote, the runtime data is what REPORTDATA binds,
//     HCLAkPub signed the vTPM quote over the binding and the PCR values.
//  2. Which root the PCK chain ended at: the TDX roots, or SimRoots (a
//     simulated paravisor); never what the quote says of itself. A quote
//     of the simulator's quoting enclave under the TDX roots is refused.
//  3. The MRTD is a trusted paravisor build (ParavisorMRTDs).
//  4. AKPublic, when sent, is HCLAkPub.
//  5. The TPM firmware log, IMA and the runtime log against the verified
//     PCRs, through the TPM nodes' replay (replayPCRLogs).
//
// The result is non-nil; the error is an *Error naming the failed check
// (td_quote.<check> for the TD quote's own) or a *StartError.
func AzureTDX(ctx context.Context, in AzureEvidence, opts AzureOptions) (*AzureResult, error) {
	res := &AzureResult{}
	if opts.Start != nil {
		return res, startErr("azure_tdx nodes are appraised from whole logs only")
	}
	for i, m := range opts.ParavisorMRTDs {
		if len(m) != tdxquote.MeasurementSize {
			return res, &Error{Check: CheckParavisorMRTD, Code: CodeConfig, Err: fmt.Errorf("paravisor MRTD %d is %d bytes, want %d", i, len(m), tdxquote.MeasurementSize)}
		}
	}

	// 1. The chain, from Intel's signature to the vTPM's PCRs.
	var td *tdRun
	verifyTD := func(ctx context.Context, quote []byte) (*tdxquote.Quote, []azuretdx.Check, error) {
		td, res.Simulated = tdQuote(ctx, quote, opts)
		return td.Quote, azureChecks(td.Checks), td.err
	}
	ev := &azuretdx.Evidence{
		HCLReport: in.HCLReport, TDQuote: in.TDQuote,
		TPMQuote: azuretdx.TPMQuote{Message: in.Quote, Signature: rawRSASSA(in.Signature), PCRs: azuretdx.SelectionOrder(in.Quote, in.PCRs)},
	}
	az, err := azuretdx.Verify(ctx, ev, in.ExtraData, azuretdx.Options{VerifyTDQuote: verifyTD})
	res.Azure = az
	res.TD = tdResult(td)
	for _, c := range az.Checks {
		res.Checks = append(res.Checks, Check(c))
	}
	if err != nil {
		return res, azureError(err)
	}
	q := az.TDQuote

	// 2. Hardware or simulation, by the root the chain ended at.
	switch {
	case res.Simulated:
		res.pass(CheckSimulatedQuote, "the PCK chain leads to the simulated root: a simulated paravisor, never a hardware node")
	case bytes.Equal(q.Header.QEVendorID[:], []byte(SimQEVendorID)):
		return res, res.fail(CheckSimulatedQuote, CodeRejected, fmt.Errorf("the quote's QE vendor ID is the simulator's (%q): a simulated quote is never accepted as azure_tdx", SimQEVendorID))
	default:
		res.pass(CheckSimulatedQuote, "the PCK chain leads to a TDX root")
	}

	// 3. The paravisor build.
	if len(opts.ParavisorMRTDs) == 0 {
		res.skip(CheckParavisorMRTD, fmt.Sprintf("no paravisor MRTDs given: MRTD %x is not checked", q.Body.MRTD))
	} else if !slices.ContainsFunc(opts.ParavisorMRTDs, func(m []byte) bool { return bytes.Equal(m, q.Body.MRTD[:]) }) {
		return res, res.fail(CheckParavisorMRTD, CodeRejected, fmt.Errorf("MRTD %x is not in azure_tdx.paravisor_mrtds: the TD is not a paravisor build this server trusts, so nothing it says of its vTPM counts", q.Body.MRTD))
	} else {
		res.pass(CheckParavisorMRTD, fmt.Sprintf("MRTD %x is a trusted paravisor build", q.Body.MRTD[:8]))
	}

	// 4. The node's copy of the AK, and the AK's hash.
	akDER, err := x509.MarshalPKIXPublicKey(az.Runtime.AK)
	if err != nil {
		return res, res.fail(CheckAzureAK, CodeInvalidEvidence, fmt.Errorf("HCLAkPub: %w", err))
	}
	sum := sha256.Sum256(akDER)
	res.AKHash = hex.EncodeToString(sum[:])
	if len(in.AKPublic) == 0 {
		res.skip(CheckAzureAK, "the node sent no ak_public: HCLAkPub from the runtime data is the key")
	} else if err := sameAK(in.AKPublic, az.Runtime.AK); err != nil {
		return res, res.fail(CheckAzureAK, CodeRejected, err)
	} else {
		res.pass(CheckAzureAK, "evidence.tpm.ak_public is HCLAkPub")
	}

	// 5. The logs, against the PCRs HCLAkPub signed.
	tee := cctrusted.TEEAzureTDX
	if res.Simulated {
		tee = cctrusted.TEESim
	}
	tdxOpts := opts.TDX
	tdxOpts.TEE, tdxOpts.NodeOptions = tee, opts.NodeOptions
	// The TD's facts and its tee:, tdx: selectors, exactly as a TDX
	// node's; its logs (none: an Azure TD's RTMRs are zero) add nothing.
	node := tdxNode(&Node{}, res.TD, nil, imaResult{}, &runtimeResult{}, tdxOpts)
	sels := slices.DeleteFunc(node.Selectors, func(s string) bool { return !strings.HasPrefix(s, "tee:") && !strings.HasPrefix(s, "tdx:") })
	logsStart := time.Now()
	logs, err := replayPCRLogs(ctx, az.PCRs, in.TPMLog, in.IMA, in.Runtime, opts.NodeOptions, opts.RuntimePCR, node, &res.Checks)
	res.LogsTime = time.Since(logsStart)
	if err != nil {
		if e, ok := AsError(err); ok {
			res.Checks = append(res.Checks, Check{Name: e.Check, Detail: e.Err.Error()})
		}
		return res, err
	}
	// Checkpoints record register values of one index space; an Azure
	// node has two (the TD's, the vTPM's), so it is appraised in full.
	node.Next.Unusable = "azure_tdx nodes are appraised from whole logs only"
	sels = append(sels, "azure:paravisor:true", "azure:ak_hash:"+res.AKHash)
	if vc := az.Runtime.VMConfiguration; vc != nil {
		sels = append(sels, "azure:vm_secure_boot:"+strconv.FormatBool(vc.SecureBoot))
	}
	node.Selectors = append(sels, logs.selectors(node, opts.AllowIMAViolations)...)
	res.Node = node
	return res, nil
}

// tdRun is the TD quote's appraisal, with its error.
type tdRun struct {
	*TDXResult
	err error
}

// tdResult is the appraisal of the TD quote (nil when it did not run).
func tdResult(td *tdRun) *TDXResult {
	if td == nil {
		return nil
	}
	return td.TDXResult
}

// tdQuote appraises the TD quote on its own under the TDX roots and, when
// its PCK chain leads to none of them and SimRoots are set, under those:
// simulated then says which root the chain ended at. The roots never share
// a certificate (the server refuses such a configuration), so a chain
// leads to one kind only.
func tdQuote(ctx context.Context, quote []byte, opts AzureOptions) (*tdRun, bool) {
	o := opts.TDX
	o.TEE, o.NodeOptions = "", NodeOptions{}
	r, err := TDX(ctx, TDXEvidence{Quote: quote}, o)
	if e, ok := AsError(err); !ok || e.Check != CheckPCKChain || opts.SimRoots == nil {
		return &tdRun{r, err}, false
	}
	o.TrustedRoots = opts.SimRoots
	sr, serr := TDX(ctx, TDXEvidence{Quote: quote}, o)
	if e, ok := AsError(serr); ok && e.Check == CheckPCKChain {
		// Neither root: the hardware verdict is the one to report.
		return &tdRun{r, err}, false
	}
	return &tdRun{sr, serr}, true
}

// azureChecks are appraisal's checks in azuretdx's type (the same fields).
func azureChecks(cs []Check) []azuretdx.Check {
	out := make([]azuretdx.Check, 0, len(cs))
	for _, c := range cs {
		out = append(out, azuretdx.Check(c))
	}
	return out
}

// azureError turns azuretdx's error into this package's: a TD quote
// failure keeps the TD quote check's own name and code (collateral
// unavailable is not a rejection), prefixed td_quote.; the others keep
// their check name, their kind becoming the code.
func azureError(err error) error {
	var ae *azuretdx.Error
	if !errors.As(err, &ae) {
		return &Error{Check: azuretdx.CheckEvidenceFormat, Code: CodeInvalidEvidence, Err: err}
	}
	if e, ok := AsError(ae.Err); ok && ae.Check == azuretdx.CheckTDQuote {
		return &Error{Check: azuretdx.TDQuoteCheckPrefix + e.Check, Code: e.Code, Err: e.Err}
	}
	code := CodeRejected
	switch ae.Kind {
	case azuretdx.KindInvalidEvidence:
		code = CodeInvalidEvidence
	case azuretdx.KindConfig:
		code = CodeConfig
	}
	return &Error{Check: ae.Check, Code: code, Err: ae.Err}
}

// rawRSASSA returns the RSA signature inside a TPMT_SIGNATURE of RSASSA
// with SHA-256 (sigAlg, hash, size, then the signature, as go-tpm marshals
// a quote's signature), or sig unchanged: Azure's bare form, which
// azuretdx wraps itself. Any other TPMT_SIGNATURE stays as it is and fails
// the signature check.
func rawRSASSA(sig []byte) []byte {
	if len(sig) > 6 && binary.BigEndian.Uint16(sig) == uint16(tpm2.TPMAlgRSASSA) &&
		binary.BigEndian.Uint16(sig[2:]) == uint16(tpm2.TPMAlgSHA256) && int(binary.BigEndian.Uint16(sig[4:])) == len(sig)-6 {
		return sig[6:]
	}
	return sig
}

// sameAK checks that the node's ak_public (TPMT_PUBLIC, or TPM2B_PUBLIC:
// its size prefix is the rest's length, which no TPMT_PUBLIC's type field
// can be) is the key ak.
func sameAK(pub []byte, ak *rsa.PublicKey) error {
	if len(pub) > 2 && int(binary.BigEndian.Uint16(pub)) == len(pub)-2 {
		pub = pub[2:]
	}
	k, err := tpmquote.ParsePublic(pub)
	if err != nil {
		return fmt.Errorf("evidence.tpm.ak_public: %w", err)
	}
	if rk, ok := k.(*rsa.PublicKey); !ok || !rk.Equal(ak) {
		return fmt.Errorf("evidence.tpm.ak_public is a %T that is not HCLAkPub, the key the TD quote's runtime data names", k)
	}
	return nil
}
