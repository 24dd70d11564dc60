package workloadattestor

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/test/cgrouptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// TestAttestRealProcess runs a copy of /bin/sleep (its name has a space) in
// a fresh cgroup v2 shaped like a Kubernetes pod's containerd container, and
// attests it over the plugin transport.
func TestAttestRealProcess(t *testing.T) {
	dir := t.TempDir()
	cmd, bin := startCopy(t, dir, "my sleep")
	want := []string{
		"exe:path:" + bin,
		"exe:sha256:" + sha256sum(t, bin),
		fmt.Sprintf("uid:%d", os.Geteuid()),
		fmt.Sprintf("gid:%d", os.Getegid()),
	}
	if root := cgrouptest.Root(); root != "" {
		uid := "5c9a7f3e-1d2b-4c8a-9e6f-0a1b2c3d4e5f"
		id := randomHex(t, 32)
		// A kubelet cgroup root of its own (as kind's kubelet.slice), so
		// concurrent runs do not share directories.
		top := fmt.Sprintf("ccnptest%d", os.Getpid())
		rel := top + ".slice/" + top + "-kubepods.slice/" + top + "-kubepods-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-" + id + ".scope"
		cgrouptest.Enter(t, root, rel, cmd.Process.Pid)
		want = append(want, "cgroup:/"+rel, "container:id:"+id, "container:runtime:containerd", "pod:uid:"+uid)
	} else {
		t.Log("no writable cgroup v2: container selectors are covered by TestAttestFakeProc")
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
		t.Logf("cgroup file: %q", b)
	}

	c := serve(t, New())
	c.configure(t, `measure = "off"`)
	got, err := c.attest(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if cgrouptest.Root() == "" {
		got = slices.DeleteFunc(got, func(s string) bool { return strings.HasPrefix(s, "cgroup:") || strings.HasPrefix(s, "systemd:") })
	}
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("selectors\n got %q\nwant %q", sorted(got), sorted(want))
	}
}

// TestAttestFakeProc covers host_root and a /proc tree written by the test.
func TestAttestFakeProc(t *testing.T) {
	exeDir := t.TempDir()
	bin := filepath.Join(exeDir, "app")
	if err := os.WriteFile(bin, []byte("#!/bin/false\nnot really a binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	fp := newFakeProc(t, 4242, bin)
	c := serve(t, New())
	c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"\nexe_digest_algs = [\"sha256\", \"sha384\"]\n", fp.root))
	got, err := c.attest(4242)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"exe:path:" + bin,
		"exe:sha256:" + sha256sum(t, bin),
		"exe:sha384:" + sha384sum(t, bin),
		"uid:1001", "gid:2002",
		"cgroup:/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope",
		"container:id:611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1",
		"container:runtime:docker",
	}
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("selectors\n got %q\nwant %q", sorted(got), sorted(want))
	}
}

func TestAttestPIDReuse(t *testing.T) {
	t.Run("process exits between the reads", func(t *testing.T) {
		cmd, _ := startCopy(t, t.TempDir(), "sleep")
		p := New()
		p.afterCollect = func(int) { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		c := serve(t, p)
		c.configure(t, `measure = "off"`)
		_, err := c.attest(cmd.Process.Pid)
		if status.Code(err) != codes.Aborted {
			t.Fatalf("got %v, want Aborted", err)
		}
	})
	t.Run("start time changes (PID reused)", func(t *testing.T) {
		fp := newFakeProc(t, 4243, "/bin/sleep")
		p := New()
		p.afterCollect = func(int) {
			fp.write(t, "stat", "4243 (other) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 999 0 0\n")
		}
		c := serve(t, p)
		c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"", fp.root))
		_, err := c.attest(4243)
		if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "reused") {
			t.Fatalf("got %v, want Aborted (reused)", err)
		}
	})
}

func TestAttestBadInput(t *testing.T) {
	ctx := context.Background()
	p := New()
	if _, err := p.Attest(ctx, attestReq(1)); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unconfigured: %v", err)
	}
	c := serve(t, p)
	if _, err := c.cfg.Configure(ctx, configReq(`measure = "sometimes"`)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad config: %v", err)
	}
	c.configure(t, `measure = "off"`)

	for _, pid := range []int{0, -1} {
		if _, err := c.attest(pid); status.Code(err) != codes.InvalidArgument {
			t.Errorf("pid %d: %v", pid, err)
		}
	}
	t.Run("nonexistent", func(t *testing.T) {
		fp := newFakeProc(t, 10, "/bin/sleep")
		c := serve(t, New())
		c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"", fp.root))
		if _, err := c.attest(11); status.Code(err) != codes.NotFound {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("kernel thread (real pid 2)", func(t *testing.T) {
		b, err := os.ReadFile("/proc/2/stat")
		if err != nil || !strings.Contains(string(b), "kthreadd") {
			t.Skip("pid 2 is not kthreadd here")
		}
		if _, err := c.attest(2); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "kernel thread") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("zombie (real)", func(t *testing.T) {
		cmd := exec.Command("/bin/true")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Wait() }()
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
			if strings.Contains(string(b), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("child never became a zombie")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := c.attest(cmd.Process.Pid); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "exited") {
			t.Fatalf("got %v", err)
		}
	})
	fakeCases := []struct {
		name  string
		edit  func(t *testing.T, fp *fakeProc)
		code  codes.Code
		match string
	}{
		{"no exe link", func(t *testing.T, fp *fakeProc) { _ = os.Remove(filepath.Join(fp.dir(), "exe")) }, codes.NotFound, "exe link"},
		{"kernel thread flag", func(t *testing.T, fp *fakeProc) {
			fp.write(t, "stat", "4250 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n")
		}, codes.InvalidArgument, "kernel thread"},
		{"status missing", func(t *testing.T, fp *fakeProc) { _ = os.Remove(filepath.Join(fp.dir(), "status")) }, codes.NotFound, "status"},
		{"status garbage", func(t *testing.T, fp *fakeProc) { fp.write(t, "status", "Uid: x\n") }, codes.Internal, "Uid"},
		{"stat garbage", func(t *testing.T, fp *fakeProc) { fp.write(t, "stat", "garbage") }, codes.Internal, "stat"},
		{"stat of another pid", func(t *testing.T, fp *fakeProc) {
			fp.write(t, "stat", "1 (init) S 0 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0\n")
		}, codes.Internal, "names pid 1"},
		{"unreadable stat (a directory)", func(t *testing.T, fp *fakeProc) {
			_ = os.Remove(filepath.Join(fp.dir(), "stat"))
			_ = os.Mkdir(filepath.Join(fp.dir(), "stat"), 0o755)
		}, codes.Internal, "stat"},
		{"cgroup with a newline in a path", func(t *testing.T, fp *fakeProc) {
			fp.write(t, "cgroup", "0::/user.slice/evil\n0::/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope\n")
		}, codes.Internal, "twice"},
		{"exe is a directory", func(t *testing.T, fp *fakeProc) {
			_ = os.Remove(filepath.Join(fp.dir(), "exe"))
			_ = os.Symlink(t.TempDir(), filepath.Join(fp.dir(), "exe"))
		}, codes.Internal, "not a regular file"},
	}
	for _, tc := range fakeCases {
		t.Run(tc.name, func(t *testing.T) {
			fp := newFakeProc(t, 4250, "/bin/sleep")
			tc.edit(t, fp)
			c := serve(t, New())
			c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"", fp.root))
			_, err := c.attest(4250)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.match) {
				t.Fatalf("got %v, want %v containing %q", err, tc.code, tc.match)
			}
		})
	}
}

// TestAttestOddExePaths: a newline in the executable's name leaves exe:path
// out (it would be ambiguous), a deleted binary too (the path names another
// file now); the digests are those of the file actually running.
func TestAttestOddExePaths(t *testing.T) {
	c := serve(t, New())
	c.configure(t, `measure = "off"`)

	dir := t.TempDir()
	cmd, bin := startCopy(t, dir, "new\nline")
	want := sha256sum(t, "/bin/sleep")
	got, err := c.attest(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if hasPrefix(got, "exe:path:") || !slices.Contains(got, "exe:sha256:"+want) {
		t.Fatalf("newline path: %q", got)
	}
	_ = bin

	cmd2, bin2 := startCopy(t, dir, "replaced")
	if err := os.Remove(bin2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin2, []byte("impostor"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err = c.attest(cmd2.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if hasPrefix(got, "exe:path:") || !slices.Contains(got, "exe:sha256:"+want) {
		t.Fatalf("replaced binary: %q (want the running file's digest %s)", got, want)
	}
}

func hasPrefix(s []string, p string) bool {
	return slices.ContainsFunc(s, func(v string) bool { return strings.HasPrefix(v, p) })
}

// simSetup makes a simulated TD and the plugin_data measuring into it.
func simSetup(t *testing.T, mode string) (simDir, logPath, hcl string) {
	t.Helper()
	simDir = filepath.Join(t.TempDir(), "sim")
	if err := sim.Init(simDir, sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	logPath = filepath.Join(t.TempDir(), "data", "runtime.cel")
	hcl = fmt.Sprintf("tee = \"sim\"\nsim_dir = %q\nruntime_log_path = %q\nmeasure = %q\n", simDir, logPath, mode)
	return simDir, logPath, hcl
}

// rtmr3 reads the simulated TD's RTMR3.
func rtmr3(t *testing.T, simDir string) []byte {
	t.Helper()
	p, err := sim.Open(context.Background(), simDir)
	if err != nil {
		t.Fatal(err)
	}
	_, rtmr, err := p.Measurements(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rtmr[3][:]
}

// chain replays the log's record digests into a zero RTMR with crypto/sha512
// directly, as the TDX module extends: SHA-384(old || digest).
func chain(t *testing.T, logPath string) ([]byte, *runtimelog.Log) {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	l, err := runtimelog.Decode(b, runtimelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	v := make([]byte, 48)
	for _, e := range l.Events() {
		s := sha512.Sum384(append(v, e.Digests[0].Value...))
		v = s[:]
	}
	return v, l
}

func TestMeasureFirstSeenSim(t *testing.T) {
	simDir, logPath, hcl := simSetup(t, "first_seen")
	cmd, bin := startCopy(t, t.TempDir(), "sleep")
	c := serve(t, New())
	c.configure(t, hcl)
	for range 3 {
		got, err := c.attest(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"measured:rtmr3", "exe:sha384:" + sha384sum(t, bin), "exe:sha256:" + sha256sum(t, bin)} {
			if !slices.Contains(got, w) {
				t.Fatalf("missing %q in %q", w, got)
			}
		}
	}
	replayed, l := chain(t, logPath)
	if l.Len() != 1 {
		t.Fatalf("%d records after three attestations of one workload, want 1", l.Len())
	}
	if !bytes.Equal(replayed, rtmr3(t, simDir)) {
		t.Fatal("RTMR3 does not equal the replay of the runtime log")
	}
	w := l.Workloads()[0]
	if w.ExePath != bin || hex.EncodeToString(w.ExeSHA256) != sha256sum(t, bin) {
		t.Fatalf("record %+v", w)
	}

	// A copy of the same binary elsewhere: same bytes, same container, so
	// the same identity and no new record.
	cmd2, _ := startCopy(t, t.TempDir(), "sleep2")
	if _, err := c.attest(cmd2.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, l := chain(t, logPath); l.Len() != 1 {
		t.Fatalf("a copy of the same binary is the same workload: %d records", l.Len())
	}

	// A restarted agent remembers what the log holds.
	c2 := serve(t, New())
	c2.configure(t, hcl)
	got, err := c2.attest(cmd.Process.Pid)
	if err != nil || !slices.Contains(got, "measured:rtmr3") {
		t.Fatalf("after restart: %q %v", got, err)
	}
	if _, l := chain(t, logPath); l.Len() != 1 {
		t.Fatalf("restart re-measured a known workload: %d records", l.Len())
	}
}

// TestMeasureEditedLog: a log edited on disk is detected at start; the
// plugin keeps attesting but never claims measured:rtmr3.
func TestMeasureEditedLog(t *testing.T) {
	simDir, logPath, hcl := simSetup(t, "first_seen")
	cmd, _ := startCopy(t, t.TempDir(), "sleep")
	c := serve(t, New())
	c.configure(t, hcl)
	if _, err := c.attest(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	before := rtmr3(t, simDir)
	b, _ := os.ReadFile(logPath)
	i := bytes.Index(b, []byte("sleep"))
	b[i] = 'S'
	if err := os.WriteFile(logPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := serve(t, New())
	c2.configure(t, hcl)
	cmd2, _ := startCopy(t, t.TempDir(), "other")
	for _, pid := range []int{cmd.Process.Pid, cmd2.Process.Pid} {
		got, err := c2.attest(pid)
		if err != nil {
			t.Fatal(err)
		}
		if hasPrefix(got, "measured:") {
			t.Fatalf("measured selector from an edited log: %q", got)
		}
	}
	if !bytes.Equal(before, rtmr3(t, simDir)) {
		t.Fatal("RTMR3 was extended although the log does not account for it")
	}
}

// TestMeasureCrashRecovery: a record written but not extended (the agent died
// in between) is cut at the next start; the register and the log agree again
// and measuring goes on.
func TestMeasureCrashRecovery(t *testing.T) {
	simDir, logPath, hcl := simSetup(t, "first_seen")
	cmd, _ := startCopy(t, t.TempDir(), "sleep")
	c := serve(t, New())
	c.configure(t, hcl)
	if _, err := c.attest(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// Simulate the crash: append a record to the file without extending.
	_, l := chain(t, logPath)
	tail, _, err := l.AppendEncoded(nil, runtimelog.Workload{ExeSHA256: make([]byte, 32), ExeSHA384: make([]byte, 48), ExePath: "/crashed"})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.Write(tail)
	f.Close()

	c2 := serve(t, New())
	c2.configure(t, hcl)
	replayed, l := chain(t, logPath)
	if l.Len() != 1 || !bytes.Equal(replayed, rtmr3(t, simDir)) {
		t.Fatalf("after recovery: %d records, replay matches: %v", l.Len(), bytes.Equal(replayed, rtmr3(t, simDir)))
	}
	got, err := c2.attest(cmd.Process.Pid)
	if err != nil || !slices.Contains(got, "measured:rtmr3") {
		t.Fatalf("%q %v", got, err)
	}
}

func TestConfigureNoTEE(t *testing.T) {
	c := serve(t, New())
	_, err := c.cfg.Configure(context.Background(), configReq(`tee = "tpm"
tpm_device = "/nonexistent/tpm"`))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `measure = \"off\"`) && !strings.Contains(err.Error(), `measure = "off"`) {
		t.Fatalf("got %v", err)
	}
}

func TestSelectorLimits(t *testing.T) {
	w := &workload{
		exe:     procExe(strings.Repeat("/x", 200)),
		digests: map[cctrusted.Algorithm][]byte{cctrusted.AlgSHA256: make([]byte, 32)},
	}
	w.id.Path = "/" + strings.Repeat("a", 300)
	for _, s := range w.selectors([]cctrusted.Algorithm{cctrusted.AlgSHA256}, New().log) {
		if len(s) > MaxSelectorLen {
			t.Fatalf("%d-byte selector", len(s))
		}
		if strings.HasPrefix(s, "exe:path:") || strings.HasPrefix(s, "cgroup:") {
			t.Fatalf("over-long selector kept: %.40q", s)
		}
	}
	for s, ok := range map[string]bool{"a b": true, "a\nb": false, "\xff": false, "": false, "a\x7f": false} {
		if printable(s) != ok {
			t.Errorf("printable(%q) = %v", s, !ok)
		}
	}
}

// TestTPMDeviceUnderHostRoot: the TPM device is a host path, opened under
// host_root as the node attestor opens it (tee.ForWorkloadAttestor), so an
// agent in a container extends the host's TPM the node attestor quotes, not
// whatever its own /dev holds. A tcp:// TPM is an address and stays as it is.
func TestTPMDeviceUnderHostRoot(t *testing.T) {
	fp := newFakeProc(t, 4242, "")
	for _, tt := range []struct {
		device string // tpm_device, "" for the default
		want   string
	}{
		{"", filepath.Join(fp.root, "dev", "tpmrm0")},
		{"/dev/tpm0", filepath.Join(fp.root, "dev", "tpm0")},
		{"tcp://127.0.0.1:1", "tcp://127.0.0.1:1"},
	} {
		hcl := fmt.Sprintf("host_root = %q\ntee = \"tpm\"\n", fp.root)
		if tt.device != "" {
			hcl += fmt.Sprintf("tpm_device = %q\n", tt.device)
		}
		_, err := serve(t, New()).cfg.Configure(context.Background(), configReq(hcl))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("tpm_device %q: got %v, want FailedPrecondition naming %s", tt.device, err, tt.want)
		}
		if tt.device != "" && !strings.HasPrefix(tt.device, "tcp://") && strings.Contains(strings.ReplaceAll(err.Error(), tt.want, ""), tt.device) {
			t.Errorf("tpm_device %q: opened outside host_root: %v", tt.device, err)
		}
	}
}
