package adversarial

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// TestSimNodeVsHardwarePolicy: a simulated TD attests to a server that
// also accepts the simulator (a staging server, a misconfigured one) and
// whose golden policy, written for hardware, has no tee list. Its MRTD is
// even on the allow-list. The sim node must neither match the policy nor
// pass require_policy, and none of its selectors may equal one that an
// entry written for hardware uses.
func TestSimNodeVsHardwarePolicy(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	golden := fmt.Sprintf("policy \"golden\" {\n  mrtd = [%q]\n}\n", hex.EncodeToString(sim.DefaultMRTD()))

	t.Run("require_policy", func(t *testing.T) {
		s := newServer(t, n.serverConfig("require_policy = true\n"+golden))
		_, err := s.attest(n.agent(t))
		s.want(t, err, reject(codes.PermissionDenied, appraisal.CheckPolicy,
			`policy "golden": tee: node is simulated; a policy matches a sim node only when its tee list names "sim"`))
	})

	t.Run("selectors", func(t *testing.T) {
		n.RunWorkloads(t, workload(0))
		simOnly := "policy \"simonly\" {\n  tee = [\"sim\"]\n}\n"
		s := newServer(t, n.serverConfig(golden+simOnly))
		attrs, err := s.attest(n.agent(t))
		if err != nil {
			t.Fatalf("sim node without require_policy: %v", err)
		}
		got := attrs.GetSelectorValues()
		// What registration entries written for hardware select on; a TDX
		// node with the same facts has exactly these.
		hardware := []string{
			"policy:golden", "policy:simonly", "boot:secure_boot:false", "boot:bootloader:grub",
			"runtime:exe:sha256:" + hex.EncodeToString(workload(0).ExeSHA256),
			"tdx:mrtd:" + hex.EncodeToString(sim.DefaultMRTD()),
		}
		for _, h := range hardware {
			if slices.Contains(got, h) {
				t.Errorf("a simulated node carries the hardware selector %s", h)
			}
		}
		for _, v := range got {
			if v != "tee:sim" && !strings.HasPrefix(v, "sim:") {
				t.Errorf("a simulated node carries %s, outside sim:", v)
			}
		}
		for _, w := range []string{"sim:policy:simonly", "sim:boot:bootloader:grub", "sim:mrtd:" + hex.EncodeToString(sim.DefaultMRTD()),
			"sim:runtime:exe:sha256:" + hex.EncodeToString(workload(0).ExeSHA256)} {
			if !slices.Contains(got, w) {
				t.Errorf("%s missing from %v", w, got)
			}
		}
		if slices.Contains(got, "sim:policy:golden") {
			t.Errorf("the sim node matched the policy without a tee list: %v", got)
		}
	})
}

// violation is a binary ima-ng violation entry (ToMToU, open-writers) as
// the kernel writes one: an all-zero template hash; the template data names
// a file the kernel did not measure, and RTMR2 gets 0xFF.
func violation(name string) []byte {
	e := imaEntry(10, "ima-ng", append([]byte("sha256:\x00"), make([]byte, 32)...), nng(name))
	clear(e[4:24])
	return e
}

// TestIMAViolationsWithheld: a node whose IMA list carries violation
// entries replays it honestly (the kernel extended 0xFF for each) and
// would get ima:verified:true although the files behind the violations
// were never hashed. The server counts them, says ima:violations:<n> and
// withholds ima:verified:true unless allow_ima_violations is set.
func TestIMAViolationsWithheld(t *testing.T) {
	boot := imaEntry(10, "ima-ng", dng("boot"), nng("boot_aggregate"))
	list := bytes.Join([][]byte{boot, violation("/usr/bin/rewritten"), imaEntry(10, "ima-ng", dng("a"), nng("/usr/bin/a")), violation("/etc/shadow")}, nil)
	for _, tc := range []struct {
		name   string
		config string
		want   []string
		absent []string
	}{
		{"default", "", []string{"sim:ima:violations:2"}, []string{"sim:ima:verified:true"}},
		{"allow_ima_violations", "allow_ima_violations = true\n", []string{"sim:ima:violations:2", "sim:ima:verified:true"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newSimNode(t, sim.InitOptions{})
			a := n.agent(t)
			imaList(list)(t, n, a)
			attrs, err := newServer(t, n.serverConfig(tc.config)).attest(a)
			if err != nil {
				t.Fatalf("a replaying list with violations was rejected: %v", err)
			}
			for _, w := range tc.want {
				if !slices.Contains(attrs.GetSelectorValues(), w) {
					t.Errorf("%s missing from %v", w, attrs.GetSelectorValues())
				}
			}
			for _, w := range tc.absent {
				if slices.Contains(attrs.GetSelectorValues(), w) {
					t.Errorf("%s for a list with violations", w)
				}
			}
		})
	}
	// The violation entries are what the list says they are: with their
	// template hash made up, they are no longer violations and the list no
	// longer replays.
	t.Run("violation disguised as a measurement", func(t *testing.T) {
		n := newSimNode(t, sim.InitOptions{})
		a := n.agent(t)
		imaList(list)(t, n, a)
		disguised := bytes.Clone(list)
		binary.LittleEndian.PutUint32(disguised[len(boot)+4:], 1) // a non-zero template hash
		a.Mutate = func(e *evidencepb.Evidence) {
			e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, disguised)
		}
		s := newServer(t, n.serverConfig(""))
		_, err := s.attest(a)
		s.want(t, err, reject(codes.InvalidArgument, appraisal.CheckIMAReplay, "template hash"))
	})
}

// TestEvictedTDReturnsUnderNewInstanceID: a TD chooses its instance ID, so
// a TD whose agent was evicted or banned deletes its instance ID file and
// attests again as a new agent. With an agent path built from MRCONFIGID,
// which the VMM sets and the quote signs, it comes back under the same
// agent ID whatever instance ID it names, as does a second TD the cloud
// gave the same identity; a TD with another MRCONFIGID gets another ID, and
// one whose VMM set none is refused rather than given a shared ID.
func TestEvictedTDReturnsUnderNewInstanceID(t *testing.T) {
	cfgID := bytes.Repeat([]byte{0xc1}, 48)
	n := newSimNode(t, sim.InitOptions{MRConfigID: cfgID})
	template := "agent_path_template = \"/spire/agent/ccnp/{{ .TEE }}/vm/{{ .MRConfigID }}\"\n"
	byQuote := newServer(t, n.serverConfig(template))
	byInstance := newServer(t, n.serverConfig(""))
	want := "spiffe://example.org/spire/agent/ccnp/sim/vm/" + hex.EncodeToString(cfgID)

	attest := func(s *server, n *simNode) string {
		t.Helper()
		attrs, err := s.attest(n.agent(t))
		if err != nil {
			t.Fatal(err)
		}
		return attrs.GetSpiffeId()
	}
	before, defBefore := attest(byQuote, n), attest(byInstance, n)
	// Evicted: the TD forgets its instance ID and makes a new one.
	if err := os.Remove(filepath.Join(n.Base, "instance_id")); err != nil {
		t.Fatal(err)
	}
	after, defAfter := attest(byQuote, n), attest(byInstance, n)
	t.Logf("default template: %s, then %s; mrconfigid template: %s, then %s", defBefore, defAfter, before, after)
	if defBefore == defAfter {
		t.Fatalf("the default template kept the agent ID across a new instance ID (%s): the test no longer shows the hole", defAfter)
	}
	if before != want || after != want {
		t.Fatalf("agent IDs %s then %s, want %s both times", before, after, want)
	}
	// Another TD, the same VMM-set identity, its own instance ID.
	if got := attest(byQuote, n.cloneNode(t)); got != want {
		t.Errorf("a TD with the same mrconfigid got %s, want %s", got, want)
	}
	// A hello naming another instance ID no longer matches the quote's
	// binding; it cannot move the agent ID.
	a := n.agent(t)
	a.Hello = func(genuine []byte) []byte {
		return bytes.Replace(genuine, []byte(readInstanceID(t, n)), []byte(strings.Repeat("e", len(readInstanceID(t, n)))), 1)
	}
	_, err := byQuote.attest(a)
	byQuote.want(t, err, reject(codes.PermissionDenied, appraisal.CheckBinding))

	other := newSimNode(t, sim.InitOptions{MRConfigID: bytes.Repeat([]byte{0xc2}, 48)})
	if got := attest(newServer(t, other.serverConfig(template)), other); got == want {
		t.Errorf("a TD with another mrconfigid got the same agent ID %s", got)
	}
	none := newSimNode(t, sim.InitOptions{})
	s := newServer(t, none.serverConfig(template))
	_, err = s.attest(none.agent(t))
	s.want(t, err, reject(codes.PermissionDenied, appraisal.CheckAgentID, ".MRConfigID is all zero"))
}

func readInstanceID(t *testing.T, n *simNode) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Base, "instance_id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
