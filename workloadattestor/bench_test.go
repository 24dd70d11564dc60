package workloadattestor

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/bench/attestbench"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

// BenchmarkWorkloadAttest attests a running copy of /bin/sleep with a warm
// digest cache, over the plugin's gRPC service on a unix socket (the
// transport SPIRE uses with external plugins). "off" does not measure;
// "first_seen_sim" measures into a simulated RTMR3, which after the first
// call is a lookup. bench/unixattestor runs SPIRE's unix attestor the same
// way in the same run.
func BenchmarkWorkloadAttest(b *testing.B) {
	cases := []struct{ name, hcl string }{
		{"off", `measure = "off"`},
		{"first_seen_sim", ""},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			hcl := tc.hcl
			if hcl == "" {
				simDir, logPath := benchSim(b)
				hcl = fmt.Sprintf("tee = \"sim\"\nsim_dir = %q\nruntime_log_path = %q\n", simDir, logPath)
			}
			p := New()
			if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{HclConfiguration: hcl}); err != nil {
				b.Fatal(err)
			}
			cmd, _ := startCopy(b, b.TempDir(), "sleep")
			pid := cmd.Process.Pid
			c, err := attestbench.Serve(b.TempDir(), p)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			attestbench.Run(b, c, pid)
		})
	}
}

func benchSim(b *testing.B) (string, string) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "sim")
	if err := sim.Init(dir, sim.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	return dir, filepath.Join(b.TempDir(), "runtime.cel")
}
