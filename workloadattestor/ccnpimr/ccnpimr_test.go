package ccnpimr

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The expected values in this file come from refChain, a plain SHA-384
// chain written from CCNP's description (measurement.rs, container.rs at
// cc-api/container-integrity-measurement-agent 36d01b4), or from Python
// (testdata/ima/gen.py), never from the code under test.

func refChain(start []byte, digests ...[]byte) []byte {
	imr := bytes.Clone(start)
	for _, d := range digests {
		s := sha512.Sum384(append(bytes.Clone(imr), d...))
		imr = s[:]
	}
	return imr
}

func zero() []byte { return make([]byte, 48) }

func ff() []byte { return bytes.Repeat([]byte{0xff}, 48) }

func hex64(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

const (
	podA = "11111111-2222-4333-8444-555555555555"
	podB = "66666666-7777-4888-9999-000000000000"
)

func podPath(uid, ctr string) string {
	return "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(uid, "-", "_") +
		".slice/cri-containerd-" + hex64(ctr) + ".scope"
}

var (
	cgA      = podPath(podA, "a")
	cgA2     = podPath(podA, "a2") // another container of pod A
	cgB      = podPath(podB, "b")
	dockerID = hex64("docker")
	cgDocker = "/system.slice/docker-" + dockerID + ".scope"
	// A delegated subtree under a user's session naming pod A's cgroup:
	// CCNP's pattern filed it under pod A.
	cgMimic = "/user.slice/user-1000.slice/user@1000.service/app.slice" + cgA
)

// entry is one binary list entry as a CCNP kernel writes it (register
// field 2, SHA-384 template hash) and the digest IMA extended for it.
type entry struct {
	raw    []byte
	digest []byte
}

func field(b []byte, v []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func binEntry(template string, thash, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	b = append(b, thash...)
	b = field(b, []byte(template))
	return field(b, data)
}

// cgpathEntry: an ima-cgpath entry (dep, cg-path, d-ng, n-ng) of file.
func cgpathEntry(cgpath, file string) entry {
	fd := sha256.Sum256([]byte("content of " + file))
	var data []byte
	data = field(data, []byte("/usr/bin/containerd-shim-runc-v2:/usr/lib/systemd/systemd\x00"))
	data = field(data, []byte(cgpath+"\x00"))
	data = field(data, append([]byte("sha256:\x00"), fd[:]...))
	data = field(data, []byte(file+"\x00"))
	th := sha512.Sum384(data)
	return entry{raw: binEntry(Template, th[:], data), digest: th[:]}
}

// violation: the same entry with the zero template hash of a ToMToU or
// open-writers violation; IMA extends all 0xFF for it.
func violation(cgpath, file string) entry {
	e := cgpathEntry(cgpath, file)
	raw := bytes.Clone(e.raw)
	copy(raw[4:52], zero())
	return entry{raw: raw, digest: ff()}
}

// imaNG: an ima-ng entry, which names no cgroup.
func imaNG(file string) entry {
	fd := sha256.Sum256([]byte(file))
	var data []byte
	data = field(data, append([]byte("sha256:\x00"), fd[:]...))
	data = field(data, []byte(file+"\x00"))
	th := sha512.Sum384(data)
	return entry{raw: binEntry("ima-ng", th[:], data), digest: th[:]}
}

func writeList(t *testing.T, path string, es ...entry) {
	t.Helper()
	var b []byte
	for _, e := range es {
		b = append(b, e.raw...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func register(t *testing.T, x *Index, key string, start []byte) []byte {
	t.Helper()
	s, err := x.Snapshot(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Register(start)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRegisterChain: a container's register is the chain over its own
// entries only, in list order: two containers of one pod share the pod's
// register; another pod's, a docker container's, the host's, an ima-ng
// entry and a mimicked cgroup count for no one else; a violation in the
// container's cgroup extends 0xFF, as IMA does.
func TestRegisterChain(t *testing.T) {
	es := []entry{
		cgpathEntry("/", "boot_aggregate"),
		cgpathEntry(cgA, "/pause"),
		cgpathEntry(cgB, "/pause"),
		cgpathEntry(cgDocker, "/bin/sh"),
		violation(cgA, "/var/log/app.log"),
		cgpathEntry("/system.slice/containerd.service", "/usr/bin/containerd"),
		imaNG("/usr/bin/vim"),
		cgpathEntry(cgA2, "/app/server"),
		cgpathEntry(cgMimic, "/tmp/evil"),
		cgpathEntry(cgB, "/bin/python3"),
	}
	path := filepath.Join(t.TempDir(), "binary_runtime_measurements")
	writeList(t, path, es...)
	x := NewIndex(path, 0)
	seed := refChain(zero(), bytes.Repeat([]byte{7}, 48))
	for _, tt := range []struct {
		name, key string
		own       []int
	}{
		{"pod A (two containers, a violation)", podA, []int{1, 4, 7}},
		{"pod B", podB, []int{2, 9}},
		{"docker container", dockerID, []int{3}},
		{"pod never in the list", "99999999-8888-4777-8666-555555555555", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ds [][]byte
			for _, i := range tt.own {
				ds = append(ds, es[i].digest)
			}
			s, err := x.Snapshot(t.Context(), tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Own) != len(tt.own) {
				t.Fatalf("own entries %v, want %v", s.Own, tt.own)
			}
			for i, want := range tt.own {
				if s.Own[i] != want {
					t.Fatalf("own entries %v, want %v", s.Own, tt.own)
				}
			}
			for _, start := range [][]byte{nil, zero(), seed} {
				got, err := s.Register(start)
				if err != nil {
					t.Fatal(err)
				}
				from := start
				if from == nil {
					from = zero()
				}
				if want := refChain(from, ds...); !bytes.Equal(got, want) {
					t.Errorf("register from %x = %x, want %x", from[:4], got, want)
				}
			}
		})
	}
	// The violation is in the list as the kernel wrote it, and its entry
	// says what the container's event log shows.
	s, _ := x.Snapshot(t.Context(), podA)
	if v := s.Entries[4]; !bytes.Equal(v.Digest, ff()) || v.Key != podA || !bytes.Contains(v.Fields, []byte(" "+cgA+" ")) {
		t.Errorf("violation entry %+v", v)
	}
	if e := s.Entries[6]; e.Key != "" || e.Template != "ima-ng" {
		t.Errorf("ima-ng entry %+v", e)
	}
	if e := s.Entries[8]; e.Key != "" {
		t.Errorf("mimicked cgroup filed under %q", e.Key)
	}
}

// TestRegisterGolden: the upstream kernel's form (SHA-1 template hashes,
// PCR 10): the SHA-384 digest is the hash of the template data, and the
// pods' registers are those Python computed from the fixture generator
// (the values workloadattestor's selector tests also use).
func TestRegisterGolden(t *testing.T) {
	const (
		pod1 = "368acdb103aab772a13957afdec9a21577d8ae7da4aca2524977c5b726f034a06044807384a532a1fceb637c9343a6fd"
		pod2 = "4bc5fd0aac19723ead94d64ba180e49431130210fc53d56511651d4191583ea46e16afbb910c200d057f1cd50b3ff845"
	)
	for _, format := range []string{"ascii", "bin"} {
		x := NewIndex(filepath.Join("..", "..", "testdata", "ima", "cgpath."+format), 0)
		for key, want := range map[string]string{"11111111-2222-3333-4444-555555555555": pod1, "66666666-7777-8888-9999-000000000000": pod2} {
			if got := hex.EncodeToString(register(t, x, key, nil)); got != want {
				t.Errorf("%s: %s = %s, want %s", format, key, got, want)
			}
		}
	}
}

// TestRegisterStart: nil is the zero register; a start that is not a
// SHA-384 value is refused rather than silently extended.
func TestRegisterStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list")
	e := cgpathEntry(cgA, "/pause")
	writeList(t, path, e)
	s, err := NewIndex(path, 0).Snapshot(t.Context(), podA)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Register(nil)
	if err != nil || !bytes.Equal(got, refChain(zero(), e.digest)) {
		t.Fatalf("Register(nil) = %x, %v; want the chain from zero %x", got, err, refChain(zero(), e.digest))
	}
	for _, n := range []int{0, 32, 47, 49, 64} {
		if r, err := s.Register(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "start value of "+strconv.Itoa(n)+" bytes") {
			t.Errorf("start of %d bytes: %x, %v", n, r, err)
		}
	}
}

// fakeProc is a fake host /proc.
type fakeProc struct{ root string }

func newProc(t *testing.T) *fakeProc { return &fakeProc{root: t.TempDir()} }

func (p *fakeProc) add(t *testing.T, pid int, cmdline string, uid int, cg string) {
	t.Helper()
	d := filepath.Join(p.root, strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	u := strconv.Itoa(uid)
	files := map[string]string{
		"cmdline": cmdline,
		"status":  "Name:\tx\nUid:\t" + u + "\t" + u + "\t" + u + "\t" + u + "\nGid:\t0\t0\t0\t0\nGroups:\t\n",
		"cgroup":  "0::" + cg + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	containerd = "/usr/bin/containerd"
	kubelet    = "/usr/bin/kubelet"
	shim       = "/usr/bin/containerd-shim-runc-v2"
)

func measured(t *testing.T, hs []HostProcess) map[string]HostProcess {
	t.Helper()
	m := map[string]HostProcess{}
	for _, h := range hs {
		if d := sha512.Sum384(h.Value); !bytes.Equal(d[:], h.Digest) {
			t.Errorf("%s: digest %x is not SHA-384 of %q", h.Name, h.Digest, h.Value)
		}
		m[h.Name] = h
	}
	return m
}

// TestMeasureHost: which processes seed the register, and what is hashed.
func TestMeasureHost(t *testing.T) {
	p := newProc(t)
	p.add(t, 2001, containerd+"\x00", 0, "/system.slice/containerd.service")
	p.add(t, 2002, kubelet+"\x00--config=/var/lib/kubelet/config.yaml\x00", 0, "/system.slice/kubelet.service")
	// Shims: one per pod; CCNP kept the last of its /proc listing, the
	// highest PID. 999 sorts after 10000 as a string, so only a numeric
	// order picks 10000.
	for _, pid := range []int{999, 3005, 10000, 2500, 7} {
		p.add(t, pid, shim+"\x00-id\x00"+strconv.Itoa(pid)+"\x00", 0, "/system.slice/containerd.service")
	}
	p.add(t, 2003, "/usr/sbin/sshd\x00-D\x00", 0, "/system.slice/ssh.service")
	p.add(t, 2004, "", 0, "/")                                                      // a kernel thread
	p.add(t, 2005, kubelet+"-evil\x00", 0, "/")                                     // not the name
	p.add(t, 2006, kubelet+" --title-rewritten", 0, "/")                            // argv[0] is the whole title
	if err := os.WriteFile(filepath.Join(p.root, "self"), nil, 0o644); err != nil { // not a PID
		t.Fatal(err)
	}

	hs, err := MeasureHost(t.Context(), p.root, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 3 || hs[0].Name != containerd || hs[1].Name != kubelet || hs[2].Name != shim {
		t.Fatalf("measured %+v, want containerd, kubelet, shim in the policy's order", hs)
	}
	m := measured(t, hs)
	if h := m[shim]; h.PID != 10000 || string(h.Value) != shim+"\x00-id\x0010000\x00" {
		t.Errorf("shim: pid %d value %q, want the highest PID, 10000", h.PID, h.Value)
	}
	if h := m[kubelet]; h.PID != 2002 || string(h.Value) != kubelet+"\x00--config=/var/lib/kubelet/config.yaml\x00" {
		t.Errorf("kubelet: pid %d value %q", h.PID, h.Value)
	}
	seed, err := Seed(hs)
	if err != nil {
		t.Fatal(err)
	}
	want := refChain(zero(), m[containerd].Digest, m[kubelet].Digest, m[shim].Digest)
	if !bytes.Equal(seed, want) {
		t.Errorf("seed %x, want %x", seed, want)
	}

	// Without parameters only argv[0] is hashed; a name listed twice is
	// measured twice, a name no process has is left out.
	hs, err = MeasureHost(t.Context(), p.root, Policy{Processes: []string{kubelet, "/usr/bin/crio", kubelet}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || string(hs[0].Value) != kubelet || string(hs[1].Value) != kubelet {
		t.Fatalf("without parameters: %+v", hs)
	}
	seed, _ = Seed(hs)
	d := sha512.Sum384([]byte(kubelet))
	if want := refChain(zero(), d[:], d[:]); !bytes.Equal(seed, want) {
		t.Errorf("seed %x, want %x", seed, want)
	}
	// A kernel thread has no command line: it is no process of any name,
	// not even an empty one.
	if hs, err := MeasureHost(t.Context(), p.root, Policy{Processes: []string{""}}); err != nil || len(hs) != 0 {
		t.Errorf("empty name: %+v, %v", hs, err)
	}
	if s, err := Seed(nil); err != nil || !bytes.Equal(s, zero()) {
		t.Errorf("empty seed %x, %v", s, err)
	}
}

// TestMeasureHostCmdlineWithoutNUL: a process that rewrote its whole
// command line without a NUL is hashed as CCNP did: the title, then "\0".
func TestMeasureHostCmdlineWithoutNUL(t *testing.T) {
	p := newProc(t)
	p.add(t, 40, kubelet, 0, "/system.slice/kubelet.service")
	hs, err := MeasureHost(t.Context(), p.root, Policy{Processes: []string{kubelet}, WithParameter: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || string(hs[0].Value) != kubelet+"\x00" {
		t.Fatalf("measured %+v, want the value %q", hs, kubelet+"\x00")
	}
}

// TestAttackHostSeedImpersonated: argv[0] is whatever a process writes
// there. A container's process, a host process of another user, and a
// process whose command line is too long to be a daemon's, each calling
// itself the kubelet with a higher PID than the real one (which CCNP would
// have kept), do not become the seed.
func TestAttackHostSeedImpersonated(t *testing.T) {
	const honest = kubelet + "\x00--node-ip=10.0.0.7\x00"
	for _, tt := range []struct {
		name    string
		cmdline string
		uid     int
		cgroup  string
	}{
		{"container process", kubelet + "\x00--evil\x00", 0, cgA},
		{"docker container process", kubelet + "\x00--evil\x00", 0, cgDocker},
		{"host process of another user", kubelet + "\x00--evil\x00", 1000, "/user.slice/user-1000.slice/session-2.scope"},
		{"command line over the bound", kubelet + "\x00" + strings.Repeat("x", maxCmdline) + "\x00", 0, "/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newProc(t)
			p.add(t, 100, honest, 0, "/system.slice/kubelet.service")
			p.add(t, 200, tt.cmdline, tt.uid, tt.cgroup)
			hs, err := MeasureHost(t.Context(), p.root, Policy{Processes: []string{kubelet}, WithParameter: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != 1 || hs[0].PID != 100 || string(hs[0].Value) != honest {
				t.Fatalf("measured %+v, want only the host's kubelet (pid 100)", hs)
			}
		})
	}
}

// TestMeasureHostUnreadable: a process whose status or cgroup cannot be
// read is not a candidate (nothing says it is root's, or on the host).
func TestMeasureHostUnreadable(t *testing.T) {
	for _, missing := range []string{"status", "cgroup"} {
		t.Run(missing, func(t *testing.T) {
			p := newProc(t)
			p.add(t, 300, kubelet+"\x00", 0, "/")
			if err := os.Remove(filepath.Join(p.root, "300", missing)); err != nil {
				t.Fatal(err)
			}
			hs, err := MeasureHost(t.Context(), p.root, Policy{Processes: []string{kubelet}})
			if err != nil || len(hs) != 0 {
				t.Fatalf("measured %+v, %v; want nothing", hs, err)
			}
		})
	}
	if _, err := MeasureHost(t.Context(), filepath.Join(t.TempDir(), "absent"), DefaultPolicy()); err == nil {
		t.Error("a missing /proc measured")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := newProc(t)
	p.add(t, 1, kubelet+"\x00", 0, "/")
	if _, err := MeasureHost(ctx, p.root, DefaultPolicy()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestIndexFollowsTheList: a growing list is parsed incrementally to the
// value a fresh parse gives; a list that does not continue the last one
// starts a new generation from scratch; a list beyond the bound and a
// corrupt tail are errors that leave the index as it was.
func TestIndexFollowsTheList(t *testing.T) {
	es := []entry{
		cgpathEntry("/", "boot_aggregate"),
		cgpathEntry(cgA, "/pause"),
		cgpathEntry(cgB, "/pause"),
		violation(cgA, "/tmp/x"),
		cgpathEntry(cgA, "/app"),
	}
	path := filepath.Join(t.TempDir(), "list")
	x := NewIndex(path, 0)
	var snaps []*Snapshot
	for i := 1; i <= len(es); i++ {
		writeList(t, path, es[:i]...)
		s, err := x.Snapshot(t.Context(), podA)
		if err != nil {
			t.Fatalf("after %d entries: %v", i, err)
		}
		if len(s.Entries) != i || s.Gen != 0 {
			t.Fatalf("after %d entries: %d entries, generation %d", i, len(s.Entries), s.Gen)
		}
		snaps = append(snaps, s)
	}
	want := refChain(zero(), es[1].digest, es[3].digest, es[4].digest)
	if got := register(t, x, podA, nil); !bytes.Equal(got, want) {
		t.Fatalf("incremental %x, want %x", got, want)
	}
	if got := register(t, NewIndex(path, 0), podA, nil); !bytes.Equal(got, want) {
		t.Fatalf("fresh %x, want %x", got, want)
	}
	// Snapshots are what they were, whatever their holders do with them:
	// the list grows, then the holder of the last snapshot appends to its
	// slices (where the index has spare capacity).
	last := snaps[len(snaps)-1]
	more := cgpathEntry(cgA, "/more")
	writeList(t, path, append(es, more)...)
	want = refChain(want, more.digest)
	if got := register(t, x, podA, nil); !bytes.Equal(got, want) {
		t.Fatalf("after another entry: %x, want %x", got, want)
	}
	_ = append(last.Entries, Entry{Key: podA, Digest: ff()})
	_ = append(last.Own, 0)
	if got := register(t, x, podA, nil); !bytes.Equal(got, want) {
		t.Fatalf("after appends to a snapshot: %x, want %x", got, want)
	}
	if r, _ := snaps[1].Register(nil); len(snaps[1].Entries) != 2 || !bytes.Equal(r, refChain(zero(), es[1].digest)) {
		t.Fatalf("snapshot of 2 entries changed: %d entries, register %x", len(snaps[1].Entries), r)
	}
	es = append(es, more)

	// A reboot: another list. The old entries are gone.
	writeList(t, path, es[0], es[2], es[4])
	s, err := x.Snapshot(t.Context(), podA)
	if err != nil {
		t.Fatal(err)
	}
	if s.Gen != 1 || len(s.Entries) != 3 {
		t.Fatalf("new list: generation %d, %d entries; want 1 and 3", s.Gen, len(s.Entries))
	}
	if got := register(t, x, podA, nil); !bytes.Equal(got, refChain(zero(), es[4].digest)) {
		t.Fatalf("new list: %x", got)
	}

	// A corrupt tail: an error, and the index is unchanged.
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(bytes.Clone(good), es[1].raw[:len(es[1].raw)-3]...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Snapshot(t.Context(), podA); err == nil || !strings.Contains(err.Error(), "from byte "+strconv.Itoa(len(good))) {
		t.Fatalf("corrupt tail: %v", err)
	}
	if err := os.WriteFile(path, append(bytes.Clone(good), es[1].raw...), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := register(t, x, podA, nil); !bytes.Equal(got, refChain(zero(), es[4].digest, es[1].digest)) {
		t.Fatalf("after the tail was completed: %x", got)
	}

	// Beyond the bound.
	small := NewIndex(path, len(good))
	if _, err := small.Snapshot(t.Context(), podA); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("list over the bound: %v", err)
	}
}
