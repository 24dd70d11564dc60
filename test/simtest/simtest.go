// Package simtest holds the test harness that several suites (the agent
// and server plugins', the adversarial and the load suites) share: a
// simulated TD and its PCS (node.go), a swtpm node (tpm.go), plugins served
// over the real plugin transport (server.go), the agent side of an
// attestation with an attacker's hooks (attest.go) and test data and log
// helpers (logs.go). What only one suite needs stays in that suite.
package simtest

import (
	"context"
	"os"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// RecordWorkloads appends workloads to the runtime log at path (creating it)
// and extends the simulated RTMR3 with each record, as the workload attestor
// does, so the log and the register agree.
func RecordWorkloads(t testing.TB, prov *sim.Provider, path string, ws ...runtimelog.Workload) {
	t.Helper()
	l := runtimelog.New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	if b, err := os.ReadFile(path); err == nil {
		if l, err = runtimelog.Decode(b, runtimelog.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range ws {
		ev, err := l.Append(w)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := ev.Digest(cctrusted.AlgSHA384)
		if err := prov.ExtendRTMR(context.Background(), 3, [48]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
