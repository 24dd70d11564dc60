package adversarial

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/internal/simtest"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

const trustDomain = "example.org"

// repoRoot is the module root, for testdata.
const repoRoot = "../.."

// syncBuffer collects the plugin's log output across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is one server plugin served over the SDK's plugin transport.
type server struct {
	t      *testing.T
	client *nodeattestorv1.NodeAttestorPluginClient
	config *configv1.ConfigServiceClient
	logs   *syncBuffer
}

func newServer(t *testing.T, hcl string) *server {
	t.Helper()
	s := &server{t: t, client: new(nodeattestorv1.NodeAttestorPluginClient), config: new(configv1.ConfigServiceClient), logs: &syncBuffer{}}
	p := serververifier.New()
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   nodeattestorv1.NodeAttestorPluginServer(p),
		PluginClient:   s.client,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{s.config},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: s.logs, Level: hclog.Info, JSONFormat: true}),
	})
	if _, err := s.config.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  hcl,
	}); err != nil {
		t.Fatalf("Configure: %v\n%s", err, hcl)
	}
	return s
}

// agent is the agent side of one attestation: real evidence from a
// provider through package nodeattestor, and the attacker's hooks on it.
type agent struct {
	p   cctrusted.Provider
	cfg *conf.AgentNodeAttestor
	// hello replaces the hello bytes sent (the report still binds the
	// genuine ones).
	hello func(genuine []byte) []byte
	// challenge edits the challenge the agent answers.
	challenge func(*evidencepb.Challenge)
	// mutate edits the evidence before it is encoded.
	mutate func(*evidencepb.Evidence)
	// raw replaces the encoded evidence payload.
	raw func([]byte) []byte
	// beforeEvidence runs between the challenge and the answer.
	beforeEvidence func()
	// activate replaces the answer to a credential activation challenge.
	activate func(*evidencepb.Challenge) []byte
	// sent receives the evidence bytes as sent, for replay cases.
	sent *[]byte
}

// attest runs one attestation of a against s and returns the server's
// verdict.
func (s *server) attest(a *agent) (*nodeattestorv1.AgentAttributes, error) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := s.client.Attest(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stream.CloseSend() }()
	hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		t.Fatalf("agent Hello: %v", err)
	}
	sent := hello
	if a.hello != nil {
		sent = a.hello(bytes.Clone(hello))
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: sent}}); err != nil {
		_, rerr := stream.Recv()
		return nil, rerr
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
	if err != nil {
		t.Fatalf("server challenge: %v", err)
	}
	if a.challenge != nil {
		a.challenge(ch)
	}
	pl, err := nodeattestor.Collect(ctx, a.p, a.cfg, hello, ch)
	if err != nil {
		t.Fatalf("agent Collect: %v", err)
	}
	if a.mutate != nil {
		a.mutate(pl.GetEvidence())
	}
	b, err := proto.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	if a.raw != nil {
		b = a.raw(b)
	}
	if a.sent != nil {
		*a.sent = b
	}
	if a.beforeEvidence != nil {
		a.beforeEvidence()
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: b}}); err != nil {
		_, rerr := stream.Recv()
		return nil, rerr
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
			t.Fatalf("activation challenge: %v", err)
		}
		var ans []byte
		if a.activate != nil {
			ans = a.activate(ch)
		} else {
			pl, err := nodeattestor.Activate(ctx, a.p, ch)
			if err != nil {
				t.Fatalf("agent Activate: %v", err)
			}
			if ans, err = evidence.Encode(pl); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: ans}}); err != nil {
			_, rerr := stream.Recv()
			return nil, rerr
		}
	}
}

// rejection is what a case expects: the gRPC code, the check the message
// names ("ccnp: <check>: ...") and further message parts.
type rejection struct {
	code  codes.Code
	check string
	parts []string
}

func reject(code codes.Code, check string, parts ...string) rejection {
	return rejection{code: code, check: check, parts: parts}
}

// want asserts that err is the expected rejection and that the server
// wrote a rejected audit line for it.
func (s *server) want(t *testing.T, err error, w rejection) {
	t.Helper()
	if err == nil {
		t.Fatalf("attestation accepted, want %v from check %s", w.code, w.check)
	}
	st, _ := status.FromError(err)
	if st.Code() != w.code {
		t.Fatalf("code %v, want %v: %s", st.Code(), w.code, st.Message())
	}
	for _, p := range append([]string{"ccnp: " + w.check + ":"}, w.parts...) {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("message %q lacks %q", st.Message(), p)
		}
	}
	if !strings.Contains(s.logs.String(), `"check":"`+w.check+`"`) {
		t.Errorf("no audit line names check %s:\n%s", w.check, s.logs.String())
	}
}

// simNode is a simulated TD with its simulated PCS on loopback HTTP.
type simNode struct {
	dir  string
	base string
	prov *sim.Provider
	pcs  *httptest.Server
}

func newSimNode(t testing.TB, opts sim.InitOptions) *simNode {
	t.Helper()
	n := &simNode{dir: filepath.Join(t.TempDir(), "sim"), base: t.TempDir()}
	if err := sim.Init(n.dir, opts); err != nil {
		t.Fatalf("sim.Init: %v", err)
	}
	var err error
	if n.prov, err = sim.Open(context.Background(), n.dir); err != nil {
		t.Fatalf("sim.Open: %v", err)
	}
	n.pcs = httptest.NewServer(pcs.Handler(n.dir))
	t.Cleanup(n.pcs.Close)
	return n
}

// serverConfig accepts this simulator under its root, with collateral
// from its PCS; extra goes at the top level.
func (n *simNode) serverConfig(extra string) string {
	return fmt.Sprintf(`tdx {
  collateral { pcs_url = %q }
}
sim { trusted_root_file = %q }
%s
`, n.pcs.URL, filepath.Join(n.dir, sim.RootFile), extra)
}

func (n *simNode) agent(t testing.TB) *agent {
	t.Helper()
	cfg, err := conf.ParseAgentNodeAttestor(fmt.Sprintf(`tee = "sim"
sim { dir = %q }
instance_id_path = %q
runtime_log_path = %q
`, n.dir, filepath.Join(n.base, "instance_id"), n.runtimeLogPath()))
	if err != nil {
		t.Fatal(err)
	}
	return &agent{p: n.prov, cfg: cfg}
}

func (n *simNode) runtimeLogPath() string { return filepath.Join(n.base, "runtime.cel") }

// runWorkloads records workloads in the node's runtime log and extends
// RTMR3 with each record, as the workload attestor does.
func (n *simNode) runWorkloads(t testing.TB, ws ...runtimelog.Workload) {
	t.Helper()
	simtest.RecordWorkloads(t, n.prov, n.runtimeLogPath(), ws...)
}

// workload is a distinct workload for runtime log cases.
func workload(i int) runtimelog.Workload {
	return runtimelog.Workload{
		ExeSHA256: bytes.Repeat([]byte{byte(i + 1)}, 32), ExeSHA384: bytes.Repeat([]byte{byte(i + 1)}, 48),
		ExePath: fmt.Sprintf("/usr/bin/w%d", i), ContainerID: fmt.Sprintf("c%d", i),
	}
}

// extendIMA extends the simulated RTMR2 with every entry of a binary IMA
// list as a CCNP kernel does (SHA-384 of the template data, all 0xFF for a
// violation), walking the layout itself: u32 PCR, 20-byte template hash,
// u32 name length, name, u32 data length, data.
func (n *simNode) extendIMA(t testing.TB, list []byte) {
	t.Helper()
	for off := 0; off < len(list); {
		u32 := func() int { v := binary.LittleEndian.Uint32(list[off:]); off += 4; return int(v) }
		u32() // PCR
		th := list[off : off+20]
		off += 20
		off += u32()
		size := u32()
		data := list[off : off+size]
		off += size
		d := sha512.Sum384(data)
		if bytes.Equal(th, make([]byte, 20)) {
			d = [48]byte(bytes.Repeat([]byte{0xff}, 48))
		}
		if err := n.prov.ExtendRTMR(context.Background(), 2, d); err != nil {
			t.Fatal(err)
		}
	}
}

// wrapLog wraps raw bytes as an evidence log of kind, zstd-compressed.
func wrapLog(t testing.TB, kind evidencepb.LogKind, b []byte) *evidencepb.Log {
	t.Helper()
	l, err := evidence.CompressLog(kind, b, evidencepb.Encoding_ENCODING_ZSTD)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// logBytes decompresses one log of the evidence.
func logBytes(t testing.TB, l *evidencepb.Log) []byte {
	t.Helper()
	b, err := evidence.DecompressLog(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readTestdata(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{repoRoot, "testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// simCase is one adversarial case against a fresh simulated TD.
type simCase struct {
	name string
	// opts choose the TD.
	opts sim.InitOptions
	// setup prepares the node and the agent's hooks; nil sends the
	// genuine evidence.
	setup func(t *testing.T, n *simNode, a *agent)
	// config is extra top-level server configuration.
	config string
	// serverConfig replaces the whole server configuration.
	serverConfig func(n *simNode) string
	want         rejection
}

// runSimCases runs every case on its own node and server, and checks
// first that the unmutated evidence of such a node is accepted, so that
// each rejection is the mutation's doing.
func runSimCases(t *testing.T, cases []simCase) {
	t.Helper()
	t.Run("baseline", func(t *testing.T) {
		n := newSimNode(t, sim.InitOptions{})
		s := newServer(t, n.serverConfig(""))
		if _, err := s.attest(n.agent(t)); err != nil {
			t.Fatalf("genuine evidence rejected: %v", err)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newSimNode(t, c.opts)
			a := n.agent(t)
			if c.setup != nil {
				c.setup(t, n, a)
			}
			cfg := n.serverConfig(c.config)
			if c.serverConfig != nil {
				cfg = c.serverConfig(n)
			}
			s := newServer(t, cfg)
			_, err := s.attest(a)
			s.want(t, err, c.want)
		})
	}
}

// cloneNode copies n's simulated TD (state, PKI, firmware) into a second
// node: the same platform and root, its own instance ID and runtime log,
// so that evidence of the two can be mixed.
func (n *simNode) cloneNode(t testing.TB) *simNode {
	t.Helper()
	c := &simNode{dir: filepath.Join(t.TempDir(), "sim"), base: t.TempDir(), pcs: n.pcs}
	err := filepath.WalkDir(n.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(n.dir, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(c.dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatalf("cloning %s: %v", n.dir, err)
	}
	if c.prov, err = sim.Open(context.Background(), c.dir); err != nil {
		t.Fatalf("sim.Open clone: %v", err)
	}
	return c
}

// collect runs the agent side of n for a challenge with the given nonce
// and the given hello bytes (nil: n's own), returning n's evidence.
func (n *simNode) collect(t testing.TB, nonce, hello []byte) *evidencepb.Evidence {
	t.Helper()
	ctx := context.Background()
	a := n.agent(t)
	if hello == nil {
		var err error
		if hello, err = nodeattestor.Hello(ctx, a.p, a.cfg); err != nil {
			t.Fatal(err)
		}
	}
	pl, err := nodeattestor.Collect(ctx, a.p, a.cfg, hello, &evidencepb.Challenge{
		Nonce: nonce,
		Want: []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_CCEL, evidencepb.LogKind_LOG_KIND_IMA,
			evidencepb.LogKind_LOG_KIND_RUNTIME},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pl.GetEvidence()
}

// Offsets in a TDX quote v4 (FACTS.md): the body starts at 48.
const (
	offMRTD       = 184
	offRTMR3      = 520
	offReportData = 568
	offSigData    = 636 // after the u32 signature data length at 632
)

// flip returns a mutate hook flipping one bit of the quote at off.
func flip(off int) func(*evidencepb.Evidence) {
	return func(e *evidencepb.Evidence) { e.Quote[off] ^= 1 }
}
