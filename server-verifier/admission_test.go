package serververifier

import (
	"context"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// challenged opens a stream, sends hello and waits for the challenge.
func challenged(t *testing.T, h *harness, hello []byte) nodeattestorv1.NodeAttestor_AttestClient {
	t.Helper()
	s := rawStream(t, h)
	if err := s.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); err != nil || resp.GetChallenge() == nil {
		t.Fatalf("no challenge: %v", err)
	}
	return s
}

// waitHeld waits until the plugin counts want evidence bytes.
func waitHeld(t *testing.T, p *Plugin, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.budget.held.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d evidence bytes held, want %d", p.budget.held.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLimitEvidenceBytesInFlight: while verification is busy (every slot
// taken), evidence that arrives is held within max_evidence_bytes_in_flight
// and evidence past it is refused at once with ResourceExhausted naming the
// key; a client that is challenged and never answers holds none of it. Once
// the slots free up, the held evidence is processed, the budget is empty
// again and an honest agent is accepted.
func TestLimitEvidenceBytesInFlight(t *testing.T) {
	const budget = 1 << 20
	n, h, a := simSetup(t, sim.InitOptions{}, "", fmt.Sprintf("max_payload_bytes = %d\nmax_evidence_bytes_in_flight = %d", budget, budget))
	hello, err := nodeattestor.Hello(context.Background(), a.p, a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Silent clients, challenged: no bytes held.
	for range 8 {
		challenged(t, h, hello)
	}
	if held := h.plugin.budget.held.Load(); held != 0 {
		t.Fatalf("silent clients hold %d evidence bytes", held)
	}
	var releases []func()
	for range cap(h.plugin.slots) {
		rel, err := h.plugin.slots.acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, rel)
	}
	junk := make([]byte, 400<<10) // not a payload: refused once decoded
	queued := []nodeattestorv1.NodeAttestor_AttestClient{challenged(t, h, hello), challenged(t, h, hello)}
	for _, s := range queued {
		if err := s.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: junk}}); err != nil {
			t.Fatal(err)
		}
	}
	waitHeld(t, h.plugin, 2*int64(len(junk)))
	over := challenged(t, h, hello)
	start := time.Now()
	if err := over.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: junk}}); err != nil {
		t.Fatal(err)
	}
	_, err = over.Recv()
	t.Logf("refused after %v with %d bytes held", time.Since(start).Round(time.Millisecond), h.plugin.budget.held.Load())
	h.wantReject(err, codes.ResourceExhausted, appraisal.CheckCapacity, "max_evidence_bytes_in_flight (1048576)", "409600 bytes")

	for _, rel := range releases {
		rel()
	}
	for _, s := range queued {
		_, err := s.Recv()
		h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload)
	}
	waitHeld(t, h.plugin, 0)
	if _, err := h.attest(n.agent(t, "")); err != nil {
		t.Fatalf("honest agent after the burst: %v", err)
	}
}

// TestActivationHoldsNoSlot: during the TPM credential activation round
// trip the attestation holds no verification slot, so an agent slow to
// activate delays no one's verification; it keeps its evidence bytes in the
// budget, because what it verified is held until the agent answers, so
// clients that never answer cannot hold memory the budget does not count.
func TestActivationHoldsNoSlot(t *testing.T) {
	n := startTPMNode(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_hash_allow_list = [%q] }`, n.ekHash(t, "ecc")))
	a := n.agent()
	var slots int
	var held int64 = -1
	a.Activate = func(ch *evidencepb.Challenge) []byte {
		slots, held = len(h.plugin.slots), h.plugin.budget.held.Load()
		pl, err := nodeattestor.Activate(context.Background(), n.agentP, ch)
		if err != nil {
			t.Errorf("agent Activate: %v", err)
			return nil
		}
		b, err := evidence.Encode(pl)
		if err != nil {
			t.Error(err)
		}
		return b
	}
	if _, err := h.attest(a); err != nil {
		t.Fatal(err)
	}
	if slots != 0 || held <= 0 {
		t.Fatalf("during activation: %d slots taken (want 0), %d evidence bytes held (want the evidence's)", slots, held)
	}
	waitHeld(t, h.plugin, 0)
}

// TestFloodJunkExchanges: 70,000 hello + evidence exchanges from eight
// concurrent clients (more than the 65,536 used nonces a server-wide store
// used to keep until nonce_ttl, after which every attestation failed with
// Unavailable), each answering its challenge with well-formed evidence bound
// to another nonce, so each is refused at the binding. Then an honest agent
// is accepted over the plugin transport at once, and the live heap never
// grew by more than 16 MiB during the flood: 70,000 exchanges leaking even
// 240 bytes each (a 32-byte nonce and its expiry in a map) exceed that,
// while the flood's own working set is eight exchanges.
//
// The junk goes to Plugin.Attest on in-memory streams: the plugin's state
// is what the attack fills, and 70,000 streams through the gRPC transport
// would cost over a minute of CPU under -race (about 1.1 ms each, measured),
// against a few seconds this way. The honest agent, and the silent clients
// of test/adversarial TestFloodSilentClients, use the transport.
func TestFloodJunkExchanges(t *testing.T) {
	const (
		exchanges = 70_000
		clients   = 8
		heapBound = 16 << 20
	)
	// The largest nonce_ttl: a store of used nonces would keep every one
	// of them for the whole flood, however slow the machine.
	_, h, a := simSetup(t, sim.InitOptions{}, "", `nonce_ttl = "1h"`)
	if _, err := h.attest(a); err != nil {
		t.Fatalf("honest agent before the flood: %v", err)
	}
	// Tens of thousands of audit lines would be the test's memory, not
	// the plugin's.
	h.plugin.SetLogger(hclog.NewNullLogger())
	ctx := context.Background()
	hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := nodeattestor.Collect(ctx, a.p, a.cfg, hello, &evidencepb.Challenge{Nonce: make([]byte, evidence.NonceSize)})
	if err != nil {
		t.Fatal(err)
	}
	ev := pl.GetEvidence()
	ev.Ccel, ev.CcelTable, ev.ImaLog, ev.RuntimeLog = nil, nil, nil, nil // the quote alone is enough junk
	junk, err := evidence.Encode(pl)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*nodeattestorv1.AttestRequest{
		{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}},
		{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: junk}},
	}

	before := simtest.LiveHeap()
	watch := simtest.WatchHeap(500 * time.Millisecond)
	var (
		next, wrong atomic.Int64
		firstBad    atomic.Value
		wg          sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= exchanges {
				err := h.plugin.Attest(&memStream{ctx: ctx, in: msgs})
				if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.HasPrefix(st.Message(), appraisal.CheckBinding+": ") {
					wrong.Add(1)
					firstBad.CompareAndSwap(nil, fmt.Sprint(err))
				}
			}
		})
	}
	wg.Wait()
	flood := time.Since(start)
	peak := watch.End()
	t.Logf("%d junk exchanges from %d clients in %v (%.0f/s); live heap %d KiB before, peak %d KiB (%+d KiB)",
		exchanges, clients, flood.Round(time.Millisecond), exchanges/flood.Seconds(), before>>10, peak>>10, (int64(peak)-int64(before))>>10)
	if w := wrong.Load(); w > 0 {
		t.Errorf("%d junk exchanges were not refused at the binding; first: %v", w, firstBad.Load())
	}
	start = time.Now()
	_, err = h.attest(a)
	took := time.Since(start)
	t.Logf("honest attestation after the flood: %v", took.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("honest agent after %d junk exchanges: %v", exchanges, err)
	}
	if took > 5*time.Second {
		t.Errorf("honest attestation after the flood took %v", took)
	}
	if peak > before+heapBound {
		t.Errorf("live heap grew by %d KiB during the flood, more than %d KiB", (peak-before)>>10, heapBound>>10)
	}
	if held, busy := h.plugin.budget.held.Load(), len(h.plugin.slots); held != 0 || busy != 0 {
		t.Errorf("after the flood: %d evidence bytes held, %d slots taken", held, busy)
	}
}

// TestLimitHelloBytes: the hello is held while the server waits for the
// agent, so it is bounded far below max_payload_bytes: a client cannot
// park 4 MiB (the transport's message limit) per silent stream. A hello
// padded past 64 KiB is refused before it is parsed; the agent's own hello
// with a checkpoint token of the largest size fits.
func TestLimitHelloBytes(t *testing.T) {
	_, h, _ := simSetup(t, sim.InitOptions{}, "", "")
	pad := func(size int) []byte {
		b, err := evidence.Encode(evidence.NewHello(&evidencepb.Hello{Tee: "sim", InstanceId: "node1", AgentVersion: "x"}))
		if err != nil {
			t.Fatal(err)
		}
		// One unknown field (number 15, bytes; a 3-byte length for these
		// sizes) fills the payload to size.
		b = protowire.AppendTag(b, 15, protowire.BytesType)
		b = protowire.AppendBytes(b, make([]byte, size-len(b)-3))
		if len(b) != size {
			t.Fatalf("padded hello of %d bytes, want %d", len(b), size)
		}
		return b
	}
	s := rawStream(t, h)
	if err := s.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: pad(maxHelloBytes + 1)}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Recv()
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload, "above the limit of 65536")
	challenged(t, h, pad(maxHelloBytes-64))
}
