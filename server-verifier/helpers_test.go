package serververifier

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/internal/simtest"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

const trustDomain = "example.org"

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

// lines returns the JSON log lines whose message is msg.
func (s *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(s.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["@message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// harness is the server plugin served over the SDK's real plugin transport.
type harness struct {
	t      *testing.T
	plugin *Plugin
	client *nodeattestorv1.NodeAttestorPluginClient
	config *configv1.ConfigServiceClient
	logs   *syncBuffer
	clock  *simtest.Clock
}

func newHarness(t *testing.T, hooks func(*Plugin)) *harness {
	t.Helper()
	h := &harness{t: t, plugin: New(), client: new(nodeattestorv1.NodeAttestorPluginClient), config: new(configv1.ConfigServiceClient), logs: &syncBuffer{}, clock: &simtest.Clock{}}
	h.plugin.now = h.clock.Now
	if hooks != nil {
		hooks(h.plugin)
	}
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   nodeattestorv1.NodeAttestorPluginServer(h.plugin),
		PluginClient:   h.client,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(h.plugin)},
		ServiceClients: []pluginsdk.ServiceClient{h.config},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: h.logs, Level: hclog.Debug, JSONFormat: true}),
	})
	return h
}

func (h *harness) configure(hcl string) error {
	_, err := h.config.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  hcl,
	})
	return err
}

func (h *harness) mustConfigure(hcl string) *harness {
	h.t.Helper()
	if err := h.configure(hcl); err != nil {
		h.t.Fatalf("Configure: %v\n%s", err, hcl)
	}
	return h
}

// agent drives the agent side of the protocol with the nodeattestor
// package's transport-free functions, so the evidence is what a real agent
// sends; the hooks tamper with it on the way.
type agent struct {
	p   cctrusted.Provider
	cfg *conf.AgentNodeAttestor
	// hello replaces the hello bytes sent (the agent still binds the real
	// ones into its report).
	hello func([]byte) []byte
	// challenge edits the challenge the agent answers.
	challenge func(*evidencepb.Challenge)
	// mutate edits the evidence before it is encoded.
	mutate func(*evidencepb.Evidence)
	// raw replaces the encoded evidence.
	raw func([]byte) []byte
	// beforeEvidence runs between the challenge and the answer.
	beforeEvidence func()
	// activate replaces the answer to a credential activation challenge.
	activate func(*evidencepb.Challenge) []byte
}

func (h *harness) attest(a *agent) (*nodeattestorv1.AgentAttributes, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream, err := h.client.Attest(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stream.CloseSend() }()
	hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		h.t.Fatalf("agent Hello: %v", err)
	}
	sent := hello
	if a.hello != nil {
		sent = a.hello(bytes.Clone(hello))
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: sent}}); err != nil {
		// The server ended the stream; its status comes with Recv.
		_, rerr := stream.Recv()
		return nil, rerr
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
	if err != nil {
		h.t.Fatalf("server challenge: %v", err)
	}
	if a.challenge != nil {
		a.challenge(ch)
	}
	pl, err := nodeattestor.Collect(ctx, a.p, a.cfg, hello, ch)
	if err != nil {
		h.t.Fatalf("agent Collect: %v", err)
	}
	if a.mutate != nil {
		a.mutate(pl.GetEvidence())
	}
	b, err := proto.Marshal(pl)
	if err != nil {
		h.t.Fatal(err)
	}
	if a.raw != nil {
		b = a.raw(b)
	}
	if a.beforeEvidence != nil {
		a.beforeEvidence()
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: b}}); err != nil {
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
			h.t.Fatalf("activation challenge: %v", err)
		}
		var ans []byte
		if a.activate != nil {
			ans = a.activate(ch)
		} else {
			pl, err := nodeattestor.Activate(ctx, a.p, ch)
			if err != nil {
				h.t.Fatalf("agent Activate: %v", err)
			}
			if ans, err = evidence.Encode(pl); err != nil {
				h.t.Fatal(err)
			}
		}
		if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: ans}}); err != nil {
			return nil, err
		}
	}
}

// wantReject asserts a gRPC status code and message parts, and that the
// audit line of the rejection names the check.
func (h *harness) wantReject(err error, code codes.Code, check string, parts ...string) {
	h.t.Helper()
	if err == nil {
		h.t.Fatalf("attestation accepted, want %v from check %s", code, check)
	}
	st, _ := status.FromError(err)
	if st.Code() != code {
		h.t.Fatalf("code %v, want %v: %v", st.Code(), code, st.Message())
	}
	for _, p := range append([]string{"ccnp: " + check + ":"}, parts...) {
		if !strings.Contains(st.Message(), p) {
			h.t.Errorf("message %q lacks %q", st.Message(), p)
		}
	}
	var found bool
	for _, l := range h.logs.lines(h.t, "attestation") {
		if l["result"] == "rejected" && l["check"] == check && l["code"] == code.String() {
			found = true
		}
	}
	if !found {
		h.t.Errorf("no audit line for the rejection by %s:\n%s", check, h.logs.String())
	}
}

// simNode is a simulated TD with a simulated PCS on loopback HTTP.
type simNode struct {
	dir        string
	base       string
	prov       *sim.Provider
	pcs        *httptest.Server
	tcbFetches atomic.Int64
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
	handler := pcs.Handler(n.dir)
	n.pcs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == pcs.TCBInfoPath {
			n.tcbFetches.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(n.pcs.Close)
	return n
}

// serverConfig accepts the simulator (under its root) with collateral from
// its PCS through the tdx block; extra goes into the tdx block, top-level
// keys after it.
func (n *simNode) serverConfig(tdxExtra, extra string) string {
	return fmt.Sprintf(`tdx {
  collateral { pcs_url = %q }
  %s
}
sim { trusted_root_file = %q }
%s
`, n.pcs.URL, tdxExtra, filepath.Join(n.dir, sim.RootFile), extra)
}

func (n *simNode) agent(t testing.TB, extra string) *agent {
	t.Helper()
	cfg, err := conf.ParseAgentNodeAttestor(fmt.Sprintf(`tee = "sim"
sim { dir = %q }
instance_id_path = %q
runtime_log_path = %q
%s`, n.dir, filepath.Join(n.base, "instance_id"), n.runtimeLogPath(), extra))
	if err != nil {
		t.Fatal(err)
	}
	return &agent{p: n.prov, cfg: cfg}
}

func (n *simNode) runtimeLogPath() string { return filepath.Join(n.base, "runtime.cel") }

// runWorkloads records workloads in a runtime log on disk and extends the
// simulated RTMR3 with each record, as the workload attestor does.
func (n *simNode) runWorkloads(t testing.TB, ws ...runtimelog.Workload) {
	t.Helper()
	simtest.RecordWorkloads(t, n.prov, n.runtimeLogPath(), ws...)
}

func readTestdata(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imaDigests returns, per entry of a little-endian binary IMA list, the
// PCR and the digest a kernel extends into bank h (H(template data), or
// all 0xFF for a violation). It walks the layout itself (u32 PCR, 20-byte
// template hash, u32 name length, name, u32 data length, data) so that the
// expected registers do not come from package ima.
func imaDigests(t testing.TB, list []byte, hash func([]byte) []byte, size int) (pcrs []uint32, digests [][]byte) {
	t.Helper()
	for off := 0; off < len(list); {
		u32 := func() int { v := binary.LittleEndian.Uint32(list[off:]); off += 4; return int(v) }
		pcr := u32()
		th := list[off : off+20]
		off += 20
		off += u32()
		n := u32()
		data := list[off : off+n]
		off += n
		d := hash(data)
		if bytes.Equal(th, make([]byte, 20)) {
			d = bytes.Repeat([]byte{0xff}, size)
		}
		pcrs = append(pcrs, uint32(pcr))
		digests = append(digests, d)
	}
	return pcrs, digests
}

func sha384(b []byte) []byte { s := sha512.Sum384(b); return s[:] }

// addIMA extends the simulated RTMR2 with an IMA list, as a CCNP kernel
// does, and returns a mutate hook that sends the list with the evidence
// (the simulator has no securityfs for the agent to read it from).
func (n *simNode) addIMA(t *testing.T, list []byte) func(*evidencepb.Evidence) {
	t.Helper()
	_, ds := imaDigests(t, list, sha384, 48)
	for _, d := range ds {
		if err := n.prov.ExtendRTMR(context.Background(), 2, [48]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	return func(e *evidencepb.Evidence) { e.ImaLog = mustLog(t, evidencepb.LogKind_LOG_KIND_IMA, list) }
}

func mustLog(t testing.TB, kind evidencepb.LogKind, b []byte) *evidencepb.Log {
	t.Helper()
	l, err := evidence.CompressLog(kind, b, evidencepb.Encoding_ENCODING_ZSTD)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func hasSelector(a *nodeattestorv1.AgentAttributes, s string) bool {
	for _, v := range a.GetSelectorValues() {
		if v == s {
			return true
		}
	}
	return false
}

func selectorsWithPrefix(a *nodeattestorv1.AgentAttributes, prefix string) []string {
	var out []string
	for _, v := range a.GetSelectorValues() {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}

func readFileString(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
