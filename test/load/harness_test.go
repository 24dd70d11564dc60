package load

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
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
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

const trustDomain = "example.org"

// lineCounter counts the plugin's log lines without keeping them, so that
// the log of a thousand attestations does not count as heap growth.
type lineCounter struct {
	mu       sync.Mutex
	accepted int
	rejected int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range bytes.Split(p, []byte("\n")) {
		switch {
		case bytes.Contains(l, []byte(`"@message":"attestation"`)) && bytes.Contains(l, []byte(`"result":"accepted"`)):
			c.accepted++
		case bytes.Contains(l, []byte(`"@message":"attestation"`)) && bytes.Contains(l, []byte(`"result":"rejected"`)):
			c.rejected++
		}
	}
	return len(p), nil
}

func (c *lineCounter) counts() (accepted, rejected int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accepted, c.rejected
}

// server is one server plugin over the SDK's plugin transport.
type server struct {
	client *nodeattestorv1.NodeAttestorPluginClient
	audit  *lineCounter
}

func newServer(t *testing.T, hcl string) *server {
	t.Helper()
	return newServerWithClock(t, hcl, time.Now)
}

// newServerWithClock is newServer with the plugin reading the time from now.
func newServerWithClock(t *testing.T, hcl string, now func() time.Time) *server {
	t.Helper()
	s := &server{client: new(nodeattestorv1.NodeAttestorPluginClient), audit: &lineCounter{}}
	p := serververifier.NewWithClock(now)
	cfgClient := new(configv1.ConfigServiceClient)
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   nodeattestorv1.NodeAttestorPluginServer(p),
		PluginClient:   s.client,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{cfgClient},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: s.audit, Level: hclog.Info, JSONFormat: true}),
	})
	if _, err := cfgClient.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  hcl,
	}); err != nil {
		t.Fatalf("Configure: %v\n%s", err, hcl)
	}
	return s
}

// agent is one agent: a provider, its configuration, and an optional
// tampering of its evidence payload.
type agent struct {
	p   *sim.Provider
	cfg *conf.AgentNodeAttestor
}

// attest runs one attestation; tamper (nil: none) edits the encoded
// evidence.
func (s *server) attest(ctx context.Context, a *agent, tamper func([]byte) []byte) (*nodeattestorv1.AgentAttributes, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := s.client.Attest(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stream.CloseSend() }()
	hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		return nil, fmt.Errorf("agent hello: %w", err)
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
		_, rerr := stream.Recv()
		return nil, rerr
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("server challenge: %w", err)
	}
	pl, err := nodeattestor.Collect(ctx, a.p, a.cfg, hello, ch)
	if err != nil {
		return nil, fmt.Errorf("agent collect: %w", err)
	}
	b, err := proto.Marshal(pl)
	if err != nil {
		return nil, err
	}
	if tamper != nil {
		b = tamper(b)
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: b}}); err != nil {
		_, rerr := stream.Recv()
		return nil, rerr
	}
	resp, err = stream.Recv()
	if err != nil {
		return nil, err
	}
	return resp.GetAgentAttributes(), nil
}

// simNode is a simulated TD; pcs serves its collateral (a test may wrap
// the handler).
type simNode struct {
	dir  string
	prov *sim.Provider
}

func newSimNode(t testing.TB) *simNode {
	t.Helper()
	n := &simNode{dir: filepath.Join(t.TempDir(), "sim")}
	if err := sim.Init(n.dir, sim.InitOptions{}); err != nil {
		t.Fatalf("sim.Init: %v", err)
	}
	var err error
	if n.prov, err = sim.Open(context.Background(), n.dir); err != nil {
		t.Fatalf("sim.Open: %v", err)
	}
	return n
}

// collateralExtra goes into the tdx.collateral block.
func (n *simNode) serverConfig(pcsURL string, collateralExtra ...string) string {
	return fmt.Sprintf("tdx {\n  collateral {\n    pcs_url = %q\n%s\n  }\n}\nsim { trusted_root_file = %q }\n",
		pcsURL, strings.Join(collateralExtra, "\n"), filepath.Join(n.dir, sim.RootFile))
}

// agent is an agent of this TD with its own instance ID (its own data
// directory), so that several agents are several nodes to the server.
// extra goes into the agent's configuration.
func (n *simNode) agent(t testing.TB, extra string) *agent {
	t.Helper()
	base := t.TempDir()
	cfg, err := conf.ParseAgentNodeAttestor(fmt.Sprintf(`tee = "sim"
sim { dir = %q }
instance_id_path = %q
runtime_log_path = %q
%s
`, n.dir, filepath.Join(base, "instance_id"), filepath.Join(base, "runtime.cel"), extra))
	if err != nil {
		t.Fatal(err)
	}
	return &agent{p: n.prov, cfg: cfg}
}

// clone copies the simulated TD (state, PKI, firmware) into another
// directory: another TD of the same platform under the same root, with its
// own state lock, so that agents on different clones do not wait for each
// other's simulated hardware.
func (n *simNode) clone(t testing.TB) *simNode {
	t.Helper()
	c := &simNode{dir: filepath.Join(t.TempDir(), "sim")}
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

// serve starts h on loopback HTTP for the test.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// instanceID reads the ID an agent created, for its expected SPIFFE ID.
func instanceID(t testing.TB, a *agent) string {
	t.Helper()
	id, err := nodeattestor.InstanceID(a.cfg.InstanceIDPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(id)
}
