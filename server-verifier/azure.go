package serververifier

import (
	"context"
	"time"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// appraiseAzure appraises an Azure TDX confidential VM: its TD quote under
// the tdx block's roots, collateral and TCB rules (or, with a sim block,
// the simulated root: a simulated paravisor, told by the root its chain
// ends at), the HCL report, the vTPM quote over the binding and the logs
// against the vTPM's PCRs. No credential activation: the TD quote vouches
// for the vTPM key. Always a full appraisal (a start falls back).
func (a *attestation) appraiseAzure(ctx context.Context, ev *evidencepb.Evidence, logs *evidence.Logs, binding []byte, start *appraisal.Start) (*verified, time.Duration, error) {
	st := a.st
	t := ev.GetTpm()
	a.quoteSHA256 = sha256Hex(ev.GetQuote())
	in := appraisal.AzureEvidence{
		HCLReport: ev.GetHclReport(), TDQuote: ev.GetQuote(),
		AKPublic: t.GetAkPublic(), Quote: t.GetQuote(), Signature: t.GetSignature(), PCRs: pcrRegisters(t),
		ExtraData: binding,
		TPMLog:    logs.TPM, IMA: logs.IMA, Runtime: logs.Runtime,
	}
	opts := appraisal.AzureOptions{
		TDX: a.tdxOptions(nil), SimRoots: st.simRoots,
		ParavisorMRTDs: st.paravisorMRTDs, RuntimePCR: st.cfg.AzureTDX.RuntimePCR,
		NodeOptions: appraisal.NodeOptions{AllowIMAViolations: st.cfg.AllowIMAViolations, Start: start, IMAPolicies: st.imaPolicies},
	}
	res, err := appraisal.AzureTDX(ctx, in, opts)
	if a.offline != nil {
		a.offline.checks = res.Checks
	}
	if err != nil {
		return nil, res.LogsTime, err
	}
	body := &res.TD.Quote.Body
	// As on TDX: the agent path template may read these, from the
	// verified TD quote only.
	q := &conf.AgentPathQuote{MRConfigID: body.MRConfigID[:], MROwner: body.MROwner[:], MROwnerConfig: body.MROwnerConfig[:]}
	return &verified{id: res.AKHash, quote: q, node: res.Node, simulated: res.Simulated}, res.LogsTime, nil
}
