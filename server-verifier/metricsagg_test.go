package serververifier

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// countingClient is a MetricsClient that hands every call to a fake host
// service in-process and counts the calls.
type countingClient struct {
	f     *fakeMetrics
	calls atomic.Int64
}

func (c *countingClient) AddSample(ctx context.Context, r *metricsv1.AddSampleRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	c.calls.Add(1)
	return c.f.AddSample(ctx, r)
}

func (c *countingClient) IncrCounter(ctx context.Context, r *metricsv1.IncrCounterRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	c.calls.Add(1)
	return c.f.IncrCounter(ctx, r)
}

func (c *countingClient) SetGauge(ctx context.Context, r *metricsv1.SetGaugeRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	c.calls.Add(1)
	return c.f.SetGauge(ctx, r)
}

func (c *countingClient) EmitKey(context.Context, *metricsv1.EmitKeyRequest, ...grpc.CallOption) (*emptypb.Empty, error) {
	c.calls.Add(1)
	return &emptypb.Empty{}, nil
}

func (c *countingClient) MeasureSince(context.Context, *metricsv1.MeasureSinceRequest, ...grpc.CallOption) (*emptypb.Empty, error) {
	c.calls.Add(1)
	return &emptypb.Empty{}, nil
}

// TestMetricsAggregated: a burst of attestations costs a bounded number of
// host-service calls (counters summed exactly, each phase's durations
// sampled), not several calls per attestation.
func TestMetricsAggregated(t *testing.T) {
	fm := newFakeMetrics()
	cl := &countingClient{f: fm}
	// No timed flush: the test takes the aggregates itself.
	m := newMetricsEvery(New(), cl, time.Hour)
	t.Cleanup(m.close)
	const n = 5000
	for i := range n {
		m.observe(phaseQuote, time.Duration(i)*time.Microsecond)
		m.observe(phaseReplay, time.Millisecond)
		m.result(true, false)
	}
	sends := m.takeAggregates()
	// One counter and at most maxSamplesPerFlush samples per phase.
	if len(sends) != 1+2*maxSamplesPerFlush {
		t.Fatalf("%d host calls for %d attestations, want %d", len(sends), n, 1+2*maxSamplesPerFlush)
	}
	for _, send := range sends {
		if err := send(context.Background(), cl); err != nil {
			t.Fatal(err)
		}
	}
	if again := m.takeAggregates(); len(again) != 0 {
		t.Errorf("%d calls after the flush, want none", len(again))
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	const accepted = `spire_server_ccnp_attestation{mode="full",result="accepted"}`
	if got := fm.counters[accepted]; got != n {
		t.Errorf("counted %v accepted attestations, want %d", got, n)
	}
	// A uniform sample of 0..4.999 ms: not just the first durations.
	quote := fm.samples[`spire_server_ccnp_attestation_phase_elapsed_time{phase="quote"}`]
	var hi float32
	for _, v := range quote {
		hi = max(hi, v)
	}
	if len(quote) != maxSamplesPerFlush || hi < 1 {
		t.Errorf("%d quote samples, largest %.3f ms: want %d spread over 0..5 ms", len(quote), hi, maxSamplesPerFlush)
	}
	t.Logf("%d attestations: %d host calls (largest quote sample %.3f ms)", n, len(sends), hi)
	for k := range fm.samples {
		if !strings.HasPrefix(k, "spire_server_ccnp_attestation_phase_elapsed_time") {
			t.Errorf("unexpected sample %s", k)
		}
	}
}
