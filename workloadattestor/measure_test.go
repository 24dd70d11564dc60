package workloadattestor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
)

// TestMeasureQuotaPerContainer: a container past its quota of new records
// adds none (its new workloads get unmeasured:quota), with one quota
// notice; known workloads stay measured, and a restarted attestor counts
// the container's records from the log.
func TestMeasureQuotaPerContainer(t *testing.T) {
	_, logPath, hcl := simSetup(t, "first_seen")
	exeDir := t.TempDir()
	fp := newFakeProc(t, 4250, filepath.Join(exeDir, "e0")) // in a docker container
	hcl += fmt.Sprintf("host_root = %q\nruntime_log_quota_per_container = 2\n", fp.root)
	run := func(c *client, i int) string {
		t.Helper()
		exe := filepath.Join(exeDir, fmt.Sprintf("e%d", i))
		if err := os.WriteFile(exe, fmt.Appendf(nil, "#!/bin/false\n%d\n", i), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(filepath.Join(fp.dir(), "exe"))
		if err := os.Symlink(exe, filepath.Join(fp.dir(), "exe")); err != nil {
			t.Fatal(err)
		}
		got, err := c.attest(4250)
		if err != nil {
			t.Fatal(err)
		}
		i = slices.IndexFunc(got, func(s string) bool {
			return hasPrefix([]string{s}, "measured:") || hasPrefix([]string{s}, "unmeasured:")
		})
		if i < 0 {
			t.Fatalf("no measured selector in %q", got)
		}
		return got[i]
	}
	c := serve(t, New())
	c.configure(t, hcl)
	var got []string
	for i := range 4 {
		got = append(got, run(c, i))
	}
	want := []string{"measured:rtmr3", "measured:rtmr3", "unmeasured:quota", "unmeasured:quota"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	_, l := chain(t, logPath)
	if n := l.Notices(); l.Len() != 3 || len(n) != 1 || n[0].Subject != "container:611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1" {
		t.Fatalf("%d records, notices %+v", l.Len(), n)
	}
	c2 := serve(t, New())
	c2.configure(t, hcl)
	if got := run(c2, 1); got != "measured:rtmr3" {
		t.Fatalf("known workload after restart: %s", got)
	}
	if got := run(c2, 5); got != "unmeasured:quota" {
		t.Fatalf("new workload of a container over its quota after restart: %s", got)
	}
	if _, l := chain(t, logPath); l.Len() != 3 {
		t.Fatalf("%d records after the restart", l.Len())
	}
}

// TestConfigureUnusableLog: a runtime log the store cannot use (here over
// the reader's byte limit, which a store never writes) does not fail
// Configure; workloads are attested as unmeasured:log_unusable and the
// register is not extended.
func TestConfigureUnusableLog(t *testing.T) {
	simDir, logPath, hcl := simSetup(t, "first_seen")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(runtimelog.DefaultMaxBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := rtmr3(t, simDir)
	cmd, _ := startCopy(t, t.TempDir(), "sleep")
	c := serve(t, New())
	c.configure(t, hcl)
	got, err := c.attest(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "unmeasured:log_unusable") || hasPrefix(got, "measured:") {
		t.Fatalf("selectors %q", got)
	}
	if !slices.Equal(before, rtmr3(t, simDir)) {
		t.Fatal("RTMR3 extended with an unusable log")
	}
}
