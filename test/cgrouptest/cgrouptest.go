// Package cgrouptest puts test processes into fresh cgroup v2 directories,
// so tests of container identity run against the kernel's own
// /proc/<pid>/cgroup instead of a fake, where the machine allows it.
package cgrouptest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Root returns a writable cgroup v2 mount (pure v2, or the "unified" mount of
// a hybrid system), or "" when there is none or the test is not root.
func Root() string {
	if os.Geteuid() != 0 {
		return ""
	}
	for _, d := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err != nil && d == "/sys/fs/cgroup" {
			continue // a v1 tmpfs, not v2
		}
		probe := filepath.Join(d, fmt.Sprintf("ccnp-probe-%d", os.Getpid()))
		if err := os.Mkdir(probe, 0o755); err != nil {
			continue
		}
		_ = os.Remove(probe)
		return d
	}
	return ""
}

// Enter creates root/rel (nested) and moves pid into it. Cleanup moves the
// process back to the root cgroup (a populated cgroup cannot be removed, and
// cleanups run before the process is killed) and removes the directories.
func Enter(t testing.TB, root, rel string, pid int) {
	t.Helper()
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		parts := strings.Split(rel, "/")
		for i := len(parts); i > 0; i-- {
			p := filepath.Join(root, filepath.Join(parts[:i]...))
			for range 50 {
				if err := os.Remove(p); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}
