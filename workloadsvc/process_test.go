package workloadsvc

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/test/cgrouptest"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// helperEnv makes the test binary a client process (TestMain): it waits for
// a line on stdin (the test moves it into its cgroup meanwhile), calls the
// service and prints a helperResult as JSON.
const helperEnv = "WORKLOADSVC_TEST_CLIENT"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	if os.Getenv(algHelperEnv) != "" {
		os.Exit(runAlgHelper())
	}
	os.Exit(m.Run())
}

// helperResult is what a client process saw.
type helperResult struct {
	PID          int      `json:"pid"`
	OwnDigests   []string `json:"own_digests"`
	Platform     int      `json:"platform"`
	IMR          string   `json:"imr"`
	ForgedCode   string   `json:"forged_code"`
	ForgedReason string   `json:"forged_reason"`
	Err          string   `json:"err,omitempty"`
}

func runHelper() int {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		return 3
	}
	var args struct{ Socket, Asked, Forged string }
	if err := json.Unmarshal([]byte(line), &args); err != nil {
		return 3
	}
	res := helperResult{PID: os.Getpid()}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+args.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		res.Err = err.Error()
		return 0
	}
	defer conn.Close()
	rpc := ccnppb.NewCcnpClient(conn)
	ev, err := rpc.GetCcEventlog(ctx, &ccnppb.GetCcEventlogRequest{ContainerId: args.Asked})
	if err != nil {
		res.Err = err.Error()
		return 0
	}
	for _, e := range ev.GetEventLogs() {
		if e.GetExtraInfo()["source"] == "runtime_log" {
			res.OwnDigests = append(res.OwnDigests, hex.EncodeToString(e.GetDigests()[0].GetHash()))
		} else {
			res.Platform++
		}
	}
	m, err := rpc.GetCcMeasurement(ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: args.Asked, Index: 3})
	if err != nil {
		res.Err = err.Error()
		return 0
	}
	res.IMR = hex.EncodeToString(m.GetMeasurement().GetHash())
	_, err = rpc.GetCcMeasurement(ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: args.Forged, Index: 3})
	st, _ := status.FromError(err)
	res.ForgedCode, res.ForgedReason = st.Code().String(), st.Message()
	return 0
}

// client is a running client process.
type client struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *strings.Builder
}

func startClient(t *testing.T) *client {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{cmd: cmd, stdin: stdin, out: &strings.Builder{}}
	cmd.Stdout = c.out
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return c
}

func (c *client) run(t *testing.T, socket, asked, forged string) helperResult {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"Socket": socket, "Asked": asked, "Forged": forged})
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("client pid %d: %v", c.cmd.Process.Pid, err)
	}
	var r helperResult
	if err := json.Unmarshal([]byte(c.out.String()), &r); err != nil {
		t.Fatalf("client output %q: %v", c.out.String(), err)
	}
	return r
}

// checkClient asserts that a client process saw exactly key's records and
// register, and that naming forged was refused.
func checkClient(t *testing.T, f *fixture, r helperResult, key string) {
	t.Helper()
	if r.Err != "" {
		t.Fatalf("pid %d (%s): %s", r.PID, key, r.Err)
	}
	var want []string
	for _, rec := range f.records {
		if rec.key == key {
			want = append(want, hex.EncodeToString(rec.digest))
		}
	}
	if strings.Join(r.OwnDigests, ",") != strings.Join(want, ",") {
		t.Errorf("pid %d (%s) saw records %v, want %v", r.PID, key, r.OwnDigests, want)
	}
	if r.Platform == 0 {
		t.Errorf("pid %d saw no platform events", r.PID)
	}
	imr, _ := f.wantIMR(key)
	if r.IMR != hex.EncodeToString(imr) {
		t.Errorf("pid %d (%s): container IMR %s, want %x", r.PID, key, r.IMR, imr)
	}
	if r.ForgedCode != "PermissionDenied" {
		t.Errorf("pid %d naming another container: %s %s", r.PID, r.ForgedCode, r.ForgedReason)
	}
}

// TestProcessesFakeProc runs client processes (real PIDs, real peer
// credentials) whose cgroups a fake /proc tree gives.
func TestProcessesFakeProc(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ cg, key, forged string }{{cgA, cidA, cidB}, {cgB, cidB, cidA}, {cgP, podUID, cidP}}
	clients := make([]*client, len(cases))
	for i, c := range cases {
		clients[i] = startClient(t)
		f.addProc(t, clients[i].cmd.Process.Pid, c.cg)
	}
	for i, c := range cases {
		r := clients[i].run(t, f.socket, c.key, c.forged)
		if r.PID != clients[i].cmd.Process.Pid {
			t.Fatalf("client reported pid %d, started %d", r.PID, clients[i].cmd.Process.Pid)
		}
		checkClient(t, f, r, c.key)
	}
}

// TestProcessesRealCgroups moves client processes into fresh cgroup v2
// directories named as container runtimes name them, and serves with the
// real /proc.
func TestProcessesRealCgroups(t *testing.T) {
	root := cgrouptest.Root()
	if root == "" {
		t.Skip("no writable cgroup v2 hierarchy (needs root)")
	}
	f := newFixture(t)
	f.start(t, Options{ProcRoot: "/proc", CgroupRoot: "/sys/fs/cgroup"})
	// Runtimes' names count only where runtimes put them: docker's scopes
	// in /system.slice, pods in a kubelet slice chain (here one of this
	// test's own, as kind's kubelet.slice, so concurrent runs do not share it).
	top := fmt.Sprintf("ccnpsvc%d", os.Getpid())
	cases := []struct{ rel, key, forged string }{
		{"system.slice/docker-" + cidA + ".scope", cidA, cidB},
		{"system.slice/docker-" + cidB + ".scope", cidB, cidA},
		{top + ".slice/" + top + "-kubepods.slice/" + top + "-kubepods-besteffort.slice/" + top + "-kubepods-besteffort-pod" + underscores(podUID) + ".slice/cri-containerd-" + cidP + ".scope", podUID, cidA},
	}
	for _, c := range cases {
		cl := startClient(t)
		cgrouptest.Enter(t, root, c.rel, cl.cmd.Process.Pid)
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cl.cmd.Process.Pid))
		if err != nil || !strings.Contains(string(cg), c.rel) {
			t.Fatalf("client not in %s: %s %v", c.rel, cg, err)
		}
		checkClient(t, f, cl.run(t, f.socket, c.key, c.forged), c.key)
	}
	// This process, in no container, is refused.
	_, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
	if !isPermissionDenied(err) {
		t.Fatalf("host process: %v", err)
	}
}
