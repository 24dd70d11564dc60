package adversarial

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"

	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// Unauthenticated clients flooding the server plugin, through the plugin
// transport: none of them may lock out or delay an honest agent, and the
// plugin's memory must not grow with their number.

// quietServer serves a configured plugin that logs nothing: tens of
// thousands of audit lines would be the test's memory, not the plugin's.
func quietServer(t *testing.T, hcl string) *server {
	t.Helper()
	return &server{t: t, logs: &simtest.LogBuffer{}, client: simtest.ServeConfigured(t, serververifier.New(), hcl, io.Discard, hclog.Off)}
}

// timedAttest is one honest attestation and how long it took.
func (s *server) timedAttest(a *agent) (time.Duration, error) {
	s.t.Helper()
	start := time.Now()
	_, err := s.attest(a)
	return time.Since(start), err
}

// TestFloodSilentClients: 256 clients send a hello, receive their
// challenge and never answer. An honest agent is accepted within 2 s all the
// same (waiting for an agent holds no verification slot, so nothing queues
// behind them), and the 256 parked streams take less than 32 MiB of live
// heap (each holds a stream, two goroutines and a hello of at most 64 KiB;
// these hellos are the agent's own, a few hundred bytes).
func TestFloodSilentClients(t *testing.T) {
	const (
		silent    = 256
		heapBound = 32 << 20
	)
	n := newSimNode(t, sim.InitOptions{})
	s := quietServer(t, n.serverConfig(""))
	honest := n.agent(t)
	warm, err := s.timedAttest(honest)
	if err != nil {
		t.Fatalf("honest agent before the flood: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hello, err := nodeattestor.Hello(ctx, honest.p, honest.cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := simtest.LiveHeap()
	var (
		wg         sync.WaitGroup
		challenged atomic.Int64
		parked     = make(chan struct{})
	)
	for range silent {
		wg.Go(func() {
			st, err := s.client.Attest(ctx)
			if err != nil {
				return
			}
			if err := st.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
				return
			}
			if resp, err := st.Recv(); err == nil && resp.GetChallenge() != nil {
				challenged.Add(1)
			}
			<-parked // silent until the test ends
		})
	}
	defer func() { close(parked); cancel(); wg.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for challenged.Load() < silent && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c := challenged.Load(); c < silent {
		t.Fatalf("%d of %d clients that sent a hello were challenged within 20 s: challenges wait behind silent clients", c, silent)
	}
	held := simtest.LiveHeap()
	took, err := s.timedAttest(honest)
	t.Logf("%d silent clients parked: live heap %d KiB before, %d KiB with them (+%d KiB); honest attestation %v before, %v with them",
		silent, before>>10, held>>10, (int64(held)-int64(before))>>10, warm.Round(time.Millisecond), took.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("honest agent behind %d silent clients: %v", silent, err)
	}
	if took > 2*time.Second {
		t.Errorf("honest agent behind %d silent clients took %v, want under 2 s", silent, took)
	}
	if held > before+heapBound {
		t.Errorf("%d silent clients take %d KiB of live heap, more than %d KiB", silent, (held-before)>>10, heapBound>>10)
	}
}
