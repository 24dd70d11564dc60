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
	res, err := Run(ctx, Config{Bin: bin, Dir: t.TempDir(), Levels: []int{1, 2}, Duration: 300 * time.Millisecond, Count: 1, Progress: &progress,
		FullLevels: []int{2}})
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
	// Every attestation writes the node and its selectors (spire-server's
	// own datastore counters), a ccnp node has more selectors than an
	// x509pop one, and ccnp attestations use the checkpoint as designed:
	// two challenges (nonce, checkpoint), and a re-attestation sends less
	// than a whole-log one.
	for _, s := range res.Samples {
		if w := s.PerAttestation(s.Datastore.Writes()); w < 1 {
			t.Errorf("%s at %d: %.2f datastore writes per attestation (%v)", s.Attestor, s.Concurrency, w, s.Datastore)
		}
		if s.Attestor != X509PoP && s.Challenges != 2*s.Attestations {
			t.Errorf("%s at %d: %d challenges for %d attestations, want a nonce and a checkpoint round each", s.Attestor, s.Concurrency, s.Challenges, s.Attestations)
		}
	}
	if nc, np := len(res.Selectors[CCNP]), len(res.Selectors[X509PoP]); nc <= np || np == 0 {
		t.Errorf("selectors per node: ccnp %d, x509pop %d", nc, np)
	}
	inc, full := res.Of(CCNP, 2), res.Of(CCNPFull, 2)
	if len(inc) != 1 || len(full) != 1 {
		t.Fatalf("ccnp and ccnp-full at 2: %d and %d samples", len(inc), len(full))
	}
	if a, b := inc[0].PerAttestation(float64(inc[0].SentBytes)), full[0].PerAttestation(float64(full[0].SentBytes)); a >= b {
		t.Errorf("a re-attestation from a checkpoint sends %.0f bytes, a whole-log one %.0f: the checkpoint is not used", a, b)
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
