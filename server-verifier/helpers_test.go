package serververifier

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// trustDomain is the trust domain the harness configures.
const trustDomain = simtest.TrustDomain

// harness is the server plugin served over the SDK's real plugin transport.
type harness struct {
	t      *testing.T
	plugin *Plugin
	client *nodeattestorv1.NodeAttestorPluginClient
	config *configv1.ConfigServiceClient
	logs   *simtest.LogBuffer
	clock  *simtest.Clock
}

func newHarness(t *testing.T, hooks func(*Plugin)) *harness {
	t.Helper()
	h := &harness{t: t, plugin: New(), logs: &simtest.LogBuffer{}, clock: &simtest.Clock{}}
	h.plugin.now = h.clock.Now
	if hooks != nil {
		hooks(h.plugin)
	}
	h.client, h.config = simtest.ServeServer(t, h.plugin, h.logs, hclog.Debug)
	return h
}

func (h *harness) configure(hcl string) error { return simtest.Configure(h.config, hcl) }

func (h *harness) mustConfigure(hcl string) *harness {
	h.t.Helper()
	simtest.MustConfigure(h.t, h.config, hcl)
	return h
}

// agent is the agent side of one attestation: a provider, its
// configuration, and the hooks that tamper with what it sends.
type agent struct {
	p   cctrusted.Provider
	cfg *conf.AgentNodeAttestor
	simtest.Hooks
}

func (h *harness) attest(a *agent) (*nodeattestorv1.AgentAttributes, error) {
	h.t.Helper()
	return simtest.AttestT(h.t, 2*time.Minute, h.client, a.p, a.cfg, &a.Hooks)
}

// wantReject asserts a gRPC status code and message parts, and that the
// audit line of the rejection names the check.
func (h *harness) wantReject(err error, code codes.Code, check string, parts ...string) {
	h.t.Helper()
	simtest.WantRejection(h.t, err, code, check, parts...)
	var found bool
	for _, l := range h.logs.Audit(h.t) {
		if l["result"] == "rejected" && l["check"] == check && l["code"] == code.String() {
			found = true
		}
	}
	if !found {
		h.t.Errorf("no audit line for the rejection by %s:\n%s", check, h.logs.String())
	}
}

// simNode is a simulated TD with a simulated PCS on loopback HTTP that
// counts its TCB info fetches. dir, base and prov are node's, under the
// names the suite's tests use.
type simNode struct {
	node       *simtest.Node
	dir        string
	base       string
	prov       *sim.Provider
	pcs        *httptest.Server
	tcbFetches atomic.Int64
}

func newSimNode(t testing.TB, opts sim.InitOptions) *simNode {
	t.Helper()
	sn := simtest.NewNode(t, opts)
	n := &simNode{node: sn, dir: sn.Dir, base: sn.Base, prov: sn.Prov}
	handler := pcs.Handler(n.dir)
	n.pcs = simtest.ServePCS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == pcs.TCBInfoPath {
			n.tcbFetches.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	return n
}

// serverConfig accepts the simulator (under its root) with collateral from
// its PCS through the tdx block; extra goes into the tdx block, top-level
// keys after it.
func (n *simNode) serverConfig(tdxExtra, extra string) string {
	return n.node.ServerConfig(n.pcs.URL, simtest.ServerExtra{TDX: tdxExtra, Top: extra})
}

func (n *simNode) agent(t testing.TB, extra string) *agent {
	t.Helper()
	return &agent{p: n.prov, cfg: n.node.AgentConfig(t, extra)}
}

func (n *simNode) runtimeLogPath() string { return n.node.RuntimeLogPath() }

// runWorkloads records workloads in a runtime log on disk and extends the
// simulated RTMR3 with each record, as the workload attestor does.
func (n *simNode) runWorkloads(t testing.TB, ws ...runtimelog.Workload) {
	t.Helper()
	n.node.RunWorkloads(t, ws...)
}

// addIMA extends the simulated RTMR2 with an IMA list, as a CCNP kernel
// does, and returns a mutate hook that sends the list with the evidence
// (the simulator has no securityfs for the agent to read it from).
func (n *simNode) addIMA(t *testing.T, list []byte) func(*evidencepb.Evidence) {
	t.Helper()
	n.node.ExtendIMA(t, list)
	return func(e *evidencepb.Evidence) { e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, list) }
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
