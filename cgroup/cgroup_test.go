package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Real /proc/<pid>/cgroup contents, as posted in public issue threads (the
// source is in each case's comment). Long files are cut to the lines that
// matter plus the v2 line where the original had one; nothing is invented.
func TestIdentifyReal(t *testing.T) {
	tests := []struct {
		name string
		file string
		want Identity
	}{
		{
			// containerd, systemd cgroup driver on cgroup v1: runc's unconverted
			// "slice:prefix:id" path. github.com/open-telemetry/opentelemetry-java/issues/4507
			name: "containerd v1 systemd colon form",
			file: "11:perf_event:/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459\n" +
				"10:blkio:/system.slice/containerd.service/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459\n",
			want: Identity{
				Path:        "/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459",
				ContainerID: "ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459",
				PodUID:      "0125ec2f-b64a-4868-8f5b-94b56cbab864",
				Runtime:     RuntimeContainerd,
			},
		},
		{
			// containerd on kind (cgroup v2, kubelet cgroup root /kubelet):
			// github.com/containerd/nri/pull/227
			name: "containerd v2 systemd kind",
			file: "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope\n",
			want: Identity{
				Path:        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope",
				ContainerID: "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e",
				PodUID:      "1e597579-417e-482f-bf65-5fe170c3aebd",
				Runtime:     RuntimeContainerd,
			},
		},
		{
			// CRI-O, systemd driver, cgroup v1: github.com/opencontainers/runc/issues/4620
			name: "cri-o v1 systemd",
			file: "13:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope\n" +
				"11:files:/\n",
			want: Identity{
				Path:        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
				ContainerID: "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c",
				PodUID:      "a5c1f8d5-1919-434d-add7-4afaafdaef89",
				Runtime:     RuntimeCRIO,
			},
		},
		{
			// Docker as the kubelet's runtime, systemd driver, v1:
			// github.com/lxc/lxc/issues/3890
			name: "docker kubernetes v1 systemd",
			file: "12:rdma:/\n" +
				"11:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/docker-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope\n",
			want: Identity{
				Path:        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/docker-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope",
				ContainerID: "d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98",
				PodUID:      "7d4424e6-bb13-42f4-a47a-45a4828bf54d",
				Runtime:     RuntimeDocker,
			},
		},
		{
			// Docker, cgroupfs driver, v1: github.com/d2iq-archive/kubernetes-mesos/issues/565
			name: "docker v1 cgroupfs",
			file: "12:name=systemd:/\n" +
				"11:hugetlb:/docker/611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1\n" +
				"10:net_prio:/docker/611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1\n",
			want: Identity{
				Path:        "/docker/611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1",
				ContainerID: "611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1",
				Runtime:     RuntimeDocker,
			},
		},
		{
			// Docker, systemd driver, cgroup v2 (Debian bullseye):
			// github.com/liske/needrestart/pull/234 shows the form
			// "0::/system.slice/docker-xxx.scope"; the ID is the one of the
			// v1 example above, the layout is the thread's.
			name: "docker v2 systemd",
			file: "0::/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope\n",
			want: Identity{
				Path:        "/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope",
				ContainerID: "611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1",
				Runtime:     RuntimeDocker,
			},
		},
		{
			// Rootful podman, v1 with the v2 line, systemd-in-container's
			// init.scope below the container: github.com/containers/podman/issues/10602
			name: "podman v1 machine.slice",
			file: "12:pids:/machine.slice/libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope\n" +
				"1:name=systemd:/machine.slice/libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope/init.scope\n" +
				"0::/machine.slice/libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope\n",
			want: Identity{
				Path:        "/machine.slice/libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope",
				ContainerID: "2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24",
				Runtime:     RuntimePodman,
			},
		},
		{
			// Podman run as root under user@0.service (a delegated user
			// manager): github.com/containers/podman/issues/20423. Below
			// user@0.service names are the user's choice: no container.
			name: "podman under user manager",
			file: "0::/user.slice/user-0.slice/user@0.service/machine.slice/libpod-cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb.scope/container\n",
			want: Identity{
				Path: "/user.slice/user-0.slice/user@0.service/machine.slice/libpod-cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb.scope/container",
				Unit: "user@0.service",
			},
		},
		{
			// Podman with the cgroupfs manager: github.com/containers/podman/issues/7004
			// (CgroupParent "/libpod_parent/libpod-<id>").
			name: "podman cgroupfs",
			file: "4:memory:/libpod_parent/libpod-c3be953da46e015e93a9de37c547a7587a32d609fad3ca721135937833d94a1e\n",
			want: Identity{
				Path:        "/libpod_parent/libpod-c3be953da46e015e93a9de37c547a7587a32d609fad3ca721135937833d94a1e",
				ContainerID: "c3be953da46e015e93a9de37c547a7587a32d609fad3ca721135937833d94a1e",
				Runtime:     RuntimePodman,
			},
		},
		{
			// kubelet cgroupfs driver: github.com/siderolabs/talos/pull/3950
			// (cAdvisor ids /kubepods/besteffort/pod<uid>/<id>).
			name: "kubepods cgroupfs",
			file: "0::/kubepods/besteffort/pod18d34ce4-50c7-452c-9df8-53c4a3fdf363/a684bbdd0c4b6937b5ece9713bed661305ab0de570eb12b7c28a032aaf602937\n",
			want: Identity{
				Path:        "/kubepods/besteffort/pod18d34ce4-50c7-452c-9df8-53c4a3fdf363/a684bbdd0c4b6937b5ece9713bed661305ab0de570eb12b7c28a032aaf602937",
				ContainerID: "a684bbdd0c4b6937b5ece9713bed661305ab0de570eb12b7c28a032aaf602937",
				PodUID:      "18d34ce4-50c7-452c-9df8-53c4a3fdf363",
			},
		},
		{
			// Static pod (config hash as UID), containerd v2:
			// github.com/netdata/netdata/issues/4868 (tree listing).
			name: "static pod containerd",
			file: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod187bff14cccb94f179e943eacce55bb3.slice/cri-containerd-c203a2647ef1ad78e990157c50331f3b6ef0b03336cf08535d6bf7faa5421415.scope\n",
			want: Identity{
				Path:        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod187bff14cccb94f179e943eacce55bb3.slice/cri-containerd-c203a2647ef1ad78e990157c50331f3b6ef0b03336cf08535d6bf7faa5421415.scope",
				ContainerID: "c203a2647ef1ad78e990157c50331f3b6ef0b03336cf08535d6bf7faa5421415",
				PodUID:      "187bff14cccb94f179e943eacce55bb3",
				Runtime:     RuntimeContainerd,
			},
		},
		{
			// This machine's own hybrid layout (cgroup v1 + v2, a sandbox memory
			// cgroup named by a 32-hex id that is not a container ID).
			name: "hybrid host process",
			file: "9:name=systemd:/\n4:memory:/process_api/999046913594ba07c171c2bae45af956\n0::/\n",
			want: Identity{Path: "/process_api/999046913594ba07c171c2bae45af956"},
		},
		{
			// A podman unshare shell in the user's manager: github.com/containers/crun/issues/376
			name: "systemd user scope",
			file: "0::/user.slice/user-1000.slice/user@1000.service/user.slice/podman-6696.scope\n",
			want: Identity{Path: "/user.slice/user-1000.slice/user@1000.service/user.slice/podman-6696.scope", Unit: "user@1000.service"},
		},
		{
			name: "systemd service v2",
			file: "0::/system.slice/ssh.service\n",
			want: Identity{Path: "/system.slice/ssh.service", Unit: "ssh.service"},
		},
		{
			name: "login session v2",
			file: "0::/user.slice/user-1000.slice/session-3.scope\n",
			want: Identity{Path: "/user.slice/user-1000.slice/session-3.scope", Unit: "session-3.scope"},
		},
		{
			name: "root",
			file: "0::/\n",
			want: Identity{Path: "/"},
		},
		{
			name: "crio conmon is not the container",
			file: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope\n",
			want: Identity{
				Path:   "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
				PodUID: "a5c1f8d5-1919-434d-add7-4afaafdaef89",
				Unit:   "crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
			},
		},
		{
			// A container with a writable cgroupfs creating names that mimic
			// another pod's container below its own: the outer one counts.
			name: "nested mimic inside a container",
			file: "0::/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope/kubepods.slice/kubepods-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/cri-containerd-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope\n",
			want: Identity{
				Path:        "/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope/kubepods.slice/kubepods-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/cri-containerd-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope",
				ContainerID: "611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1",
				Runtime:     RuntimeDocker,
			},
		},
		{
			name: "pod name outside kubepods is ignored",
			file: "0::/system.slice/pod0125ec2f-b64a-4868-8f5b-94b56cbab864/ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459\n",
			want: Identity{Path: "/system.slice/pod0125ec2f-b64a-4868-8f5b-94b56cbab864/ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459"},
		},
		{
			name: "upper-case id is not an id",
			file: "0::/system.slice/docker-611A8D133D2C636E777745E4DBB1D5866A068FE0F6CC87033E52FE139FCA5BA1.scope\n",
			want: Identity{Path: "/system.slice/docker-611A8D133D2C636E777745E4DBB1D5866A068FE0F6CC87033E52FE139FCA5BA1.scope", Unit: "docker-611A8D133D2C636E777745E4DBB1D5866A068FE0F6CC87033E52FE139FCA5BA1.scope"},
		},
		{
			name: "path with spaces",
			file: "0::/system.slice/my unit.service\n",
			want: Identity{Path: "/system.slice/my unit.service", Unit: "my unit.service"},
		},
		{
			// Seen from another cgroup namespace (SPIRE's containerinfo tests
			// carry this form): leading ".." components are skipped.
			name: "outside the reader's cgroup namespace",
			file: "0::/../../system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope\n",
			want: Identity{
				Path:        "/../../system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope",
				ContainerID: "611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1",
				Runtime:     RuntimeDocker,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := Parse([]byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Identify(lines)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestIdentifyConflict(t *testing.T) {
	file := "2:cpu:/docker/611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1\n" +
		"1:memory:/docker/d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98\n"
	lines, err := Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Identify(lines); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Fatalf("got %v, want a disagreement error", err)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, file string }{
		{"empty", ""},
		{"no final newline", "0::/"},
		{"one colon", "0:/\n"},
		{"relative path", "0::system.slice\n"},
		{"bad id", "x::/\n"},
		{"negative id", "-1::/\n"},
		{"duplicate hierarchy (forged line)", "0::/user.slice\n0::/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope\n"},
		{"nul", "0::/a\x00b\n"},
		{"oversized", strings.Repeat("0", MaxSize+1)},
		{"too many lines", func() string {
			var b strings.Builder
			for i := range MaxLines + 1 {
				b.WriteString(strconv.Itoa(i))
				b.WriteString("::/\n")
			}
			return b.String()
		}()},
		{"blank line", "0::/\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.file)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzParseIdentify(f *testing.F) {
	f.Add([]byte("0::/system.slice/docker-611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1.scope\n"))
	f.Add([]byte("11:perf_event:/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459\n"))
	f.Add([]byte("9:name=systemd:/\n4:memory:/process_api/999046913594ba07c171c2bae45af956\n0::/\n"))
	f.Add([]byte("0::/kubepods/besteffort/pod18d34ce4-50c7-452c-9df8-53c4a3fdf363/a684bbdd0c4b6937b5ece9713bed661305ab0de570eb12b7c28a032aaf602937\n"))
	f.Add([]byte("0::/user.slice/user-0.slice/user@0.service/machine.slice/libpod-cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb.scope/container\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := Parse(b)
		if err != nil {
			return
		}
		id, err := Identify(lines)
		if err != nil {
			return
		}
		if id.ContainerID != "" && !isID(id.ContainerID) {
			t.Fatalf("container ID %q is not 64 hex digits", id.ContainerID)
		}
		if id.PodUID != "" {
			if _, ok := validUID(id.PodUID); !ok {
				t.Fatalf("pod UID %q", id.PodUID)
			}
		}
		if !strings.Contains(string(b), id.Path) {
			t.Fatalf("path %q is not from the input", id.Path)
		}
	})
}

// TestIdentifyAnchored: runtimes' names count only where runtimes put them.
// Each forged path copies a real layout into a place some non-root user may
// create cgroups in (a Delegate=yes service, a chowned subtree) or otherwise
// off its anchor; none may yield a container or pod.
func TestIdentifyAnchored(t *testing.T) {
	const (
		id   = "611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1"
		uidU = "7d4424e6_bb13_42f4_a47a_45a4828bf54d"
	)
	forged := []string{
		"/system.slice/app.service/docker-" + id + ".scope",
		"/system.slice/app.service/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
		"/system.slice/app.service/kubepods/besteffort/pod" + strings.ReplaceAll(uidU, "_", "-") + "/" + id,
		"/opt/docker/" + id,
		"/system.slice/app.service/machine.slice/libpod-" + id + ".scope",
		"/cri-containerd-" + id + ".scope",
		"/system.slice/cri-containerd-" + id + ".scope",
		"/kubepods.slice/kubepods-besteffort.slice/cri-containerd-" + id + ".scope",             // no pod in between
		"/kubepods.slice/other-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",           // not a kubepods slice
		"/kubepods.slice/kubepods-besteffort.slice/x/kubepods-besteffort-pod" + uidU + ".slice", // pod off its parent
		"/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
		"/system.slice/containerd.service/kubepods-besteffort-pod" + uidU + ".slice:cri-containerd:" + id,
		"/app.slice:cri-containerd:" + id,
	}
	for _, p := range forged {
		id, match := identifyPath(p)
		if id.ContainerID != "" || id.PodUID != "" || match >= 0 {
			t.Errorf("%s: got %+v (match %d), want no container or pod", p, id, match)
		}
	}
	// systemd puts units only in slices: a "unit" inside a service is the
	// delegated user's directory.
	if got := IdentifyPath("/system.slice/app.service/ssh.service"); got.Unit != "app.service" {
		t.Errorf("unit in a delegated service: %+v", got)
	}
}

// TestVerifyTree runs Tree.Verify on a fake cgroup filesystem: the
// process's directory must list it, and every directory above the
// container's must be root's and writable by root only.
func TestVerifyTree(t *testing.T) {
	const id = "611a8d133d2c636e777745e4dbb1d5866a068fe0f6cc87033e52fe139fca5ba1"
	rel := "system.slice/docker-" + id + ".scope"
	setup := func(t *testing.T) (Tree, []Line, Identity) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), nil, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, rel, "cgroup.procs"), []byte("1\n42\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		lines, _ := Parse([]byte("0::/" + rel + "\n"))
		got, err := Identify(lines)
		if err != nil || got.ContainerID != id {
			t.Fatalf("%+v %v", got, err)
		}
		return Tree{Root: root}, lines, got
	}
	tr, lines, got := setup(t)
	if err := tr.Verify(42, lines, got); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	if err := tr.Verify(43, lines, got); err == nil {
		t.Fatal("a pid the directory does not list was accepted")
	}
	// Verify vouches for the identity it is given, not just the path.
	other := got
	other.ContainerID = strings.Repeat("ab", 32)
	if err := tr.Verify(42, lines, other); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("an identity the path does not name: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	for _, tc := range []struct {
		name string
		dir  string
		uid  int
		mode os.FileMode
	}{
		{"root of the hierarchy not root's", "", 1000, 0o755},
		{"parent not root's", "system.slice", 1000, 0o755},
		{"parent group-writable", "system.slice", 0, 0o775},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, lines, got := setup(t)
			d := filepath.Join(tr.Root, tc.dir)
			if err := os.Chown(d, tc.uid, tc.uid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, tc.mode); err != nil {
				t.Fatal(err)
			}
			err := tr.Verify(42, lines, got)
			if !errors.Is(err, ErrUntrusted) {
				t.Fatalf("got %v, want ErrUntrusted", err)
			}
			t.Log(err)
		})
	}
	t.Run("the container's own directory may be the container's", func(t *testing.T) {
		// runc hands a user-namespaced container its own cgroup.
		tr, lines, got := setup(t)
		if err := os.Chown(filepath.Join(tr.Root, rel), 100000, 100000); err != nil {
			t.Fatal(err)
		}
		if err := tr.Verify(42, lines, got); err != nil {
			t.Fatal(err)
		}
	})
}
