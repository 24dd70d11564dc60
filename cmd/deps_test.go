// Package cmd_test checks what the production binaries link: the simulator,
// its PKI and PCS, and the collateral client must stay out of what a
// production node runs, and the simulator out of the server plugin
// (DESIGN.md §1: the server trusts a simulated root only as a PEM).
package cmd_test

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const module = "github.com/ccnp-spire/ccnp-spire/"

// forbidden lists, per production binary, the packages it must not link.
var forbidden = map[string][]string{
	"ccnp-server-nodeattestor":    {"tee/", "internal/", "test/", "bench/", "workloadattestor", "workloadsvc", "nodeattestor"},
	"ccnp-agent-nodeattestor":     {"tee/sim", "collateral", "appraisal", "server-verifier", "test/", "bench/"},
	"ccnp-agent-workloadattestor": {"tee/sim", "collateral", "appraisal", "server-verifier", "test/", "bench/"},
}

// internal/cctrusted and internal/smallfile are the foundation every binary
// may need; internal/version is every binary's own build description.
var allowedInternal = []string{"internal/cctrusted", "internal/smallfile", "internal/version"}

func goTool(t *testing.T) string {
	t.Helper()
	g, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot list what the binaries link")
	}
	return g
}

// deps lists, for each ./cmd/<name>, the module's packages it links with
// the given build tags (one go list run for all of them).
func deps(t *testing.T, goCmd, tags string, names ...string) map[string][]string {
	t.Helper()
	args := []string{"list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	for _, n := range names {
		args = append(args, "./"+n)
	}
	out, err := exec.Command(goCmd, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		name := strings.TrimPrefix(f[0], module+"cmd/")
		for _, p := range f[1:] {
			if rest, ok := strings.CutPrefix(p, module); ok {
				got[name] = append(got[name], rest)
			}
		}
	}
	for _, n := range names {
		if len(got[n]) == 0 {
			t.Fatalf("go list printed no dependencies of ./cmd/%s:\n%s", n, out)
		}
	}
	return got
}

func banned(pkg string, prefixes []string) bool {
	if slices.Contains(allowedInternal, pkg) {
		return false
	}
	for _, f := range prefixes {
		if pkg == strings.TrimSuffix(f, "/") || strings.HasPrefix(pkg, strings.TrimSuffix(f, "/")+"/") {
			return true
		}
	}
	return false
}

// TestProductionBinariesLinkNoSimulator: go list -deps of each production
// binary shows none of its forbidden packages. The sim-capable agent build
// (-tags ccnp_sim, .bin/sim/) is listed too, to show the check can see the
// simulator where it is linked.
func TestProductionBinariesLinkNoSimulator(t *testing.T) {
	goCmd := goTool(t)
	start := time.Now()
	prod := deps(t, goCmd, "", slices.Sorted(maps.Keys(forbidden))...)
	for name, bad := range forbidden {
		for _, p := range prod[name] {
			if banned(p, bad) {
				t.Errorf("production ./cmd/%s links %s", name, p)
			}
		}
	}
	agents := []string{"ccnp-agent-nodeattestor", "ccnp-agent-workloadattestor"}
	sim := deps(t, goCmd, "ccnp_sim", agents...)
	for _, name := range agents {
		if !slices.Contains(sim[name], "tee/sim") {
			t.Errorf("./cmd/%s built with -tags ccnp_sim does not link tee/sim: the demo's agent could not run a simulated TD", name)
		}
	}
	t.Logf("go list -deps of %d builds: %s", len(forbidden)+2, time.Since(start).Round(time.Millisecond))
}

// serverSchema matches symbols of conf's server configuration. Package conf
// is one package for every plugin (one parser); the agents import it for
// their own blocks, and the linker must drop the server's.
var serverSchema = regexp.MustCompile(`ccnp-spire/conf\.(ParseServerVerifier|\(\*ServerVerifier\)|serverTDX|serverTPM|collateral|readPolicyFile)`)

// TestAgentBinariesLinkNoServerSchema builds the two production agent
// plugins and reads their symbol tables: no code of conf's server schema.
func TestAgentBinariesLinkNoServerSchema(t *testing.T) {
	goCmd := goTool(t)
	if testing.Short() {
		t.Skip("builds two binaries; skipped with -short")
	}
	dir := t.TempDir()
	start := time.Now()
	out, err := exec.Command(goCmd, "build", "-o", dir+string(os.PathSeparator), "./ccnp-agent-nodeattestor", "./ccnp-agent-workloadattestor").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	built := time.Since(start)
	for _, name := range []string{"ccnp-agent-nodeattestor", "ccnp-agent-workloadattestor"} {
		syms, err := exec.Command(goCmd, "tool", "nm", filepath.Join(dir, name)).Output()
		if err != nil {
			t.Fatalf("go tool nm %s: %v", name, err)
		}
		if !bytes.Contains(syms, []byte(module+"conf.ParseAgentNodeAttestor")) && !bytes.Contains(syms, []byte(module+"conf.ParseWorkloadAttestor")) {
			t.Fatalf("%s: no conf agent parser among its symbols: the symbol check reads the wrong names", name)
		}
		if m := serverSchema.Find(syms); m != nil {
			t.Errorf("%s links conf's server schema: %s", name, m)
		}
	}
	t.Logf("build %s, total %s", built.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
