package simtest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
)

// Hooks edit one attestation on its way from the agent to the server:
// what an attacker, or a fault, does to genuine evidence. The zero value
// sends what the agent made.
type Hooks struct {
	// Agent rewrites the hello the agent makes before it is bound into the
	// report and sent: an agent of another build (an older release that
	// leaves fields out), not an attacker.
	Agent func(genuine []byte) []byte
	// Hello replaces the hello bytes sent (the agent still binds the
	// genuine ones into its report).
	Hello func(genuine []byte) []byte
	// Challenge edits the challenge the agent answers.
	Challenge func(*evidencepb.Challenge)
	// Mutate edits the evidence before it is encoded.
	Mutate func(*evidencepb.Evidence)
	// Raw replaces the encoded evidence payload.
	Raw func([]byte) []byte
	// Sent receives the evidence payload as sent, for replaying it.
	Sent *[]byte
	// BeforeEvidence runs between the challenge and the answer.
	BeforeEvidence func()
	// Activate replaces the answer to a credential activation challenge.
	Activate func(*evidencepb.Challenge) []byte
}

// AgentError is a failure of the agent's own side of an attestation (its
// provider, or a challenge it cannot read): a broken test rather than the
// server's verdict, which Attest returns as the server's gRPC status.
type AgentError struct {
	// Step names what the agent was doing.
	Step string
	// Err is what went wrong.
	Err error
}

// Error is the step and the failure, as the suites' fatal messages read.
func (e *AgentError) Error() string { return e.Step + ": " + e.Err.Error() }

// Unwrap is the underlying failure.
func (e *AgentError) Unwrap() error { return e.Err }

// Attest runs the agent side of one attestation against a server node
// attestor plugin, with package nodeattestor's transport-free functions
// so that the evidence is what a real agent sends, and h's edits on the
// way (nil: none). Each hook is read when its step comes, so an earlier
// hook may set a later one (a Challenge hook choosing the Mutate for that
// challenge). It returns the agent's attributes or the status the server
// ended the stream with; failures of the agent's side are *AgentError. It
// does not touch a testing.T, so load tests run it from many goroutines.
func Attest(ctx context.Context, client nodeattestorv1.NodeAttestorClient, p cctrusted.Provider, cfg *conf.AgentNodeAttestor, h *Hooks) (*nodeattestorv1.AgentAttributes, error) {
	if h == nil {
		h = &Hooks{}
	}
	stream, err := client.Attest(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stream.CloseSend() }()
	// send sends one message; when the server has ended the stream, its
	// status comes with Recv.
	send := func(r *nodeattestorv1.AttestRequest) error {
		if err := stream.Send(r); err != nil {
			_, rerr := stream.Recv()
			return rerr
		}
		return nil
	}
	hello, err := nodeattestor.Hello(ctx, p, cfg)
	if err != nil {
		return nil, &AgentError{"agent Hello", err}
	}
	if h.Agent != nil {
		hello = h.Agent(bytes.Clone(hello))
	}
	sent := hello
	if h.Hello != nil {
		sent = h.Hello(bytes.Clone(hello))
	}
	if err := send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: sent}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
	if err != nil {
		return nil, &AgentError{"server challenge", err}
	}
	if h.Challenge != nil {
		h.Challenge(ch)
	}
	pl, err := nodeattestor.Collect(ctx, p, cfg, hello, ch)
	if err != nil {
		return nil, &AgentError{"agent Collect", err}
	}
	if h.Mutate != nil {
		h.Mutate(pl.GetEvidence())
	}
	b, err := proto.Marshal(pl)
	if err != nil {
		return nil, &AgentError{"encoding the evidence", err}
	}
	if h.Raw != nil {
		b = h.Raw(b)
	}
	if h.Sent != nil {
		*h.Sent = b
	}
	if h.BeforeEvidence != nil {
		h.BeforeEvidence()
	}
	if err := send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: b}}); err != nil {
		return nil, err
	}
	for {
		resp, err = stream.Recv()
		if err != nil {
			return nil, err
		}
		if resp.GetChallenge() == nil {
			return resp.GetAgentAttributes(), nil
		}
		ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
		if err != nil {
			return nil, &AgentError{"activation challenge", err}
		}
		var ans []byte
		if h.Activate != nil {
			ans = h.Activate(ch)
		} else {
			pl, err := nodeattestor.Activate(ctx, p, ch)
			if err != nil {
				return nil, &AgentError{"agent Activate", err}
			}
			if ans, err = evidence.Encode(pl); err != nil {
				return nil, &AgentError{"encoding the activated secret", err}
			}
		}
		if err := send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: ans}}); err != nil {
			return nil, err
		}
	}
}

// AttestT is Attest from a test's own goroutine within timeout: a failure
// of the agent's side fails the test at once, so that every error it
// returns is the server's verdict.
func AttestT(t testing.TB, timeout time.Duration, client nodeattestorv1.NodeAttestorClient, p cctrusted.Provider, cfg *conf.AgentNodeAttestor, h *Hooks) (*nodeattestorv1.AgentAttributes, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	attrs, err := Attest(ctx, client, p, cfg, h)
	if ae := (*AgentError)(nil); errors.As(err, &ae) {
		t.Fatal(ae)
	}
	return attrs, err
}
