package load

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// trustDomain is the trust domain the server is configured with.
const trustDomain = simtest.TrustDomain

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
		case bytes.Contains(l, []byte(`"@message":"Attestation accepted"`)) && bytes.Contains(l, []byte(`"result":"accepted"`)):
			c.accepted++
		case bytes.Contains(l, []byte(`"@message":"Attestation rejected"`)) && bytes.Contains(l, []byte(`"result":"rejected"`)):
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

// server is one server plugin over the SDK's plugin transport, counting
// its audit lines.
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
	s := &server{audit: &lineCounter{}}
	s.client = simtest.ServeConfigured(t, serververifier.NewWithClock(now), hcl, s.audit, hclog.Info)
	return s
}

// agent is one agent: a provider and its configuration.
type agent struct {
	p   *sim.Provider
	cfg *conf.AgentNodeAttestor
}

// attest runs one attestation; tamper (nil: none) edits the encoded
// evidence. Agents run it concurrently, so it reports every failure as an
// error.
func (s *server) attest(ctx context.Context, a *agent, tamper func([]byte) []byte) (*nodeattestorv1.AgentAttributes, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return simtest.Attest(ctx, s.client, a.p, a.cfg, &simtest.Hooks{Raw: tamper})
}

// simNode is a simulated TD; its PCS is the test's to serve (a test may
// wrap the handler).
type simNode struct{ *simtest.Node }

func newSimNode(t testing.TB) *simNode {
	t.Helper()
	return &simNode{simtest.NewNode(t, sim.InitOptions{})}
}

// serverConfig accepts this TD with collateral from pcsURL;
// collateralExtra goes into the tdx.collateral block.
func (n *simNode) serverConfig(pcsURL string, collateralExtra ...string) string {
	return n.ServerConfig(pcsURL, simtest.ServerExtra{Collateral: strings.Join(collateralExtra, "\n")})
}

// agent is an agent of this TD with its own instance ID (its own data
// directory), so that several agents are several nodes to the server.
// extra goes into the agent's configuration.
func (n *simNode) agent(t testing.TB, extra string) *agent {
	t.Helper()
	return &agent{p: n.Prov, cfg: simtest.AgentConfig(t, simtest.AgentHCL(n.Dir, t.TempDir(), extra))}
}

// clone is another TD of the same platform under the same root, with its
// own state lock, so that agents on different clones do not wait for each
// other's simulated hardware.
func (n *simNode) clone(t testing.TB) *simNode {
	t.Helper()
	return &simNode{n.Clone(t)}
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
