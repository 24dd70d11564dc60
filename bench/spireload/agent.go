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
	"slices"
	"strings"

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
// runtime log, checkpoints), with its own instance ID, and the TD's CCEL
// as the agent plugin compressed it before the measurements (ccel).
type ccnpAgent struct {
	cfg     *conf.AgentNodeAttestor
	prov    cctrusted.Provider
	request []byte
	ccel    *preparedCCEL
}

// preparedCCEL is the simulated TD's firmware log (and its ACPI table) as
// the agent plugin puts it into evidence, compressed once before the
// measurements. A TD's CCEL is fixed from boot, so it is the same bytes at
// every attestation; the agent plugin compresses it again each time it is
// asked for it, on its own machine, one attestation at a time, whereas
// here up to 64 agents would compress the same log at once on the cores
// the server runs on (about 5 ms each at 8 agents, 26 ms at 64). Only that
// compression moves out of the measured window: the server receives the
// bytes the plugin would have sent (TestPreparedCCELIsTheAgentsOwn).
type preparedCCEL struct {
	table []byte
	log   *evidencepb.Log
}

// prepareCCEL records one whole-log attestation with the agent plugin's
// own code (nodeattestor.Record) and keeps its CCEL.
func prepareCCEL(ctx context.Context, p cctrusted.Provider, cfg *conf.AgentNodeAttestor) (*preparedCCEL, error) {
	rec, err := nodeattestor.Record(ctx, p, cfg, make([]byte, evidence.NonceSize))
	if err != nil {
		return nil, err
	}
	ev, err := evidence.DecodeEvidence(rec.Evidence, evidence.DefaultLimits())
	if err != nil {
		return nil, err
	}
	if ev.GetCcel() == nil || len(ev.GetCcelTable()) == 0 {
		return nil, errors.New("the agent plugin's evidence of the simulated TD holds no CCEL")
	}
	return &preparedCCEL{table: ev.GetCcelTable(), log: ev.GetCcel()}, nil
}

func (a *ccnpAgent) payload(ctx context.Context) ([]byte, error) {
	return nodeattestor.Hello(ctx, a.prov, a.cfg)
}
func (a *ccnpAgent) csr() []byte { return a.request }

// answer is nodeattestor.Answer's, except that a challenge wanting the
// whole CCEL gets the prepared one: the plugin is asked for everything
// else and the CCEL is put where Collect puts it.
func (a *ccnpAgent) answer(ctx context.Context, hello, b []byte) ([]byte, error) {
	ch, err := evidence.DecodeChallenge(b, evidence.Limits{MaxPayloadBytes: 64 << 10, MaxDecompressedBytes: 64 << 10})
	if err != nil {
		return nil, err
	}
	const ccelKind = evidencepb.LogKind_LOG_KIND_CCEL
	attach := a.ccel != nil && len(ch.GetNonce()) > 0 && slices.Contains(ch.GetWant(), ccelKind) &&
		evidence.OffsetOf(ch.GetCheckpoint().GetOffsets(), ccelKind) == nil
	if attach {
		ch = proto.CloneOf(ch)
		ch.Want = slices.DeleteFunc(ch.Want, func(k evidencepb.LogKind) bool { return k == ccelKind })
	}
	pl, err := nodeattestor.Answer(ctx, a.prov, a.cfg, hello, ch)
	if err != nil {
		return nil, err
	}
	if attach {
		ev := pl.GetEvidence()
		if ev == nil {
			return nil, errors.New("the agent plugin answered a nonce challenge without evidence")
		}
		ev.CcelTable, ev.Ccel = a.ccel.table, a.ccel.log
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
