package nodeattestor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
)

// PluginName is the name SPIRE configs give this plugin. SPIRE never tells
// a plugin its configured name, so agent IDs and selectors hard-code it.
const PluginName = "ccnp"

// challengeLimits bound what the agent accepts from the server. A challenge
// is a nonce, a short list and, for TPM, a credential blob and secret of a
// few hundred bytes; 64 KiB leaves room without letting a broken server make
// the agent parse megabytes.
func challengeLimits() evidence.Limits {
	return evidence.Limits{MaxPayloadBytes: 64 << 10, MaxDecompressedBytes: 64 << 10}
}

// Plugin is the agent-side ccnp NodeAttestor. It holds only its
// configuration; the TEE is opened for each attestation and closed after,
// so a TPM is not held between attestations and a reconfiguration takes
// effect at the next one.
type Plugin struct {
	nodeattestorv1.UnsafeNodeAttestorServer
	configv1.UnsafeConfigServer

	mu  sync.RWMutex
	cfg *conf.AgentNodeAttestor
	log hclog.Logger
}

// New returns an unconfigured plugin that logs nowhere until SetLogger.
func New() *Plugin {
	return &Plugin{log: hclog.NewNullLogger()}
}

// SetLogger is called by the plugin framework with SPIRE's logger; all
// output goes there (stdout belongs to the plugin transport).
func (p *Plugin) SetLogger(l hclog.Logger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = l
}

func (p *Plugin) state() (*conf.AgentNodeAttestor, hclog.Logger) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg, p.log
}

// parseConfig parses plugin_data and refuses what this build cannot honour.
func parseConfig(hcl string) (*conf.AgentNodeAttestor, error) {
	c, err := conf.ParseAgentNodeAttestor(hcl)
	if err != nil {
		return nil, err
	}
	if err := checkSupported(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Configure parses plugin_data (HCL) and swaps the new configuration in.
// On any error the previous configuration stays in force.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	c, err := parseConfig(req.GetHclConfiguration())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p.mu.Lock()
	p.cfg = c
	log := p.log
	p.mu.Unlock()
	log.Info("Configured", "tee", c.TEE, "logs", c.Logs, "compression", c.Compression, "host_root", c.HostRoot)
	if c.TEE == cctrusted.TEESim {
		log.Warn("Simulated TEE configured: this node's evidence proves nothing about real hardware", "sim_dir", c.Sim.Dir)
	}
	return &configv1.ConfigureResponse{}, nil
}

// Validate checks plugin_data without applying it.
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	if _, err := parseConfig(req.GetHclConfiguration()); err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: []string{err.Error()}}, nil
	}
	return &configv1.ValidateResponse{Valid: true}, nil
}

// AidAttestation runs the agent side of the ccnp protocol on one stream:
// hello, evidence for the server's nonce, and, on a TPM node, the answer to
// the credential activation challenge.
func (p *Plugin) AidAttestation(stream nodeattestorv1.NodeAttestor_AidAttestationServer) error {
	cfg, log := p.state()
	if cfg == nil {
		return status.Error(codes.FailedPrecondition, "not configured")
	}
	ctx := WithLogger(stream.Context(), log)
	start := time.Now()
	prov, err := tee.Open(ctx, tee.ForNodeAttestor(cfg))
	if err != nil {
		err = failf(codes.Unavailable, "open tee "+string(cfg.TEE), "%w", err)
		log.Error("Node attestation failed", "step", "open", "tee", cfg.TEE, telemetryError, err)
		return err
	}
	defer prov.Close()
	log = log.With("tee", prov.TEE())
	ctx = WithLogger(ctx, log)
	if err := attest(ctx, stream, prov, cfg); err != nil {
		log.Error("Node attestation failed", telemetryError, err, "elapsed_time", time.Since(start))
		return status.Convert(err).Err()
	}
	log.Info("Node attestation evidence delivered", "elapsed_time", time.Since(start))
	return nil
}

// telemetryError is SPIRE's log key for errors.
const telemetryError = "error"

// attestStream is what attest needs of the plugin stream; tests can drive
// it without the transport.
type attestStream interface {
	Send(*nodeattestorv1.PayloadOrChallengeResponse) error
	Recv() (*nodeattestorv1.Challenge, error)
}

func attest(ctx context.Context, stream attestStream, prov cctrusted.Provider, cfg *conf.AgentNodeAttestor) error {
	log := logger(ctx)
	helloBytes, err := Hello(ctx, prov, cfg)
	if err != nil {
		return err
	}
	if err := stream.Send(&nodeattestorv1.PayloadOrChallengeResponse{
		Data: &nodeattestorv1.PayloadOrChallengeResponse_Payload{Payload: helloBytes},
	}); err != nil {
		return streamError("send hello", err)
	}

	ch, done, err := receive(stream, "nonce challenge")
	if err != nil {
		return err
	}
	if done {
		return failf(codes.Aborted, "receive nonce challenge", "the server closed the stream before sending a challenge")
	}
	if len(ch.GetNonce()) == 0 {
		return failf(codes.InvalidArgument, "receive nonce challenge", "got a credential activation challenge before any evidence")
	}
	if err := sendEvidence(ctx, stream, prov, cfg, helloBytes, ch); err != nil {
		return err
	}

	// What may follow: a fresh nonce challenge (the server could not use
	// the checkpoint and asks for whole logs), credential activation (TPM),
	// a new checkpoint to keep. SPIRE ends the stream when it is done.
	for rounds := 0; ; rounds++ {
		if rounds > maxFollowUps {
			return failf(codes.Aborted, "receive challenge", "the server sent more than %d challenges after the evidence", maxFollowUps)
		}
		ch, done, err = receive(stream, "challenge")
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if len(ch.GetNonce()) > 0 {
			log.Info("Server asked for whole logs again (checkpoint not usable)")
			if err := sendEvidence(ctx, stream, prov, cfg, helloBytes, ch); err != nil {
				return err
			}
			continue
		}
		pl, err := Answer(ctx, prov, cfg, helloBytes, ch)
		if err != nil {
			return err
		}
		b, err := evidence.Encode(pl)
		if err != nil {
			return fail(codes.Internal, "encode "+evidence.KindOf(pl).String(), err)
		}
		if err := respond(stream, b, "send "+evidence.KindOf(pl).String()); err != nil {
			return err
		}
	}
}

// maxFollowUps bounds the challenges after the first evidence: a fallback
// round, an activation for each round and a checkpoint.
const maxFollowUps = 5

// sendEvidence answers a nonce challenge.
func sendEvidence(ctx context.Context, stream attestStream, prov cctrusted.Provider, cfg *conf.AgentNodeAttestor, helloBytes []byte, ch *evidencepb.Challenge) error {
	payload, err := Collect(ctx, prov, cfg, helloBytes, ch)
	if err != nil {
		return err
	}
	b, err := evidence.Encode(payload)
	if err != nil {
		return fail(codes.Internal, "encode evidence", err)
	}
	if limit := ch.GetMaxPayloadBytes(); limit > 0 && uint64(len(b)) > limit {
		return failf(codes.ResourceExhausted, "evidence", "%d bytes, but the server accepts at most %d: send fewer logs (logs = [...]) or compress them (compression = \"zstd\")", len(b), limit)
	}
	if err := respond(stream, b, "send evidence"); err != nil {
		return err
	}
	ev := payload.GetEvidence()
	logger(ctx).Info("Sent attestation evidence", "payload_bytes", len(b), "logs", sentLogs(ev), "incremental", ev.GetCheckpoint() != nil, "quote_sha256", quoteDigest(ev))
	return nil
}

// receive reads and decodes the next challenge. done reports that the
// server ended the stream (SPIRE cancels it when attestation is over).
func receive(stream attestStream, what string) (ch *evidencepb.Challenge, done bool, err error) {
	msg, err := stream.Recv()
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, streamError("receive "+what, err)
	}
	ch, err = evidence.DecodeChallenge(msg.GetChallenge(), challengeLimits())
	if err != nil {
		return nil, false, fail(codes.InvalidArgument, "receive "+what, err)
	}
	return ch, false, nil
}

func respond(stream attestStream, b []byte, op string) error {
	err := stream.Send(&nodeattestorv1.PayloadOrChallengeResponse{
		Data: &nodeattestorv1.PayloadOrChallengeResponse_ChallengeResponse{ChallengeResponse: b},
	})
	if err != nil {
		return streamError(op, err)
	}
	return nil
}

// streamError keeps the transport's code and says which step it broke.
func streamError(op string, err error) error {
	if errors.Is(err, io.EOF) {
		return failf(codes.Aborted, op, "the server closed the stream")
	}
	return fail(codeOf(err, codes.Unavailable), op, errors.New(status.Convert(err).Message()))
}

func sentLogs(ev *evidencepb.Evidence) []string {
	var out []string
	for _, l := range []*evidencepb.Log{ev.GetCcel(), ev.GetTpmLog(), ev.GetImaLog(), ev.GetRuntimeLog()} {
		if l != nil {
			out = append(out, logName(l.GetKind()))
		}
	}
	return out
}

// quoteDigest lets an operator match this line with the server's audit line.
func quoteDigest(ev *evidencepb.Evidence) string {
	q := ev.GetQuote()
	if q == nil {
		q = ev.GetTpm().GetQuote()
	}
	d := sha256.Sum256(q)
	return hex.EncodeToString(d[:])
}
