// Package spirelab runs real SPIRE servers and agents (v1.13.3, built from
// tools/spire) with the ccnp plugins on loopback: the demo and the
// end-to-end tests share it, so what the demo shows is what the tests check.
//
// Every process it starts gets its own process group, so stopping one also
// stops the plugin processes SPIRE started under it, and Close stops them all
// by PID: a lab leaves nothing running or listening.
package spirelab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Lab is a directory of configs, state and logs, and the processes running
// from it.
type Lab struct {
	// Dir holds everything the lab writes.
	Dir string
	// Bin holds ccnp, the plugins, spire-server and spire-agent.
	Bin string
	// TrustDomain of the SPIRE deployment.
	TrustDomain string
	// Progress receives one line per step (nil: discarded).
	Progress io.Writer

	mu    sync.Mutex
	procs []*Proc
}

// SimBinDir is where, under the lab's bin, make build puts the agent plugins
// built with -tags ccnp_sim: the production ones in bin cannot open a
// simulated TEE, so agents with TEE "sim" run these.
const SimBinDir = "sim"

// New returns a lab in dir using the binaries in bin.
func New(dir, bin string) (*Lab, error) {
	for _, name := range []string{"ccnp", "spire-server", "spire-agent",
		"ccnp-server-nodeattestor", "ccnp-agent-nodeattestor", "ccnp-agent-workloadattestor",
		filepath.Join(SimBinDir, "ccnp-agent-nodeattestor"), filepath.Join(SimBinDir, "ccnp-agent-workloadattestor")} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Errorf("spirelab: %s is missing in %s (run make build spire): %w", name, bin, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	absBin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	return &Lab{Dir: abs, Bin: absBin, TrustDomain: "example.org"}, nil
}

func (l *Lab) say(format string, args ...any) {
	if l.Progress != nil {
		fmt.Fprintf(l.Progress, "==> "+format+"\n", args...)
	}
}

// Proc is a process the lab started.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs bin/name (or an absolute path) with args, output to Dir/<log>.log.
func (l *Lab) Start(log, name string, args ...string) (*Proc, error) {
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(l.Bin, name)
	}
	logPath := filepath.Join(l.Dir, log+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = l.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("spirelab: starting %s: %w", name, err)
	}
	p := &Proc{Name: log, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// PID of the process.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop ends the process and its group: SIGTERM, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Plugins may outlive their host by a moment; the group kill reaches them.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// Close stops every process the lab started, newest first.
func (l *Lab) Close() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
}

// Run runs bin/name to completion and returns its combined output.
func (l *Lab) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(l.Bin, name), args...)
	cmd.Dir = l.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %w: %s", name, args, err, lastLines(string(out), 5))
	}
	return string(out), nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Checksum is the plugin_checksum of a binary: SHA-256, hex.
func Checksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// waitFor polls check until it succeeds, p exits, or ctx ends.
func waitFor(ctx context.Context, what string, p *Proc, check func() error) error {
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if p != nil {
			if done, err := p.Exited(); done {
				return fmt.Errorf("%s exited (%v) before it was ready; last lines of %s:\n%s", what, err, p.Log, tail(p.Log, 15))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last check: %v)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' && i != len(s)-1 {
			lines++
			if lines == n {
				return s[i+1:]
			}
		}
	}
	return s
}

// errNotReady is a readiness check's "not yet".
var errNotReady = errors.New("not ready")

func execCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}
