package nodeattestor_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// allLogs is a challenge's want list asking for every log.
var allLogs = []evidencepb.LogKind{
	evidencepb.LogKind_LOG_KIND_CCEL, evidencepb.LogKind_LOG_KIND_TPM,
	evidencepb.LogKind_LOG_KIND_IMA, evidencepb.LogKind_LOG_KIND_RUNTIME,
}

// loaded is a plugin served over the real plugin transport.
type loaded struct {
	na   *nodeattestorv1.NodeAttestorPluginClient
	cfg  *configv1.ConfigServiceClient
	logs *simtest.LogBuffer
}

func load(t *testing.T) *loaded {
	t.Helper()
	l := &loaded{na: new(nodeattestorv1.NodeAttestorPluginClient), logs: new(simtest.LogBuffer)}
	p := nodeattestor.New()
	l.cfg = simtest.ServePlugin(t, nodeattestorv1.NodeAttestorPluginServer(p), l.na, p,
		hclog.New(&hclog.LoggerOptions{Output: l.logs, Level: hclog.Debug}))
	return l
}

func (l *loaded) configure(t *testing.T, hcl string) {
	t.Helper()
	simtest.MustConfigure(t, l.cfg, hcl)
}

// server is the fake server side of one attestation: it plays the
// protocol's server steps over the plugin stream with package evidence,
// independently of the plugin's own code.
type server struct {
	t      *testing.T
	stream nodeattestorv1.NodeAttestor_AidAttestationClient

	helloBytes []byte
	hello      *evidencepb.Hello
	nonce      []byte
	ev         *evidencepb.Evidence
	logs       *evidence.Logs
}

func (l *loaded) begin(t *testing.T) *server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	st, err := l.na.AidAttestation(ctx)
	if err != nil {
		t.Fatalf("AidAttestation: %v", err)
	}
	return &server{t: t, stream: st}
}

// recvHello reads the first payload; a plugin failure comes back as err.
func (s *server) recvHello() error {
	msg, err := s.stream.Recv()
	if err != nil {
		return err
	}
	s.helloBytes = msg.GetPayload()
	if len(s.helloBytes) == 0 {
		s.t.Fatalf("first message is not a payload: %v", msg)
	}
	if s.hello, err = evidence.DecodeHello(s.helloBytes, evidence.DefaultLimits()); err != nil {
		s.t.Fatalf("hello does not decode: %v", err)
	}
	return nil
}

func (s *server) send(p *evidencepb.Payload) {
	s.t.Helper()
	b, err := evidence.Encode(p)
	if err != nil {
		s.t.Fatal(err)
	}
	s.sendRaw(b)
}

func (s *server) sendRaw(b []byte) {
	s.t.Helper()
	if err := s.stream.Send(&nodeattestorv1.Challenge{Challenge: b}); err != nil {
		s.t.Fatalf("send challenge: %v", err)
	}
}

// challenge sends a fresh nonce asking for want.
func (s *server) challenge(want []evidencepb.LogKind, maxPayload uint64) {
	s.t.Helper()
	n, err := evidence.NewNonce()
	if err != nil {
		s.t.Fatal(err)
	}
	s.nonce = n
	s.send(evidence.NewChallenge(&evidencepb.Challenge{Nonce: n, Want: want, MaxPayloadBytes: maxPayload}))
}

// recvResponse returns the next challenge response, or the plugin's error.
func (s *server) recvResponse() ([]byte, error) {
	msg, err := s.stream.Recv()
	if err != nil {
		return nil, err
	}
	b := msg.GetChallengeResponse()
	if len(b) == 0 {
		s.t.Fatalf("not a challenge response: %v", msg)
	}
	return b, nil
}

// recvEvidence reads the evidence, checks the binding and inflates the logs.
func (s *server) recvEvidence() error {
	b, err := s.recvResponse()
	if err != nil {
		return err
	}
	if s.ev, err = evidence.DecodeEvidence(b, evidence.DefaultLimits()); err != nil {
		s.t.Fatalf("evidence does not decode: %v", err)
	}
	if err := evidence.CheckBinding(s.ev.GetBinding(), s.nonce, s.helloBytes); err != nil {
		s.t.Fatalf("binding: %v", err)
	}
	if s.logs, err = evidence.DecompressLogs(s.ev, evidence.DefaultLimits()); err != nil {
		s.t.Fatalf("logs: %v", err)
	}
	return nil
}

// end closes the server's side, as SPIRE does once attestation is over
// (the plugin may wait for a checkpoint or a fallback challenge until then),
// and expects the plugin to finish the stream cleanly.
func (s *server) end() {
	s.t.Helper()
	if err := s.stream.CloseSend(); err != nil {
		s.t.Fatalf("CloseSend: %v", err)
	}
	if msg, err := s.stream.Recv(); !errors.Is(err, io.EOF) {
		s.t.Fatalf("after the last message: got %v, %v; want the plugin to end the stream", msg, err)
	}
}

// wantStatus checks a plugin failure's code and that its message holds
// every part.
func wantStatus(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("code %s (%q), want %s", st.Code(), st.Message(), code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("message %q lacks %q", st.Message(), p)
		}
	}
	// SPIRE prefixes plugin errors with the plugin's name itself.
	if strings.HasPrefix(st.Message(), "ccnp") {
		t.Errorf("message %q repeats the plugin name SPIRE adds", st.Message())
	}
}

// newSim makes a simulated TD in a temporary directory.
func newSim(t *testing.T) string {
	t.Helper()
	return simtest.InitSim(t, sim.InitOptions{})
}

// simConfig is plugin_data for the simulator with state under base.
func simConfig(simDir, base string, extra string) string {
	return simtest.AgentHCL(simDir, filepath.Join(base, "state"), extra)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
