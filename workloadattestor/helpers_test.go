package workloadattestor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"github.com/ccnp-spire/ccnp-spire/workloadattestor/proc"
)

// client is a plugin served over the SDK's real plugin transport.
type client struct {
	wa  *workloadattestorv1.WorkloadAttestorPluginClient
	cfg *configv1.ConfigServiceClient
}

func serve(t *testing.T, p *Plugin) *client {
	t.Helper()
	c := &client{wa: new(workloadattestorv1.WorkloadAttestorPluginClient), cfg: new(configv1.ConfigServiceClient)}
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   workloadattestorv1.WorkloadAttestorPluginServer(p),
		PluginClient:   c.wa,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{c.cfg},
	})
	return c
}

func (c *client) configure(t *testing.T, hcl string) {
	t.Helper()
	if _, err := c.cfg.Configure(context.Background(), &configv1.ConfigureRequest{HclConfiguration: hcl}); err != nil {
		t.Fatalf("configure: %v", err)
	}
}

func (c *client) attest(pid int) ([]string, error) {
	resp, err := c.wa.Attest(context.Background(), &workloadattestorv1.AttestRequest{Pid: int32(pid)})
	if err != nil {
		return nil, err
	}
	return resp.SelectorValues, nil
}

// startCopy copies /bin/sleep to dir/name and runs it. The process is
// killed and reaped at cleanup.
func startCopy(t testing.TB, dir, name string) (*exec.Cmd, string) {
	t.Helper()
	bin := filepath.Join(dir, name)
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep:", err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitExeced(t, cmd.Process.Pid)
	return cmd, bin
}

// waitExeced waits until the kernel has loaded pid's new image. Start
// returns once execve has passed the point of no return, before the ELF
// loader sets the code start the attestor compares across an attestation;
// a workload never connects to SPIRE inside that window, a test can.
func waitExeced(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// Field 26 (startcode) is the 24th after the ") " that ends comm.
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 23 && f[23] != "0" {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("pid %d: no code start after 10 s", pid)
}

// sha256sum computes the expected digest with coreutils, independently of
// the code under test.
func sha256sum(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Skip("sha256sum:", err)
	}
	return strings.Fields(string(out))[0]
}

func sha384sum(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha384sum", path).Output()
	if err != nil {
		t.Skip("sha384sum:", err)
	}
	return strings.Fields(string(out))[0]
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fakeProc builds host_root/proc/<pid> with the given files and an exe link.
type fakeProc struct {
	root string
	pid  int
}

func newFakeProc(t *testing.T, pid int, exeTarget string) *fakeProc {
	t.Helper()
	f := &fakeProc{root: t.TempDir(), pid: pid}
	if err := os.MkdirAll(f.dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	f.write(t, "stat", fmt.Sprintf("%d (fake) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, 777))
	f.write(t, "status", "Name:\tfake\nUid:\t1000\t1001\t1000\t1001\nGid:\t2000\t2002\t2000\t2002\nGroups:\t\n")
	f.write(t, "cgroup", "0::/"+dockerCgroup+"\n")
	f.cgroupDir(t, dockerCgroup)
	// The attestor refuses a procfs whose self is not its own process.
	if err := os.Symlink(strconv.Itoa(os.Getpid()), filepath.Join(f.root, "proc", "self")); err != nil {
		t.Fatal(err)
	}
	if exeTarget != "" {
		if err := os.Symlink(exeTarget, filepath.Join(f.dir(), "exe")); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// dockerCgroup is where docker's systemd driver puts a container.
const dockerCgroup = "system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope"

// cgroupDir creates rel (and its parents, root-owned, mode 0755) in the fake
// cgroup v2 filesystem at host_root/sys/fs/cgroup and lists the process in
// its cgroup.procs, as the kernel would.
func (f *fakeProc) cgroupDir(t *testing.T, rel string) string {
	t.Helper()
	root := filepath.Join(f.root, "sys", "fs", "cgroup")
	d := filepath.Join(root, rel)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(f.pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// setCgroup moves the fake process into the v2 cgroup rel (no leading
// slash): its cgroup file and the fake cgroup filesystem both say so.
func (f *fakeProc) setCgroup(t *testing.T, rel string) {
	t.Helper()
	f.write(t, "cgroup", "0::/"+rel+"\n")
	f.cgroupDir(t, rel)
}

func (f *fakeProc) dir() string { return filepath.Join(f.root, "proc", strconv.Itoa(f.pid)) }

func (f *fakeProc) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir(), name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func attestReq(pid int) *workloadattestorv1.AttestRequest {
	return &workloadattestorv1.AttestRequest{Pid: int32(pid)}
}

func configReq(hcl string) *configv1.ConfigureRequest {
	return &configv1.ConfigureRequest{HclConfiguration: hcl}
}

func procExe(path string) proc.Exe { return proc.Exe{Path: path} }
