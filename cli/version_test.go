package cli

import (
	"runtime"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
)

// TestVersionFlagAndCommand: `ccnp --version` and `ccnp version` print the
// same four facts; `-o json` gives them as fields.
func TestVersionFlagAndCommand(t *testing.T) {
	info := version.Get()
	code, flagOut, stderr := run(t, "--version")
	if code != 0 || stderr != "" {
		t.Fatalf("ccnp --version: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"ccnp " + info.Version + "\n", "commit:   " + info.Commit + "\n", "go:       " + runtime.Version() + "\n", "platform: " + runtime.GOOS + "/" + runtime.GOARCH + "\n"} {
		if !strings.Contains(flagOut, want) {
			t.Errorf("ccnp --version printed %q, lacking %q", flagOut, want)
		}
	}
	code, cmdOut, stderr := run(t, "version")
	if code != 0 || stderr != "" || cmdOut != flagOut {
		t.Fatalf("ccnp version: exit %d, stderr %q, output %q; want the output of --version %q", code, stderr, cmdOut, flagOut)
	}
	code, js, stderr := run(t, "version", "-o", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("ccnp version -o json: exit %d, stderr %q", code, stderr)
	}
	var got version.Info
	readJSON(t, js, &got)
	if got != info {
		t.Fatalf("ccnp version -o json = %+v, want %+v", got, info)
	}
	if code, _, _ := run(t, "version", "extra"); code == 0 {
		t.Fatal("ccnp version extra: exit 0, want a usage error")
	}
}
