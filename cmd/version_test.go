package cmd_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPluginVersionFlag builds the server plugin as make release does
// (-trimpath, version and commit from -ldflags -X) and runs it twice: by
// hand with --version it prints them; started as SPIRE starts it (no
// arguments, no go-plugin handshake in the environment) it still behaves as
// a plugin, printing nothing about versions on stdout, the plugin
// transport's stream.
func TestPluginVersionFlag(t *testing.T) {
	goCmd := goTool(t)
	if testing.Short() {
		t.Skip("builds a binary; skipped with -short")
	}
	const ver, commit = "v9.8.7-test", "0123456789abcdef0123456789abcdef01234567"
	bin := filepath.Join(t.TempDir(), "ccnp-server-nodeattestor")
	start := time.Now()
	ld := "-X " + module + "internal/version.version=" + ver + " -X " + module + "internal/version.commit=" + commit
	build := exec.Command(goCmd, "build", "-trimpath", "-ldflags", ld, "-o", bin, "./ccnp-server-nodeattestor")
	// The flags of make build and make release, so that the build cache
	// they filled serves this build (CI runs make build first).
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("build %s", time.Since(start).Round(time.Millisecond))

	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("ccnp-server-nodeattestor --version: %v", err)
	}
	for _, want := range []string{"ccnp-server-nodeattestor " + ver + "\n", "commit:   " + commit + "\n", "go:       go", "platform: "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--version printed %q, lacking %q", out, want)
		}
	}

	var stdout, stderr bytes.Buffer
	plain := exec.Command(bin)
	plain.Stdout, plain.Stderr = &stdout, &stderr
	plain.Env = []string{} // no go-plugin magic cookie: go-plugin refuses and explains
	_ = plain.Run()
	if bytes.Contains(stdout.Bytes(), []byte(ver)) {
		t.Errorf("run without arguments, the plugin printed its version on stdout (the plugin transport): %q", stdout.String())
	}
	if !strings.Contains(stderr.String()+stdout.String(), "plugin") {
		t.Errorf("run without arguments, the binary did not act as a go-plugin plugin (stdout %q, stderr %q)", stdout.String(), stderr.String())
	}
}
