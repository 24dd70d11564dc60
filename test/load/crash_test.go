package load

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// Environment of the writer child process.
const (
	writerDirEnv   = "CCNP_LOAD_WRITER_DIR"
	writerRoundEnv = "CCNP_LOAD_WRITER_ROUND"
)

// rtmr3 is the simulated TD's RTMR3 as a runtime log register, through
// the production TDX provider the simulator runs (state in state.json,
// under its lock, so it survives the writer being killed).
type rtmr3 struct{ p *sim.Provider }

func (r rtmr3) Read(ctx context.Context) ([]byte, error) {
	d, err := r.p.Measurement(ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	return d.Value, err
}

func (r rtmr3) Extend(ctx context.Context, digest []byte) error {
	if len(digest) != 48 {
		return fmt.Errorf("rtmr3: digest of %d bytes", len(digest))
	}
	return r.p.ExtendRTMR(ctx, 3, [48]byte(digest))
}

func storeOptions() runtimelog.StoreOptions {
	return runtimelog.StoreOptions{IMR: cctrusted.RTMR(3).IMR(), Alg: cctrusted.AlgSHA384}
}

// TestRuntimeLogWriterChild is the process TestSIGKILLMidAppend kills: it
// opens the runtime log store as the workload attestor does and appends
// distinct workloads until killed, printing each one after its Append
// returned (log written, fsynced, register extended).
func TestRuntimeLogWriterChild(t *testing.T) {
	dir := os.Getenv(writerDirEnv)
	if dir == "" {
		t.Skip("the child process of TestSIGKILLMidAppend")
	}
	ctx := context.Background()
	p, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	st, rec, err := runtimelog.OpenStore(ctx, filepath.Join(dir, "runtime.cel"), rtmr3{p}, storeOptions())
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("open %d %d\n", rec.Records, rec.DroppedTail)
	round := os.Getenv(writerRoundEnv)
	for i := 0; ; i++ {
		w := workload(fmt.Sprintf("r%s-%d", round, i))
		if _, err := st.Append(ctx, w); err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(2)
		}
		fmt.Printf("appended %s\n", w.ContainerID)
	}
}

func workload(id string) runtimelog.Workload {
	return runtimelog.Workload{
		ExeSHA256: make([]byte, 32), ExeSHA384: make([]byte, 48),
		ExePath: "/usr/bin/w", ContainerID: id,
	}
}

// TestSIGKILLMidAppend kills the writer with SIGKILL at random points, 25
// times, each time after a random delay, so that kills land before, during
// and after the write, the fsync and the register extend. After every
// restart the store reconciles; at the end the log replays exactly to
// RTMR3, every append that returned is in it once, and nothing is in it
// twice.
func TestSIGKILLMidAppend(t *testing.T) {
	const rounds = 25
	dir := t.TempDir()
	if err := sim.Init(filepath.Join(dir, "sim"), sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	reported := map[string]bool{}
	var cut, cutBytes, opened int
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRuntimeLogWriterChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), writerDirEnv+"="+dir, fmt.Sprintf("%s=%d", writerRoundEnv, round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Wait until the store is open, then let it append for a random
		// while.
		var kill <-chan time.Time
		timeout := time.After(30 * time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				switch {
				case strings.HasPrefix(l, "open "):
					var recs, dropped int
					if _, err := fmt.Sscanf(l, "open %d %d", &recs, &dropped); err != nil {
						t.Fatalf("round %d: %q: %v", round, l, err)
					}
					opened++
					if dropped > 0 {
						cut++
						cutBytes += dropped
					}
					kill = time.After(time.Duration(rand.IntN(150)) * time.Millisecond)
				case strings.HasPrefix(l, "appended "):
					id := strings.TrimPrefix(l, "appended ")
					if reported[id] {
						t.Fatalf("round %d: %s appended twice", round, id)
					}
					reported[id] = true
				case strings.HasPrefix(l, "error "):
					t.Fatalf("round %d: writer: %s", round, l)
				}
			case <-kill:
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				kill = nil
			case <-timeout:
				_ = cmd.Process.Kill()
				t.Fatalf("round %d: writer never opened the store", round)
			}
		}
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("round %d: writer ended with %v, want killed", round, err)
		}
	}

	// Reopen as a restarted attestor would, then compare log and register.
	ctx := context.Background()
	p, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "runtime.cel")
	if _, rec, err := runtimelog.OpenStore(ctx, path, rtmr3{p}, storeOptions()); err != nil {
		t.Fatalf("reopening after the last kill: %v", err)
	} else if rec.DroppedTail > 0 {
		cut++
		cutBytes += rec.DroppedTail
	}
	raw, err := runtimelog.ReadStoreFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := runtimelog.Decode(raw, runtimelog.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := rtmr3{p}.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(reg); err != nil {
		t.Fatalf("log does not replay to RTMR3 after %d kills: %v", rounds, err)
	}
	inLog := map[string]bool{}
	for _, w := range l.Workloads() {
		if inLog[w.ContainerID] {
			t.Errorf("%s is in the log twice", w.ContainerID)
		}
		inLog[w.ContainerID] = true
	}
	for id := range reported {
		if !inLog[id] {
			t.Errorf("%s was appended (Append returned) but is not in the log", id)
		}
	}
	// A record can be in the log unreported only when the kill came
	// between its extend and the print: at most once per round.
	if extra := len(inLog) - len(reported); extra < 0 || extra > rounds {
		t.Errorf("%d records in the log that no Append reported, want 0..%d", extra, rounds)
	}
	if opened != rounds {
		t.Errorf("the store was opened %d times in %d rounds", opened, rounds)
	}
	t.Logf("%d SIGKILLs: %d appends returned, %d records in the log (%d extended but killed before reporting), %d reopenings cut an unextended or torn record (%d bytes)",
		rounds, len(reported), len(inLog), len(inLog)-len(reported), cut, cutBytes)
}
