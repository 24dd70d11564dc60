package spireload

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// agent is one simulated node: the attestation data it opens with and how
// it answers a challenge. Each has its own identity, so each attestation
// creates or updates its own node in SPIRE's datastore.
type agent interface {
	// payload is the first message's attestation data.
	payload(ctx context.Context) ([]byte, error)
	// answer responds to one server challenge; payload is what this
	// attestation opened with.
	answer(ctx context.Context, payload, challenge []byte) ([]byte, error)
	// csr is the agent's certificate request for its SVID.
	csr() []byte
}

// maxChallenges bounds the rounds of one attestation: a broken server must
// not keep a benchmark worker forever.
const maxChallenges = 8

// attestOnce runs one node attestation as SPIRE's agent does it
// (pkg/agent/attestor/node at v1.13.3): a new TLS connection to the
// server, AttestAgent with the attestation data and the CSR, each
// challenge answered on the stream, until the server returns the agent
// SVID. It checks that the SVID's ID lies under wantPrefix.
func attestOnce(ctx context.Context, addr string, tlsConf *tls.Config, typ string, a agent, wantPrefix string, w *wire) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	payload, err := a.payload(ctx)
	if err != nil {
		return fmt.Errorf("%s attestation data: %w", typ, err)
	}
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return fmt.Errorf("open AttestAgent stream: %w", err)
	}
	err = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: typ, Payload: payload},
		Params: &agentv1.AgentX509SVIDParams{Csr: a.csr()},
	}}})
	if err != nil {
		return fmt.Errorf("send attestation data: %w", err)
	}
	w.sent.Add(int64(len(payload)))
	for range maxChallenges {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("%s attestation: %w", typ, err)
		}
		if ch := resp.GetChallenge(); ch != nil {
			b, err := a.answer(ctx, payload, ch)
			if err != nil {
				return fmt.Errorf("%s challenge: %w", typ, err)
			}
			if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: b}}); err != nil {
				return fmt.Errorf("send challenge response: %w", err)
			}
			w.challenges.Add(1)
			w.received.Add(int64(len(ch)))
			w.sent.Add(int64(len(b)))
			continue
		}
		chain := resp.GetResult().GetSvid().GetCertChain()
		if len(chain) == 0 {
			return fmt.Errorf("%s attestation: the server's answer has no SVID", typ)
		}
		leaf, err := x509.ParseCertificate(chain[0])
		if err != nil {
			return fmt.Errorf("%s attestation: SVID: %w", typ, err)
		}
		if len(leaf.URIs) != 1 || !strings.HasPrefix(leaf.URIs[0].String(), wantPrefix) {
			return fmt.Errorf("%s attestation: SVID names %v, want one ID under %s", typ, leaf.URIs, wantPrefix)
		}
		_ = stream.CloseSend()
		return nil
	}
	return fmt.Errorf("%s attestation: more than %d challenges", typ, maxChallenges)
}

// bootstrapTLS is the agent's insecure bootstrap: no server chain to verify
// against yet, only the check that the server presents its trust domain's
// server ID (SPIRE's agent does the same before it has a bundle).
func bootstrapTLS(trustDomain string) *tls.Config {
	want := "spiffe://" + trustDomain + "/spire/server"
	return &tls.Config{
		InsecureSkipVerify: true, // the check is VerifyPeerCertificate's, as in SPIRE's agent bootstrap
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("server presented no certificate")
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != want {
				return fmt.Errorf("server certificate names %v, want %s", c.URIs, want)
			}
			return nil
		},
	}
}

// newCSR is the agent's SVID request, as SPIRE's agent makes it: a P-256
// key and no URI SAN (the server fills the ID in).
func newCSR() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, key)
}

// popAgent is an x509pop node: a leaf certificate and its key.
type popAgent struct {
	leaf    *x509.Certificate
	key     *ecdsa.PrivateKey
	request []byte
	data    []byte
}

func (a *popAgent) payload(context.Context) ([]byte, error) { return a.data, nil }
func (a *popAgent) csr() []byte                             { return a.request }
func (a *popAgent) answer(_ context.Context, _, ch []byte) ([]byte, error) {
	return popAnswer(a.key, ch)
}

// ccnpAgent is a ccnp node on the simulated TD: the agent plugin's own
// hello and challenge answers (nodeattestor.Hello and Answer: quote,
// binding, logs, checkpoints), with its own instance ID; the logs of an
// answer come from logs when that answer was made before.
type ccnpAgent struct {
	cfg     *conf.AgentNodeAttestor
	prov    cctrusted.Provider
	request []byte
	logs    *preparedLogs
}

// preparedLogs keeps the logs part of the evidence the agent plugin
// answered a challenge with, by what the challenge asks for (the logs it
// wants and the checkpoint offsets to send them from), for every agent on
// the simulated TD. The TD's logs do not change during the measurements
// (its CCEL is fixed from boot; the runtime log is written before), so
// the plugin would read and compress the same bytes again at every
// attestation: on its own machine, one attestation at a time, whereas here
// up to 64 agents would do it at once on the cores the server runs on
// (zstd costs about 2 ms per log even for an empty suffix, 5 to 26 ms for
// the 256 KiB CCEL). Only that reading and compressing moves out of the
// measured window: per attestation the plugin still makes the quote over
// the fresh binding, the checkpoint echo and the encoding, and the server
// receives the bytes the plugin would have sent
// (TestPreparedLogsAreTheAgentsOwn).
type preparedLogs struct {
	mu   sync.Mutex
	done map[string]*evidencepb.Evidence
}

func newPreparedLogs() *preparedLogs {
	return &preparedLogs{done: map[string]*evidencepb.Evidence{}}
}

// logsKey is what a challenge asks of the logs: its wanted logs and
// checkpoint offsets, not its nonce.
func logsKey(ch *evidencepb.Challenge) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&evidencepb.Challenge{Want: ch.GetWant(), Checkpoint: ch.GetCheckpoint()})
	return string(b), err
}

// logsOf is the logs part of ev (and the checkpoint echo that says where
// they start).
func logsOf(ev *evidencepb.Evidence) *evidencepb.Evidence {
	return &evidencepb.Evidence{Ccel: ev.GetCcel(), CcelTable: ev.GetCcelTable(), TpmLog: ev.GetTpmLog(),
		ImaLog: ev.GetImaLog(), RuntimeLog: ev.GetRuntimeLog(), Checkpoint: ev.GetCheckpoint()}
}

func (a *ccnpAgent) payload(ctx context.Context) ([]byte, error) {
	return nodeattestor.Hello(ctx, a.prov, a.cfg)
}
func (a *ccnpAgent) csr() []byte { return a.request }

// answer is nodeattestor.Answer's. A nonce challenge whose logs were
// answered before is put to the plugin without its wanted logs, and the
// logs of that earlier answer go where Collect puts them.
func (a *ccnpAgent) answer(ctx context.Context, hello, b []byte) ([]byte, error) {
	ch, err := evidence.DecodeChallenge(b, evidence.Limits{MaxPayloadBytes: 64 << 10, MaxDecompressedBytes: 64 << 10})
	if err != nil {
		return nil, err
	}
	if a.logs == nil || len(ch.GetNonce()) == 0 {
		pl, err := nodeattestor.Answer(ctx, a.prov, a.cfg, hello, ch)
		if err != nil {
			return nil, err
		}
		return evidence.Encode(pl)
	}
	key, err := logsKey(ch)
	if err != nil {
		return nil, err
	}
	a.logs.mu.Lock()
	prev := a.logs.done[key]
	a.logs.mu.Unlock()
	ask := ch
	if prev != nil {
		ask = proto.CloneOf(ch)
		ask.Want = nil
	}
	pl, err := nodeattestor.Answer(ctx, a.prov, a.cfg, hello, ask)
	if err != nil {
		return nil, err
	}
	ev := pl.GetEvidence()
	if ev == nil {
		return nil, errors.New("the agent plugin answered a nonce challenge without evidence")
	}
	if prev == nil {
		a.logs.mu.Lock()
		a.logs.done[key] = logsOf(ev)
		a.logs.mu.Unlock()
	} else {
		ev.Ccel, ev.CcelTable, ev.TpmLog, ev.ImaLog, ev.RuntimeLog, ev.Checkpoint =
			prev.Ccel, prev.CcelTable, prev.TpmLog, prev.ImaLog, prev.RuntimeLog, prev.Checkpoint
	}
	return evidence.Encode(pl)
}

// fullCCNP is a ccnp agent that drops its checkpoint before each
// attestation, so that the server replays its whole logs (CCNPFull).
type fullCCNP struct{ *ccnpAgent }

func (a fullCCNP) payload(ctx context.Context) ([]byte, error) {
	if err := os.Remove(nodeattestor.CheckpointPath(a.cfg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return a.ccnpAgent.payload(ctx)
}

// certOff is where a v4 quote's certification data (QE report, its PCK
// signature, QE auth data, PCK chain) starts.
const certOff = tdxquote.SignedDataOffset + tdxquote.SignatureSize + tdxquote.AttestationKeySize

// stableQE is the simulated TD with the quoting enclave's certification
// data of its first quote put back into every later one. A hardware QE
// signs its report once per attestation key; the simulator signs it again
// for every quote (ECDSA with a random nonce, so the bytes differ), which
// would make the server verify the QE report and go-tdx-guest's cross-check
// afresh for every attestation, work no real node causes. Everything else
// (the quote signature over the body and REPORTDATA) is the simulator's.
type stableQE struct {
	*sim.Provider
	qeCert []byte
}

func (s *stableQE) Report(ctx context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	r, err := s.Provider.Report(ctx, nonce, userData)
	if err != nil {
		return nil, err
	}
	if len(r.Quote) <= certOff {
		return nil, fmt.Errorf("simulated quote is %d bytes, too short for certification data at %d", len(r.Quote), certOff)
	}
	if s.qeCert == nil {
		s.qeCert = bytes.Clone(r.Quote[certOff:])
	} else if len(r.Quote)-certOff == len(s.qeCert) {
		copy(r.Quote[certOff:], s.qeCert)
	}
	return r, nil
}
