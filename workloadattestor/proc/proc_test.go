package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// realStat is /proc/<pid>/stat of `cat` on this kind of machine (kernel 6.18):
// field 9 (flags) 4194304, field 22 (start time) 190396.
const realStat = "28274 (cat) R 28254 28254 24234 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 190396 3133440 413 18446744073709551615 94495854800896 94495854820777 140724123321664 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94495854836784 94495854838400 94496006651904 140724123322877 140724123322897 140724123322897 140724123324395 0\n"

// realKthread is kthreadd's stat line on the same machine (flags 2129984 =
// 0x208040 include PF_KTHREAD 0x00200000).
const realKthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 20 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  Stat
		kthr  bool
		zomb  bool
		fails bool
	}{
		{name: "real", in: realStat, want: Stat{PID: 28274, Comm: "cat", State: 'R', Flags: 4194304, StartTime: 190396, StartCode: 94495854800896, StartStack: 140724123321664}},
		{name: "kthread", in: realKthread, want: Stat{PID: 2, Comm: "kthreadd", State: 'S', Flags: 2129984, StartTime: 20}, kthr: true},
		{name: "comm with ) and spaces and newline", in: strings.Replace(realStat, "(cat)", "(a) b\n(c) )", 1),
			want: Stat{PID: 28274, Comm: "a) b\n(c) ", State: 'R', Flags: 4194304, StartTime: 190396, StartCode: 94495854800896, StartStack: 140724123321664}},
		{name: "zombie", in: strings.Replace(realStat, ") R ", ") Z ", 1), want: Stat{PID: 28274, Comm: "cat", State: 'Z', Flags: 4194304, StartTime: 190396, StartCode: 94495854800896, StartStack: 140724123321664}, zomb: true},
		{name: "short line (no code or stack fields)", in: "7 (x) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n", want: Stat{PID: 7, Comm: "x", State: 'S', Flags: 4194304, StartTime: 777}},
		{name: "bad stack", in: strings.Replace(realStat, " 140724123321664 ", " x ", 1), fails: true},
		{name: "truncated", in: realStat[:60], fails: true},
		{name: "empty", in: "", fails: true},
		{name: "no parens", in: "1 cat R 1", fails: true},
		{name: "bad pid", in: strings.Replace(realStat, "28274", "x", 1), fails: true},
		{name: "zero pid", in: strings.Replace(realStat, "28274", "0", 1), fails: true},
		{name: "bad start", in: strings.Replace(realStat, " 190396 ", " -1 ", 1), fails: true},
		{name: "bad flags", in: strings.Replace(realStat, " 4194304 ", " x ", 1), fails: true},
		{name: "long state", in: strings.Replace(realStat, ") R ", ") RR ", 1), fails: true},
		{name: "oversized", in: realStat + strings.Repeat(" 0", MaxStatSize), fails: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.in))
			if tc.fails {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || got.Kernel() != tc.kthr || got.Zombie() != tc.zomb {
				t.Fatalf("got %+v (kernel %v zombie %v), want %+v", got, got.Kernel(), got.Zombie(), tc.want)
			}
		})
	}
}

const realStatus = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t28274\nNgid:\t0\nPid:\t28274\nPPid:\t28254\nTracerPid:\t0\n" +
	"Uid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\nFDSize:\t64\nGroups:\t4 24 27 \nNStgid:\t28274\n"

func TestParseStatus(t *testing.T) {
	s, err := ParseStatus([]byte(realStatus))
	if err != nil {
		t.Fatal(err)
	}
	if s.EffectiveUID() != 1001 || s.EffectiveGID() != 2001 || s.UID != [4]uint32{1000, 1001, 1002, 1003} ||
		len(s.Groups) != 3 || s.Groups[2] != 27 {
		t.Fatalf("got %+v", s)
	}
	bad := map[string]string{
		"no uid":       strings.Replace(realStatus, "Uid:", "Xid:", 1),
		"no gid":       strings.Replace(realStatus, "Gid:", "Xid:", 1),
		"short uid":    strings.Replace(realStatus, "\t1003", "", 1),
		"uid overflow": strings.Replace(realStatus, "1000", "4294967296", 1),
		"two uids":     realStatus + "Uid:\t0\t0\t0\t0\n",
		"bad group":    strings.Replace(realStatus, "24 27", "24 x", 1),
		"oversized":    realStatus + strings.Repeat("x", MaxStatusSize),
		"empty":        "",
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseStatus([]byte(in)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestHandleSelf(t *testing.T) {
	h, err := Open("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.Kernel() || st.StartTime == 0 {
		t.Fatalf("stat %+v", st)
	}
	status, err := h.Status()
	if err != nil {
		t.Fatal(err)
	}
	if int(status.EffectiveUID()) != os.Geteuid() || int(status.EffectiveGID()) != os.Getegid() {
		t.Fatalf("status %+v, euid %d", status, os.Geteuid())
	}
	exe, err := h.ExeLink()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if exe.Path != self || exe.Deleted {
		t.Fatalf("exe %+v, want %s", exe, self)
	}
	if _, err := h.Cgroup(); err != nil {
		t.Fatal(err)
	}
}

func TestHandleDeletedExe(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "my sleep")
	copyFile(t, "/bin/sleep", bin)
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Replace the file: the exe link must still reach the running one.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("not the binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := Open("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	exe, err := h.ExeLink()
	if err != nil {
		t.Fatal(err)
	}
	if exe.Path != bin || !exe.Deleted {
		t.Fatalf("exe %+v", exe)
	}
	f, err := h.OpenExe()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	orig, _ := os.Stat("/bin/sleep")
	if fi.Size() != orig.Size() {
		t.Fatalf("opened %d bytes, want the running binary's %d", fi.Size(), orig.Size())
	}
}

func TestHandleGone(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h, err := Open("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// The handle now refers to a reaped task: reads fail, never reaching a
	// process that reuses the PID.
	if _, err := h.Stat(); !IsGone(err) {
		t.Fatalf("stat after exit: %v, want ESRCH/ENOENT", err)
	}
	if _, err := Open("/proc", cmd.Process.Pid); err == nil {
		t.Log("pid reused already; fine")
	} else if !IsGone(err) {
		t.Fatalf("open after exit: %v", err)
	}
	if _, err := Open("/proc", 0); err == nil {
		t.Fatal("pid 0 accepted")
	}
}

func TestHandleKernelThread(t *testing.T) {
	h, err := Open("/proc", 2)
	if err != nil {
		t.Skip("no pid 2 visible:", err)
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Kernel() {
		t.Skipf("pid 2 (%s) is not a kernel thread here (pid namespace)", st.Comm)
	}
	if _, err := h.ExeLink(); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("kernel thread exe: %v, want ENOENT", err)
	}
}

func TestReadFileLimit(t *testing.T) {
	root := t.TempDir()
	pid := 4242
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(strings.Repeat("x", MaxCgroupSize+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(strings.Repeat("y", 5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "stat")); err != nil {
		t.Fatal(err)
	}
	h, err := Open(root, pid)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Cgroup(); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized cgroup: %v", err)
	}
	b, err := h.ReadFile("status", 5000)
	if err != nil || len(b) != 5000 {
		t.Fatalf("exact-limit read: %d bytes, %v", len(b), err)
	}
	// A symlink in place of a proc file is refused (O_NOFOLLOW).
	if _, err := h.Stat(); !errors.Is(err, syscall.ELOOP) {
		t.Fatalf("symlinked stat: %v, want ELOOP", err)
	}
	if os.Geteuid() == 0 {
		return // root reads mode 000 files
	}
	_ = os.Chmod(filepath.Join(dir, "status"), 0)
	if _, err := h.Status(); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("unreadable status: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(realStat))
	f.Add([]byte(realKthread))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err == nil && s.PID <= 0 {
			t.Fatalf("accepted pid %d", s.PID)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(realStatus))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatus(b)
		if err == nil && len(s.Groups) > maxGroups {
			t.Fatalf("%d groups", len(s.Groups))
		}
	})
}

// TestCheckSelf: the real /proc is this process's namespace; a procfs whose
// self names another PID (another PID namespace's, as a fake here) or none is
// refused.
func TestCheckSelf(t *testing.T) {
	if err := CheckSelf("/proc"); err != nil {
		t.Fatalf("real /proc: %v", err)
	}
	dir := t.TempDir()
	if err := CheckSelf(dir); err == nil || !strings.Contains(err.Error(), "self") {
		t.Fatalf("no self link: %v", err)
	}
	if err := os.Symlink("1", filepath.Join(dir, "self")); err != nil {
		t.Fatal(err)
	}
	err := CheckSelf(dir)
	if err == nil || !strings.Contains(err.Error(), `names pid "1"`) || !strings.Contains(err.Error(), "PID namespace") {
		t.Fatalf("foreign procfs: %v", err)
	}
	t.Log(err)
}
