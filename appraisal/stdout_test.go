package appraisal

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNothingOnStdout runs appraisals in a child process and checks its
// stdout stays empty: in a plugin, stdout is the plugin transport, and
// go-tdx-guest's logger writes there (for example when TrustedRoots is nil).
func TestNothingOnStdout(t *testing.T) {
	if os.Getenv("APPRAISAL_STDOUT_CHILD") == "1" {
		ev := cos113(t)
		// Default roots (nil) must not reach the library as nil.
		if _, err := TDX(context.Background(), TDXEvidence{Quote: ev.quote, CCEL: ev.ccel, CCELTable: ev.table}, TDXOptions{Now: pinnedNow}); err != nil {
			t.Fatal(err)
		}
		p := newTestPKI(t)
		opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, defaultSpec(p)), CheckRevocations: true}
		if _, err := TDX(context.Background(), TDXEvidence{Quote: p.mintQuote(t, nil)}, opts); err != nil {
			t.Fatal(err)
		}
		// A failing appraisal too.
		_, _ = TDX(context.Background(), TDXEvidence{Quote: ev.quote[:700]}, TDXOptions{})
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNothingOnStdout$")
	cmd.Env = append(os.Environ(), "APPRAISAL_STDOUT_CHILD=1")
	var stderr []byte
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr)
	}
	// The test framework itself prints "PASS" (and, under -cover, a
	// coverage line); anything else came from the appraisal.
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "PASS" && !strings.HasPrefix(line, "coverage: ") {
			t.Errorf("appraisal wrote to stdout: %q", out)
			break
		}
	}
}
