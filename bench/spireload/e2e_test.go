//go:build e2e

package spireload

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunThroughSPIRE runs a short measurement against a real spire-server:
// both attestors at two levels, every attestation checked (an SVID naming
// the attestor's agent path), CPU of the server and of the ccnp plugin
// seen. It needs the binaries of make build spire.
func TestRunThroughSPIRE(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spire-server")
	}
	bin, err := filepath.Abs("../../.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bin, "spire-server")); err != nil {
		t.Skipf("no spire-server in %s (make build spire): %v", bin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	var progress strings.Builder
	res, err := Run(ctx, Config{Bin: bin, Dir: t.TempDir(), Levels: []int{1, 2}, Duration: 300 * time.Millisecond, Count: 1, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Logf("%s in %v", progress.String(), time.Since(start))
	if res.Agents != 2 {
		t.Errorf("%d agents per attestor, want 2", res.Agents)
	}
	for _, name := range []string{CCNP, X509PoP} {
		for _, c := range []int{1, 2} {
			s := res.Of(name, c)
			if len(s) != 1 || s[0].Attestations == 0 || s[0].P99 < s[0].P50 || s[0].ServerCPU <= 0 {
				t.Errorf("%s at %d: %+v", name, c, s)
			}
		}
	}
	var plugin time.Duration
	for _, s := range res.Samples {
		if s.Attestor == CCNP {
			plugin += s.PluginCPU
		}
	}
	if plugin <= 0 {
		t.Error("no CPU time of the ccnp server plugin seen while ccnp agents attested")
	}
}
