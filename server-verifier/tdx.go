package serververifier

import (
	"bytes"
	"context"
	"encoding/hex"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// simQEVendorID is the QE vendor ID every quote of the simulator (package
// tee/sim) carries. Production code does not import the simulator, so the
// value is repeated here; a test checks that the two agree.
const simQEVendorID = "CCNP-SIM-NOTINTL"

// verifyTDX appraises a TDX quote, or a simulator's quote under the
// simulated root only, through the same appraisal.TDX as `ccnp verify`, then
// replays the runtime log against RTMR3.
//
// With inc, the evidence is incremental: no firmware log, and IMA and
// runtime logs that start at the checkpoint's offsets, replayed from the
// register values the checkpoint records (see incremental.verifyTDX).
func (a *attestation) verifyTDX(ctx context.Context, hello *evidencepb.Hello, ev *evidencepb.Evidence, logs *evidence.Logs, binding []byte, inc *incremental) (*verified, error) {
	if ev.GetTpm() != nil {
		return nil, rejectf(codes.InvalidArgument, CheckPayload, "a %s node sends a TDX quote, not tpm evidence", a.tee)
	}
	quote := ev.GetQuote()
	a.quoteSHA256 = sha256Hex(quote)
	sim := conf.TEE(a.tee) == conf.TEESim
	if hello.GetInstanceId() == "" {
		return nil, rejectf(codes.InvalidArgument, CheckPayload, "hello.instance_id: a %s node must name itself with its instance ID", a.tee)
	}

	opts := a.tdxOptions(sim)
	in := appraisal.TDXEvidence{
		Quote:      quote,
		CCEL:       logs.CCEL,
		CCELTable:  ev.GetCcelTable(),
		IMA:        logs.IMA,
		ReportData: binding,
	}
	if inc != nil {
		// The checkpoint stands for the firmware log and the IMA prefix;
		// appraisal checks the quote alone and the suffixes are replayed
		// below.
		in.CCEL, in.CCELTable, in.IMA = nil, nil, nil
	}
	phase := a.st.metrics.start(phaseQuote)
	actx, clock := ctx, (*collateralClock)(nil)
	if a.st.metrics != nil {
		actx, clock = withCollateralClock(ctx)
	}
	res, err := appraisal.TDX(actx, in, opts)
	phase.done(clock.elapsed())
	if res != nil && a.offline != nil {
		a.offline.checks = res.Checks
	}
	a.st.metrics.observe(phaseCollateral, clock.elapsed())
	if err != nil {
		return nil, appraisalRejection(err)
	}
	// Only reachable when a simulated root was configured among the TDX
	// roots (without a sim block, which would have been refused): the quote
	// verified, yet it is the simulator's.
	if !sim && bytes.Equal(res.Quote.Header.QEVendorID[:], []byte(simQEVendorID)) {
		return nil, rejectf(codes.PermissionDenied, CheckSimulatedQuote, "the quote's QE vendor ID is the simulator's (%q): a simulated quote is never accepted as tdx", simQEVendorID)
	}
	body := &res.Quote.Body
	// The agent path template may read these; they come from the verified
	// body only, never from anything the agent says.
	quoteFields := &conf.AgentPathQuote{
		MRConfigID: body.MRConfigID[:], MROwner: body.MROwner[:], MROwnerConfig: body.MROwnerConfig[:],
	}
	if inc != nil {
		if err := inc.checkAgent(a, hello.GetInstanceId(), quoteFields); err != nil {
			return nil, err
		}
	}

	v := &verified{id: hello.GetInstanceId(), quote: quoteFields}
	f := &v.facts
	f.TEE = conf.TEE(a.tee)
	f.MRTD, f.MRConfigID = body.MRTD[:], body.MRConfigID[:]
	for i := range body.RTMR {
		f.RTMR[i] = body.RTMR[i][:]
	}
	f.TCBStatus = res.TCBStatus
	f.TCBInfoEvaluationDataNumber, f.QEIdentityEvaluationDataNumber = res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber
	f.AdvisoryIDs = res.AdvisoryIDs
	debug := res.Debug
	f.Debug = &debug
	fw, ir := res.Facts, imaResult{verified: len(logs.IMA) > 0, violations: res.IMAViolations}
	phase = a.st.metrics.start(phaseReplay)
	next := a.newCheckpointState()
	var rt *runtimeResult
	if inc != nil {
		if fw, ir, rt, err = inc.verifyTDX(body, logs, next); err != nil {
			return nil, err
		}
	} else {
		rl, err := decodeRuntimeLog(logs.Runtime)
		if err != nil {
			return nil, err
		}
		if rt, err = verifyRuntimeLog(rl, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384, body.RTMR[3][:]); err != nil {
			return nil, err
		}
		next.fullTDX(body, logs, rl, a.want)
	}
	phase.done()
	factsFromFirmware(f, fw)
	f.Workloads, f.WorkloadsKnown = rt.workloads, rt.known
	f.RuntimeNotice, f.RuntimeFull = rt.incomplete, rt.full
	next.facts(fw, ir, rt)
	v.next = next

	// A simulator's selectors are moved under "sim:" at the end of the
	// attestation (simNamespace), with every other selector it gets.
	pre := "tdx:"
	s := []string{
		"tee:" + a.tee,
		pre + "mrtd:" + hex.EncodeToString(body.MRTD[:]),
		pre + "mrconfigid:" + hex.EncodeToString(body.MRConfigID[:]),
		pre + "mrowner:" + hex.EncodeToString(body.MROwner[:]),
		pre + "mrownerconfig:" + hex.EncodeToString(body.MROwnerConfig[:]),
		pre + "fmspc:" + strings.ToLower(res.FMSPC),
		pre + "debug:" + boolString(res.Debug),
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
		// appraisal admits only IDs in Intel's format (conf.ValidAdvisoryID).
		for _, id := range res.AdvisoryIDs {
			s = append(s, pre+"advisory:"+id)
		}
	}
	s = append(s, bootSelectors(f, fw)...)
	s = append(s, a.imaSelectors(ir)...)
	v.selectors = append(s, rt.selectors()...)
	return v, nil
}

// tdxOptions builds the appraisal options: a simulator is checked under
// the simulated root only, with the tdx block's collateral and TCB rules
// when there is one (offline otherwise), and TDX under the TDX roots.
func (a *attestation) tdxOptions(sim bool) appraisal.TDXOptions {
	st := a.st
	opts := appraisal.TDXOptions{TrustedRoots: st.tdxRoots, Now: a.p.now(), Cache: a.p.cache}
	if sim {
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

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
