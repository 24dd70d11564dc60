package serververifier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// simRTMR3 is the simulated TD's RTMR3 as a runtimelog.Register, so the
// test writes the log with the workload attestor's own Store.
type simRTMR3 struct{ p *sim.Provider }

func (r simRTMR3) Read(ctx context.Context) ([]byte, error) {
	_, rtmr, err := r.p.Measurements(ctx)
	return rtmr[3][:], err
}

func (r simRTMR3) Extend(ctx context.Context, d []byte) error {
	return r.p.ExtendRTMR(ctx, 3, [48]byte(d))
}

func openSimStore(t *testing.T, n *simNode, records int) *runtimelog.Store {
	t.Helper()
	s, _, err := runtimelog.OpenStore(context.Background(), n.runtimeLogPath(), simRTMR3{n.prov},
		runtimelog.StoreOptions{IMR: cctrusted.RTMR(3).IMR(), Alg: cctrusted.AlgSHA384, MaxRecords: records})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRuntimeLogIncompleteFact: a quota notice makes the node
// runtime:incomplete, a log-full notice runtime:log_full; the node attests
// either way, and a runtime policy that the recorded workloads alone would
// meet does not match, its mismatch naming the notice's record.
func TestRuntimeLogIncompleteFact(t *testing.T) {
	ctx := context.Background()
	n := newSimNode(t, sim.InitOptions{})
	allowed := workload(0xa1, "c1")
	cfg := n.serverConfig("", fmt.Sprintf(`policy "workloads" {
  enforce = false
  tee     = ["sim"]
  runtime {
    allowed_exe_sha256 = ["%x"]
    allowed_containers = ["c1"]
  }
}`, allowed.ExeSHA256))
	h := newHarness(t, nil).mustConfigure(cfg)
	a := n.agent(t, "")
	store := openSimStore(t, n, 4)
	attest := func(step string, want, wantNot []string) {
		t.Helper()
		attrs, err := h.attest(a)
		if err != nil {
			t.Fatalf("%s: the node must attest: %v", step, err)
		}
		// A simulated node's selectors all live under sim:.
		for _, s := range want {
			if s = "sim:" + s; !hasSelector(attrs, s) {
				t.Errorf("%s: selector %s missing from %v", step, s, attrs.GetSelectorValues())
			}
		}
		for _, s := range wantNot {
			if s = "sim:" + s; hasSelector(attrs, s) {
				t.Errorf("%s: selector %s present", step, s)
			}
		}
	}

	if _, err := store.Append(ctx, allowed); err != nil {
		t.Fatal(err)
	}
	attest("complete log", []string{"policy:workloads"}, []string{"runtime:incomplete:true", "runtime:log_full:true"})

	if err := store.NoteQuota(ctx, "uid:1000", time.Now()); err != nil {
		t.Fatal(err)
	}
	attest("quota notice", []string{"runtime:incomplete:true", "policy_warn:workloads"}, []string{"policy:workloads", "runtime:log_full:true"})
	if !strings.Contains(h.logs.String(), "the runtime log is incomplete since record 1: caller uid:1000 reached its quota") {
		t.Errorf("no mismatch names the quota notice:\n%s", h.logs.String())
	}

	if _, err := store.Append(ctx, allowed); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, allowed); !errors.Is(err, runtimelog.ErrFull) {
		t.Fatalf("a 4-record store took a fourth record that is no notice: %v", err)
	}
	attest("full log", []string{"runtime:incomplete:true", "runtime:log_full:true", "policy_warn:workloads", "runtime:exe:sha256:" + fmt.Sprintf("%x", allowed.ExeSHA256)}, []string{"policy:workloads"})
	if !strings.Contains(h.logs.String(), "the runtime log is full since record 3") {
		t.Errorf("no mismatch says the log is full:\n%s", h.logs.String())
	}
}

// TestRuntimeLogIncompleteIncremental: a notice in the runtime suffix of
// an incremental attestation gives the same selectors as a full replay, and
// no checkpoint is issued over it (a checkpoint carries no notices), so
// the next attestation replays the notice again.
func TestRuntimeLogIncompleteIncremental(t *testing.T) {
	ctx := context.Background()
	n := newCkptNode(t)
	h := newHarness(t, nil).mustConfigure(checkpointConfig(n, writeKey(t, "k1")))
	a := n.agent(t)
	wantIssued(t, h.mustAttestLoop(a, nil))

	store := openSimStore(t, n.simNode, 0)
	if err := store.NoteQuota(ctx, "pod:5c9a7f3e", time.Now()); err != nil {
		t.Fatal(err)
	}
	second := h.mustAttestLoop(a, nil)
	if r := second.nonceRounds(); len(r) != 1 || r[0].GetCheckpoint() == nil {
		t.Fatalf("not incremental: %v", r)
	}
	if !hasSelector(second.attrs, "sim:runtime:incomplete:true") {
		t.Fatalf("incremental attestation lost the quota notice: %v", second.attrs.GetSelectorValues())
	}
	if last := second.challenges[len(second.challenges)-1]; len(last.GetCheckpoint().GetToken()) != 0 {
		t.Fatal("a checkpoint was issued over an incomplete runtime log")
	}
	third := h.mustAttestLoop(a, nil)
	if !hasSelector(third.attrs, "sim:runtime:incomplete:true") {
		t.Fatalf("the next attestation lost the notice: %v", third.attrs.GetSelectorValues())
	}
	full := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	ref := full.mustAttestLoop(a, nil)
	if !slices.Equal(second.attrs.GetSelectorValues(), ref.attrs.GetSelectorValues()) {
		t.Fatalf("incremental selectors\n%v\ndiffer from a full replay's\n%v", second.attrs.GetSelectorValues(), ref.attrs.GetSelectorValues())
	}
}

// TestRuntimeCapacityKeepsNodesAttestable: the largest runtime log capacity
// an agent can be configured with, one selector per record, leaves room
// under MaxSelectors for everything else a node gets.
func TestRuntimeCapacityKeepsNodesAttestable(t *testing.T) {
	if conf.MaxRuntimeLogMaxRecords != runtimelog.MaxCapacityRecords {
		t.Fatalf("conf allows %d records, the store %d", conf.MaxRuntimeLogMaxRecords, runtimelog.MaxCapacityRecords)
	}
	if headroom := MaxSelectors - runtimelog.MaxCapacityRecords; headroom < 256 {
		t.Fatalf("a full log leaves %d selectors for the rest of the node", headroom)
	}
	if runtimelog.MaxCapacityRecords >= runtimelog.DefaultMaxRecords || runtimelog.MaxCapacityBytes >= runtimelog.DefaultMaxBytes {
		t.Fatal("the store's capacity is not below what the server reads")
	}
}
