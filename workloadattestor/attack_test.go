package workloadattestor

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// records is the number of records in the runtime log (0 when there is no
// file yet, or an empty one).
func records(t *testing.T, logPath string) int {
	t.Helper()
	if fi, err := os.Stat(logPath); os.IsNotExist(err) || err == nil && fi.Size() == 0 {
		return 0
	}
	_, l := chain(t, logPath)
	return l.Len()
}

// execOnCue starts `sh -c 'read x; exec <target> <args>'`: a shell that runs
// another program when the test writes a line to its stdin. The returned
// function sends the cue and waits until the kernel shows the process
// running the new image (its exe link names want, or its stack moved).
func execOnCue(t *testing.T, script, want string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skip("no /bin/sh:", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	stack := func() string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 26 {
			return ""
		}
		return f[25] // field 28, start of stack
	}
	before := stack()
	return cmd, func() {
		start := time.Now()
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Errorf("cue: %v", err)
			return
		}
		for time.Since(start) < 10*time.Second {
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if (want == "" || exe == want) && stack() != before && stack() != "" {
				t.Logf("pid %d ran execve %v after the cue (exe %s)", pid, time.Since(start), exe)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Errorf("pid %d did not exec within 10 s", pid)
	}
}

// TestAttestExecDuringAttestation performs the exec attack: a process whose
// PID SPIRE hands over runs one binary when the attestation starts and execs
// an allow-listed one before it ends (through SPIRE: connect, fork a child
// that keeps the socket, exec the allow-listed binary, let the child fetch
// its SVID). The attestation must fail and record nothing in the runtime
// log; once the process stays put, it is attested as what it runs now.
func TestAttestExecDuringAttestation(t *testing.T) {
	_, logPath, hcl := simSetup(t, "first_seen")
	allowed := filepath.Join(t.TempDir(), "allowed")
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep:", err)
	}
	if err := os.WriteFile(allowed, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd, cue := execOnCue(t, fmt.Sprintf("read x; exec %q 600", allowed), allowed)
	p := New()
	p.afterCollect = func(int) { cue() }
	c := serve(t, p)
	c.configure(t, hcl)
	start := time.Now()
	_, err = c.attest(cmd.Process.Pid)
	t.Logf("attestation with an exec: %v (%v)", err, time.Since(start))
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "exec") {
		t.Fatalf("got %v, want Aborted naming the exec", err)
	}
	if n := records(t, logPath); n != 0 {
		t.Fatalf("%d runtime log records after a refused attestation, want 0", n)
	}
	p.afterCollect = nil
	got, err := c.attest(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "exe:sha256:"+sha256sum(t, allowed)) || !slices.Contains(got, "measured:rtmr3") {
		t.Fatalf("after the exec: %q", got)
	}
}

// TestAttestExecSameBinary: a process that execs the very same file (so the
// exe link and its inode do not change) is caught by its new address space.
// The shell re-execs itself, as an attacker re-running an allow-listed
// interpreter with other arguments would.
func TestAttestExecSameBinary(t *testing.T) {
	if b, _ := os.ReadFile("/proc/sys/kernel/randomize_va_space"); strings.TrimSpace(string(b)) == "0" {
		t.Skip("address space randomisation is off: an exec of the same file leaves code and stack where they were")
	}
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip(err)
	}
	cmd, cue := execOnCue(t, `read x; exec /bin/sh -c 'read y'`, sh)
	p := New()
	p.afterCollect = func(int) { cue() }
	c := serve(t, p)
	c.configure(t, `measure = "off"`)
	_, err = c.attest(cmd.Process.Pid)
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "execve") {
		t.Fatalf("got %v, want Aborted (execve)", err)
	}
}

// TestAttestExeSwappedFake: on a procfs whose stat shows no code or stack
// addresses (an unprivileged reader's view), the exe link resolving to
// another file at the end is enough to refuse.
func TestAttestExeSwappedFake(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, []byte("#!/bin/false\n"+f+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fp := newFakeProc(t, 4260, a)
	p := New()
	p.afterCollect = func(int) {
		link := filepath.Join(fp.dir(), "exe")
		_ = os.Remove(link)
		if err := os.Symlink(b, link); err != nil {
			t.Error(err)
		}
	}
	c := serve(t, p)
	c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"", fp.root))
	_, err := c.attest(4260)
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "another executable") {
		t.Fatalf("got %v, want Aborted (another executable)", err)
	}
}

// TestAttestForgedCgroup performs the delegated-cgroup forgery: someone who
// may create cgroups somewhere in the tree names one like a victim's
// container or pod and moves a process into it. Every case is a real layout
// first (accepted), then the forgery (no container or pod selector, the rest
// of the attestation unchanged).
func TestAttestForgedCgroup(t *testing.T) {
	const (
		victim = "611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1"
		uid    = "7d4424e6-bb13-42f4-a47a-45a4828bf54d"
		uidU   = "7d4424e6_bb13_42f4_a47a_45a4828bf54d"
	)
	type owner struct {
		rel  string
		uid  int
		mode os.FileMode
	}
	cases := []struct {
		name   string
		rel    string  // the process's cgroup (v2)
		owners []owner // directories whose owner or mode the test changes
		procs  string  // cgroup.procs to write instead of the pid ("" keeps it)
		cgline string  // the cgroup file, if not 0::/rel
		want   bool    // container and pod identity expected
	}{
		{name: "genuine docker", rel: "system.slice/docker-" + victim + ".scope", want: true},
		{name: "genuine pod, systemd driver", rel: "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + victim + ".scope", want: true},
		{name: "genuine pod, cgroupfs driver", rel: "kubepods/burstable/pod" + uid + "/" + victim, want: true},
		{name: "genuine pod seen from another cgroup namespace", rel: "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + victim + ".scope",
			cgline: "0::/../../kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + victim + ".scope\n", want: true},
		// The two forgeries: a Delegate=yes service with User=.
		{name: "docker scope in a delegated service", rel: "system.slice/app.service/docker-" + victim + ".scope",
			owners: []owner{{"system.slice/app.service", 1000, 0o755}}},
		{name: "pod tree in a delegated service", rel: "system.slice/app.service/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + victim + ".scope",
			owners: []owner{{"system.slice/app.service", 1000, 0o755}}},
		// Names where the runtime puts them, but a directory above was
		// handed to a user, or left writable.
		{name: "chowned kubepods subtree", rel: "kubepods/burstable/pod" + uid + "/" + victim,
			owners: []owner{{"kubepods/burstable", 65534, 0o755}}},
		{name: "chowned pod slice", rel: "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + victim + ".scope",
			owners: []owner{{"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice", 1000, 0o755}}},
		{name: "world-writable system.slice", rel: "system.slice/docker-" + victim + ".scope",
			owners: []owner{{"system.slice", 0, 0o777}}},
		// The cgroup file names a directory that does not hold the
		// process (what a procfs and a cgroupfs of different machines
		// or namespaces would show).
		{name: "directory does not hold the process", rel: "system.slice/docker-" + victim + ".scope", procs: "1\n"},
		// Seen from another cgroup namespace the path looks anchored (its
		// first slice could be anywhere), but the directory holding the
		// process, read from the root, is not where the kubelet puts pods.
		{name: "relative path found off its anchor", rel: "kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + victim + ".scope",
			cgline: "0::/../kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + victim + ".scope\n"},
		{name: "relative path whose namesake from the root is another cgroup", rel: "system.slice/docker-" + victim + ".scope",
			cgline: "0::/../docker/" + victim + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fp := newFakeProc(t, 4270, "/bin/sleep")
			fp.setCgroup(t, tc.rel)
			cgfs := filepath.Join(fp.root, "sys", "fs", "cgroup")
			if tc.cgline != "" {
				fp.write(t, "cgroup", tc.cgline)
				// A namesake from the root, not holding the process.
				_ = os.MkdirAll(filepath.Join(cgfs, "docker", victim), 0o755)
			}
			if tc.procs != "" {
				if err := os.WriteFile(filepath.Join(cgfs, tc.rel, "cgroup.procs"), []byte(tc.procs), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range tc.owners {
				d := filepath.Join(cgfs, o.rel)
				if err := os.Chown(d, o.uid, o.uid); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(d, o.mode); err != nil {
					t.Fatal(err)
				}
			}
			c := serve(t, New())
			c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"", fp.root))
			got, err := c.attest(4270)
			if err != nil {
				t.Fatal(err)
			}
			hasID := slices.Contains(got, "container:id:"+victim)
			hasPod := slices.Contains(got, "pod:uid:"+uid)
			if tc.want {
				if !hasID || strings.Contains(tc.rel, "pod") && !hasPod {
					t.Fatalf("genuine layout lost its identity: %q", got)
				}
				return
			}
			if hasID || hasPod || hasPrefix(got, "container:") || hasPrefix(got, "pod:") {
				t.Fatalf("forged identity accepted: %q", got)
			}
			if !slices.Contains(got, "uid:1001") || !hasPrefix(got, "exe:sha256:") {
				t.Fatalf("the rest of the attestation is gone: %q", got)
			}
		})
	}
}

// TestConfigureForeignProcfs: with host_root pointing at the procfs of
// another PID namespace (its self names another PID), the PIDs SPIRE hands
// over name other processes there: Configure refuses.
func TestConfigureForeignProcfs(t *testing.T) {
	fp := newFakeProc(t, 4280, "/bin/sleep")
	self := filepath.Join(fp.root, "proc", "self")
	if err := os.Remove(self); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strconv.Itoa(os.Getpid()+1), self); err != nil {
		t.Fatal(err)
	}
	c := serve(t, New())
	_, err := c.cfg.Configure(t.Context(), configReq(fmt.Sprintf("host_root = %q\nmeasure = \"off\"", fp.root)))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "host_root") || !strings.Contains(err.Error(), "PID namespace") {
		t.Fatalf("got %v, want FailedPrecondition naming host_root and the PID namespace", err)
	}
	// The same tree with the right self is accepted.
	_ = os.Remove(self)
	if err := os.Symlink(strconv.Itoa(os.Getpid()), self); err != nil {
		t.Fatal(err)
	}
	c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"", fp.root))
}

// TestAttestUntrustedFilesystem: an executable on FUSE, NFS, 9p, SMB or Ceph
// may show this process other bytes than the kernel mapped, and keep the
// inode and times the digest cache keys on. It gets no exe digest selector
// and no runtime log record, but a selector saying why. The filesystem type
// comes from a stand-in for statfs: this machine cannot mount them.
func TestAttestUntrustedFilesystem(t *testing.T) {
	cmd, bin := startCopy(t, t.TempDir(), "sleep")
	for _, fs := range []struct {
		magic uint32
		name  string
	}{{0x65735546, "fuse"}, {0x6969, "nfs"}, {0x01021997, "9p"}, {0xFF534D42, "cifs"}, {0xFE534D42, "smb2"}, {0x00c36400, "ceph"}} {
		t.Run(fs.name, func(t *testing.T) {
			_, logPath, hcl := simSetup(t, "first_seen")
			p := New()
			p.fsMagic = func(*os.File) (uint32, error) { return fs.magic, nil }
			c := serve(t, p)
			c.configure(t, hcl)
			got, err := c.attest(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if hasPrefix(got, "exe:sha") || hasPrefix(got, "measured:") || !slices.Contains(got, "exe:digest_unverifiable:"+fs.name) {
				t.Fatalf("got %q", got)
			}
			if n := records(t, logPath); n != 0 {
				t.Fatalf("%d runtime log records for an unverifiable executable", n)
			}
		})
	}
	t.Run("local filesystem", func(t *testing.T) {
		_, logPath, hcl := simSetup(t, "first_seen")
		c := serve(t, New())
		c.configure(t, hcl)
		got, err := c.attest(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(got, "exe:sha256:"+sha256sum(t, bin)) || hasPrefix(got, "exe:digest_unverifiable:") || records(t, logPath) != 1 {
			t.Fatalf("got %q", got)
		}
	})
}
