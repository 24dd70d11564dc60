package workloadattestor

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/workloadattestor/ccnpimr"
)

// Expected per-container IMRs of testdata/ima/cgpath.{ascii,bin}, computed
// with Python from the fixture generator, not from this code:
//
//	gen = testdata/ima/gen.py loaded as a module; imrs = {}
//	for e in gen.cgpath_entries():  # skip the violation and non-pod paths
//	    uid = pod UID from cg-path ("_" -> "-")
//	    d = sha384(e.template_data("<"))
//	    imrs[uid] = sha384(imrs.get(uid, bytes(48)) + d)
const (
	pod1IMR = "368acdb103aab772a13957afdec9a21577d8ae7da4aca2524977c5b726f034a06044807384a532a1fceb637c9343a6fd"
	pod2IMR = "4bc5fd0aac19723ead94d64ba180e49431130210fc53d56511651d4191583ea46e16afbb910c200d057f1cd50b3ff845"
)

func TestContainerIMR(t *testing.T) {
	for _, format := range []string{"ascii", "bin"} {
		t.Run(format, func(t *testing.T) {
			list, err := os.ReadFile(filepath.Join("..", "testdata", "ima", "cgpath."+format))
			if err != nil {
				t.Fatal(err)
			}
			fp := newFakeProc(t, 4300, "/bin/sleep")
			fp.setCgroup(t, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice/cri-containerd-"+strings.Repeat("ab", 32)+".scope")
			const rel = "sys/kernel/security/ima/runtime_measurements"
			logPath := filepath.Join(fp.root, rel)
			if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(logPath, list, 0o644); err != nil {
				t.Fatal(err)
			}
			c := serve(t, New())
			c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"\nima_log_path = \"/%s\"\n", fp.root, rel))
			for range 2 { // the second time from the kept state
				got, err := c.attest(4300)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(got, "ima:container_imr:"+pod1IMR) {
					t.Fatalf("got %q", got)
				}
			}
			// The other pod.
			fp.setCgroup(t, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod66666666_7777_8888_9999_000000000000.slice/cri-containerd-"+strings.Repeat("cd", 32)+".scope")
			if got, _ := c.attest(4300); !slices.Contains(got, "ima:container_imr:"+pod2IMR) {
				t.Fatalf("pod 2: %q", got)
			}
			// A pod the list does not mention: no selector.
			fp.setCgroup(t, "kubepods.slice/kubepods-pod99999999_7777_8888_9999_000000000000.slice/cri-containerd-"+strings.Repeat("ef", 32)+".scope")
			if got, _ := c.attest(4300); hasPrefix(got, "ima:") {
				t.Fatalf("unknown pod: %q", got)
			}
			// A corrupt list: the selector goes, the attestation stays.
			if err := os.WriteFile(logPath, list[:len(list)/2+3], 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := c.attest(4300)
			if err != nil || hasPrefix(got, "ima:") {
				t.Fatalf("corrupt list: %q %v", got, err)
			}
		})
	}
}

// TestContainerIMRGrowingList: a list that grows is parsed incrementally
// and ends at the same value.
func TestContainerIMRGrowingList(t *testing.T) {
	list, err := os.ReadFile(filepath.Join("..", "testdata", "ima", "cgpath.ascii"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "list")
	x := newIMAIndex(path)
	lines := strings.SplitAfter(string(list), "\n")
	for i := 1; i <= len(lines); i++ {
		if err := os.WriteFile(path, []byte(strings.Join(lines[:i], "")), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := x.containerIMR(t.Context(), "11111111-2222-3333-4444-555555555555"); err != nil {
			t.Fatalf("after %d lines: %v", i, err)
		}
	}
	v, _ := x.containerIMR(t.Context(), "11111111-2222-3333-4444-555555555555")
	if fmt.Sprintf("%x", v) != pod1IMR {
		t.Fatalf("incremental %x, want %s", v, pod1IMR)
	}
}

// TestContainerIMRIsCCNPRegisterFromZero: the selector is ccnpimr's
// register (the one `ccnp serve` serves at index 3) started from zero, not
// from a host seed: one chain for both, and a selector that does not change
// with the node's daemons' command lines.
func TestContainerIMRIsCCNPRegisterFromZero(t *testing.T) {
	list := filepath.Join("..", "testdata", "ima", "cgpath.bin")
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	fp := newFakeProc(t, 4300, "/bin/sleep")
	fp.setCgroup(t, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice/cri-containerd-"+strings.Repeat("ab", 32)+".scope")
	const rel = "ima/binary_runtime_measurements"
	if err := os.MkdirAll(filepath.Join(fp.root, "ima"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fp.root, rel), b, 0o644); err != nil {
		t.Fatal(err)
	}
	c := serve(t, New())
	c.configure(t, fmt.Sprintf("host_root = %q\nmeasure = \"off\"\nima_log_path = \"/%s\"\n", fp.root, rel))
	got, err := c.attest(4300)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := ccnpimr.NewIndex(list, 0).Snapshot(t.Context(), "11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatal(err)
	}
	zero, err := snap.Register(make([]byte, ccnpimr.Alg.Size()))
	if err != nil {
		t.Fatal(err)
	}
	seeded, err := snap.Register(bytes.Repeat([]byte{1}, ccnpimr.Alg.Size()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "ima:container_imr:"+hex.EncodeToString(zero)) || hex.EncodeToString(zero) != pod1IMR {
		t.Fatalf("selectors %q; ccnpimr's register from zero is %x (Python: %s)", got, zero, pod1IMR)
	}
	if slices.Contains(got, "ima:container_imr:"+hex.EncodeToString(seeded)) {
		t.Fatalf("the selector is a seeded register")
	}
}
