package serververifier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Incremental re-attestation (issue 7). At the end of a verified
// attestation the server signs what the appraisal established (register
// values, log ends, firmware facts, workloads: appraisal.Next) into a token
// the agent stores; at the next one the agent presents it in its hello, the
// server asks only for what the logs gained since, and the appraisal starts
// from the recorded values (appraisal.Start, whose comment says why that is
// sound). The token is the only state: every server holding the trust
// domain's checkpoint key accepts it. Anything that does not add up falls
// back to a full round.

// fallbackError ends an incremental round: the server asks again for full
// logs in a fresh round.
type fallbackError struct{ reason string }

func (e *fallbackError) Error() string { return "checkpoint not usable: " + e.reason }

func fallback(format string, args ...any) error {
	return &fallbackError{reason: fmt.Sprintf(format, args...)}
}

// incremental is an accepted checkpoint.
type incremental struct {
	claims *evidencepb.CheckpointClaims
}

// loadCheckpointKey reads the checkpoint key files of a configuration.
func (p *Plugin) loadCheckpointKey(cfg *conf.ServerVerifier) (*evidence.CheckpointKey, error) {
	read := func(key, path string) ([]byte, error) {
		b, err := p.readFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		k, err := evidence.ParseCheckpointKeyFile(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", key, path, err)
		}
		return k, nil
	}
	primary, err := read("checkpoint_key_file", cfg.CheckpointKeyFile)
	if err != nil {
		return nil, err
	}
	var previous [][]byte
	if cfg.CheckpointPreviousKeyFile != "" {
		k, err := read("checkpoint_previous_key_file", cfg.CheckpointPreviousKeyFile)
		if err != nil {
			return nil, err
		}
		previous = append(previous, k)
	}
	return evidence.NewCheckpointKey(primary, previous...)
}

// agentIDOf renders the agent ID of node id, whose verified quote has the
// fields q (nil on TPM, and before a quote is verified), under this
// configuration. A field the node's quote cannot give is PermissionDenied:
// the agent cannot fix it by retrying.
func (a *attestation) agentIDOf(id string, q *conf.AgentPathQuote) (string, error) {
	return a.agentIDFor(a.tee, id, q)
}

// agentIDFor is agentIDOf for a node whose agent path names tee (sim for a
// simulated paravisor, whatever its hello said).
func (a *attestation) agentIDFor(tee, id string, q *conf.AgentPathQuote) (string, error) {
	path, err := a.st.cfg.AgentPath(conf.AgentPathData{TEE: tee, ID: id, Quote: q})
	if err != nil {
		code := codes.InvalidArgument
		var fe *conf.AgentPathFieldError
		if errors.As(err, &fe) {
			code = codes.PermissionDenied
		}
		return "", reject(code, appraisal.CheckAgentID, err)
	}
	return "spiffe://" + a.st.trustDomain + path, nil
}

// needsQuote reports whether the agent path template reads a quote field,
// so the agent ID is known only once the quote verified.
func (a *attestation) needsQuote(id string) bool {
	_, err := a.agentIDOf(id, nil)
	var fe *conf.AgentPathFieldError
	return errors.As(err, &fe)
}

// openCheckpoint returns the hello's checkpoint when this server can use
// it, nil otherwise (the attestation is then a full one; a.fellBack says
// why the token was not used).
func (a *attestation) openCheckpoint(hello *evidencepb.Hello) *incremental {
	ck := hello.GetCheckpoint()
	if ck == nil {
		return nil
	}
	if a.st.ckpt == nil {
		a.fellBack = "this server has no checkpoint_key_file"
		return nil
	}
	claims, err := a.st.ckpt.Open(ck.GetToken(), a.p.now())
	if err != nil {
		a.fellBack = err.Error()
		var ce *evidence.CheckpointError
		if errors.As(err, &ce) && ce.Reason == "forged" {
			// Expiry is routine; a token that does not verify is another
			// trust domain's key, a rotation gone wrong, or an attack.
			a.log.Warn("Checkpoint token does not verify; full replay", "tee", a.tee, "instance_id", hello.GetInstanceId(), "error", err)
		}
		return nil
	}
	if claims.GetTee() != a.tee {
		a.fellBack = fmt.Sprintf("the token is for tee %q, the hello says %q", claims.GetTee(), a.tee)
		return nil
	}
	// The token must cover exactly the growing logs this agent sends now.
	var grow []evidencepb.LogKind
	for _, k := range wantLogs(cctrusted.TEE(a.tee), hello.GetCaps()) {
		if k == evidencepb.LogKind_LOG_KIND_IMA || k == evidencepb.LogKind_LOG_KIND_RUNTIME {
			grow = append(grow, k)
		}
	}
	if len(grow) != len(claims.GetOffsets()) || slices.ContainsFunc(grow, func(k evidencepb.LogKind) bool {
		return evidence.OffsetOf(claims.GetOffsets(), k) == nil
	}) {
		a.fellBack = "the token covers other logs than the ones this agent sends"
		return nil
	}
	inc := &incremental{claims: claims}
	if cctrusted.TEE(a.tee) != cctrusted.TEETPM {
		// TDX and the simulator name themselves in the hello, so a token
		// of another node is told before any evidence is asked for; a TPM
		// node's ID (its EK) is checked in verifyTPM. An agent ID built from
		// quote fields is checked in verifyTDX, once the quote verified.
		if a.needsQuote(hello.GetInstanceId()) {
			return inc
		}
		if err := inc.checkAgent(a, hello.GetInstanceId(), nil); err != nil {
			a.fellBack = err.(*fallbackError).reason
			return nil
		}
	}
	return inc
}

// checkAgent falls back unless the token was issued to node id with the
// verified quote fields q.
func (inc *incremental) checkAgent(a *attestation, id string, q *conf.AgentPathQuote) error {
	got, err := a.agentIDOf(id, q)
	if err != nil {
		return fallback("%v", err)
	}
	if got != inc.claims.GetAgentId() {
		return fallback("the token was issued to %s, this node is %s", inc.claims.GetAgentId(), got)
	}
	return nil
}

// incrementalWant is what an incremental challenge asks for: on TDX (and
// the simulator) the firmware log is not resent, because the checkpoint
// stands for it and RTMR0/1 must not have moved; a TPM's firmware log is
// resent (bounded, cached decompression) because its PCRs are checked
// against it.
func incrementalWant(tee cctrusted.TEE, full []evidencepb.LogKind) []evidencepb.LogKind {
	if tee == cctrusted.TEETPM {
		return full
	}
	return slices.DeleteFunc(slices.Clone(full), func(k evidencepb.LogKind) bool { return k == evidencepb.LogKind_LOG_KIND_CCEL })
}

// checkEcho compares the offsets the evidence says its logs start at with
// those the challenge asked for.
func checkEcho(ch *evidencepb.Challenge, ev *evidencepb.Evidence) error {
	asked, got := ch.GetCheckpoint(), ev.GetCheckpoint()
	switch {
	case asked == nil && got == nil:
		return nil
	case asked == nil:
		return rejectf(codes.InvalidArgument, appraisal.CheckCheckpoint, "the evidence says its logs are suffixes, but this server asked for whole logs")
	case got == nil:
		return rejectf(codes.InvalidArgument, appraisal.CheckCheckpoint, "the evidence carries whole logs, but this server asked for suffixes")
	case !evidence.SameOffsets(asked.GetOffsets(), got.GetOffsets()):
		return rejectf(codes.PermissionDenied, appraisal.CheckCheckpoint, "the evidence says its logs start at %s, but this server asked for %s",
			offsetsString(got.GetOffsets()), offsetsString(asked.GetOffsets()))
	}
	return nil
}

func offsetsString(offs []*evidencepb.LogOffset) string {
	parts := make([]string, 0, len(offs))
	for _, o := range offs {
		parts = append(parts, fmt.Sprintf("%s@%d events/%d bytes", o.GetKind(), o.GetEvents(), o.GetBytes()))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// start is what the appraisal starts from: the token's claims.
func (inc *incremental) start() *appraisal.Start {
	c := inc.claims
	s := &appraisal.Start{
		Registers: cctrusted.Registers{}, IMAVerified: c.GetImaVerified(), IMAViolations: int(c.GetImaViolations()),
		WorkloadsKnown: c.GetWorkloadsKnown(), IMAVerdicts: imaStart(c),
	}
	for _, r := range c.GetRegisters() {
		s.Registers.Set(cctrusted.IMR{Space: cctrusted.Space(r.GetSpace()), Index: r.GetIndex()}, cctrusted.Algorithm(r.GetAlg()), r.GetValue())
	}
	for _, k := range []struct {
		kind evidencepb.LogKind
		to   **appraisal.Offset
	}{{evidencepb.LogKind_LOG_KIND_IMA, &s.IMA}, {evidencepb.LogKind_LOG_KIND_RUNTIME, &s.Runtime}} {
		if o := evidence.OffsetOf(c.GetOffsets(), k.kind); o != nil {
			*k.to = &appraisal.Offset{Events: o.GetEvents(), Bytes: o.GetBytes()}
		}
	}
	if fw := c.GetFirmware(); fw != nil {
		s.Firmware = &eventlog.Facts{
			SecureBoot: fw.GetSecureBoot(), SecureBootKnown: fw.GetSecureBootKnown(),
			KernelCmdline: fw.GetKernelCmdline(), KernelCmdlineKnown: fw.GetKernelCmdlineKnown(),
			Bootloader: fw.GetBootloader(),
		}
	}
	for _, w := range c.GetWorkloads() {
		s.Workloads = append(s.Workloads, runtimelog.Workload{ExeSHA256: w.GetExeSha256(), ContainerID: w.GetContainerId()})
	}
	return s
}

// claims is what a checkpoint issued after this attestation records: what
// the appraisal established (n), with the ends of the growing logs that
// were asked for; the reason when none can be issued.
func (a *attestation) claims(n *appraisal.Next) (*evidencepb.CheckpointClaims, string) {
	if n.Unusable != "" {
		return nil, n.Unusable
	}
	if len(n.Workloads) > evidence.MaxCheckpointWorkloads {
		return nil, fmt.Sprintf("%d distinct workloads, more than a checkpoint carries (%d)", len(n.Workloads), evidence.MaxCheckpointWorkloads)
	}
	c := &evidencepb.CheckpointClaims{ImaVerified: n.IMAVerified, ImaViolations: uint32(n.IMAViolations), WorkloadsKnown: n.WorkloadsKnown}
	for _, r := range n.Registers {
		c.Registers = append(c.Registers, &evidencepb.RegisterValue{Space: uint32(r.IMR.Space), Index: r.IMR.Index, Alg: uint32(r.Alg), Value: r.Value})
	}
	for _, l := range []struct {
		kind evidencepb.LogKind
		end  *appraisal.Offset
	}{{evidencepb.LogKind_LOG_KIND_IMA, n.IMA}, {evidencepb.LogKind_LOG_KIND_RUNTIME, n.Runtime}} {
		if l.end != nil && slices.Contains(a.want, l.kind) {
			c.Offsets = append(c.Offsets, &evidencepb.LogOffset{Kind: l.kind, Events: l.end.Events, Bytes: l.end.Bytes})
		}
	}
	if fw := n.Firmware; fw != nil {
		c.Firmware = &evidencepb.FirmwareFacts{
			SecureBootKnown: fw.SecureBootKnown, SecureBoot: fw.SecureBoot,
			KernelCmdlineKnown: fw.KernelCmdlineKnown, KernelCmdline: fw.KernelCmdline,
			Bootloader: fw.Bootloader,
		}
	}
	for _, w := range n.Workloads {
		c.Workloads = append(c.Workloads, &evidencepb.WorkloadFact{ExeSha256: w.ExeSHA256, ContainerId: w.ContainerID})
	}
	var unusable string
	if c.ImaVerdicts, unusable = imaClaims(n, a.st.imaPolicies); unusable != "" {
		return nil, unusable
	}
	return c, ""
}

// issueCheckpoint signs what this attestation established and hands it to
// the agent, when both sides do checkpoints. A checkpoint that cannot be
// issued (too large) is logged, not fatal: the next attestation is full.
func (a *attestation) issueCheckpoint(ctx context.Context, hello *evidencepb.Hello, v *verified) error {
	if a.st.ckpt == nil || !slices.Contains(hello.GetCaps(), evidence.CapCheckpoint) {
		return nil
	}
	claims, unusable := a.claims(&v.node.Next)
	if unusable != "" {
		a.log.Debug("No checkpoint issued", "agent_id", a.agentID, "reason", unusable)
		return nil
	}
	now := a.p.now()
	claims.Format = evidence.CheckpointFormat
	claims.AgentId = a.agentID
	claims.Tee = a.tee
	claims.IssuedAt = now.Unix()
	claims.ExpiresAt = now.Add(a.st.cfg.CheckpointTTL).Unix()
	tok, err := a.st.ckpt.Seal(claims)
	if err != nil {
		a.log.Debug("No checkpoint issued", "agent_id", a.agentID, "reason", err)
		return nil
	}
	if err := a.sendChallenge(&evidencepb.Challenge{Checkpoint: &evidencepb.Checkpoint{Token: tok, Offsets: claims.GetOffsets()}}); err != nil {
		return err
	}
	resp, err := a.recv(ctx, "checkpoint acknowledgement")
	if err != nil {
		return err
	}
	if err := evidence.DecodeAck(resp.GetChallengeResponse(), a.limits); err != nil {
		return reject(codes.InvalidArgument, appraisal.CheckCheckpoint, fmt.Errorf("the answer to the checkpoint challenge: %w", err))
	}
	return nil
}
