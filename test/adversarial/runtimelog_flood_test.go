package adversarial

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor"
)

// floodPID is the process the fake /proc shows; its exe link is pointed
// at another executable for every attestation, as if a new process ran it.
const floodPID = 31337

// workloadAttestor is the workload attestor plugin served over the SDK's
// plugin transport, reading processes from a fake /proc under root.
type workloadAttestor struct {
	root string
	wa   *workloadattestorv1.WorkloadAttestorPluginClient
}

func serveWorkloadAttestor(t *testing.T, root, hcl string) (*workloadAttestor, error) {
	t.Helper()
	w := &workloadAttestor{root: root, wa: new(workloadattestorv1.WorkloadAttestorPluginClient)}
	// The attestor refuses a procfs whose self is not its own process.
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fmt.Sprint(os.Getpid()), filepath.Join(root, "proc", "self")); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	cfg := new(configv1.ConfigServiceClient)
	p := workloadattestor.New()
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   workloadattestorv1.WorkloadAttestorPluginServer(p),
		PluginClient:   w.wa,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{cfg},
	})
	_, err := cfg.Configure(context.Background(), &configv1.ConfigureRequest{HclConfiguration: hcl})
	return w, err
}

// newFloodProc writes root/proc/<floodPID> for a host process of uid.
func newFloodProc(t *testing.T, root string, uid int) {
	t.Helper()
	dir := filepath.Join(root, "proc", fmt.Sprint(floodPID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"stat":   fmt.Sprintf("%d (flood) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n", floodPID),
		"status": fmt.Sprintf("Name:\tflood\nUid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\nGroups:\t\n", uid, uid, uid, uid, uid, uid, uid, uid),
		"cgroup": fmt.Sprintf("0::/user.slice/user-%d.slice/session-4.scope\n", uid),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// run points the process's exe link at exe and attests it.
func (w *workloadAttestor) run(t *testing.T, exe string) []string {
	t.Helper()
	link := filepath.Join(w.root, "proc", fmt.Sprint(floodPID), "exe")
	_ = os.Remove(link)
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	resp, err := w.wa.Attest(context.Background(), &workloadattestorv1.AttestRequest{Pid: floodPID})
	if err != nil {
		t.Fatalf("attesting %.60s...: %v", exe, err)
	}
	return resp.GetSelectorValues()
}

// longDir makes a directory whose path is about 3.9 KB, in 255-byte names.
func longDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for len(dir) < 3900-256 {
		dir = filepath.Join(dir, strings.Repeat("d", 255))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skip("cannot create a 3.9 KB directory path here:", err)
	}
	return dir
}

// measuredKind sorts an attestation by its measured/unmeasured selector.
func measuredKind(sels []string) string {
	for _, s := range sels {
		if strings.HasPrefix(s, "measured:") || strings.HasPrefix(s, "unmeasured:") {
			return s
		}
	}
	return "none"
}

// TestRuntimeLogFlood is issue 14: one unprivileged user runs 4,500
// distinct executables (one binary with a different trailing byte each)
// from a 3.9 KB directory path; before the fix the runtime log outgrew what
// the server reads (16 MiB) or turns into selectors (4,096), so the node
// could no longer attest and a restarted workload attestor failed Configure,
// until reboot. Now the user's quota of new records stops it with one
// quota notice; another user fills the log to its capacity (the log-full
// notice last); the node still attests, with
// runtime:incomplete:true and runtime:log_full:true and no runtime policy
// match, and a restarted workload attestor configures and keeps attesting.
func TestRuntimeLogFlood(t *testing.T) {
	start := time.Now()
	n := newSimNode(t, sim.InitOptions{})
	root := t.TempDir()
	// A smaller capacity and uid quota than the defaults (2,048 and 256)
	// keep the test fast: every record costs two fsyncs (log, simulated
	// TD state). TestStoreCapacityRecords and the conf tests cover the
	// defaults and their bounds.
	const capacity, uidQuota = 128, 64
	hcl := fmt.Sprintf("tee = \"sim\"\nsim_dir = %q\nruntime_log_path = %q\nhost_root = %q\nruntime_log_max_records = %d\nruntime_log_quota_per_uid = %d\n",
		n.Dir, n.RuntimeLogPath(), root, capacity, uidQuota)
	wa, err := serveWorkloadAttestor(t, root, hcl)
	if err != nil {
		t.Fatal(err)
	}
	dir := longDir(t)
	d, err := os.OpenRoot(dir) // files created relative to it: no 3.9 KB path walk each
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	exe := func(uid, i int) string {
		name := fmt.Sprintf("e%d-%d", uid, i)
		f, err := d.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
		if err == nil {
			_, err = fmt.Fprintf(f, "#!/bin/false\n%d %d\n", uid, i)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			t.Fatal(err)
		}
		return filepath.Join(dir, name)
	}

	// The attack: one user, 4,500 distinct executables.
	newFloodProc(t, root, 1000)
	kinds := map[string]int{}
	for i := range 4500 {
		kinds[measuredKind(wa.run(t, exe(1000, i)))]++
	}
	t.Logf("uid 1000, 4,500 executables at %d-byte paths: %v (%v)", len(exe(1000, 0)), kinds, time.Since(start))
	if kinds["measured:rtmr3"] != uidQuota || kinds["unmeasured:quota"] != 4500-uidQuota {
		t.Fatalf("one user's 4,500 executables: %v; want %d measured and the rest over its quota", kinds, uidQuota)
	}

	// Other users fill the log to its capacity.
	full := 0
	for uid := 2000; full == 0; uid++ {
		newFloodProc(t, root, uid)
		for i := range uidQuota + 1 {
			if measuredKind(wa.run(t, exe(uid, i))) == "unmeasured:log_full" {
				full = uid
				break
			}
		}
		if uid > 2020 {
			t.Fatal("the log never filled")
		}
	}
	raw, err := os.ReadFile(n.RuntimeLogPath())
	if err != nil {
		t.Fatal(err)
	}
	l, err := runtimelog.Decode(raw, runtimelog.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	fullNotice, ok := l.Full()
	t.Logf("log full at uid %d: %d records (%d workloads, %d notices), %d bytes; full notice %+v (%v)",
		full, l.Len(), len(l.Workloads()), len(l.Notices()), len(raw), fullNotice, time.Since(start))
	if !ok || l.Len() > capacity || len(raw) > runtimelog.DefaultCapacityBytes || fullNotice.Record != l.Len()-1 {
		t.Fatalf("log of %d records, %d bytes, full notice %v at %d", l.Len(), len(raw), ok, fullNotice.Record)
	}
	for _, w := range l.Workloads() {
		if len(w.ExePath) > runtimelog.MaxStoredField {
			t.Fatalf("stored exe path of %d bytes", len(w.ExePath))
		}
	}

	// The node attests, and the server sees that the log is full.
	s := newServer(t, n.serverConfig(fmt.Sprintf(`policy "node" { tee = ["sim"] }
policy "workloads" {
  enforce = false
  tee     = ["sim"]
  runtime { allowed_exe_sha256 = ["%x"] }
}`, l.Workloads()[0].ExeSHA256)))
	attrs, err := s.attest(n.agent(t))
	if err != nil {
		t.Fatalf("a node whose log is full must still attest: %v", err)
	}
	sels := attrs.GetSelectorValues()
	t.Logf("node attested with %d selectors (%v)", len(sels), time.Since(start))
	// A simulated node's selectors all live under sim:.
	for _, want := range []string{"sim:runtime:incomplete:true", "sim:runtime:log_full:true", "sim:policy:node", "sim:policy_warn:workloads"} {
		if !slices.Contains(sels, want) {
			t.Errorf("selector %s missing", want)
		}
	}
	if slices.Contains(sels, "sim:policy:workloads") || len(sels) > serververifier.MaxSelectors {
		t.Errorf("%d selectors, policy:workloads matched: %v", len(sels), slices.Contains(sels, "sim:policy:workloads"))
	}
	if !strings.Contains(s.logs.String(), fmt.Sprintf("the runtime log is full since record %d", fullNotice.Record)) {
		t.Errorf("no policy mismatch says the log is full:\n%.2000s", s.logs.String())
	}

	// A restarted workload attestor configures and attests: a known
	// workload is still measured, a new one is not.
	wa2, err := serveWorkloadAttestor(t, root, hcl)
	if err != nil {
		t.Fatalf("a restarted workload attestor must configure with a full log: %v", err)
	}
	newFloodProc(t, root, 1000)
	if got := measuredKind(wa2.run(t, exe(1000, 0))); got != "measured:rtmr3" {
		t.Errorf("a recorded workload after the restart: %s", got)
	}
	if got := measuredKind(wa2.run(t, exe(1000, 9999))); got != "unmeasured:log_full" {
		t.Errorf("a new workload after the restart: %s", got)
	}
	t.Logf("total %v", time.Since(start))
}
