package workloadsvc

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/ccnpimr"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// This file holds an independent implementation of CCNP's container
// register, written from the algorithm's description (CCNP's server at
// cc-api/container-integrity-measurement-agent 36d01b4: measurement.rs,
// agent.rs, container.rs), not from ccnpimr, and the tests that compare
// the service with it.

// refHost is a host process as CCNP's server saw it in /proc.
type refHost struct {
	pid     int
	cmdline string // as /proc/<pid>/cmdline reads
}

// refEntry is an IMA entry as CCNP's server got it from cctrusted_base's
// ascii parser: the cg-path field and the template hash.
type refEntry struct {
	cgpath       string
	templateHash []byte
}

// refSeed: CCNP mapped argv[0] -> the rest of the command line over /proc
// in listing order (PIDs ascending; a later process of the same name
// replaces an earlier one), then for each policy name found extended
// SHA-384(imr || SHA-384(value)), value = name, or name + "\0" + rest with
// withParameter.
func refSeed(hosts []refHost, processes []string, withParameter bool) []byte {
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].pid < hosts[j].pid })
	byName := map[string]string{}
	for _, h := range hosts {
		if h.cmdline == "" {
			continue
		}
		name, rest, _ := strings.Cut(h.cmdline, "\x00")
		byName[name] = rest
	}
	imr := make([]byte, 48)
	for _, p := range processes {
		rest, ok := byName[p]
		if !ok {
			continue
		}
		v := p
		if withParameter {
			v = p + "\x00" + rest
		}
		d := sha512.Sum384([]byte(v))
		n := sha512.Sum384(append(append([]byte{}, imr...), d[:]...))
		imr = n[:]
	}
	return imr
}

// refKeyRE is CCNP's container key pattern ("." unescaped, as CCNP wrote it).
var refKeyRE = regexp.MustCompile(`[[:xdigit:]_]{36}.slice|[[:xdigit:]]{32}.slice|[[:xdigit:]]{64}.scope`)

// refKey: entries whose cg-path contains kubepods.slice or
// system.slice/docker- are a container's; the key is the first match of
// the pattern after kubepods.slice (else system.slice), without its suffix.
// CCNP kept underscores in pod UIDs; the key is returned with dashes so it
// compares with the caller's.
func refKey(cgpath string) string {
	if !strings.Contains(cgpath, "kubepods.slice") && !strings.Contains(cgpath, "system.slice/docker-") {
		return ""
	}
	i := strings.Index(cgpath, "kubepods.slice")
	if i < 0 {
		i = strings.Index(cgpath, "system.slice")
	}
	m := refKeyRE.FindString(cgpath[i:])
	m = strings.TrimSuffix(strings.TrimSuffix(m, ".slice"), ".scope")
	return strings.ReplaceAll(m, "_", "-")
}

// refRegister: the seed, extended SHA-384(imr || template hash) with every
// entry of the key, in list order.
func refRegister(seed []byte, entries []refEntry, key string) (imr []byte, n int) {
	imr = seed
	for _, e := range entries {
		if refKey(e.cgpath) != key {
			continue
		}
		h := sha512.Sum384(append(append([]byte{}, imr...), e.templateHash...))
		imr = h[:]
		n++
	}
	return imr, n
}

// The fixture's IMA list: what a CCNP kernel writes (ima-cgpath, register
// field 2, SHA-384 template hashes), built by the test.

func cgEntry(t *testing.T, cgpath, file string) ([]byte, refEntry) {
	t.Helper()
	fd := sha256.Sum256([]byte("content of " + file))
	fields := [][]byte{[]byte("/usr/bin/containerd-shim-runc-v2:/usr/lib/systemd/systemd\x00"), []byte(cgpath + "\x00"),
		append([]byte("sha256:\x00"), fd[:]...), []byte(file + "\x00")}
	var data []byte
	for _, f := range fields {
		data = binary.LittleEndian.AppendUint32(data, uint32(len(f)))
		data = append(data, f...)
	}
	th := sha512.Sum384(data)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 2)
	b = append(b, th[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len("ima-cgpath")))
	b = append(b, "ima-cgpath"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...), refEntry{cgpath: cgpath, templateHash: th[:]}
}

// Cgroup paths of the fixture's containers, as the kernel records them.
var (
	cgpathP    = strings.TrimSuffix(strings.TrimPrefix(cgP, "0::"), "\n")
	cgpathP2   = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + underscores(podUID) + ".slice/cri-containerd-" + hex64("p2") + ".scope"
	cgpathA    = strings.TrimSuffix(strings.TrimPrefix(cgA, "0::"), "\n")
	unseenPod  = "99999999-8888-4777-8666-555555555555"
	cgUnseen   = "0::/kubepods.slice/kubepods-pod" + underscores(unseenPod) + ".slice/cri-containerd-" + hex64("u") + ".scope\n"
	hostPolicy = ccnpimr.DefaultPolicy()
)

// imaFixture is a fixture whose node has an ima-cgpath list extended into
// the simulated TD's RTMR2, host processes in its fake /proc, and the
// service serving CCNP's register.
type imaFixture struct {
	*fixture
	imaPath string
	entries []refEntry
	hosts   []refHost
}

func newIMAFixture(t *testing.T) *imaFixture {
	t.Helper()
	f := &imaFixture{fixture: baseFixture(t)}
	f.imaPath = filepath.Join(filepath.Dir(f.procRoot), "binary_runtime_measurements")
	f.hosts = []refHost{
		{4000001, "/usr/bin/containerd\x00"},
		{4000002, "/usr/bin/kubelet\x00--config=/var/lib/kubelet/config.yaml\x00--node-ip=10.0.0.7\x00"},
		{4000003, "/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00-id\x00" + hex64("p") + "\x00"},
		{4000004, "/usr/sbin/sshd\x00-D\x00"},
		// A second shim with a higher PID: CCNP kept the last one listed.
		{4000005, "/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00-id\x00" + hex64("p2") + "\x00"},
	}
	for _, h := range f.hosts {
		f.addHostProc(t, h.pid, h.cmdline, 0, "0::/system.slice/containerd.service\n")
	}
	f.appendIMA(t,
		[2]string{"/", "boot_aggregate"},
		[2]string{"/system.slice/containerd.service", "/usr/bin/containerd"},
		[2]string{cgpathP, "/pause"},
		[2]string{cgpathA, "/bin/sh"},
		[2]string{cgpathP2, "/usr/bin/python3"},
		[2]string{cgpathA, "/etc/passwd"},
		[2]string{cgpathP, "/app/server"},
		[2]string{"/user.slice/user-1000.slice/session-2.scope", "/usr/bin/vim"},
	)
	f.addProc(t, os.Getpid(), cgP)
	f.start(t, Options{IMALogPath: f.imaPath})
	return f
}

// addHostProc writes a fake /proc entry of a host process.
func (f *imaFixture) addHostProc(t *testing.T, pid int, cmdline string, uid int, cg string) {
	t.Helper()
	d := filepath.Join(f.procRoot, strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	u := strconv.Itoa(uid)
	status := "Name:\tx\nUid:\t" + u + "\t" + u + "\t" + u + "\t" + u + "\nGid:\t0\t0\t0\t0\nGroups:\t\n"
	for name, content := range map[string]string{"cmdline": cmdline, "status": status, "cgroup": cg} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// appendIMA appends entries (cg-path, file) to the list and extends RTMR2
// with each, as the kernel does.
func (f *imaFixture) appendIMA(t *testing.T, entries ...[2]string) {
	t.Helper()
	l, err := os.OpenFile(f.imaPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, e := range entries {
		b, ref := cgEntry(t, e[0], e[1])
		if _, err := l.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := f.provider.ExtendRTMR(f.ctx, 2, [48]byte(ref.templateHash)); err != nil {
			t.Fatal(err)
		}
		f.entries = append(f.entries, ref)
	}
}

// TestCCNPContainerRegisterFromIMA: with an ima-cgpath list, register 3 of
// a Kubernetes pod and of a docker container is CCNP's value, as the
// independent implementation above computes it; the event log says so in
// its marker, replays to register 3 and to the real RTMR0..2 (RTMR2 with
// IMA's extends), and shows other containers' entries by digest only. A
// pod the list never names gets the seed.
func TestCCNPContainerRegisterFromIMA(t *testing.T) {
	f := newIMAFixture(t)
	seed := refSeed(append([]refHost{}, f.hosts...), hostPolicy.Processes, hostPolicy.WithParameter)
	if f.svc.ContainerRegister() != RegisterIMA {
		t.Fatalf("container register %q", f.svc.ContainerRegister())
	}
	for _, tt := range []struct {
		name, cgroup, key string
		wantOwn           int
	}{
		{"kubernetes pod", cgP, podUID, 3},
		{"docker container", cgA, cidA, 2},
		{"pod never in the list", cgUnseen, unseenPod, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.setCgroup(t, os.Getpid(), tt.cgroup)
			want, n := refRegister(seed, f.entries, tt.key)
			if n != tt.wantOwn {
				t.Fatalf("reference found %d entries, the fixture has %d", n, tt.wantOwn)
			}
			m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3, AlgoId: uint32(cctrusted.AlgSHA384)})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.GetMeasurement().GetHash(); !bytes.Equal(got, want) {
				t.Fatalf("register 3 = %x, CCNP's algorithm gives %x", got, want)
			}
			t.Logf("register 3 = %x (%d own entries)", want, n)
			resp, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
			if err != nil {
				t.Fatal(err)
			}
			evs := resp.GetEventLogs()
			var marker *ccnppb.TcgEventlog
			own, redacted := 0, 0
			for _, e := range evs {
				switch {
				case e.GetImrIndex() == 3 && e.GetEventType() == cctrusted.EventNoAction:
					marker = e
				case e.GetImrIndex() == 3 && e.GetExtraInfo()["source"] == "ima":
					own++
					if !bytes.Contains(e.GetEvent(), []byte(" ")) {
						t.Errorf("own entry without its fields: %q", e.GetEvent())
					}
				case e.GetImrIndex() == 2 && e.GetExtraInfo()["redacted"] != "":
					redacted++
					if len(e.GetEvent()) != 0 {
						t.Errorf("redacted RTMR2 entry shows %q", e.GetEvent())
					}
				case e.GetImrIndex() == 2 && e.GetExtraInfo()["source"] == "ima":
					key := ""
					for _, r := range f.entries {
						if bytes.Contains(e.GetEvent(), []byte(" "+r.cgpath+" ")) {
							key = refKey(r.cgpath)
						}
					}
					if key != tt.key {
						t.Errorf("RTMR2 entry of %q shown in full to %s: %q", key, tt.key, e.GetEvent())
					}
				}
			}
			if marker == nil || !strings.HasPrefix(string(marker.GetEvent()), MarkerPrefix+RegisterIMA+" ") || marker.GetExtraInfo()["container_register"] != RegisterIMA {
				t.Fatalf("marker %v", marker)
			}
			if own != n || redacted != len(f.entries)-n {
				t.Errorf("%d own IMA events and %d redacted RTMR2 entries, want %d and %d", own, redacted, n, len(f.entries)-n)
			}
			// CCNP's example's -v: replay, then read each replayed register.
			for idx, v := range replaySHA384(evs) {
				m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: idx, AlgoId: uint32(cctrusted.AlgSHA384)})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(m.GetMeasurement().GetHash(), v) {
					t.Errorf("replay of index %d = %x, register %x", idx, v, m.GetMeasurement().GetHash())
				}
			}
			nonce, ud := randomBytes(t, 32), randomBytes(t, 16)
			n64, u64 := b64(nonce), b64(ud)
			rep, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &n64, UserData: &u64})
			if err != nil {
				t.Fatal(err)
			}
			if rd := sha512.Sum512(bytes.Join([][]byte{want, nonce, ud}, nil)); !bytes.Equal(reportData(t, rep.GetCcReport()), rd[:]) {
				t.Errorf("REPORTDATA %x, want SHA-512(register 3 || nonce || user_data)", reportData(t, rep.GetCcReport()))
			}
		})
	}
	if want := refSeed(append([]refHost{}, f.hosts...), hostPolicy.Processes, hostPolicy.WithParameter); !bytes.Equal(seed, want) || bytes.Equal(seed, make([]byte, 48)) {
		t.Fatalf("seed %x", seed)
	}
}

// TestCCNPContainerRegisterFollowsTheList: entries appended after the
// service started count at the next request.
func TestCCNPContainerRegisterFollowsTheList(t *testing.T) {
	f := newIMAFixture(t)
	seed := refSeed(append([]refHost{}, f.hosts...), hostPolicy.Processes, hostPolicy.WithParameter)
	f.appendIMA(t, [2]string{cgpathP2, "/usr/lib/libssl.so.3"}, [2]string{cgpathA, "/bin/ls"})
	want, n := refRegister(seed, f.entries, podUID)
	m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 || !bytes.Equal(m.GetMeasurement().GetHash(), want) {
		t.Fatalf("register 3 = %x after the append, want %x (%d entries)", m.GetMeasurement().GetHash(), want, n)
	}
}

// TestAttackSeedSpoofedByArgv0: argv[0] is whatever a process writes
// there. A process in a container, or a host process of another user, that
// calls itself /usr/bin/kubelet (with a higher PID, which CCNP would have
// kept) does not become the seed.
func TestAttackSeedSpoofedByArgv0(t *testing.T) {
	f := newIMAFixture(t)
	honest := refSeed(append([]refHost{}, f.hosts...), hostPolicy.Processes, hostPolicy.WithParameter)
	f.addHostProc(t, 4000010, "/usr/bin/kubelet\x00--evil\x00", 0, cgA)
	f.addHostProc(t, 4000011, "/usr/bin/containerd\x00--evil\x00", 1000, "0::/system.slice/evil.service\n")
	f.start(t, Options{IMALogPath: f.imaPath})
	want, _ := refRegister(honest, f.entries, podUID)
	m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.GetMeasurement().GetHash(), want) {
		t.Fatalf("register 3 = %x: the spoofing processes changed the seed (honest: %x)", m.GetMeasurement().GetHash(), want)
	}
}

// TestAttackIMAListNotOnRTMR2: a list with an entry RTMR2 never had (an
// edited list, or a file that is not the kernel's) is served to no one:
// FailedPrecondition naming RTMR2, for the register, the event log and
// quotes alike.
func TestAttackIMAListNotOnRTMR2(t *testing.T) {
	f := newIMAFixture(t)
	b, _ := cgEntry(t, cgpathP, "/forged")
	l, err := os.OpenFile(f.imaPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Replace the list by one whose first entry differs.
	if err := l.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(b); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, err = f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
	wantCode(t, err, codes.FailedPrecondition, "does not replay to RTMR2")
	_, err = f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
	wantCode(t, err, codes.FailedPrecondition, "does not replay to RTMR2")
	n := b64(randomBytes(t, 8))
	_, err = f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &n})
	wantCode(t, err, codes.FailedPrecondition, "does not replay to RTMR2")
}

// TestAttackIMAEntryUnextended: an entry appended to the list but not (yet)
// in RTMR2 is not served: register 3 stays at what RTMR2 vouches for.
func TestAttackIMAEntryUnextended(t *testing.T) {
	f := newIMAFixture(t)
	seed := refSeed(append([]refHost{}, f.hosts...), hostPolicy.Processes, hostPolicy.WithParameter)
	want, _ := refRegister(seed, f.entries, podUID)
	b, _ := cgEntry(t, cgpathP, "/not-extended")
	l, err := os.OpenFile(f.imaPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(b); err != nil {
		t.Fatal(err)
	}
	l.Close()
	m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.GetMeasurement().GetHash(), want) {
		t.Fatalf("register 3 = %x includes an entry RTMR2 lacks; want %x", m.GetMeasurement().GetHash(), want)
	}
}

// TestAttackIMAMimickedContainerCgroup: a process in a delegated cgroup
// below a user's session names a cgroup like the victim pod's; CCNP's
// pattern, which looks anywhere after "kubepods.slice", filed its entries
// under the pod. Here they count for no container.
func TestAttackIMAMimickedContainerCgroup(t *testing.T) {
	f := newIMAFixture(t)
	seed := refSeed(append([]refHost{}, f.hosts...), hostPolicy.Processes, hostPolicy.WithParameter)
	want, _ := refRegister(seed, f.entries, podUID)
	mimic := "/user.slice/user-1000.slice/user@1000.service/app.slice" + cgpathP
	if refKey(mimic) != podUID {
		t.Fatalf("CCNP's pattern files %q under %q, not the victim", mimic, refKey(mimic))
	}
	f.appendIMA(t, [2]string{mimic, "/tmp/evil"})
	m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.GetMeasurement().GetHash(), want) {
		t.Fatalf("register 3 = %x: the mimicking entry was filed under the pod (want %x)", m.GetMeasurement().GetHash(), want)
	}
}
