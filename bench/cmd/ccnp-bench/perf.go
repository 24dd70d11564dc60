package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// perfProfiler samples processes that ccnp-bench does not run in-process
// (the server plugin started through go-plugin, spire-server) with Linux
// perf, when -perf is given. Their binaries must keep their symbol tables:
// -perf builds an unstripped server plugin for the run.
type perfProfiler struct {
	dir string
	// at are the levels of concurrency to profile.
	at map[int]bool
}

// record samples pid (call graphs, 1999 Hz) until stop is called.
func (p *perfProfiler) record(name string, pid int) (stop func() string) {
	data := filepath.Join(p.dir, name+".data")
	cmd := exec.Command("perf", "record", "-F", "1999", "-g", "-p", fmt.Sprint(pid), "-o", data)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return func() string { return fmt.Sprintf("perf record failed: %v", err) }
	}
	return func() string {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		return perfTop(data)
	}
}

// perfTop renders the top 15 symbols by self time (flat) and by time
// including callees (cum) of a perf recording.
func perfTop(data string) string {
	var b strings.Builder
	for _, mode := range []struct{ title, children string }{{"flat (self)", "--no-children"}, {"cum (self + callees)", "--children"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", mode.children, "--sort", "symbol",
			"-g", "none", "--percent-limit", "0.5").CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Sprintf("perf report failed: %v\n%s", err, out)
		}
		fmt.Fprintf(&b, "%s:\n", mode.title)
		n := 0
		for _, l := range strings.Split(string(out), "\n") {
			t := strings.TrimSpace(l)
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			// perf pads each line with columns this report leaves empty.
			b.WriteString(strings.TrimRight(l, " -") + "\n")
			if n++; n == 15 {
				break
			}
		}
	}
	return b.String()
}

// unstrippedPlugin builds the server plugin with its symbol table into dir
// (make build strips it), for perf to name functions.
func unstrippedPlugin(dir string) (string, error) {
	out := filepath.Join(dir, "ccnp-server-nodeattestor")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/ccnp-server-nodeattestor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building an unstripped server plugin: %v\n%s", err, b)
	}
	return out, nil
}

// binWith returns a directory holding every file of bin, with plugin in
// place of bin's server plugin: the lab then runs the unstripped one.
func binWith(bin, plugin, dir string) (string, error) {
	ents, err := os.ReadDir(bin)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		src, err := filepath.Abs(filepath.Join(bin, e.Name()))
		if err != nil {
			return "", err
		}
		if e.Name() == filepath.Base(plugin) {
			continue
		}
		if err := os.Symlink(src, filepath.Join(dir, e.Name())); err != nil {
			return "", err
		}
	}
	return dir, nil
}
