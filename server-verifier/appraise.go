package serververifier

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// activationSecretSize is the credential activation secret: as large as the
// SHA-256 name digest it is bound with.
const activationSecretSize = 32

// verified is what the appraisal of one round's evidence established.
type verified struct {
	// id names the node in its agent ID (EK hash on TPM, instance ID on TDX).
	id string
	// quote holds the verified quote's VMM-set fields for the agent path
	// template; nil on TPM.
	quote *conf.AgentPathQuote
	node  *appraisal.Node
	// incremental: verified from a checkpoint and log suffixes.
	incremental bool
	// simulated: the TEE was a simulation though the hello named hardware
	// (a simulated paravisor's azure_tdx node).
	simulated bool
}

// appraise hands the evidence to the appraisal of its TEE: TDX, and the
// simulator as a TD under its own root, or TPM; from the checkpoint's
// register values and log offsets when inc is set. What the appraisal
// cannot use of a checkpoint comes back as a fallback (a full round).
func (a *attestation) appraise(ctx context.Context, hello *evidencepb.Hello, ev *evidencepb.Evidence, logs *evidence.Logs, binding []byte, inc *incremental) (*verified, error) {
	var start *appraisal.Start
	if inc != nil {
		start = inc.start()
	}
	actx, clock := ctx, (*collateral.Clock)(nil)
	if a.st.metrics != nil {
		actx, clock = collateral.WithClock(ctx)
	}
	phase := a.st.metrics.start(phaseQuote)
	var v *verified
	var logsTime, waited time.Duration
	var err error
	switch cctrusted.TEE(a.tee) {
	case cctrusted.TEETPM:
		v, logsTime, waited, err = a.appraiseTPM(actx, ev, logs, binding, inc, start)
	case cctrusted.TEEAzureTDX:
		v, logsTime, err = a.appraiseAzure(actx, ev, logs, binding, start)
	default:
		v, logsTime, err = a.appraiseTDX(actx, hello, ev, logs, binding, inc, start)
	}
	phase.done(clock.Elapsed(), logsTime, waited)
	a.st.metrics.observe(phaseCollateral, clock.Elapsed())
	a.st.metrics.observe(phaseReplay, logsTime)
	var se *appraisal.StartError
	switch {
	case errors.As(err, &se):
		return nil, &fallbackError{reason: se.Reason}
	case err != nil:
		return nil, appraisalRejection(err)
	}
	if v.node.IMAWithheld {
		a.log.Warn("IMA list has violations: ima:verified:true withheld (allow_ima_violations = false)", "tee", a.tee, "violations", v.node.Next.IMAViolations)
	}
	return v, nil
}

func (a *attestation) appraiseTDX(ctx context.Context, hello *evidencepb.Hello, ev *evidencepb.Evidence, logs *evidence.Logs, binding []byte, inc *incremental, start *appraisal.Start) (*verified, time.Duration, error) {
	if ev.GetTpm() != nil {
		return nil, 0, rejectf(codes.InvalidArgument, appraisal.CheckPayload, "a %s node sends a TDX quote, not tpm evidence", a.tee)
	}
	a.quoteSHA256 = sha256Hex(ev.GetQuote())
	if hello.GetInstanceId() == "" {
		return nil, 0, rejectf(codes.InvalidArgument, appraisal.CheckPayload, "hello.instance_id: a %s node must name itself with its instance ID", a.tee)
	}
	in := appraisal.TDXEvidence{
		Quote: ev.GetQuote(), CCEL: logs.CCEL, CCELTable: ev.GetCcelTable(),
		IMA: logs.IMA, Runtime: logs.Runtime, ReportData: binding,
	}
	if start != nil {
		// The checkpoint stands for the firmware log.
		in.CCEL, in.CCELTable = nil, nil
	}
	res, err := appraisal.TDX(ctx, in, a.tdxOptions(start))
	if a.offline != nil {
		a.offline.checks = res.Checks
	}
	if err != nil {
		return nil, res.LogsTime, err
	}
	body := &res.Quote.Body
	// The agent path template may read these; they come from the verified
	// body only, never from anything the agent says.
	q := &conf.AgentPathQuote{MRConfigID: body.MRConfigID[:], MROwner: body.MROwner[:], MROwnerConfig: body.MROwnerConfig[:]}
	if inc != nil {
		if err := inc.checkAgent(a, hello.GetInstanceId(), q); err != nil {
			return nil, res.LogsTime, err
		}
	}
	return &verified{id: hello.GetInstanceId(), quote: q, node: res.Node}, res.LogsTime, nil
}

// tdxOptions builds the appraisal options: a simulator is checked under
// the simulated root only, with the tdx block's collateral and TCB rules
// when there is one (offline otherwise), and TDX under the TDX roots.
func (a *attestation) tdxOptions(start *appraisal.Start) appraisal.TDXOptions {
	st := a.st
	opts := appraisal.TDXOptions{
		TrustedRoots: st.tdxRoots, Now: a.p.now(), Cache: a.p.cache, TEE: cctrusted.TEE(a.tee),
		NodeOptions: appraisal.NodeOptions{AllowIMAViolations: st.cfg.AllowIMAViolations, Start: start, IMAPolicies: st.imaPolicies},
	}
	if opts.TEE == cctrusted.TEESim {
		opts.TrustedRoots = st.simRoots
	}
	if t := st.cfg.TDX; t != nil {
		opts.Collateral = st.getter
		opts.CheckRevocations = st.getter != nil
		opts.AllowDebug = t.AllowDebug
		opts.MinTCBEvaluationDataNumber = t.MinTCBEvaluationDataNumber
		for _, s := range t.AcceptedTCBStatuses {
			opts.AcceptedTCBStatuses = append(opts.AcceptedTCBStatuses, string(s))
		}
	}
	return opts
}

// appraiseTPM appraises TPM evidence; waited is the time the credential
// activation round trip spent waiting for the agent.
func (a *attestation) appraiseTPM(ctx context.Context, ev *evidencepb.Evidence, logs *evidence.Logs, binding []byte, inc *incremental, start *appraisal.Start) (v *verified, logsTime, waited time.Duration, err error) {
	t := ev.GetTpm()
	a.quoteSHA256 = sha256Hex(t.GetQuote())
	if inc != nil {
		// A TPM node's ID is its EK: a token of another node is told
		// before anything is replayed from it.
		ekHash, err := appraisal.EKHash(t.GetEkPublic())
		if err != nil {
			return nil, 0, 0, err
		}
		if err := inc.checkAgent(a, ekHash, nil); err != nil {
			return nil, 0, 0, err
		}
	}
	pcrs := pcrRegisters(t)
	st := a.st
	in := appraisal.TPMEvidence{
		EKPublic: t.GetEkPublic(), EKCertificate: t.GetEkCertificate(), EKIntermediates: t.GetEkIntermediates(),
		AKPublic: t.GetAkPublic(), AKCertificateChain: t.GetAkCertificateChain(),
		Quote: t.GetQuote(), Signature: t.GetSignature(), PCRs: pcrs, ExtraData: binding,
		TPMLog: logs.TPM, IMA: logs.IMA, Runtime: logs.Runtime,
	}
	opts := appraisal.TPMOptions{
		NodeOptions: appraisal.NodeOptions{AllowIMAViolations: st.cfg.AllowIMAViolations, Start: start, IMAPolicies: st.imaPolicies},
		Now:         a.p.now(), EKHashAllowList: st.ekAllow, EKRoots: st.ekRoots, AKRoots: st.akRoots,
		RuntimePCR: st.cfg.TPM.RuntimePCR,
		Activate: func(ctx context.Context, ekPub, akName []byte) error {
			began := time.Now()
			defer func() { waited = time.Since(began) }()
			return a.activate(ctx, ekPub, akName)
		},
		// A recording holds no TPM to answer; the EK is then unproven,
		// and VerifyOffline says so (never in a plugin SPIRE runs).
		SkipActivation: a.offline != nil,
	}
	res, err := appraisal.TPM(ctx, in, opts)
	if a.offline != nil {
		a.offline.checks = res.Checks
		a.offline.activationSkipped = res.ActivationSkipped
	}
	if err != nil {
		return nil, res.LogsTime, waited, err
	}
	return &verified{id: res.EKHash, node: res.Node}, res.LogsTime, waited, nil
}

// pcrRegisters are the PCR values of a TPM quote's evidence.
func pcrRegisters(t *evidencepb.TPMEvidence) cctrusted.Registers {
	pcrs := cctrusted.Registers{}
	for _, bank := range t.GetPcrs() {
		for idx, val := range bank.GetValues() {
			pcrs.Set(cctrusted.PCR(idx).IMR(), cctrusted.Algorithm(bank.GetAlg()), val)
		}
	}
	return pcrs
}

// activate runs credential activation: only the TPM holding the EK, with
// the AK loaded, recovers the secret.
func (a *attestation) activate(ctx context.Context, ekPub, akName []byte) error {
	// The round trip waits for the agent: it must not hold a verification
	// slot while it does.
	if a.release != nil {
		a.release()
	}
	secret := make([]byte, activationSecretSize)
	if _, err := rand.Read(secret); err != nil {
		return reject(codes.Internal, appraisal.CheckActivation, err)
	}
	blob, enc, err := tpmquote.MakeCredential(ekPub, akName, secret)
	if err != nil {
		return reject(codes.InvalidArgument, appraisal.CheckActivation, fmt.Errorf("making the credential for the EK: %w", err))
	}
	if err := a.sendChallenge(&evidencepb.Challenge{CredentialBlob: blob, EncryptedSecret: enc}); err != nil {
		return err
	}
	resp, err := a.recv(ctx, "activated secret")
	if err != nil {
		return err
	}
	b := resp.GetChallengeResponse()
	if b == nil {
		return rejectf(codes.InvalidArgument, appraisal.CheckProtocol, "expected the activated secret as a challenge response")
	}
	got, err := evidence.DecodeActivatedSecret(b, a.limits)
	if err != nil {
		return payloadRejection("activated secret", err)
	}
	if subtle.ConstantTimeCompare(got.GetSecret(), secret) != 1 {
		return rejectf(codes.PermissionDenied, appraisal.CheckActivation, "the activated secret is wrong: the AK is not loaded in the TPM that holds the EK")
	}
	return nil
}
