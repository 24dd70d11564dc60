package serververifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/policy"
)

// attestation is one run of the protocol on one stream.
type attestation struct {
	p      *Plugin
	st     *state
	log    hclog.Logger
	stream nodeattestorv1.NodeAttestor_AttestServer
	start  time.Time
	limits evidence.Limits

	// Filled in as the protocol goes, for the audit line.
	tee          string
	agentVersion string
	agentID      string
	quoteSHA256  string
	results      []policy.Result
	selectors    int
	// incremental: the evidence was verified from a checkpoint; fellBack
	// says why a presented checkpoint was not used.
	incremental bool
	fellBack    string
	// simulated: an azure_tdx node whose TD quote chains to the simulated
	// root (a simulated paravisor).
	simulated bool
	// want is what the current round asked for.
	want []evidencepb.LogKind
	// checkpointCap: the agent stores checkpoints.
	checkpointCap bool
	// release gives back the current round's verification slot, not its
	// share of the evidence budget, which the round keeps to its end (see
	// admit); safe to call more than once.
	release func()
	// offline is set only by VerifyOffline (recorded evidence, no agent).
	offline *offlineRun
}

// Attest runs the challenge/response of DESIGN.md §3 and answers with the
// agent's attributes, or fails with a gRPC status naming the failed check.
func (p *Plugin) Attest(stream nodeattestorv1.NodeAttestor_AttestServer) error {
	st, logger, err := p.current()
	if err != nil {
		return err
	}
	a := &attestation{
		p: p, st: st, log: logger, stream: stream, start: p.now(),
		limits: evidence.Limits{MaxPayloadBytes: st.cfg.MaxPayloadBytes, MaxDecompressedBytes: st.cfg.MaxPayloadBytes},
	}
	attrs, err := a.run(stream.Context())
	a.audit(err)
	st.metrics.result(err == nil, a.incremental)
	if logger.IsDebug() {
		a.logCaches()
	}
	if err != nil {
		r := asRejection(err)
		return status.Error(r.code, r.Error())
	}
	return stream.Send(&nodeattestorv1.AttestResponse{
		Response: &nodeattestorv1.AttestResponse_AgentAttributes{AgentAttributes: attrs},
	})
}

func (a *attestation) run(ctx context.Context) (*nodeattestorv1.AgentAttributes, error) {
	cfg := a.st.cfg
	first, err := a.recv(ctx, "hello")
	if err != nil {
		return nil, err
	}
	helloBytes := first.GetPayload()
	if helloBytes == nil {
		return nil, rejectf(codes.InvalidArgument, appraisal.CheckProtocol, "the first message must carry the hello payload, not a challenge response")
	}
	// The hello is held until the stream ends, while the agent is waited
	// for: it gets a far smaller bound than evidence.
	helloLimits := evidence.Limits{MaxPayloadBytes: min(maxHelloBytes, a.limits.MaxPayloadBytes), MaxDecompressedBytes: a.limits.MaxDecompressedBytes}
	hello, err := evidence.DecodeHello(helloBytes, helloLimits)
	if err != nil {
		return nil, payloadRejection("hello", err)
	}
	a.tee, a.agentVersion = hello.GetTee(), hello.GetAgentVersion()
	a.checkpointCap = slices.Contains(hello.GetCaps(), evidence.CapCheckpoint)
	if err := a.accepted(cctrusted.TEE(a.tee)); err != nil {
		return nil, err
	}

	// An agent that presents a checkpoint is asked for its log suffixes
	// only; anything that does not add up makes the next round ask for
	// full logs (at most one fallback per attestation).
	inc := a.openCheckpoint(hello)
	var v *verified
	for {
		v, err = a.round(ctx, hello, helloBytes, inc)
		var fb *fallbackError
		if inc != nil && errors.As(err, &fb) {
			a.log.Info("Incremental re-attestation falls back to a full replay", "agent_id", inc.claims.GetAgentId(), "reason", fb.reason)
			a.fellBack = fb.reason
			inc = nil
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	a.incremental = v.incremental

	phase := a.st.metrics.start(phasePolicy)
	outcome := policy.Evaluate(cfg.Policies, &v.node.Facts, cfg.RequirePolicy)
	phase.done()
	a.results = outcome.Results
	a.reportIMA(v.node, outcome.Results, v.id)
	for _, r := range outcome.Results {
		if !r.Match && !r.Enforce {
			a.log.Warn("Warn-only policy not met", "policy", r.Name, "policy_digest", r.Digest, "tee", a.tee, "node", v.id, "mismatches", r.Mismatches)
		}
	}
	if err := outcome.Rejection(); err != nil {
		return nil, reject(codes.PermissionDenied, appraisal.CheckPolicy, err)
	}

	// A simulated paravisor (an azure_tdx node whose TD quote chains to
	// the simulated root) is a simulation like tee sim: its agent ID and
	// selectors are a sim node's.
	pathTEE := a.tee
	if v.simulated {
		pathTEE, a.simulated = string(cctrusted.TEESim), true
	}
	if a.agentID, err = a.agentIDFor(pathTEE, v.id, v.quote); err != nil {
		return nil, err
	}
	sels := append(slices.Clone(v.node.Selectors), outcome.Selectors()...)
	if cctrusted.TEE(a.tee) == cctrusted.TEESim || v.simulated {
		sels = simNamespace(sels)
	}
	slices.Sort(sels)
	sels = slices.Compact(sels)
	a.selectors = len(sels)
	if err := checkSelectorCount(sels); err != nil {
		return nil, err
	}
	if err := a.issueCheckpoint(ctx, hello, v); err != nil {
		return nil, err
	}
	return &nodeattestorv1.AgentAttributes{SpiffeId: a.agentID, SelectorValues: sels, CanReattest: true}, nil
}

// simNamespace moves every selector of a simulated node except "tee:sim"
// under "sim:" so that no registration entry written for hardware
// ("ccnp:policy:golden", "ccnp:boot:secure_boot:true",
// "ccnp:runtime:exe:sha256:...") can ever be satisfied by a simulation. A
// simulator is verified as a TD, so its register selectors arrive as "tdx:"
// and become "sim:" ("sim:mrtd:<hex>"), not "sim:tdx:"; a simulated
// paravisor's vTPM PCRs arrive as "tpm:" and become "sim:pcr:...". The two
// sets of keys do not overlap. Done once, here, on the final list, so that
// no selector added later can escape it.
func simNamespace(sels []string) []string {
	out := make([]string, 0, len(sels))
	for _, s := range sels {
		switch {
		case s == "tee:"+string(cctrusted.TEESim):
			out = append(out, s)
		case strings.HasPrefix(s, "tdx:"):
			out = append(out, "sim:"+strings.TrimPrefix(s, "tdx:"))
		case strings.HasPrefix(s, "tpm:"):
			out = append(out, "sim:"+strings.TrimPrefix(s, "tpm:"))
		default:
			out = append(out, "sim:"+s)
		}
	}
	return out
}

// round is one nonce challenge and the verification of the evidence that
// answers it: incremental when inc is set (logs from its offsets on), full
// otherwise.
func (a *attestation) round(ctx context.Context, hello *evidencepb.Hello, helloBytes []byte, inc *incremental) (*verified, error) {
	cfg := a.st.cfg
	rn, err := newRoundNonce(a.nonceSource(), a.p.now(), cfg.NonceTTL)
	if err != nil {
		return nil, reject(codes.Internal, appraisal.CheckNonce, err)
	}
	nonce := rn.value
	ch := &evidencepb.Challenge{
		Nonce:           nonce,
		Want:            wantLogs(cctrusted.TEE(a.tee), hello.GetCaps()),
		MaxPayloadBytes: uint64(cfg.MaxPayloadBytes),
	}
	if inc != nil {
		ch.Want = incrementalWant(cctrusted.TEE(a.tee), ch.Want)
		ch.Checkpoint = &evidencepb.Checkpoint{Offsets: inc.claims.GetOffsets()}
	}
	a.want = ch.Want
	if err := a.sendChallenge(ch); err != nil {
		return nil, err
	}

	resp, err := a.recv(ctx, "evidence")
	if err != nil {
		return nil, err
	}
	evBytes := resp.GetChallengeResponse()
	if evBytes == nil {
		return nil, rejectf(codes.InvalidArgument, appraisal.CheckProtocol, "expected the evidence as a challenge response")
	}
	// Freshness is when the answer arrived, not when a slot freed up.
	if err := rn.fresh(a.p.now()); err != nil {
		// Retryable: an agent that was slow (nonce_ttl shorter than its
		// answer deadline, a busy TPM) must try again, not give up as it
		// does on PermissionDenied; a replay fails the binding anyway.
		return nil, reject(codes.DeadlineExceeded, appraisal.CheckNonce, err)
	}
	// Only now, with the evidence here, does this attestation take a share
	// of the server (see admission.go).
	slot, release, err := a.admit(ctx, int64(len(evBytes)))
	if err != nil {
		return nil, err
	}
	a.release = slot
	defer release()
	phase := a.st.metrics.start(phaseParse)
	ev, err := evidence.DecodeEvidence(evBytes, a.limits)
	if err != nil {
		return nil, payloadRejection("evidence", err)
	}
	if ev.GetTee() != a.tee {
		return nil, rejectf(codes.PermissionDenied, appraisal.CheckTEE, "evidence is for tee %q but the hello said %q", ev.GetTee(), a.tee)
	}
	if err := evidence.CheckBinding(ev.GetBinding(), nonce, helloBytes); err != nil {
		return nil, reject(codes.PermissionDenied, appraisal.CheckBinding, err)
	}
	if err := checkEcho(ch, ev); err != nil {
		if inc != nil && ev.GetCheckpoint() == nil {
			return nil, fallback("the agent sent whole logs instead of suffixes (it could not cut its logs at the offsets)")
		}
		return nil, err
	}
	// From here on the server's own binding is what the TEE must have
	// signed; the agent's copy has only been checked to agree with it.
	binding := evidence.Binding(nonce, helloBytes)
	logs, err := a.p.logs.DecompressLogs(ev, a.limits)
	if err != nil {
		return nil, payloadRejection("evidence logs", err)
	}
	phase.done()

	v, err := a.appraise(ctx, hello, ev, logs, binding[:], inc)
	if err != nil {
		return nil, err
	}
	v.incremental = inc != nil
	return v, nil
}

// accepted refuses TEE kinds the configuration has no block for.
func (a *attestation) accepted(tee cctrusted.TEE) error {
	cfg := a.st.cfg
	switch {
	case tee == cctrusted.TEETDX && cfg.TDX != nil, tee == cctrusted.TEETPM && cfg.TPM != nil, tee == cctrusted.TEESim && cfg.Sim != nil,
		tee == cctrusted.TEEAzureTDX && cfg.AzureTDX != nil:
		return nil
	case tee == cctrusted.TEESim:
		return rejectf(codes.PermissionDenied, appraisal.CheckTEE, "a simulated TEE is not accepted: the server configuration has no sim block")
	}
	return rejectf(codes.PermissionDenied, appraisal.CheckTEE, "tee %q is not accepted: the server configuration has no %s block", tee, tee)
}

// wantLogs asks for the logs that apply to the TEE and that the agent said
// it can send.
func wantLogs(tee cctrusted.TEE, caps []string) []evidencepb.LogKind {
	all := []struct {
		kind evidencepb.LogKind
		tpm  bool
		tdx  bool
	}{
		{evidencepb.LogKind_LOG_KIND_CCEL, false, true},
		{evidencepb.LogKind_LOG_KIND_TPM, true, false},
		{evidencepb.LogKind_LOG_KIND_IMA, true, true},
		{evidencepb.LogKind_LOG_KIND_RUNTIME, true, true},
	}
	var want []evidencepb.LogKind
	for _, l := range all {
		applies := l.tdx
		if tee == cctrusted.TEETPM || tee == cctrusted.TEEAzureTDX {
			// An Azure TD's guest measures into the vTPM, as a TPM node.
			applies = l.tpm
		}
		if applies && slices.Contains(caps, evidence.LogCap(l.kind)) {
			want = append(want, l.kind)
		}
	}
	return want
}

func (a *attestation) sendChallenge(c *evidencepb.Challenge) error {
	b, err := evidence.Encode(evidence.NewChallenge(c))
	if err != nil {
		return reject(codes.Internal, appraisal.CheckProtocol, err)
	}
	if err := a.stream.Send(&nodeattestorv1.AttestResponse{Response: &nodeattestorv1.AttestResponse_Challenge{Challenge: b}}); err != nil {
		return reject(codes.Unavailable, appraisal.CheckProtocol, fmt.Errorf("sending the challenge: %w", err))
	}
	return nil
}

type recvResult struct {
	req *nodeattestorv1.AttestRequest
	err error
}

// recv waits for the agent's next message at most the answer deadline of
// the attestation's TEE (challenge_timeout when configured; see
// conf.ServerVerifier.AnswerTimeout). The receiving goroutine ends with the
// stream when Attest returns.
func (a *attestation) recv(ctx context.Context, what string) (*nodeattestorv1.AttestRequest, error) {
	ch := make(chan recvResult, 1)
	go func() {
		req, err := a.stream.Recv()
		ch <- recvResult{req, err}
	}()
	wait := a.st.cfg.AnswerTimeout(cctrusted.TEE(a.tee))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err == nil {
			return r.req, nil
		}
		if errors.Is(r.err, io.EOF) {
			return nil, rejectf(codes.InvalidArgument, appraisal.CheckProtocol, "the agent closed the stream before sending its %s", what)
		}
		return nil, reject(status.Code(r.err), appraisal.CheckProtocol, fmt.Errorf("receiving the %s: %w", what, r.err))
	case <-timer.C:
		if a.st.cfg.ChallengeTimeout > 0 {
			return nil, rejectf(codes.DeadlineExceeded, appraisal.CheckProtocol, "no %s within challenge_timeout (%s)", what, wait)
		}
		return nil, rejectf(codes.DeadlineExceeded, appraisal.CheckProtocol, "no %s within %s, the default deadline for %s (set challenge_timeout to change it)", what, wait, teeOrUnknown(a.tee))
	case <-ctx.Done():
		return nil, reject(status.Code(ctx.Err()), appraisal.CheckProtocol, fmt.Errorf("waiting for the %s: %w", what, ctx.Err()))
	}
}

// audit writes the one structured line every attestation ends with.
func (a *attestation) audit(err error) {
	policies := make([]string, 0, len(a.results))
	for _, r := range a.results {
		res := "match"
		switch {
		case !r.Match && r.Enforce:
			res = "mismatch"
		case !r.Match:
			res = "warn"
		}
		policies = append(policies, fmt.Sprintf("%s digest=%s enforce=%v result=%s", r.Name, r.Digest, r.Enforce, res))
	}
	kv := []any{
		"agent_id", a.agentID,
		"tee", a.tee,
		"agent_version", a.agentVersion,
		"quote_sha256", a.quoteSHA256,
		"policies", policies,
		"elapsed_time", a.p.now().Sub(a.start).String(),
		"incremental", a.incremental,
	}
	if a.fellBack != "" {
		kv = append(kv, "checkpoint_fallback", a.fellBack)
	}
	if a.simulated {
		kv = append(kv, "simulated", true)
	}
	if err == nil {
		a.log.Info("Attestation accepted", append([]any{"result", "accepted", "selectors", a.selectors}, kv...)...)
		return
	}
	r := asRejection(err)
	a.log.Error("Attestation rejected", append([]any{"result", "rejected", "check", r.check, "code", r.code.String(), "error", r.err.Error()}, kv...)...)
}

func teeOrUnknown(tee string) string {
	if tee == "" {
		return "an agent that has not said its TEE"
	}
	return tee
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
