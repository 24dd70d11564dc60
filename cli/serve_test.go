package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

type simRTMR3 struct{ p *sim.Provider }

func (r simRTMR3) Read(ctx context.Context) ([]byte, error) {
	d, err := r.p.Measurement(ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	return d.Value, err
}

func (r simRTMR3) Extend(ctx context.Context, digest []byte) error {
	var d [48]byte
	copy(d[:], digest)
	return r.p.ExtendRTMR(ctx, 3, d)
}

// serveFixture runs `ccnp serve` on a simulated TD whose runtime log holds
// one record of this process's (fake) container and one of another, and
// returns the socket, the sim dir and this container's expected register.
func serveFixture(t *testing.T, flags ...string) (socket, simDir string, imr []byte) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	simDir = newSim(t)
	p, err := sim.Open(ctx, simDir)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "runtime.cel")
	st, _, err := runtimelog.OpenStore(ctx, logPath, simRTMR3{p}, runtimelog.StoreOptions{IMR: cctrusted.RTMR(3).IMR(), Alg: cctrusted.AlgSHA384})
	if err != nil {
		t.Fatal(err)
	}
	mine := strings.Repeat("ab", 32)
	imr = make([]byte, 48)
	for _, cid := range []string{mine, strings.Repeat("cd", 32)} {
		s256, s384 := sha256.Sum256([]byte(cid)), sha512.Sum384([]byte(cid))
		ev, err := st.Append(ctx, runtimelog.Workload{ExeSHA256: s256[:], ExeSHA384: s384[:], ExePath: "/bin/" + cid[:4], ContainerID: cid})
		if err != nil {
			t.Fatal(err)
		}
		if cid == mine {
			d, _ := ev.Digest(cctrusted.AlgSHA384)
			h := sha512.Sum384(append(imr, d...))
			imr = h[:]
		}
	}
	// The host root's /proc says this process is in container "mine".
	pd := filepath.Join(dir, "host", "proc", strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pd, "stat"), stat, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pd, "cgroup"), []byte("0::/system.slice/docker-"+mine+".scope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// ccnp serve refuses a procfs whose self is not its own process, and
	// checks the container's cgroup in the host root's cgroup filesystem.
	if err := os.Symlink(strconv.Itoa(os.Getpid()), filepath.Join(dir, "host", "proc", "self")); err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(dir, "host", "sys", "fs", "cgroup")
	if err := os.MkdirAll(filepath.Join(cg, "system.slice", "docker-"+mine+".scope"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.controllers"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, "system.slice", "docker-"+mine+".scope", "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sdir, err := os.MkdirTemp("", "ccnpcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sdir) })
	socket = filepath.Join(sdir, "uds", "ccnp.sock")

	sctx, cancel := context.WithCancel(ctx)
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb}
	root := newRoot(g)
	root.SetArgs(append([]string{"--tee", "sim", "--sim-dir", simDir, "--host-root", filepath.Join(dir, "host"),
		"serve", "--socket", socket, "--socket-mode", "0600", "--runtime-log", logPath}, flags...))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(sctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	for range 200 {
		if fi, err := os.Stat(socket); err == nil && fi.Mode().Perm() == 0o600 {
			return socket, simDir, imr
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("serve did not create its socket")
	return
}

func TestServeAndClient(t *testing.T) {
	socket, simDir, imr := serveFixture(t)

	code, out, errs := run(t, "client", "measurement", "--socket", socket, "-o", "json")
	if code != 0 {
		t.Fatalf("client measurement: %s", errs)
	}
	var m struct {
		Index uint32 `json:"index"`
		Hash  string `json:"hash"`
	}
	readJSON(t, out, &m)
	if m.Index != 3 || m.Hash != hex.EncodeToString(imr) {
		t.Fatalf("container register %+v, want %x", m, imr)
	}

	code, out, errs = run(t, "client", "eventlog", "--socket", socket, "-o", "json")
	if code != 0 {
		t.Fatalf("client eventlog: %s", errs)
	}
	var evs []clientEvent
	readJSON(t, out, &evs)
	own := 0
	for _, e := range evs {
		if e.ExtraInfo["source"] == "runtime_log" {
			own++
			if !strings.HasPrefix(e.ExtraInfo["container_id"], "abab") {
				t.Errorf("another container's record: %v", e.ExtraInfo)
			}
		}
	}
	if own != 1 || len(evs) < 10 {
		t.Fatalf("%d events, %d own", len(evs), own)
	}
	code, _, errs = run(t, "client", "eventlog", "--socket", socket, "--start", strconv.Itoa(len(evs)+1))
	if code == 0 || !strings.Contains(errs, "InvalidArgument") {
		t.Fatalf("start past the end: %d %s", code, errs)
	}

	nonce, ud := "00112233445566778899aabbccddeeff", "cafe"
	q := filepath.Join(t.TempDir(), "q.dat")
	if code, _, errs := run(t, "client", "report", "--socket", socket, "--nonce", nonce, "--user-data", ud, "--out", q); code != 0 {
		t.Fatalf("client report: %s", errs)
	}
	nb, _ := hex.DecodeString(nonce)
	ub, _ := hex.DecodeString(ud)
	want := sha512.Sum512(append(append(append([]byte{}, imr...), nb...), ub...))
	root := filepath.Join(simDir, sim.RootFile)
	if code, out, errs := run(t, "verify", "--quote", q, "--trusted-root", root, "--report-data", hex.EncodeToString(want[:])); code != 0 {
		t.Fatalf("ccnp verify refused the service's quote: %s %s", out, errs)
	}
	wrong := want
	wrong[0] ^= 1
	if code, _, _ := run(t, "verify", "--quote", q, "--trusted-root", root, "--report-data", hex.EncodeToString(wrong[:])); code == 0 {
		t.Fatal("ccnp verify accepted another REPORTDATA")
	}

	// A forged container ID is refused, with the reason on one line.
	code, _, errs = run(t, "client", "measurement", "--socket", socket, "--container-id", strings.Repeat("cd", 32))
	if code == 0 || !strings.Contains(errs, "PermissionDenied") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("forged container id: %d %q", code, errs)
	}
}

// TestServeQuoteRate: the quote rate flags reach the service; a quote
// beyond the burst is ResourceExhausted, saying when to retry.
func TestServeQuoteRate(t *testing.T) {
	socket, _, _ := serveFixture(t, "--quote-burst", "1", "--quote-rate", "0.01")
	q := filepath.Join(t.TempDir(), "q.dat")
	if code, _, errs := run(t, "client", "report", "--socket", socket, "--nonce", "00", "--out", q); code != 0 {
		t.Fatalf("first quote: %s", errs)
	}
	code, _, errs := run(t, "client", "report", "--socket", socket, "--nonce", "00", "--out", q)
	if code == 0 || !strings.Contains(errs, "ResourceExhausted") || !strings.Contains(errs, "retry in") {
		t.Fatalf("second quote within the burst of 1: %d %q", code, errs)
	}
}

func TestServeFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--socket-mode", "999"},
		{"serve", "--socket-mode", "01777"},
		{"serve", "--socket-group", "no-such-group-ccnp"},
		{"serve", "--runtime-log", "relative.cel"},
		{"--tee", "sim", "serve"}, // no sim dir
		{"client", "report", "--socket", "/nonexistent/s.sock", "--nonce", "zz"},
		{"client", "measurement", "--socket", "/nonexistent/s.sock", "--alg", "md5"},
	} {
		if code, _, errs := run(t, args...); code == 0 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--quote-rate", "0"}, "--quote-rate: want a positive number"},
		{[]string{"serve", "--max-connections", "-1"}, "--max-connections: want a positive number"},
		{[]string{"serve", "--max-streams", "0"}, "--max-streams: want a positive number"},
		{[]string{"serve", "--max-caller-requests", "9", "--max-requests", "8"}, "one container must not be able to take every slot"},
	} {
		if code, _, errs := run(t, tt.args...); code == 0 || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tt.args, code, errs, tt.want)
		}
	}
	// No server: Unavailable, within the timeout.
	start := time.Now()
	code, _, errs := run(t, "client", "measurement", "--socket", "/nonexistent/s.sock", "--timeout", "2s")
	if code == 0 || !strings.Contains(errs, "Unavailable") || time.Since(start) > 10*time.Second {
		t.Fatalf("no server: %d %q after %v", code, errs, time.Since(start))
	}
}

// TestServeContainerRegisterFlags: an explicit ima-cgpath register with no
// IMA list, or an unknown kind, stops ccnp serve with the flag named.
func TestServeContainerRegisterFlags(t *testing.T) {
	simDir := newSim(t)
	host := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--container-register", "ima"}, `--container-register "ima": want auto, ima-cgpath or runtime-log`},
		{[]string{"--container-register", "ima-cgpath"}, "--container-register ima-cgpath: no IMA list at " + filepath.Join(host, "sys/kernel/security/ima/binary_runtime_measurements")},
		{[]string{"--container-register", "ima-cgpath", "--ima-log", "relative"}, `--ima-log "relative": not an absolute path`},
	} {
		args := append([]string{"--tee", "sim", "--sim-dir", simDir, "--host-root", host, "serve", "--socket", filepath.Join(host, "s.sock")}, tt.args...)
		if code, _, errs := run(t, args...); code == 0 || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tt.args, code, errs, tt.want)
		}
	}
}
