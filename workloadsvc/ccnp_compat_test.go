package workloadsvc

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/sdk/ccnp"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// TestCCNPAnyCallerGetsAlgorithmAndCount: as from CCNP, the two calls that
// say what the TEE is answer a process in no container; the calls about a
// container still refuse it, naming the option that would answer it.
func TestCCNPAnyCallerGetsAlgorithmAndCount(t *testing.T) {
	f := newFixture(t)
	f.setCgroup(t, os.Getpid(), cgHost)
	a, err := f.rpc.GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{})
	if err != nil || a.GetAlgoId() != uint32(cctrusted.AlgSHA384) {
		t.Fatalf("host process: default algorithm %v, %v", a, err)
	}
	c, err := f.rpc.GetMeasurementCount(f.ctx, &ccnppb.GetMeasurementCountRequest{})
	if err != nil || c.GetCount() != 4 {
		t.Fatalf("host process: count %v, %v", c, err)
	}
	_, err = f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 0})
	wantCode(t, err, codes.PermissionDenied, "in no container", "--node-view")
	_, err = f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
	wantCode(t, err, codes.PermissionDenied, "in no container")
	_, err = f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{})
	wantCode(t, err, codes.PermissionDenied, "in no container")
}

// algHelperEnv makes the test binary a client that calls
// GetDefaultAlgorithm on the socket in the variable and prints the result
// (TestMain), so it can run as another user.
const algHelperEnv = "WORKLOADSVC_TEST_ALG_CLIENT"

func runAlgHelper() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+os.Getenv(algHelperEnv), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	defer conn.Close()
	a, err := ccnppb.NewCcnpClient(conn).GetDefaultAlgorithm(ctx, &ccnppb.GetDefaultAlgorithmRequest{}, grpc.WaitForReady(false))
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	fmt.Printf("uid %d algo_id %d\n", os.Getuid(), a.GetAlgoId())
	return 0
}

// TestCCNPSocketModeLetsNonRootConnect: a process of another user (as a
// container's non-root processes are) can connect with the default socket
// mode, and is answered by what the kernel says it is, not by the mode. The
// former default, 0660, shut it out.
func TestCCNPSocketModeLetsNonRootConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	f := newFixture(t)
	// The client runs as nobody: it needs a copy of the test binary and a
	// socket directory it can reach.
	dir, err := os.MkdirTemp("", "ccnpmode")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client.test")
	copyFile(t, os.Args[0], bin, 0o755)
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o660, false}, {DefaultSocketMode, true}} {
		sock := filepath.Join(dir, fmt.Sprintf("s%o.sock", tt.mode))
		l, err := Listen(sock, tt.mode, -1)
		if err != nil {
			t.Fatal(err)
		}
		g := f.svc.NewServer()
		go func() { _ = g.Serve(f.svc.Limit(l)) }()
		defer g.Stop()
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), algHelperEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mode %04o: client: %v: %s", tt.mode, err, out)
		}
		t.Logf("mode %04o: client as uid 65534 in %v: %s", tt.mode, time.Since(start).Round(time.Millisecond), bytes.TrimSpace(out))
		got := strings.Contains(string(out), fmt.Sprintf("uid 65534 algo_id %d", cctrusted.AlgSHA384))
		if got != tt.ok {
			t.Errorf("mode %04o: connected %v, want %v (%s)", tt.mode, got, tt.ok, out)
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination read while the server writes to it.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

// TestCCNPNodeView: with the node view on (and logged), a host process gets
// the node's registers and an event log that replays to every one of them;
// containers keep their own view. Off, the same process is refused.
func TestCCNPNodeView(t *testing.T) {
	f := newFixture(t)
	logs := newSyncBuffer()
	f.start(t, Options{NodeView: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if !strings.Contains(logs.String(), "Node view on") {
		t.Errorf("turning the node view on was not logged: %q", logs.String())
	}
	f.setCgroup(t, os.Getpid(), cgHost)
	resp, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	regs := replaySHA384(resp.GetEventLogs())
	for i := uint32(0); i < 4; i++ {
		m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: i, AlgoId: uint32(cctrusted.AlgSHA384)})
		if err != nil {
			t.Fatal(err)
		}
		real, err := f.provider.Measurement(f.ctx, cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.GetMeasurement().GetHash(), real.Value) {
			t.Errorf("node view rtmr%d: %x, the TD has %x", i, m.GetMeasurement().GetHash(), real.Value)
		}
		if !bytes.Equal(regs[i], real.Value) {
			t.Errorf("node view event log replays rtmr%d to %x, the TD has %x", i, regs[i], real.Value)
		}
	}
	// Every runtime record is in it, the host workload's too.
	n := 0
	for _, e := range resp.GetEventLogs() {
		if e.GetExtraInfo()["source"] == "runtime_log" {
			n++
		}
	}
	if n != len(f.records) {
		t.Errorf("node view has %d runtime records, the log %d", n, len(f.records))
	}
	// Quotes bind SHA-512(nonce || user_data), as CCNP's non-isolated mode.
	nonce, ud := randomBytes(t, 32), randomBytes(t, 16)
	n64, u64 := b64(nonce), b64(ud)
	rep, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &n64, UserData: &u64})
	if err != nil {
		t.Fatal(err)
	}
	if want := sha512.Sum512(append(append([]byte{}, nonce...), ud...)); !bytes.Equal(reportData(t, rep.GetCcReport()), want[:]) {
		t.Errorf("node view REPORTDATA %x, want SHA-512(nonce || user_data)", reportData(t, rep.GetCcReport()))
	}
	// A host process names no container.
	_, err = f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: cidA})
	wantCode(t, err, codes.PermissionDenied, "node view")
	// A container still sees its own register at 3, not the node's.
	f.setCgroup(t, os.Getpid(), cgA)
	m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := f.wantIMR(cidA); !bytes.Equal(m.GetMeasurement().GetHash(), want) {
		t.Errorf("container A under the node view: %x, want its own %x", m.GetMeasurement().GetHash(), want)
	}
	// Off (the default), the host process is refused.
	f.start(t, Options{})
	f.setCgroup(t, os.Getpid(), cgHost)
	_, err = f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
	wantCode(t, err, codes.PermissionDenied, "--node-view")
}

// replaySHA384 replays the SHA-384 digests of events by index as cc-api's
// SDKs do (EV_NO_ACTION skipped), here and not with the service's replay
// code.
func replaySHA384(evs []*ccnppb.TcgEventlog) map[uint32][]byte {
	regs := map[uint32][]byte{}
	for _, e := range evs {
		if e.GetEventType() == cctrusted.EventNoAction {
			continue
		}
		for _, d := range e.GetDigests() {
			if d.GetAlgoId() != uint32(cctrusted.AlgSHA384) {
				continue
			}
			cur := regs[e.GetImrIndex()]
			if cur == nil {
				cur = make([]byte, 48)
			}
			h := sha512.Sum384(append(append([]byte{}, cur...), d.GetHash()...))
			regs[e.GetImrIndex()] = h[:]
		}
	}
	return regs
}

// reportData is REPORTDATA of a TDX quote v4 (48-byte header, body field
// at 520).
func reportData(t *testing.T, q []byte) []byte {
	t.Helper()
	if len(q) < 632 {
		t.Fatalf("quote of %d bytes", len(q))
	}
	return q[568:632]
}

// TestCCNPReportDataRules: REPORTDATA for each combination of fields, as
// CCNP's server and cc-api's SDK computed it.
func TestCCNPReportDataRules(t *testing.T) {
	f := newFixture(t)
	imr, _ := f.wantIMR(cidA)
	nonce, ud := randomBytes(t, 32), randomBytes(t, 16)
	n64, u64, empty := b64(nonce), b64(ud), ""
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tt := range []struct {
		name      string
		nonce, ud *string
		want      []byte // hashed with SHA-512
	}{
		{"nonce and user data", &n64, &u64, cat(imr, nonce, ud)},
		{"nonce only", &n64, nil, cat(imr, nonce)},
		{"user data only", nil, &u64, ud},
		{"neither", nil, nil, nil},
		{"empty nonce", &empty, &u64, cat(imr, ud)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: tt.nonce, UserData: tt.ud})
			if err != nil {
				t.Fatal(err)
			}
			if want := sha512.Sum512(tt.want); !bytes.Equal(reportData(t, rep.GetCcReport()), want[:]) {
				t.Errorf("REPORTDATA %x, want %x", reportData(t, rep.GetCcReport()), want)
			}
		})
	}
}

// TestCCNPTPMReport: on a TPM, CCNP's SDKs (which send no format header)
// get a clear FailedPrecondition instead of a report they turn into None;
// this project's client asks for the JSON form and gets it.
func TestCCNPTPMReport(t *testing.T) {
	ctx := context.Background()
	sw := swtpm.StartT(t)
	p, err := tpm.Open(ctx, tpm.Options{Device: sw.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := baseFixture(t)
	f.addProc(t, os.Getpid(), cgA)
	// swtpm has no firmware log; the report does not need one.
	f.start(t, Options{Provider: noBootLog{p}})
	u64 := b64([]byte("user data"))
	_, err = f.rpc.GetCcReport(ctx, &ccnppb.GetCcReportRequest{UserData: &u64})
	wantCode(t, err, codes.FailedPrecondition, "TPM", "ccnp client report")
	mctx := metadata.AppendToOutgoingContext(ctx, ReportFormatHeader, ReportFormatJSON)
	rep, err := f.rpc.GetCcReport(mctx, &ccnppb.GetCcReportRequest{UserData: &u64})
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		TEE        string `json:"tee"`
		ReportData string `json:"report_data"`
	}
	if err := json.Unmarshal(rep.GetCcReport(), &j); err != nil || rep.GetCcType() != CCTypeTPM || j.TEE != "tpm" {
		t.Fatalf("TPM report %q (cc_type %d): %v", rep.GetCcReport(), rep.GetCcType(), err)
	}
	if want := sha512.Sum512([]byte("user data")); j.ReportData != fmt.Sprintf("%x", want) {
		t.Errorf("TPM report_data %s, want SHA-512(user data)", j.ReportData)
	}
	// sdk/ccnp, which `ccnp client report` uses, asks for the JSON form.
	c, err := ccnp.New(f.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Report(ctx, nil, []byte("user data"))
	if err != nil || r.CCType != CCTypeTPM {
		t.Fatalf("sdk/ccnp report on a TPM: %v, %v", r, err)
	}
}

// noBootLog is a TPM whose firmware left no event log.
type noBootLog struct{ *tpm.Provider }

func (noBootLog) EventLog(context.Context, int, int) ([]cctrusted.Event, error) { return nil, nil }
