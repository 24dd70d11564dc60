package policy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func ptr[T any](v T) *T { return &v }

// Register values used in the facts: repeated bytes, so the hex in the
// policies below can be checked by eye.
var (
	mrtd  = bytes.Repeat([]byte{0xaa}, 48)
	pcr7  = bytes.Repeat([]byte{0x77}, 32)
	exeA  = bytes.Repeat([]byte{0x0a}, 32)
	exeB  = bytes.Repeat([]byte{0x0b}, 32)
	hexOf = func(b byte, n int) string {
		return strings.Repeat(string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15]), n)
	}
	hexA48 = hexOf(0xaa, 48)
)

func tdxFacts() *Facts {
	f := &Facts{
		TEE:            cctrusted.TEETDX,
		MRTD:           mrtd,
		MRConfigID:     make([]byte, 48),
		TCBStatus:      "UpToDate",
		Debug:          ptr(false),
		SecureBoot:     ptr(true),
		KernelCmdline:  ptr("console=ttyS0 root=/dev/vda1"),
		Workloads:      []runtimelog.Workload{{ExeSHA256: exeA, ContainerID: "c1", ExePath: "/bin/a"}},
		WorkloadsKnown: true,
	}
	for i := range f.RTMR {
		f.RTMR[i] = bytes.Repeat([]byte{byte(i) * 0x11}, 48)
	}
	return f
}

// simFacts are tdxFacts of a simulated TD: every register the same.
func simFacts() *Facts {
	f := tdxFacts()
	f.TEE = cctrusted.TEESim
	return f
}

func tpmFacts() *Facts {
	r := cctrusted.Registers{}
	r.Set(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256, pcr7)
	return &Facts{TEE: cctrusted.TEETPM, PCRs: r}
}

func parse(t *testing.T, src string) []conf.Policy {
	t.Helper()
	ps, err := conf.ParsePolicies(src, "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestEvaluateOne(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		facts   func() *Facts
		match   bool
		mention string
	}{
		{"mrtd match", `mrtd = ["` + hexA48 + `"]`, tdxFacts, true, ""},
		{"mrtd upper case", `mrtd = ["` + strings.ToUpper(hexA48) + `"]`, tdxFacts, true, ""},
		{"mrtd mismatch", `mrtd = ["` + hexOf(0xbb, 48) + `"]`, tdxFacts, false, "mrtd: " + hexA48},
		{"rtmr1 match", `rtmr1 = ["` + hexOf(0x11, 48) + `"]`, tdxFacts, true, ""},
		{"rtmr1 mismatch", `rtmr1 = ["` + hexOf(0x22, 48) + `"]`, tdxFacts, false, "rtmr1: " + hexOf(0x11, 48)},
		{"mrtd on tpm", `mrtd = ["` + hexA48 + `"]`, tpmFacts, false, "mrtd: not established for a tpm node"},
		{"mrconfigid", `mrconfigid = ["` + hexOf(0, 48) + `"]`, tdxFacts, true, ""},
		{"tee match", `tee = ["tdx", "sim"]`, tdxFacts, true, ""},
		{"tee mismatch", `tee = ["tpm"]`, tdxFacts, false, "tee: node is tdx"},
		{"sim needs tee sim", `mrtd = ["` + hexA48 + `"]`, simFacts, false, `tee: node is simulated; a policy matches a sim node only when its tee list names "sim"`},
		{"sim not in tee list", `tee = ["tdx"]`, simFacts, false, "tee: node is sim, the policy allows tdx"},
		{"sim named", `tee = ["sim"]`, simFacts, true, ""},
		{"pcr match", `pcr "7" { sha256 = ["` + hexOf(0x77, 32) + `"] }`, tpmFacts, true, ""},
		{"pcr mismatch", `pcr "7" { sha256 = ["` + hexOf(0x78, 32) + `"] }`, tpmFacts, false, "pcr 7 sha256: " + hexOf(0x77, 32)},
		{"pcr bank not quoted", `pcr "7" { sha384 = ["` + hexOf(0x77, 48) + `"] }`, tpmFacts, false, "pcr 7 sha384: not quoted"},
		{"pcr on tdx", `pcr "7" { sha256 = ["` + hexOf(0x77, 32) + `"] }`, tdxFacts, false, "not quoted"},
		{"tcb accepted", `accepted_tcb_statuses = ["UpToDate"]`, tdxFacts, true, ""},
		{"tcb not accepted", `accepted_tcb_statuses = ["OutOfDate"]`, tdxFacts, false, "accepted_tcb_statuses: UpToDate is not accepted"},
		{"tcb unknown", `accepted_tcb_statuses = ["UpToDate"]`, tpmFacts, false, "not evaluated"},
		{"debug false", `allow_debug = false`, tdxFacts, true, ""},
		{"debug required", `allow_debug = true`, tdxFacts, false, "allow_debug: the DEBUG attribute is false"},
		{"debug on tpm", `allow_debug = false`, tpmFacts, false, "allow_debug: the DEBUG attribute is not established"},
		{"secure boot", `secure_boot = true`, tdxFacts, true, ""},
		{"secure boot off required", `secure_boot = false`, tdxFacts, false, "secure_boot: secure boot is true"},
		{"secure boot unknown", `secure_boot = true`, tpmFacts, false, "secure_boot: secure boot is not established"},
		{"cmdline", `kernel_cmdline = ["console=ttyS0 root=/dev/vda1"]`, tdxFacts, true, ""},
		{"cmdline prefix is not a match", `kernel_cmdline = ["console=ttyS0"]`, tdxFacts, false, `kernel_cmdline: "console=ttyS0 root=/dev/vda1"`},
		{"cmdline unknown", `kernel_cmdline = ["x"]`, tpmFacts, false, "kernel_cmdline: no verified"},
		{"runtime exe", `runtime { allowed_exe_sha256 = ["` + hexOf(0x0a, 32) + `"] }`, tdxFacts, true, ""},
		{"runtime exe outside", `runtime { allowed_exe_sha256 = ["` + hexOf(0x0b, 32) + `"] }`, tdxFacts, false, "runtime.allowed_exe_sha256: runtime log record 0 ran exe sha256 " + hexOf(0x0a, 32)},
		{"runtime container", `runtime { allowed_containers = ["c1"] }`, tdxFacts, true, ""},
		{"runtime container outside", `runtime { allowed_containers = ["c2"] }`, tdxFacts, false, `runtime.allowed_containers: runtime log record 0 ran in container "c1"`},
		{"runtime unknown", `runtime { allowed_containers = ["c1"] }`, tpmFacts, false, "runtime: no verified runtime log"},
		{"runtime unknown with a reason", `runtime { allowed_containers = ["c1"] }`, func() *Facts {
			f := tpmFacts()
			f.WorkloadsUnknown = "the runtime log is on pcr23, which can be reset"
			return f
		}, false, "runtime: the runtime log is on pcr23, which can be reset"},
		{"runtime host process", `runtime { allowed_containers = ["c1"] }`, func() *Facts {
			f := tdxFacts()
			f.Workloads = append(f.Workloads, runtimelog.Workload{ExeSHA256: exeB, ExePath: "/usr/bin/b"})
			return f
		}, false, "record 1 ran outside any container (/usr/bin/b)"},
		{"runtime empty log", `runtime { allowed_exe_sha256 = ["` + hexOf(0x0b, 32) + `"] }`, func() *Facts {
			f := tdxFacts()
			f.Workloads = nil
			return f
		}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := parse(t, "policy \"p\" {\n enforce = true\n "+tc.body+"\n}\n")
			r := EvaluateOne(&ps[0], tc.facts())
			if r.Match != tc.match {
				t.Fatalf("Match = %v, want %v (%v)", r.Match, tc.match, r.Mismatches)
			}
			if r.Name != "p" || r.Digest != ps[0].Digest() || !r.Enforce {
				t.Errorf("result identity %+v", r)
			}
			if tc.mention != "" && !strings.Contains(strings.Join(r.Mismatches, "\n"), tc.mention) {
				t.Errorf("mismatches %q do not mention %q", r.Mismatches, tc.mention)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	src := `
policy "golden" {
  enforce = true
  mrtd    = ["` + hexA48 + `"]
}
policy "next" {
  enforce = false
  rtmr1   = ["` + hexOf(0x22, 48) + `"]
}
policy "tpm" {
  enforce = true
  tee     = ["tpm"]
}
`
	ps := parse(t, src)
	o := Evaluate(ps, tdxFacts(), true)
	if got, want := strings.Join(o.Selectors(), ","), "policy:golden,policy_warn:next"; got != want {
		t.Errorf("selectors %s, want %s", got, want)
	}
	if err := o.Rejection(); err != nil {
		t.Errorf("matching an enforced policy: %v", err)
	}

	f := tdxFacts()
	f.MRTD = bytes.Repeat([]byte{0xbb}, 48)
	o = Evaluate(ps, f, true)
	err := o.Rejection()
	if err == nil || !strings.Contains(err.Error(), `policy "golden": mrtd: `+hexOf(0xbb, 48)) || !strings.Contains(err.Error(), `policy "tpm": tee`) {
		t.Fatalf("rejection %v", err)
	}
	if got := strings.Join(o.Selectors(), ","); got != "policy_warn:next" {
		t.Errorf("selectors %s", got)
	}
	// Without require_policy a failed enforced policy only withholds its selector.
	if err := Evaluate(ps, f, false).Rejection(); err != nil {
		t.Errorf("require_policy off: %v", err)
	}
	// A warn-only policy never satisfies require_policy.
	warnOnly := parse(t, `policy "w" {
  enforce = false
  mrtd = ["`+hexA48+`"]
}`)
	o = Evaluate(warnOnly, tdxFacts(), true)
	if err := o.Rejection(); err == nil || !strings.Contains(err.Error(), "warn-only") {
		t.Errorf("warn-only policies with require_policy: %v", err)
	}
	if got := strings.Join(o.Selectors(), ","); got != "policy:w" {
		t.Errorf("matched warn-only policy selectors %s", got)
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("x", 300)
	if got := truncate(long); len(got) != 131 || !strings.HasSuffix(got, "...") {
		t.Errorf("truncate: %d bytes", len(got))
	}
}

// TestCollateralConstraints: the evaluation data numbers of both documents
// and the node's advisories against min_tcb_evaluation_data_number,
// allowed_advisory_ids and denied_advisory_ids; each mismatch names the key
// and the document or advisory.
func TestCollateralConstraints(t *testing.T) {
	swh := func() *Facts {
		f := tdxFacts()
		f.TCBStatus = "SWHardeningNeeded"
		f.TCBInfoEvaluationDataNumber, f.QEIdentityEvaluationDataNumber = 18, 17
		f.AdvisoryIDs = []string{"INTEL-SA-00837", "INTEL-SA-00960"}
		return f
	}
	offline := func() *Facts {
		f := tdxFacts()
		f.TCBStatus = ""
		return f
	}
	tests := []struct {
		name   string
		body   string
		facts  *Facts
		misses []string // nil: match
	}{
		{"min met by both", `min_tcb_evaluation_data_number = 17`, swh(), nil},
		{"min above the QE identity", `min_tcb_evaluation_data_number = 18`, swh(), []string{"min_tcb_evaluation_data_number: QE identity has evaluation data number 17, the policy requires at least 18"}},
		{"min above both", `min_tcb_evaluation_data_number = 19`, swh(), []string{
			"min_tcb_evaluation_data_number: TCB info has evaluation data number 18, the policy requires at least 19",
			"min_tcb_evaluation_data_number: QE identity has evaluation data number 17, the policy requires at least 19"}},
		{"every advisory allowed", `allowed_advisory_ids = ["INTEL-SA-00960", "INTEL-SA-00837", "INTEL-SA-00001"]`, swh(), nil},
		{"one advisory not allowed", `allowed_advisory_ids = ["INTEL-SA-00837"]`, swh(), []string{"allowed_advisory_ids: advisory INTEL-SA-00960 of the node's TCB level is not allowed"}},
		{"no advisory allowed", `allowed_advisory_ids = []`, swh(), []string{
			"allowed_advisory_ids: advisory INTEL-SA-00837 of the node's TCB level is not allowed",
			"allowed_advisory_ids: advisory INTEL-SA-00960 of the node's TCB level is not allowed"}},
		{"no advisory allowed, none present", `allowed_advisory_ids = []`, tdxFacts(), nil},
		{"denied advisory present", `denied_advisory_ids = ["INTEL-SA-00960"]`, swh(), []string{"denied_advisory_ids: advisory INTEL-SA-00960 of the node's TCB level is denied"}},
		{"denied advisory absent", `denied_advisory_ids = ["INTEL-SA-00615"]`, swh(), nil},
		{"not evaluated", "min_tcb_evaluation_data_number = 1\n  allowed_advisory_ids = []\n  denied_advisory_ids = [\"INTEL-SA-00615\"]", offline(), []string{
			"min_tcb_evaluation_data_number: the TCB status was not evaluated for this node",
			"allowed_advisory_ids: the TCB status was not evaluated for this node",
			"denied_advisory_ids: the TCB status was not evaluated for this node"}},
		{"tpm node", `denied_advisory_ids = ["INTEL-SA-00615"]`, tpmFacts(), []string{"denied_advisory_ids: the TCB status was not evaluated for this node"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := parse(t, "policy \"p\" {\n  "+tt.body+"\n}\n")
			r := EvaluateOne(&ps[0], tt.facts)
			if r.Match != (tt.misses == nil) || strings.Join(r.Mismatches, "\n") != strings.Join(tt.misses, "\n") {
				t.Errorf("match %v, mismatches:\n%s\nwant:\n%s", r.Match, strings.Join(r.Mismatches, "\n"), strings.Join(tt.misses, "\n"))
			}
		})
	}
}
