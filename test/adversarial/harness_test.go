package adversarial

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// repoRoot is the module root, for the threat model's cross-checks.
const repoRoot = "../.."

// server is one server plugin served over the SDK's plugin transport.
type server struct {
	t      *testing.T
	client *nodeattestorv1.NodeAttestorPluginClient
	logs   *simtest.LogBuffer
}

func newServer(t *testing.T, hcl string) *server {
	t.Helper()
	s := &server{t: t, logs: &simtest.LogBuffer{}}
	s.client = simtest.ServeConfigured(t, serververifier.New(), hcl, s.logs, hclog.Info)
	return s
}

// agent is the agent side of one attestation: real evidence from a
// provider through package nodeattestor, and the attacker's hooks on it.
type agent struct {
	p   cctrusted.Provider
	cfg *conf.AgentNodeAttestor
	simtest.Hooks
}

// attest runs one attestation of a against s and returns the server's
// verdict.
func (s *server) attest(a *agent) (*nodeattestorv1.AgentAttributes, error) {
	s.t.Helper()
	return simtest.AttestT(s.t, time.Minute, s.client, a.p, a.cfg, &a.Hooks)
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
	simtest.WantRejection(t, err, w.code, w.check, w.parts...)
	if !strings.Contains(s.logs.String(), `"check":"`+w.check+`"`) {
		t.Errorf("no audit line names check %s:\n%s", w.check, s.logs.String())
	}
}

// simNode is a simulated TD with its simulated PCS on loopback HTTP.
type simNode struct {
	*simtest.Node
	pcs *httptest.Server
}

func newSimNode(t testing.TB, opts sim.InitOptions) *simNode {
	t.Helper()
	n := &simNode{Node: simtest.NewNode(t, opts)}
	n.pcs = simtest.ServePCS(t, pcs.Handler(n.Dir))
	return n
}

// serverConfig accepts this simulator under its root, with collateral
// from its PCS; extra goes at the top level.
func (n *simNode) serverConfig(extra string) string {
	return n.ServerConfig(n.pcs.URL, simtest.ServerExtra{Top: extra})
}

func (n *simNode) agent(t testing.TB) *agent {
	t.Helper()
	return &agent{p: n.Prov, cfg: n.AgentConfig(t, "")}
}

// workload is a distinct workload for runtime log cases.
func workload(i int) runtimelog.Workload {
	return runtimelog.Workload{
		ExeSHA256: bytes.Repeat([]byte{byte(i + 1)}, 32), ExeSHA384: bytes.Repeat([]byte{byte(i + 1)}, 48),
		ExePath: fmt.Sprintf("/usr/bin/w%d", i), ContainerID: fmt.Sprintf("c%d", i),
	}
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
	return &simNode{Node: n.Clone(t), pcs: n.pcs}
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
