package adversarial

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// imaRuntimeConfig requires the sim policy "runtime", whose ima block
// allows the boot aggregate and /usr/bin/app with the content "app".
func imaRuntimeConfig(n *simNode) string {
	hexOf := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	return n.serverConfig(fmt.Sprintf(`require_policy = true
policy "runtime" {
  tee = ["sim"]
  ima {
    file "boot_aggregate" { digests = [%q] }
    file "/usr/bin/app" { digests = [%q] }
  }
}
`, hexOf("boot"), hexOf("app")))
}

// TestIMARuntimePolicyOutsideBinary is the attack "the node ran a binary
// outside its runtime policy": the list is genuine (every entry extended
// into RTMR2, so the replay passes), and only the runtime policy can tell
// that /usr/bin/miner, or /usr/bin/app with other content, ran. First the
// list the policy allows is accepted with policy:runtime.
func TestIMARuntimePolicyOutsideBinary(t *testing.T) {
	boot := imaEntry(10, "ima-ng", dng("boot"), nng("boot_aggregate"))
	app := imaEntry(10, "ima-ng", dng("app"), nng("/usr/bin/app"))
	{
		n := newSimNode(t, sim.InitOptions{})
		a := n.agent(t)
		imaList(boot, app)(t, n, a)
		attrs, err := newServer(t, imaRuntimeConfig(n)).attest(a)
		if err != nil {
			t.Fatalf("list the policy allows rejected: %v", err)
		}
		if !slices.Contains(attrs.GetSelectorValues(), "sim:policy:runtime") {
			t.Fatalf("no sim:policy:runtime among %v", attrs.GetSelectorValues())
		}
	}
	d := sha256.Sum256([]byte("miner"))
	tampered := sha256.Sum256([]byte("app, patched"))
	for _, c := range []struct {
		name  string
		entry []byte
		want  string
	}{
		{"binary not in the policy", imaEntry(10, "ima-ng", dng("miner"), nng("/usr/bin/miner")),
			"entry 2 /usr/bin/miner sha256:" + hex.EncodeToString(d[:]) + ": not_in_policy"},
		{"allowed path, other content", imaEntry(10, "ima-ng", dng("app, patched"), nng("/usr/bin/app")),
			"entry 2 /usr/bin/app sha256:" + hex.EncodeToString(tampered[:]) + ": digest_not_allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newSimNode(t, sim.InitOptions{})
			a := n.agent(t)
			imaList(boot, app, c.entry)(t, n, a)
			s := newServer(t, imaRuntimeConfig(n))
			_, err := s.attest(a)
			s.want(t, err, reject(codes.PermissionDenied, "policy", `policy "runtime": ima: `+c.want))
		})
	}
}

// Two pods of one node, as their containers' cgroup paths name them
// (containerd, systemd driver, cgroup v2), for ima-cgpath entries.
const (
	podA    = "1e597579-417e-482f-bf65-5fe170c3aebd"
	podAcg  = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope"
	podBcg  = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/cri-containerd-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope"
	hostCg  = "/system.slice/containerd.service"
	appPath = "/usr/bin/app"
)

// cgEntry is an ima-cgpath entry (dep, cg-path, d-ng, n-ng: the template
// of CCNP's kernels) for a file with content run in the cgroup cg.
func cgEntry(cg, content, path string) []byte {
	return imaEntry(10, "ima-cgpath", nng("containerd"), nng(cg), dng(content), nng(path))
}

// podPolicies is a server configuration requiring one of the sim
// policies: "pod-a", scoped to pod A and allowing only /usr/bin/app with
// the content "app"; and, with node set, "node", the same allow list
// (and the boot aggregate) for the whole node.
func podPolicies(n *simNode, node bool) string {
	hexOf := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	cfg := fmt.Sprintf(`require_policy = true
policy "pod-a" {
  tee = ["sim"]
  ima {
    pod_uid = %q
    file %q { digests = [%q] }
  }
}
`, podA, appPath, hexOf("app"))
	if node {
		cfg += fmt.Sprintf(`policy "node" {
  tee = ["sim"]
  ima {
    file "boot_aggregate" { digests = [%q] }
    file %q { digests = [%q] }
  }
}
`, hexOf("boot"), appPath, hexOf("app"))
	}
	return n.serverConfig(cfg)
}

// TestAttackIMAPodPolicyOtherPodsEntries is the attack "one pod's entries
// decide another pod's runtime policy", over the plugin transport with a
// genuine ima-cgpath list (every entry extended into RTMR2):
//
//   - pod B runs a binary pod A's policy does not list: pod A's scoped
//     policy still matches (B's entry is out of its scope) while the
//     node-wide policy with the same allow list fails; a policy that
//     ignored scope would fail too, one that let B's entries count for A
//     would fail as well;
//   - pod A runs the same binary: pod A's policy fails, naming A's entry,
//     even though B runs exactly the allowed /usr/bin/app (B's allowed
//     entry does not satisfy A's policy for A's offending one).
func TestAttackIMAPodPolicyOtherPodsEntries(t *testing.T) {
	boot := imaEntry(10, "ima-cgpath", nng("kernel"), nng(hostCg), dng("boot"), nng("boot_aggregate"))
	t.Run("other pod's binary out of scope", func(t *testing.T) {
		n := newSimNode(t, sim.InitOptions{})
		a := n.agent(t)
		imaList(boot, cgEntry(podAcg, "app", appPath), cgEntry(podBcg, "miner", "/usr/bin/miner"))(t, n, a)
		attrs, err := newServer(t, podPolicies(n, true)).attest(a)
		if err != nil {
			t.Fatalf("pod A ran only what its policy allows, rejected: %v", err)
		}
		got := attrs.GetSelectorValues()
		if !slices.Contains(got, "sim:policy:pod-a") {
			t.Errorf("no sim:policy:pod-a among %v: pod B's entry counted against pod A's policy", got)
		}
		if slices.Contains(got, "sim:policy:node") {
			t.Errorf("sim:policy:node among %v: the node-wide policy passed /usr/bin/miner", got)
		}
	})
	t.Run("own pod's binary in scope", func(t *testing.T) {
		n := newSimNode(t, sim.InitOptions{})
		a := n.agent(t)
		imaList(boot, cgEntry(podBcg, "app", appPath), cgEntry(podAcg, "miner", "/usr/bin/miner"))(t, n, a)
		s := newServer(t, podPolicies(n, false))
		_, err := s.attest(a)
		d := sha256.Sum256([]byte("miner"))
		s.want(t, err, reject(codes.PermissionDenied, "policy",
			`policy "pod-a": ima: entry 2 /usr/bin/miner sha256:`+hex.EncodeToString(d[:])+": not_in_policy"))
	})
}

// TestIMARuntimePolicyTPM is TestIMARuntimePolicyOutsideBinary on a TPM
// node (swtpm): the list is replayed on PCR10 of the quote, the policy
// allows it (policy:runtime), then the node runs /usr/bin/miner, extends
// PCR10 as the kernel does and attests again: rejected, naming the entry.
func TestIMARuntimePolicyTPM(t *testing.T) {
	start := time.Now()
	n := startTPMNode(t)
	a := n.agent(t, "")
	p := tee.Unwrap(a.p.(tee.Provider)).(*tpm.Provider)
	n.ExtendIMA(t, p, slices.Concat(
		imaEntry(10, "ima-ng", dng("boot"), nng("boot_aggregate")),
		imaEntry(10, "ima-ng", dng("app"), nng("/usr/bin/app"))))
	hexOf := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	cfg := n.serverConfig(fmt.Sprintf(`require_policy = true
policy "runtime" {
  tee = ["tpm"]
  ima {
    file "boot_aggregate" { digests = [%q] }
    file "/usr/bin/app" { digests = [%q] }
  }
}
`, hexOf("boot"), hexOf("app")))
	attrs, err := newServer(t, cfg).attest(a)
	if err != nil {
		t.Fatalf("list the policy allows rejected: %v", err)
	}
	if !slices.Contains(attrs.GetSelectorValues(), "policy:runtime") {
		t.Fatalf("no policy:runtime among %v", attrs.GetSelectorValues())
	}
	n.ExtendIMA(t, p, imaEntry(10, "ima-ng", dng("miner"), nng("/usr/bin/miner")))
	s := newServer(t, cfg)
	_, err = s.attest(a)
	s.want(t, err, reject(codes.PermissionDenied, "policy",
		`policy "runtime": ima: entry 2 /usr/bin/miner sha256:`+hexOf("miner")+": not_in_policy"))
	t.Logf("swtpm start, two attestations: %v", time.Since(start))
}

// TestIMABootAggregateTPM: on a TPM node the server computes the
// boot_aggregate from the quoted PCRs, so a policy that does not list it
// accepts the kernel's, and rejects one the PCRs do not give. The expected
// digest is the kernel's rule (ima_calc_boot_aggregate, kernels >= 5.8 with
// the SHA-256 bank: SHA-256 over PCR0..9) applied here to the values the
// machine that recorded the firmware log reported (testdata/tpmlog,
// replayed into swtpm), not to anything the server computed.
func TestIMABootAggregateTPM(t *testing.T) {
	start := time.Now()
	h := sha256.New()
	for i := range 10 {
		v, err := hex.DecodeString(simtest.ExpectedPCR(t, i))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(v)
	}
	kernel := h.Sum(nil)
	h0to7 := sha256.New()
	for i := range 8 {
		v, _ := hex.DecodeString(simtest.ExpectedPCR(t, i))
		h0to7.Write(v)
	}
	boot := func(d []byte) []byte {
		return imaEntry(10, "ima-ng", append([]byte("sha256:\x00"), d...), nng("boot_aggregate"))
	}
	hexOf := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	run := func(t *testing.T, aggregate []byte) (*server, error) {
		n := startTPMNode(t)
		a := n.agent(t, "")
		n.ExtendIMA(t, tee.Unwrap(a.p.(tee.Provider)).(*tpm.Provider), slices.Concat(boot(aggregate),
			imaEntry(10, "ima-ng", dng("app"), nng("/usr/bin/app"))))
		s := newServer(t, n.serverConfig(fmt.Sprintf(`require_policy = true
policy "runtime" {
  tee = ["tpm"]
  ima {
    file "/usr/bin/app" { digests = [%q] }
  }
}
`, hexOf("app"))))
		attrs, err := s.attest(a)
		if err == nil && !slices.Contains(attrs.GetSelectorValues(), "policy:runtime") {
			t.Fatalf("accepted without policy:runtime: %v", attrs.GetSelectorValues())
		}
		return s, err
	}
	t.Run("kernel's aggregate", func(t *testing.T) {
		if _, err := run(t, kernel); err != nil {
			t.Fatalf("the boot_aggregate of the quoted PCRs rejected: %v", err)
		}
	})
	for _, c := range []struct {
		name      string
		aggregate []byte
	}{
		{"PCR0..7 only in sha256", h0to7.Sum(nil)},
		{"zeros (no TPM used)", make([]byte, 32)},
		{"another boot", append(slices.Clone(kernel[:31]), kernel[31]^1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := run(t, c.aggregate)
			s.want(t, err, reject(codes.PermissionDenied, "policy",
				`policy "runtime": ima: entry 0 boot_aggregate sha256:`+hex.EncodeToString(c.aggregate)+": not_in_policy"))
		})
	}
	t.Logf("four swtpm nodes and attestations: %v", time.Since(start))
}
