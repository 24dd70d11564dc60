package serververifier

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// appendFile appends one ima-ng entry for name with digest d, extended
// into RTMR2 as the kernel does.
func (p *imaSim) appendFile(t testing.TB, name string, d [32]byte) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, td := imaEntry(name, d)
	p.list = append(p.list, e...)
	if err := p.ExtendRTMR(context.Background(), 2, sha512.Sum384(td)); err != nil {
		t.Fatal(err)
	}
	p.n++
}

// imaAllowBlock is an ima block allowing the first n files appendIMA
// writes (/usr/bin/file-<i> with SHA-512/256 of its name), and extra
// lines.
func imaAllowBlock(n int, extra string) string {
	var b strings.Builder
	b.WriteString("  ima {\n" + extra)
	for i := range n {
		name := fmt.Sprintf("/usr/bin/file-%d", i)
		d := sha512.Sum512_256([]byte(name))
		fmt.Fprintf(&b, "    file %q { digests = [%q] }\n", name, hex.EncodeToString(d[:]))
	}
	b.WriteString("  }\n")
	return b.String()
}

// imaPolicyConfig is a server configuration requiring the sim policy
// "runtime" made of block.
func imaPolicyConfig(n *ckptNode, key, block string) string {
	return n.serverConfig("", key+"\nrequire_policy = true\npolicy \"runtime\" {\n  tee = [\"sim\"]\n"+block+"}\n")
}

const evilName = "/usr/bin/evil"

var evilDigest = [32]byte{0xee, 0xee}

// evilFinding is how the mismatch names the offending entry at index i.
func evilFinding(i int) string {
	return fmt.Sprintf("entry %d %s sha256:%s: not_in_policy", i, evilName, hex.EncodeToString(evilDigest[:]))
}

// TestIMAPolicyMatch: a node whose every IMA entry the runtime policy
// allows gets policy:<name>.
func TestIMAPolicyMatch(t *testing.T) {
	n := newCkptNode(t)
	h := newHarness(t, nil).mustConfigure(imaPolicyConfig(n, "", imaAllowBlock(50, "")))
	attrs, err := h.attest(n.agent(t))
	if err != nil {
		t.Fatalf("%v\n%s", err, h.logs.String())
	}
	if !hasSelector(attrs, "sim:policy:runtime") {
		t.Fatalf("no sim:policy:runtime in %v", attrs.GetSelectorValues())
	}
}

// TestIMAPolicyRejectsBinary: one binary outside the runtime policy fails
// it, and under require_policy the node is rejected with the entry named.
func TestIMAPolicyRejectsBinary(t *testing.T) {
	n := newCkptNode(t)
	n.ima.appendFile(t, evilName, evilDigest)
	h := newHarness(t, nil).mustConfigure(imaPolicyConfig(n, "", imaAllowBlock(50, "")))
	_, err := h.attest(n.agent(t))
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, `policy "runtime"`, "ima: "+evilFinding(50))
}

// TestIMAPolicyNoList: a policy with an ima block on a node that sends no
// IMA list does not match.
func TestIMAPolicyNoList(t *testing.T) {
	n := &ckptNode{simNode: newSimNode(t, sim.InitOptions{})} // no IMA list
	h := newHarness(t, nil).mustConfigure(imaPolicyConfig(n, "", imaAllowBlock(50, "")))
	_, err := h.attest(n.simNode.agent(t, ""))
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "ima: no IMA list")
}

// TestIMAPolicyWarnOnly: a warn-only ima block reports every offending
// entry in a WARN line and does not fail the policy.
func TestIMAPolicyWarnOnly(t *testing.T) {
	n := newCkptNode(t)
	n.ima.appendFile(t, evilName, evilDigest)
	n.ima.appendFile(t, "/usr/bin/evil2", evilDigest)
	h := newHarness(t, nil).mustConfigure(imaPolicyConfig(n, "", imaAllowBlock(50, "    mode = \"warn\"\n")))
	attrs, err := h.attest(n.agent(t))
	if err != nil {
		t.Fatalf("warn-only IMA policy rejected the node: %v", err)
	}
	if !hasSelector(attrs, "sim:policy:runtime") {
		t.Fatalf("no sim:policy:runtime in %v", attrs.GetSelectorValues())
	}
	lines := h.logs.Lines(t, "Warn-only IMA runtime policy found offending entries")
	if len(lines) != 1 {
		t.Fatalf("%d WARN lines:\n%s", len(lines), h.logs.String())
	}
	got := fmt.Sprint(lines[0]["offending"])
	for _, want := range []string{evilFinding(50), "entry 51 /usr/bin/evil2"} {
		if !strings.Contains(got, want) {
			t.Errorf("WARN line %q does not name %q", got, want)
		}
	}
}

// TestIMAPolicyFile: ima_policy_file holds Keylime JSON (detected) or an
// HCL ima block, and the file's errors name it.
func TestIMAPolicyFile(t *testing.T) {
	n := newCkptNode(t)
	digests := map[string]string{}
	for i := range 50 {
		name := fmt.Sprintf("/usr/bin/file-%d", i)
		d := sha512.Sum512_256([]byte(name))
		digests[name] = hex.EncodeToString(d[:])
	}
	var js strings.Builder
	js.WriteString(`{"meta": {"version": 1, "generator": 0}, "release": 0, "digests": {`)
	first := true
	for k, v := range digests {
		if !first {
			js.WriteString(",")
		}
		first = false
		fmt.Fprintf(&js, "%q: [%q]", k, v)
	}
	js.WriteString(`}, "excludes": [], "keyrings": {}, "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null}, "ima-buf": {}, "verification-keys": ""}`)
	dir := t.TempDir()
	for _, tc := range []struct{ name, content string }{
		{"keylime.json", "\n  " + js.String()},
		{"ima.hcl", "# golden\n" + imaAllowBlock(50, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			block := fmt.Sprintf("  ima_policy_file = %q\n", path)
			h := newHarness(t, nil).mustConfigure(imaPolicyConfig(n, "", block))
			attrs, err := h.attest(n.agent(t))
			if err != nil {
				t.Fatalf("%v\n%s", err, h.logs.String())
			}
			if !hasSelector(attrs, "sim:policy:runtime") {
				t.Fatalf("no sim:policy:runtime in %v", attrs.GetSelectorValues())
			}
		})
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"digests": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, nil)
	err := h.configure(imaPolicyConfig(n, "", fmt.Sprintf("  ima_policy_file = %q\n", bad)))
	if err == nil || !strings.Contains(err.Error(), `policy "runtime": ima_policy_file`) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad policy file: %v", err)
	}
}

// TestIMAPolicyIncremental: the checkpoint carries the verdict, so a
// re-attestation appraises only the new entries (the per-result counters
// grow by the suffix alone), accepts an allowed suffix and rejects an
// offending one, naming the entry by its index in the whole list.
func TestIMAPolicyIncremental(t *testing.T) {
	n := newCkptNode(t)
	fm := newFakeMetrics()
	h := &harness{t: t, plugin: New(), logs: &simtest.LogBuffer{}, clock: &simtest.Clock{}}
	h.plugin.now = h.clock.Now
	h.client, h.config = simtest.ServeServer(t, h.plugin, h.logs, hclog.Debug, metricsv1.MetricsServiceServer(fm))
	h.mustConfigure(imaPolicyConfig(n, writeKey(t, "k1"), imaAllowBlock(53, "")))
	a := n.agent(t)
	const digestCount = `spire_server_ccnp_ima_entries{policy="runtime",result="digest"}`

	first := h.mustAttestLoop(a, nil)
	wantFull(t, first)
	wantIssued(t, first)
	fm.waitFor(t, "50 entries appraised", func(f *fakeMetrics) bool { return f.counters[digestCount] == 50 })

	n.ima.appendIMA(t, 3)
	second := h.mustAttestLoop(a, nil)
	if r := second.nonceRounds(); len(r) != 1 || r[0].GetCheckpoint() == nil {
		t.Fatalf("re-attestation was not incremental: %v\n%s", r, h.logs.String())
	}
	if !hasSelector(second.attrs, "sim:policy:runtime") {
		t.Fatalf("allowed suffix: %v", second.attrs.GetSelectorValues())
	}
	// 53, not 103: the prefix was not appraised again.
	fm.waitFor(t, "3 more entries appraised", func(f *fakeMetrics) bool { return f.counters[digestCount] == 53 })

	n.ima.appendFile(t, evilName, evilDigest)
	_, err := h.attestLoop(a, nil)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "ima: "+evilFinding(53))
	if strings.Contains(h.logs.String(), "falls back to a full replay") {
		t.Fatalf("the offending suffix was not appraised incrementally:\n%s", h.logs.String())
	}
	fm.waitFor(t, "the offending entry counted", func(f *fakeMetrics) bool {
		return f.counters[`spire_server_ccnp_ima_entries{policy="runtime",result="failed"}`] == 1
	})
}

// TestIMAPolicyChangedFallsBack: a checkpoint whose verdict is of another
// policy (the policy changed since) is not continued: the server replays
// and appraises the whole list.
func TestIMAPolicyChangedFallsBack(t *testing.T) {
	n := newCkptNode(t)
	key := writeKey(t, "k1")
	h := newHarness(t, nil).mustConfigure(imaPolicyConfig(n, key, imaAllowBlock(50, "")))
	a := n.agent(t)
	wantIssued(t, h.mustAttestLoop(a, nil))

	// Same name, another content: the fingerprint differs.
	h.mustConfigure(imaPolicyConfig(n, key, imaAllowBlock(50, "    violations = \"allow\"\n")))
	n.ima.appendIMA(t, 1)
	// Entry 50 (file-50) is outside the 50-file policy: the full appraisal
	// after the fallback sees it.
	_, err := h.attestLoop(a, nil)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "ima: entry 50 /usr/bin/file-50 ")
	if !strings.Contains(h.logs.String(), "cannot resume the ima appraisal") {
		t.Fatalf("no fallback for the changed policy:\n%s", h.logs.String())
	}
}

// TestAttackIMAOffenderHiddenBeforeCheckpoint is the attack "an offending
// entry hidden before a checkpoint": the node ran a binary outside the
// runtime policy, was still accepted on another policy (so a checkpoint was
// issued), and now sends only a clean suffix, hoping the server appraises
// the suffix alone. The checkpoint carries the verdict, failures included:
// the runtime policy still fails, naming the entry before the checkpoint,
// and once it is the only policy the node is rejected, without a full
// replay.
func TestAttackIMAOffenderHiddenBeforeCheckpoint(t *testing.T) {
	n := newCkptNode(t)
	n.ima.appendFile(t, evilName, evilDigest)
	key := writeKey(t, "k1")
	both := imaPolicyConfig(n, key, imaAllowBlock(53, "")) + "policy \"base\" {\n  tee = [\"sim\"]\n}\n"
	h := newHarness(t, nil).mustConfigure(both)
	a := n.agent(t)
	first := h.mustAttestLoop(a, nil)
	wantIssued(t, first)
	if hasSelector(first.attrs, "sim:policy:runtime") || !hasSelector(first.attrs, "sim:policy:base") {
		t.Fatalf("first attestation: %v", first.attrs.GetSelectorValues())
	}

	n.ima.appendIMA(t, 2) // file-51, file-52: allowed
	second := h.mustAttestLoop(a, nil)
	if r := second.nonceRounds(); len(r) != 1 || r[0].GetCheckpoint() == nil {
		t.Fatalf("re-attestation was not incremental: %v", r)
	}
	if hasSelector(second.attrs, "sim:policy:runtime") {
		t.Fatalf("a clean suffix cleared the offending entry before the checkpoint: %v", second.attrs.GetSelectorValues())
	}

	h.mustConfigure(imaPolicyConfig(n, key, imaAllowBlock(53, "")))
	n.ima.appendIMA(t, 1)
	_, err := h.attestLoop(a, nil)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "ima: "+evilFinding(50)+" (and")
	if strings.Contains(h.logs.String(), "falls back to a full replay") {
		t.Fatalf("expected the incremental path:\n%s", h.logs.String())
	}
}
