package serververifier

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// memStream is an in-process Attest stream: it hands the plugin the
// agent's messages and records its answers, so a benchmark measures the
// server's work and not the plugin transport.
type memStream struct {
	grpc.ServerStream
	ctx  context.Context
	in   []*nodeattestorv1.AttestRequest
	out  []*nodeattestorv1.AttestResponse
	next int
}

func (s *memStream) Context() context.Context { return s.ctx }

func (s *memStream) Send(r *nodeattestorv1.AttestResponse) error {
	s.out = append(s.out, r)
	return nil
}

func (s *memStream) Recv() (*nodeattestorv1.AttestRequest, error) {
	if s.next >= len(s.in) {
		return nil, io.EOF
	}
	r := s.in[s.next]
	s.next++
	return r, nil
}

// exchange is one agent's side of an attestation, made ahead of time for
// a known nonce.
type exchange struct {
	nonce           []byte
	hello, evidence []byte
}

func prepareExchanges(b testing.TB, n *simNode, count int) []exchange {
	b.Helper()
	ctx := context.Background()
	a := n.agent(b, "")
	out := make([]exchange, count)
	for i := range out {
		hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
		if err != nil {
			b.Fatal(err)
		}
		nonce, err := evidence.NewNonce()
		if err != nil {
			b.Fatal(err)
		}
		pl, err := nodeattestor.Collect(ctx, a.p, a.cfg, hello, &evidencepb.Challenge{
			Nonce: nonce,
			Want:  []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_CCEL, evidencepb.LogKind_LOG_KIND_RUNTIME},
		})
		if err != nil {
			b.Fatal(err)
		}
		ev, err := proto.Marshal(pl)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = exchange{nonce: nonce, hello: hello, evidence: ev}
	}
	return out
}

// BenchmarkAttestTDXSim is the full server-side verification of one
// simulated TDX attestation through Plugin.Attest: hello and evidence
// decoding, nonce issue and freshness, binding, log decompression, the
// appraisal (PCK chain, quote and QE report signatures, collateral with TCB
// status and revocation, debug, REPORTDATA, CCEL replay with facts),
// runtime log replay, policy evaluation, selectors and the audit line, with
// a warm collateral cache. The exchanges are prepared ahead (the agent's
// quoting is not the server's cost), each with the nonce the test's nonce
// source hands the server again.
func BenchmarkAttestTDXSim(b *testing.B) {
	n := newSimNode(b, sim.InitOptions{})
	n.runWorkloads(b, runtimelog.Workload{ExeSHA256: bytes.Repeat([]byte{1}, 32), ExeSHA384: bytes.Repeat([]byte{1}, 48), ExePath: "/usr/bin/a", ContainerID: "c1"})
	p := New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration: n.serverConfig("", `policy "golden" {
  enforce = true
  tee = ["sim"]
  secure_boot = false
}`),
	}); err != nil {
		b.Fatal(err)
	}
	exchanges := prepareExchanges(b, n, 16)
	run := func(x exchange) {
		p.newNonce = func() ([]byte, error) { return x.nonce, nil }
		s := &memStream{ctx: context.Background(), in: []*nodeattestorv1.AttestRequest{
			{Request: &nodeattestorv1.AttestRequest_Payload{Payload: x.hello}},
			{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: x.evidence}},
		}}
		if err := p.Attest(s); err != nil {
			b.Fatal(err)
		}
		if len(s.out) != 2 || s.out[1].GetAgentAttributes() == nil {
			b.Fatalf("no agent attributes: %v", s.out)
		}
	}
	run(exchanges[0]) // warm the collateral and verification caches
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		run(exchanges[i%len(exchanges)])
		i++
	}
}

// BenchmarkGoTdxGuestVerify is go-tdx-guest's verify.RawTdxQuote on a
// quote of the same simulated TD, with collateral and CRL checks, the
// collateral served from memory, and fresh Options per call (the library
// writes into them).
func BenchmarkGoTdxGuestVerify(b *testing.B) {
	n := newSimNode(b, sim.InitOptions{})
	x := prepareExchanges(b, n, 1)[0]
	var pl evidencepb.Payload
	if err := proto.Unmarshal(x.evidence, &pl); err != nil {
		b.Fatal(err)
	}
	quote := pl.GetEvidence().GetQuote()
	rootPEM, err := os.ReadFile(filepath.Join(n.dir, sim.RootFile))
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	// Fetch every document once over HTTP, then serve it from memory.
	mem := &memGetter{next: &collateral.Getter{BaseURL: n.pcs.URL}, seen: map[string]memResponse{}}
	opts := func() *verify.Options {
		now := time.Now()
		return &verify.Options{
			TrustedRoots: roots, GetCollateral: true, CheckRevocations: true, Getter: mem,
			Now: &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now},
		}
	}
	if err := verify.RawTdxQuote(quote, opts()); err != nil {
		b.Fatal(err)
	}
	if len(mem.seen) < 4 {
		b.Fatalf("only %d collateral documents fetched", len(mem.seen))
	}
	if _, ok := mem.seen[pcs.QeIdentityURL()]; !ok {
		b.Fatal("QE identity not fetched")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := verify.RawTdxQuote(quote, opts()); err != nil {
			b.Fatal(err)
		}
	}
}

type memResponse struct {
	header map[string][]string
	body   []byte
}

// memGetter fetches each URL once and then answers from memory.
type memGetter struct {
	next *collateral.Getter
	seen map[string]memResponse
}

func (m *memGetter) Get(u string) (map[string][]string, []byte, error) {
	if r, ok := m.seen[u]; ok {
		return r.header, r.body, nil
	}
	h, body, err := m.next.Get(u)
	if err != nil {
		return nil, nil, err
	}
	m.seen[u] = memResponse{h, body}
	return h, body, nil
}
