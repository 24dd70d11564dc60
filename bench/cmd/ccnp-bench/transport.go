package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/spiffe/spire-plugin-sdk/private"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

// node is a simulated TD seen from outside: its state, its PKI (to sign
// quotes in memory, so the load generator spends as little CPU as a real
// TD's quoting enclave would on the server's machine) and its logs.
type node struct {
	dir   string
	auth  *pki.Authority
	body  pki.TDQuoteBody
	table []byte
	ccel  *evidencepb.Log
	ima   *evidencepb.Log
	pcs   *httptest.Server
	// qeCert is the certification data (QE report, its PCK signature, QE
	// auth data, PCK chain) of the first quote. A hardware QE signs its
	// report once per attestation key and reuses it; the simulator signs it
	// again for every quote, so the load generator puts the first one back,
	// as the server would see from a real TD.
	qeCert []byte
	// fetches counts collateral requests: a warm server makes none.
	fetches atomic.Int64
}

// newNode creates a simulated TD; with imaBytes > 0 it gets an IMA list of
// at least that many bytes, extended into RTMR2.
func newNode(dir string, imaBytes int) (*node, error) {
	if err := sim.Init(dir, sim.InitOptions{}); err != nil {
		return nil, err
	}
	n := &node{dir: dir}
	var err error
	if n.auth, err = pki.Load(filepath.Join(dir, pcs.PKIDir)); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, sim.StateFile))
	if err != nil {
		return nil, err
	}
	st, err := sim.ParseState(raw)
	if err != nil {
		return nil, err
	}
	if imaBytes > 0 {
		list, rtmr2 := imaList(imaBytes, st.RTMR[2])
		st.RTMR[2] = rtmr2
		out, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, sim.StateFile), out, 0o600); err != nil {
			return nil, err
		}
		if n.ima, err = evidence.CompressLog(evidencepb.LogKind_LOG_KIND_IMA, list, evidencepb.Encoding_ENCODING_NONE); err != nil {
			return nil, err
		}
	}
	copy(n.body.TDAttributes[:], st.TDAttributes)
	copy(n.body.XFAM[:], st.XFAM)
	copy(n.body.MRTD[:], st.MRTD)
	copy(n.body.MRConfigID[:], st.MRConfigID)
	copy(n.body.MROwner[:], st.MROwner)
	copy(n.body.MROwnerConfig[:], st.MROwnerConfig)
	for i := range st.RTMR {
		copy(n.body.RTMR[i][:], st.RTMR[i])
	}
	log, table := sim.DefaultCCEL()
	n.table = table
	if n.ccel, err = evidence.CompressLog(evidencepb.LogKind_LOG_KIND_CCEL, log, evidencepb.Encoding_ENCODING_ZSTD); err != nil {
		return nil, err
	}
	h := pcs.Handler(dir)
	q, err := n.auth.SignQuote(n.body, [64]byte{})
	if err != nil {
		return nil, err
	}
	n.qeCert = bytes.Clone(q[certOff:])
	n.pcs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.fetches.Add(1)
		h.ServeHTTP(w, r)
	}))
	return n, nil
}

func (n *node) close() { n.pcs.Close() }

// certOff is where a quote's certification data starts: after the quote
// signature and the attestation key.
const certOff = tdxquote.SignedDataOffset + tdxquote.SignatureSize + tdxquote.AttestationKeySize

// imaList builds little-endian binary ima-ng entries (kernel layout) until
// the list holds at least size bytes, and RTMR2 extended from start with the
// SHA-384 of each entry's template data.
func imaList(size int, start []byte) ([]byte, []byte) {
	le := binary.LittleEndian
	field := func(dst, b []byte) []byte { return append(le.AppendUint32(dst, uint32(len(b))), b...) }
	cur := bytes.Clone(start)
	var out []byte
	for i := 0; len(out) < size; i++ {
		name := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%d.so.1", i)
		d := sha256.Sum256([]byte(name))
		td := field(nil, append([]byte("sha256:\x00"), d[:]...))
		td = field(td, append([]byte(name), 0))
		th := sha1.Sum(td)
		out = le.AppendUint32(out, 10)
		out = append(out, th[:]...)
		out = field(out, []byte("ima-ng"))
		out = field(out, td)
		e := sha512.Sum384(td)
		h := sha512.New384()
		h.Write(cur)
		h.Write(e[:])
		cur = h.Sum(cur[:0])
	}
	return out, cur
}

// serverConfig is the plugin_data the benchmarks run the plugin with.
func (n *node) serverConfig() string {
	return fmt.Sprintf(`tdx {
  collateral { pcs_url = %q }
}
sim { trusted_root_file = %q }
max_payload_bytes = 67108864
challenge_timeout = "5m"
policy "golden" {
  enforce = true
  tee = ["sim"]
  secure_boot = false
}
`, n.pcs.URL, filepath.Join(n.dir, sim.RootFile))
}

// plugin is the server plugin binary running as SPIRE runs it: a child
// process speaking gRPC over go-plugin.
type plugin struct {
	client *goplugin.Client
	conn   *grpc.ClientConn
	na     *nodeattestorv1.NodeAttestorPluginClient
	pid    int
	host   *hostPlugin
}

// startPlugin launches bin and configures it.
func startPlugin(ctx context.Context, bin, hcl string) (*plugin, error) {
	na := new(nodeattestorv1.NodeAttestorPluginClient)
	cfg := new(configv1.ConfigServiceClient)
	host := &hostPlugin{}
	c := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  goplugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: na.Type(), MagicCookieValue: na.Type()},
		Plugins:          map[string]goplugin.Plugin{na.Type(): host},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		SyncStdout:       os.Stderr,
		SyncStderr:       os.Stderr,
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	raw, err := rpc.Dispense(na.Type())
	if err != nil {
		c.Kill()
		return nil, err
	}
	conn := raw.(*grpc.ClientConn)
	if _, err := private.Init(ctx, conn, nil); err != nil {
		c.Kill()
		return nil, fmt.Errorf("plugin init: %w", err)
	}
	na.InitClient(conn)
	cfg.InitClient(conn)
	if _, err := cfg.Configure(ctx, &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "example.org"},
		HclConfiguration:  hcl,
	}); err != nil {
		c.Kill()
		return nil, fmt.Errorf("configure: %w", err)
	}
	p := &plugin{client: c, conn: conn, na: na, host: host}
	if rc := c.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	return p, nil
}

func (p *plugin) stop() {
	p.client.Kill()
	if p.host.services != nil {
		p.host.services.Stop()
	}
}

// hostPlugin is the host side of the go-plugin handshake: it hands back the
// gRPC connection to the plugin.
type hostPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	services *grpc.Server
}

func (*hostPlugin) GRPCServer(*goplugin.GRPCBroker, *grpc.Server) error {
	return errors.New("host side only")
}

// GRPCClient also serves the host side of the plugin's host service
// broker, as SPIRE does: a plugin that wants host services (the server
// plugin's Metrics client) dials it during Init and fails when nobody
// answers. It offers no services, so the plugin emits no metrics here.
func (h *hostPlugin) GRPCClient(_ context.Context, b *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	l, err := b.Accept(private.HostServiceProviderID)
	if err != nil {
		return nil, fmt.Errorf("host service broker: %w", err)
	}
	h.services = grpc.NewServer()
	go func() { _ = h.services.Serve(l) }()
	return c, nil
}

// agent answers challenges for one node, signing quotes in memory.
type agent struct {
	n     *node
	hello []byte
}

func newAgent(n *node, id string) (*agent, error) {
	caps := []string{evidence.CapZstd, evidence.CapLogCCEL, evidence.CapLogRuntime}
	if n.ima != nil {
		caps = append(caps, evidence.CapLogIMA)
	}
	h, err := evidence.Encode(evidence.NewHello(&evidencepb.Hello{Tee: "sim", InstanceId: id, Caps: caps, AgentVersion: "bench"}))
	if err != nil {
		return nil, err
	}
	return &agent{n: n, hello: h}, nil
}

func (a *agent) evidence(nonce []byte) ([]byte, error) {
	rd := evidence.Binding(nonce, a.hello)
	q, err := a.n.auth.SignQuote(a.n.body, rd)
	if err != nil {
		return nil, err
	}
	if len(q)-certOff == len(a.n.qeCert) {
		copy(q[certOff:], a.n.qeCert)
	}
	ev := &evidencepb.Evidence{Tee: "sim", Binding: rd[:], Quote: q, CcelTable: a.n.table, Ccel: a.n.ccel, ImaLog: a.n.ima}
	return evidence.Encode(evidence.NewEvidence(ev))
}

// attest runs one attestation over the plugin transport.
func (a *agent) attest(ctx context.Context, na *nodeattestorv1.NodeAttestorPluginClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := na.Attest(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: a.hello}}); err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		if resp.GetAgentAttributes() != nil {
			return nil
		}
		ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
		if err != nil {
			return err
		}
		if len(ch.GetNonce()) == 0 {
			return fmt.Errorf("unexpected challenge %v", ch)
		}
		b, err := a.evidence(ch.GetNonce())
		if err != nil {
			return err
		}
		if err := st.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: b}}); err != nil {
			return err
		}
	}
}

// load runs conc workers attesting until total attestations are done or d
// has passed (whichever is set), and returns how many completed and the
// wall time.
func load(ctx context.Context, p *plugin, agents []*agent, conc, total int, d time.Duration) (int, time.Duration, error) {
	var done, started atomic.Int64
	var firstErr error
	var mu sync.Mutex
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := agents[w%len(agents)]
			for {
				if total > 0 && started.Add(1) > int64(total) {
					return
				}
				if total == 0 && time.Now().After(deadline) {
					return
				}
				if err := a.attest(ctx, p.na); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(done.Load()), time.Since(start), firstErr
}

// procStatus reads a field (in kB) of /proc/<pid>/status, e.g. VmHWM.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
