package serververifier

import (
	"fmt"
	"runtime/debug"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// TestConfigureSetsMemoryLimit: the plugin binary's process gets a soft
// memory limit of its evidence budget plus the margin, following
// reconfiguration; a plugin that does not own its process leaves the
// runtime's limit alone.
func TestConfigureSetsMemoryLimit(t *testing.T) {
	if memoryLimitFromEnv {
		t.Skip("GOMEMLIMIT is set: the plugin leaves the limit to it")
	}
	before := debug.SetMemoryLimit(-1)
	gcBefore := debug.SetGCPercent(100)
	debug.SetGCPercent(gcBefore)
	t.Cleanup(func() { debug.SetMemoryLimit(before); debug.SetGCPercent(gcBefore) })

	n := newSimNode(t, sim.InitOptions{})
	shared := newHarness(t, nil)
	shared.mustConfigure(n.serverConfig("", "max_evidence_bytes_in_flight = 67108864"))
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("a plugin inside another program set the memory limit to %d", got)
	}

	own := newHarness(t, func(p *Plugin) { p.OwnProcess() })
	for _, budget := range []int64{64 << 20, 512 << 20} {
		own.mustConfigure(n.serverConfig("", fmt.Sprintf("max_evidence_bytes_in_flight = %d", budget)))
		want := budget + memoryLimitMargin
		if got := debug.SetMemoryLimit(-1); got != want {
			t.Errorf("budget %d: memory limit %d, want %d", budget, got, want)
		}
	}
	// The default budget: 256 MiB of evidence, a 448 MiB limit.
	own.mustConfigure(n.serverConfig("", ""))
	if got := debug.SetMemoryLimit(-1); got != 448<<20 {
		t.Errorf("default: memory limit %d, want %d", got, 448<<20)
	}
	if !gcPercentFromEnv {
		if got := debug.SetGCPercent(gcBefore); got != gcPercent {
			t.Errorf("GOGC %d under the memory limit, want %d", got, gcPercent)
		}
	}
}
