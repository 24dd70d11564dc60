// Package attestbench measures WorkloadAttestor plugins the way the SPIRE
// agent calls them: the plugin's gRPC service over a unix socket (what the
// plugin transport, go-plugin, uses between agent and plugin process), one
// Attest per workload lookup. Any plugin implementing the SDK's
// WorkloadAttestorServer can be measured, so this project's plugin and
// SPIRE's built-in ones are compared on the same footing.
package attestbench

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Conn is a served plugin.
type Conn struct {
	Client workloadattestorv1.WorkloadAttestorClient
	close  func()
}

// Close stops the server and the connection.
func (c *Conn) Close() { c.close() }

// Serve serves srv on a unix socket in dir and connects to it.
func Serve(dir string, srv workloadattestorv1.WorkloadAttestorServer) (*Conn, error) {
	sock := filepath.Join(dir, "plugin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("attestbench: listening on %s: %w", sock, err)
	}
	gs := grpc.NewServer()
	workloadattestorv1.RegisterWorkloadAttestorServer(gs, srv)
	go func() { _ = gs.Serve(l) }()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		gs.Stop()
		return nil, fmt.Errorf("attestbench: connecting to %s: %w", sock, err)
	}
	return &Conn{
		Client: workloadattestorv1.NewWorkloadAttestorClient(cc),
		close:  func() { _ = cc.Close(); gs.Stop() },
	}, nil
}

// Run attests pid b.N times, after one warm-up call, and reports the median
// and 99th percentile latencies next to the mean (ns/op).
func Run(b *testing.B, c *Conn, pid int) {
	b.Helper()
	ctx := context.Background()
	req := &workloadattestorv1.AttestRequest{Pid: int32(pid)}
	if _, err := c.Client.Attest(ctx, req); err != nil {
		b.Fatalf("warm-up attest of pid %d: %v", pid, err)
	}
	lat := make([]time.Duration, 0, max(b.N, 1))
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := c.Client.Attest(ctx, req); err != nil {
			b.Fatalf("attest pid %d: %v", pid, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	p50, p99 := Percentiles(lat)
	b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
}

// Percentiles returns the median and the 99th percentile of d.
func Percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}
