package serververifier

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// offlineRun is what an attestation driven by VerifyOffline carries: the
// nonce the operator asked the agent for, and what the run could not check.
type offlineRun struct {
	nonce             []byte
	activationSkipped bool
	checks            []appraisal.Check
}

// nonceSource is where this attestation's round nonce comes from: the
// plugin's random source, or for VerifyOffline the nonce the recording was
// made for.
func (a *attestation) nonceSource() func() ([]byte, error) {
	if a.offline != nil {
		n := a.offline.nonce
		return func() ([]byte, error) { return n, nil }
	}
	return a.p.newNonce
}

// OfflineOptions tune VerifyOffline.
type OfflineOptions struct {
	// Now is the time certificates and collateral are judged at; zero
	// means time.Now.
	Now func() time.Time
	// Logger gets the plugin's log lines (the audit line among them); nil
	// discards them.
	Logger hclog.Logger
	// ReadFile reads the files the configuration names; nil is os.ReadFile.
	ReadFile func(string) ([]byte, error)
}

// OfflinePolicy is one policy's result.
type OfflinePolicy struct {
	Name       string   `json:"name"`
	Digest     string   `json:"digest"`
	Enforce    bool     `json:"enforce"`
	Match      bool     `json:"match"`
	Mismatches []string `json:"mismatches,omitempty"`
}

// OfflineResult is what the server plugin concluded about a recording.
type OfflineResult struct {
	Accepted bool `json:"accepted"`
	// FailedCheck, Code and Error describe a rejection as an agent would
	// see it (Code is the gRPC code's name).
	FailedCheck string `json:"failed_check,omitempty"`
	Code        string `json:"code,omitempty"`
	Error       string `json:"error,omitempty"`

	TEE          string `json:"tee,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	QuoteSHA256  string `json:"quote_sha256,omitempty"`
	// AgentID is the ID the server would issue. AgentIDProven is false
	// when it names a key the recording cannot prove the node holds (TPM:
	// credential activation needs the live TPM).
	AgentID       string `json:"agent_id,omitempty"`
	AgentIDProven bool   `json:"agent_id_proven"`
	// Checks are the server's checks before the appraisal, then the
	// appraisal's (TDX, TPM or the simulator's) as far as the run got,
	// then the policies'.
	Checks    []appraisal.Check `json:"checks"`
	Policies  []OfflinePolicy   `json:"policies"`
	Selectors []string          `json:"selectors"`
	// NotChecked names what verification of a recording cannot check.
	NotChecked []string `json:"not_checked"`
}

// VerifyOffline runs the server plugin's attestation on a recording (see
// `ccnp evidence collect`) as if the agent had just sent it in answer to a
// challenge carrying nonce: the same decoding, binding, quote, log replay,
// policy and selector code as Attest, under the configuration hcl (the
// server's plugin_data) and trust domain td. It is for `ccnp verify
// --evidence`, which operators use to see why a node is rejected; SPIRE
// never reaches it. What needs the live agent is not checked and is listed
// in NotChecked: nonce freshness (the nonce is the caller's), and on TPM
// credential activation, so the EK, and with it the agent ID, is unproven.
// The configuration's checkpoint key and metrics endpoint are ignored.
//
// A configuration error is returned as an error; a rejected recording is a
// result with Accepted false.
func VerifyOffline(ctx context.Context, hcl, td string, rec *evidence.Recording, nonce []byte, o OfflineOptions) (*OfflineResult, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	p := NewWithClock(now)
	if o.Logger != nil {
		p.logger = o.Logger
	}
	if o.ReadFile != nil {
		p.readFile = o.ReadFile
	}
	if td == "" {
		return nil, fmt.Errorf("no trust domain")
	}
	if err := checkTrustDomain(td); err != nil {
		return nil, fmt.Errorf("trust domain %q: %w", td, err)
	}
	if len(nonce) != evidence.NonceSize {
		return nil, fmt.Errorf("nonce is %d bytes, want %d", len(nonce), evidence.NonceSize)
	}
	cfg, err := conf.ParseServerVerifier(hcl, p.readFile)
	if err != nil {
		return nil, err
	}
	// Checkpoints need the live agent to keep them; metrics a running server.
	cfg.CheckpointKeyFile, cfg.CheckpointPreviousKeyFile = "", ""
	st, err := p.build(cfg, td)
	if err != nil {
		return nil, err
	}
	stream := &recordedStream{ctx: ctx, msgs: []*nodeattestorv1.AttestRequest{
		{Request: &nodeattestorv1.AttestRequest_Payload{Payload: rec.Hello}},
		{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: rec.Evidence}},
	}}
	a := &attestation{
		p: p, st: st, log: p.logger, stream: stream, start: p.now(),
		limits:  evidence.Limits{MaxPayloadBytes: cfg.MaxPayloadBytes, MaxDecompressedBytes: cfg.MaxPayloadBytes},
		offline: &offlineRun{nonce: nonce},
	}
	attrs, runErr := a.run(ctx)
	a.audit(runErr)
	return a.offlineResult(attrs, runErr), nil
}

func (a *attestation) offlineResult(attrs *nodeattestorv1.AgentAttributes, err error) *OfflineResult {
	off := a.offline
	res := &OfflineResult{
		Accepted: err == nil, TEE: a.tee, AgentVersion: a.agentVersion, QuoteSHA256: a.quoteSHA256,
		Checks: []appraisal.Check{}, Policies: []OfflinePolicy{}, Selectors: []string{},
		NotChecked: []string{appraisal.CheckNonce + ": freshness (the nonce is the one given; when the evidence was made is unknown)"},
	}
	var failed string
	if err != nil {
		r := asRejection(err)
		failed = r.check
		res.FailedCheck, res.Code, res.Error = r.check, r.code.String(), r.Error()
	}
	// The server's checks before the TEE's own ran in this order: each one
	// before the failed one passed; when the run stopped elsewhere before
	// the evidence was judged (protocol, nonce, capacity), only the hello's.
	pre := []string{appraisal.CheckPayload, appraisal.CheckTEE, appraisal.CheckBinding}
	switch {
	case err == nil || slices.Contains(pre, failed):
	case len(off.checks) > 0 || a.quoteSHA256 != "":
		// The TEE's checks ran: everything before them passed.
		failed = ""
	case a.tee != "":
		pre = pre[:2]
	default:
		pre = nil
	}
	for _, c := range pre {
		if c == failed {
			break
		}
		res.Checks = append(res.Checks, appraisal.Check{Name: c, OK: true})
	}
	res.Checks = append(res.Checks, off.checks...)
	failed = res.FailedCheck
	for _, r := range a.results {
		res.Policies = append(res.Policies, OfflinePolicy{Name: r.Name, Digest: r.Digest, Enforce: r.Enforce, Match: r.Match, Mismatches: r.Mismatches})
	}
	if cctrusted.TEE(a.tee) == cctrusted.TEETPM {
		res.NotChecked = append(res.NotChecked, appraisal.CheckActivation+": credential activation needs the node's TPM live, so the EK (tpm:ek_hash, the agent ID) is unproven")
	}
	if err != nil {
		if !slices.ContainsFunc(res.Checks, func(c appraisal.Check) bool { return c.Name == failed }) {
			res.Checks = append(res.Checks, appraisal.Check{Name: failed, Detail: res.Error})
		}
		return res
	}
	if len(a.results) > 0 {
		res.Checks = append(res.Checks, appraisal.Check{Name: appraisal.CheckPolicy, OK: true, Detail: fmt.Sprintf("%d policies evaluated", len(a.results))})
	}
	res.AgentID = attrs.GetSpiffeId()
	res.AgentIDProven = !off.activationSkipped
	res.Selectors = append(res.Selectors, attrs.GetSelectorValues()...)
	return res
}

// recordedStream is the agent's side of the stream for VerifyOffline: it
// hands over the recorded messages in order and takes whatever the plugin
// sends. After the recording it ends the stream as an agent that hung up
// would, so any further round (none on the paths VerifyOffline takes) fails.
type recordedStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*nodeattestorv1.AttestRequest
}

func (s *recordedStream) Context() context.Context { return s.ctx }

func (s *recordedStream) Send(*nodeattestorv1.AttestResponse) error { return nil }

func (s *recordedStream) Recv() (*nodeattestorv1.AttestRequest, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

var _ nodeattestorv1.NodeAttestor_AttestServer = (*recordedStream)(nil)
