package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
)

func parsePolicy(t *testing.T, src string) conf.Policy {
	t.Helper()
	ps, err := conf.ParsePolicies(src, "generated")
	if err != nil || len(ps) != 1 {
		t.Fatalf("generated policy does not parse (%v):\n%s", err, src)
	}
	return ps[0]
}

func TestPolicyGenerateFromQuote(t *testing.T) {
	code, out, errs := run(t, "policy", "generate", "--quote", cosQuote, "--ccel", cosCCEL, "--ccel-table", cosTable, "--name", "cos")
	if code != 0 {
		t.Fatal(errs)
	}
	p := parsePolicy(t, out)
	_, qout, _ := run(t, "quote", "inspect", cosQuote, "-o", "json")
	var q map[string]any
	readJSON(t, qout, &q)
	if p.Name != "cos" || !p.Enforce || len(p.MRTD) != 1 || p.MRTD[0] != q["mrtd"] {
		t.Fatalf("policy %+v does not pin the quote's MRTD %v", p, q["mrtd"])
	}
	for i := range 3 {
		if len(p.RTMR[i]) != 1 || p.RTMR[i][0] != q["rtmr"+itoa(i)] {
			t.Errorf("rtmr%d = %v, quote %v", i, p.RTMR[i], q["rtmr"+itoa(i)])
		}
	}
	if p.RTMR[3] != nil {
		t.Error("rtmr3 (runtime) pinned by default")
	}
	if p.SecureBoot == nil || len(p.KernelCmdline) != 1 || !strings.Contains(p.KernelCmdline[0], "vmlinuz") {
		t.Errorf("facts missing: secure boot %v, cmdline %v", p.SecureBoot, p.KernelCmdline)
	}
	if p.AllowDebug == nil || *p.AllowDebug {
		t.Error("allow_debug should be pinned to false for a non-debug TD")
	}

	// Written to a file with -o, and warn-only with chosen registers.
	f := filepath.Join(t.TempDir(), "p.hcl")
	if code, _, errs := run(t, "policy", "generate", "--quote", cosQuote, "--registers", "mrtd,rtmr3", "--warn-only", "-o", f); code != 0 {
		t.Fatal(errs)
	}
	p = parsePolicy(t, string(mustReadFile(t, f)))
	if p.Enforce || p.RTMR[0] != nil || len(p.RTMR[3]) != 1 {
		t.Errorf("policy %+v", p)
	}
}

func TestPolicyGenerateFromSimNode(t *testing.T) {
	dir := newSim(t)
	code, out, errs := run(t, "--tee", "sim", "--sim-dir", dir, "policy", "generate", "--from-node", "--name", "demo")
	if code != 0 {
		t.Fatal(errs)
	}
	p := parsePolicy(t, out)
	_, mout, _ := run(t, "--tee", "sim", "--sim-dir", dir, "measurements", "-o", "json")
	var ms struct {
		Measurements map[string]string `json:"measurements"`
	}
	readJSON(t, mout, &ms)
	if len(p.TEE) != 1 || p.TEE[0] != "sim" || p.MRTD[0] != ms.Measurements["mrtd"] || p.RTMR[2][0] != ms.Measurements["rtmr2"] {
		t.Fatalf("policy %+v, measurements %v", p, ms.Measurements)
	}
	ddir := newSim(t, "--debug")
	_, out, _ = run(t, "--tee", "sim", "--sim-dir", ddir, "policy", "generate", "--from-node")
	if p := parsePolicy(t, out); p.AllowDebug == nil || !*p.AllowDebug {
		t.Error("a debug sim's policy must say allow_debug = true")
	}
}

func TestPolicyGenerateFromTPM(t *testing.T) {
	s := swtpm.StartT(t)
	code, out, errs := run(t, "--tee", "tpm", "--tpm", s.Addr(), "--host-root", t.TempDir(), "policy", "generate", "--from-node", "--registers", "pcr0,pcr7")
	if code != 0 {
		t.Fatal(errs)
	}
	p := parsePolicy(t, out)
	if p.TEE[0] != "tpm" || len(p.PCRs) != 2 || len(p.PCRs[7][cctrusted.AlgSHA256]) != 1 {
		t.Fatalf("policy %+v", p)
	}
}

func TestPolicyGenerateRejects(t *testing.T) {
	gdc := "../testdata/ccel/gdc-tdx.bin"
	dir := t.TempDir()
	garbage := filepath.Join(dir, "g")
	os.WriteFile(garbage, []byte("nope"), 0o600)
	for _, args := range [][]string{
		{},
		{"--from-node", "--quote", cosQuote},
		{"--quote", garbage},
		{"--quote", cosQuote, "--ccel", gdc},
		{"--quote", cosQuote, "--registers", "pcr7"},
		{"--quote", cosQuote, "--registers", "rtmr9"},
		{"--quote", cosQuote, "--name", "bad name!"},
	} {
		code, _, errs := run(t, append([]string{"policy", "generate"}, args...)...)
		if code == 0 || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}
