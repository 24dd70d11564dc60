package workloadsvc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// TestServeForgedCgroup performs the delegated-cgroup forgery against
// `ccnp serve`: a caller in a cgroup named like container A's or pod P's,
// created where a non-root user may create cgroups, asks for that
// container's register. The genuine layout is answered first; each forgery
// is refused and gets nothing of A's or P's.
func TestServeForgedCgroup(t *testing.T) {
	f := newFixture(t)
	f.setCgroup(t, os.Getpid(), cgA)
	m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: cidA, Index: 3})
	if err != nil {
		t.Fatalf("genuine container A: %v", err)
	}
	if len(m.GetMeasurement().GetHash()) == 0 {
		t.Fatal("genuine container A: empty register")
	}
	cases := []struct {
		name, cg, key string
		chown         string // directory (under the cgroup root) handed to uid 1000
	}{
		{"docker scope in a Delegate=yes service", "0::/system.slice/app.service/docker-" + cidA + ".scope\n", cidA, "system.slice/app.service"},
		{"pod tree in a Delegate=yes service", "0::/system.slice/app.service/kubepods.slice/kubepods-pod" + underscores(podUID) + ".slice/cri-containerd-" + cidP + ".scope\n", podUID, "system.slice/app.service"},
		{"pod where the kubelet puts it, below a chowned slice", cgP, podUID, "kubepods.slice/kubepods-besteffort.slice"},
		{"docker scope where docker puts it, in a chowned system.slice", cgA, cidA, "system.slice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.setCgroup(t, os.Getpid(), tc.cg)
			d := filepath.Join(f.cgroupRoot, tc.chown)
			if err := os.Chown(d, 1000, 1000); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chown(d, 0, 0) })
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: tc.key, Index: 3})
			wantCode(t, err, codes.PermissionDenied)
			_, err = f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
			wantCode(t, err, codes.PermissionDenied)
			t.Log(err)
		})
	}
}

// TestNewForeignProcfs: a procfs whose self is not this process (the
// host's /proc mounted into a container with its own PID namespace) would
// make every SO_PEERCRED PID name another process: New refuses it.
func TestNewForeignProcfs(t *testing.T) {
	f := newFixture(t)
	self := filepath.Join(f.procRoot, "self")
	if err := os.Remove(self); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strconv.Itoa(os.Getpid()+1), self); err != nil {
		t.Fatal(err)
	}
	_, err := New(f.ctx, Options{Provider: f.provider, RuntimeLogPath: f.logPath, ProcRoot: f.procRoot, CgroupRoot: f.cgroupRoot})
	if err == nil || !strings.Contains(err.Error(), "--host-root") || !strings.Contains(err.Error(), "PID namespace") {
		t.Fatalf("got %v, want an error naming --host-root and the PID namespace", err)
	}
	t.Log(err)
}
