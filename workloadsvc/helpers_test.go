package workloadsvc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// Container keys used across the tests.
var (
	cidA   = hex64("a")
	cidB   = hex64("b")
	cidP   = hex64("c") // a container of pod podUID
	podUID = "1234abcd-1234-4234-9234-123456789abc"
)

func hex64(seed string) string {
	h := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(h[:])
}

// Cgroup files (v2) of processes in each container, and of a host process.
var (
	cgA    = "0::/system.slice/docker-" + cidA + ".scope\n"
	cgB    = "0::/system.slice/docker-" + cidB + ".scope\n"
	cgP    = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + underscores(podUID) + ".slice/cri-containerd-" + cidP + ".scope\n"
	cgHost = "0::/user.slice/user-0.slice/session-1.scope\n"
)

func underscores(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte("-"), []byte("_")))
}

// rtmr3 adapts the simulated TD to runtimelog.Register.
type rtmr3 struct{ p *sim.Provider }

func (r rtmr3) Read(ctx context.Context) ([]byte, error) {
	d, err := r.p.Measurement(ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	return d.Value, err
}

func (r rtmr3) Extend(ctx context.Context, digest []byte) error {
	var d [48]byte
	copy(d[:], digest)
	return r.p.ExtendRTMR(ctx, 3, d)
}

// record is one workload appended to the runtime log, with the digest the
// register was extended with.
type record struct {
	key    string
	digest []byte
}

// fixture is a simulated TD, a runtime log with records of containers A, B
// and pod P, a fake /proc tree and the service on a real Unix socket.
type fixture struct {
	ctx      context.Context
	simDir   string
	provider *sim.Provider
	store    *runtimelog.Store
	logPath  string
	procRoot string
	// cgroupRoot is a fake cgroup v2 filesystem, root-owned like the real
	// one, whose directories list the fake /proc's processes.
	cgroupRoot string
	socket     string
	svc        *Service
	records    []record
	conn       *grpc.ClientConn
	rpc        ccnppb.CcnpClient
}

// baseFixture is a fixture with a simulated TD, a fake /proc whose self is
// this process, and a root-owned fake cgroup filesystem; no runtime log yet.
func baseFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	f := &fixture{ctx: ctx, simDir: filepath.Join(dir, "sim"), logPath: filepath.Join(dir, "runtime.cel"), procRoot: filepath.Join(dir, "proc"), cgroupRoot: filepath.Join(dir, "sys", "fs", "cgroup")}
	if err := os.MkdirAll(f.procRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	// The service refuses a procfs whose self is not its own process.
	if err := os.Symlink(strconv.Itoa(os.Getpid()), filepath.Join(f.procRoot, "self")); err != nil {
		t.Fatal(err)
	}
	if err := sim.Init(f.simDir, sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := sim.Open(ctx, f.simDir)
	if err != nil {
		t.Fatal(err)
	}
	f.provider = p
	return f
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := baseFixture(t)
	var err error
	f.store, _, err = runtimelog.OpenStore(f.ctx, f.logPath, rtmr3{f.provider}, runtimelog.StoreOptions{IMR: cctrusted.RTMR(3).IMR(), Alg: cctrusted.AlgSHA384})
	if err != nil {
		t.Fatal(err)
	}
	// Interleaved, so a filter that takes a prefix or a suffix fails.
	f.appendRecord(t, "/bin/a1", cidA, "")
	f.appendRecord(t, "/bin/b1", cidB, "")
	f.appendRecord(t, "/bin/p1", cidP, podUID)
	f.appendRecord(t, "/bin/a2", cidA, "")
	f.appendRecord(t, "/usr/lib/systemd/systemd", "", "") // a host workload
	f.addProc(t, os.Getpid(), cgA)
	f.start(t, Options{})
	return f
}

// appendRecord measures a workload the way the workload attestor does.
func (f *fixture) appendRecord(t *testing.T, exe, cid, pod string) {
	t.Helper()
	s256 := sha256.Sum256([]byte(exe))
	s384 := sha512.Sum384([]byte(exe))
	cg := "/system.slice/docker-" + cid + ".scope"
	if pod != "" {
		cg = "/kubepods.slice/pod" + pod + "/" + cid
	}
	ev, err := f.store.Append(f.ctx, runtimelog.Workload{ExeSHA256: s256[:], ExeSHA384: s384[:], ExePath: exe,
		ContainerID: cid, PodUID: pod, CgroupPath: cg, Time: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	d, ok := ev.Digest(cctrusted.AlgSHA384)
	if !ok {
		t.Fatal("record without a SHA-384 digest")
	}
	k := pod
	if k == "" {
		k = cid
	}
	f.records = append(f.records, record{key: k, digest: d})
}

// addProc writes procRoot/<pid> with the process's real stat (so start
// time checks see the real process) and the given cgroup file.
func (f *fixture) addProc(t *testing.T, pid int, cg string) {
	t.Helper()
	d := filepath.Join(f.procRoot, strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "stat"), st, 0o644); err != nil {
		t.Fatal(err)
	}
	f.setCgroup(t, pid, cg)
}

func (f *fixture) setCgroup(t *testing.T, pid int, cg string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.procRoot, strconv.Itoa(pid), "cgroup"), []byte(cg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same in the fake cgroup filesystem (v2 lines only).
	rel, ok := strings.CutPrefix(strings.TrimSuffix(cg, "\n"), "0::/")
	if !ok || strings.Contains(rel, "\n") {
		return
	}
	d := filepath.Join(f.cgroupRoot, rel)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.cgroupRoot, "cgroup.controllers"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	procs, err := os.OpenFile(filepath.Join(d, "cgroup.procs"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer procs.Close()
	if _, err := fmt.Fprintf(procs, "%d\n", pid); err != nil {
		t.Fatal(err)
	}
}

// start serves a Service with opts (its Provider, RuntimeLogPath and
// ProcRoot default to the fixture's) on a fresh socket and connects.
func (f *fixture) start(t *testing.T, opts Options) {
	t.Helper()
	if opts.Provider == nil {
		opts.Provider = f.provider
	}
	if opts.RuntimeLogPath == "" {
		opts.RuntimeLogPath = f.logPath
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = f.procRoot
	}
	if opts.CgroupRoot == "" {
		opts.CgroupRoot = f.cgroupRoot
	}
	svc, err := New(f.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	// Socket paths are limited to 108 bytes: keep it short.
	sdir, err := os.MkdirTemp("", "ccnpsvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sdir) })
	f.socket = filepath.Join(sdir, "s.sock")
	l, err := Listen(f.socket, 0o660, -1)
	if err != nil {
		t.Fatal(err)
	}
	g := svc.NewServer()
	go func() { _ = g.Serve(svc.Limit(l)) }()
	t.Cleanup(g.Stop)
	f.conn = dial(t, f.socket)
	f.rpc = ccnppb.NewCcnpClient(f.conn)
}

func dial(t *testing.T, socket string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantIMR replays the records of key, computed here with crypto/sha512 and
// not with the replay code the service uses.
func (f *fixture) wantIMR(key string) ([]byte, int) {
	imr := make([]byte, 48)
	n := 0
	for _, r := range f.records {
		if r.key != key {
			continue
		}
		h := sha512.Sum384(append(append([]byte{}, imr...), r.digest...))
		imr = h[:]
		n++
	}
	return imr, n
}

func wantCode(t *testing.T, err error, code codes.Code, substr ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	for _, s := range substr {
		if !bytes.Contains([]byte(st.Message()), []byte(s)) {
			t.Errorf("message %q lacks %q", st.Message(), s)
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func isPermissionDenied(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.PermissionDenied && !errors.Is(err, context.Canceled)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
