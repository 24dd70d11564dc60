package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// serveHelperEnv makes the test binary run the CLI with the JSON argument
// list in the variable (TestServeHelperProcess), so a test can signal it.
const serveHelperEnv = "CCNP_CLI_TEST_SERVE_ARGS"

// TestServeHelperProcess is not a test: it is `ccnp` in a child process of
// TestServeSignals.
func TestServeHelperProcess(t *testing.T) {
	raw := os.Getenv(serveHelperEnv)
	if raw == "" {
		t.Skip("helper process for TestServeSignals")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		os.Exit(90)
	}
	os.Exit(Main(args, os.Stdout, os.Stderr))
}

// TestServeSignals: `ccnp serve` with its defaults on the real /proc ends on
// SIGTERM and on SIGINT with exit code 0, a log line, and its socket gone;
// while it runs, its socket has the default mode 0666 and a host process
// is answered GetDefaultAlgorithm.
func TestServeSignals(t *testing.T) {
	simDir := newSim(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			sdir, err := os.MkdirTemp("", "ccnpsig")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(sdir) })
			sock := filepath.Join(sdir, "s.sock")
			args, _ := json.Marshal([]string{"--tee", "sim", "--sim-dir", simDir, "serve", "--socket", sock,
				"--runtime-log", filepath.Join(sdir, "runtime.cel")})
			cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
			cmd.Env = append(os.Environ(), serveHelperEnv+"="+string(args))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					_ = cmd.Process.Kill()
					<-exited
				}
			})
			start := time.Now()
			for {
				// The socket exists from listen(2) on, with the umask's
				// mode, until Listen's chmod a moment later.
				fi, err := os.Stat(sock)
				if err == nil && fi.Mode().Perm() == 0o666 {
					break
				}
				if err == nil && time.Since(start) > 10*time.Second {
					t.Fatalf("default socket mode %04o after 10 s, want 0666", fi.Mode().Perm())
				}
				select {
				case err := <-exited:
					t.Fatalf("serve exited before listening: %v\n%s", err, stderr.String())
				case <-time.After(20 * time.Millisecond):
				}
				if time.Since(start) > 30*time.Second {
					t.Fatalf("no socket after 30 s\n%s", stderr.String())
				}
			}
			t.Logf("serve listening after %v", time.Since(start).Round(time.Millisecond))
			conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a, err := ccnppb.NewCcnpClient(conn).GetDefaultAlgorithm(ctx, &ccnppb.GetDefaultAlgorithmRequest{})
			conn.Close()
			if err != nil || a.GetAlgoId() != 0x0c {
				t.Fatalf("host process asking the default algorithm: %v, %v", a, err)
			}
			sent := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("serve after %v: %v\n%s", sig, err, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("serve still running 30 s after %v\n%s", sig, stderr.String())
			}
			t.Logf("%v: exited after %v", sig, time.Since(sent).Round(time.Millisecond))
			if !strings.Contains(stderr.String(), "Stopping: signal received") || !strings.Contains(stderr.String(), "msg=Stopped") {
				t.Errorf("no stop log lines after %v:\n%s", sig, stderr.String())
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket left after %v: %v", sig, err)
			}
		})
	}
}
