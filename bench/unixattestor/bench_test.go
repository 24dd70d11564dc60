// Package unixattestor benchmarks this project's workload attestor next to
// SPIRE v1.13.3's built-in unix workload attestor, in one `go test -bench`
// run, over the same gRPC-on-a-unix-socket transport (package
// bench/attestbench). It is a separate module so the main module
// never depends on SPIRE.
package unixattestor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"github.com/spiffe/spire/pkg/agent/plugin/workloadattestor/unix"

	"github.com/ccnp-spire/ccnp-spire/bench/attestbench"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor"
)

func sleeper(b *testing.B) int {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "sleep")
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		b.Skip("no /bin/sleep")
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "600")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

type configurer interface {
	Configure(context.Context, *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error)
}

func configure(b *testing.B, p configurer, hcl string) {
	b.Helper()
	_, err := p.Configure(context.Background(), &configv1.ConfigureRequest{
		HclConfiguration:  hcl,
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "example.org"},
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWorkloadAttest: "ccnp" is this project's plugin with measuring
// off and a warm digest cache (SHA-256 of the executable, uid, gid, cgroup
// and container identity); "unix" is SPIRE's default configuration (uid,
// user, gid, group, supplementary groups); "unix_path_sha256" adds
// discover_workload_path, with which SPIRE re-hashes the executable on every
// call (it has no cache) — the nearest to what ccnp returns.
func BenchmarkWorkloadAttest(b *testing.B) {
	b.Run("ccnp", func(b *testing.B) {
		p := workloadattestor.New()
		configure(b, p, `measure = "off"`)
		run(b, p)
	})
	b.Run("unix", func(b *testing.B) {
		p := unix.New()
		configure(b, p, ``)
		run(b, p)
	})
	b.Run("unix_path_sha256", func(b *testing.B) {
		p := unix.New()
		configure(b, p, `discover_workload_path = true`)
		run(b, p)
	})
}

func run(b *testing.B, p interface {
	configurer
	attestServer
}) {
	pid := sleeper(b)
	c, err := attestbench.Serve(b.TempDir(), p)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	attestbench.Run(b, c, pid)
}
