package conf_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func ptr[T any](v T) *T { return &v }

// fullPolicy sets every policy key.
var fullPolicy = `
policy "golden.v1_a-b" {
  enforce    = false
  tee        = ["tdx", "sim", "tpm"]
  mrtd       = ["` + strings.ToUpper(hex48) + `"]
  rtmr0      = ["` + strings.Repeat("00", 48) + `", "` + strings.Repeat("01", 48) + `"]
  rtmr1      = ["` + strings.Repeat("11", 48) + `"]
  rtmr2      = ["` + strings.Repeat("22", 48) + `"]
  rtmr3      = ["` + strings.Repeat("33", 48) + `"]
  mrconfigid = ["` + strings.Repeat("44", 48) + `"]
  pcr "0" {
    sha1   = ["` + hex20 + `"]
    sha256 = ["` + hex32 + `"]
    sha384 = ["` + hex48 + `"]
    sha512 = ["` + hex64 + `"]
  }
  pcr "23" {
    sha256 = ["` + strings.Repeat("ee", 32) + `"]
  }
  accepted_tcb_statuses = ["UpToDate", "OutOfDate"]
  min_tcb_evaluation_data_number = 17
  allowed_advisory_ids = ["INTEL-SA-00837", "INTEL-DOC-10000"]
  denied_advisory_ids  = ["INTEL-SA-00960"]
  allow_debug    = false
  secure_boot    = true
  kernel_cmdline = ["root=/dev/vda1 ro", "console=ttyS0 \"quoted\" path=C:\\x $HOME ${x}"]
  runtime {
    allowed_exe_sha256 = ["` + strings.ToUpper(hex32) + `"]
    allowed_containers = ["0123abcd", "pod/ctr"]
  }
}
`

func fullPolicyWant() conf.Policy {
	return conf.Policy{
		Name:    "golden.v1_a-b",
		Enforce: false,
		TEE:     []cctrusted.TEE{"tdx", "sim", "tpm"},
		MRTD:    []string{hex48},
		RTMR: [4][]string{
			{strings.Repeat("00", 48), strings.Repeat("01", 48)},
			{strings.Repeat("11", 48)},
			{strings.Repeat("22", 48)},
			{strings.Repeat("33", 48)},
		},
		MRConfigID: []string{strings.Repeat("44", 48)},
		PCRs: map[cctrusted.PCR]map[cctrusted.Algorithm][]string{
			0: {
				cctrusted.AlgSHA1: {hex20}, cctrusted.AlgSHA256: {hex32},
				cctrusted.AlgSHA384: {hex48}, cctrusted.AlgSHA512: {hex64},
			},
			23: {cctrusted.AlgSHA256: {strings.Repeat("ee", 32)}},
		},
		AcceptedTCBStatuses:        []conf.TCBStatus{"UpToDate", "OutOfDate"},
		MinTCBEvaluationDataNumber: 17,
		AllowedAdvisoryIDs:         []string{"INTEL-SA-00837", "INTEL-DOC-10000"},
		DeniedAdvisoryIDs:          []string{"INTEL-SA-00960"},
		AllowDebug:                 ptr(false),
		SecureBoot:                 ptr(true),
		KernelCmdline:              []string{"root=/dev/vda1 ro", `console=ttyS0 "quoted" path=C:\x $HOME ${x}`},
		Runtime: conf.RuntimePolicy{
			AllowedExeSHA256:  []string{hex32},
			AllowedContainers: []string{"0123abcd", "pod/ctr"},
		},
		Source: "policy.hcl line 2",
	}
}

func TestPolicyEveryKey(t *testing.T) {
	ps, err := conf.ParsePolicies(fullPolicy, "policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("%d policies", len(ps))
	}
	if want := fullPolicyWant(); !reflect.DeepEqual(ps[0], want) {
		t.Errorf("got  %+v\nwant %+v", ps[0], want)
	}
	if ps[0].SelectorValue() != "policy:golden.v1_a-b" || ps[0].WarnSelectorValue() != "policy_warn:golden.v1_a-b" {
		t.Errorf("selectors %q %q", ps[0].SelectorValue(), ps[0].WarnSelectorValue())
	}
}

func TestPolicyDefaults(t *testing.T) {
	ps, err := conf.ParsePolicies(`policy "p" { secure_boot = false }`, "")
	if err != nil {
		t.Fatal(err)
	}
	want := conf.Policy{Name: "p", Enforce: true, SecureBoot: ptr(false), Source: "policies line 1"}
	if !reflect.DeepEqual(ps[0], want) {
		t.Errorf("got %+v, want %+v", ps[0], want)
	}
	if ps[0].Empty() {
		t.Error("Empty() on a policy with secure_boot")
	}
	// Each constraint alone makes a policy non-empty.
	for _, body := range []string{
		`tee = ["tpm"]`, `mrtd = ["` + hex48 + `"]`, `rtmr3 = ["` + hex48 + `"]`, `mrconfigid = ["` + hex48 + `"]`,
		`pcr "1" { sha1 = ["` + hex20 + `"] }`, `accepted_tcb_statuses = ["UpToDate"]`, `allow_debug = true`,
		`kernel_cmdline = ["x"]`, `runtime { allowed_exe_sha256 = ["` + hex32 + `"] }`, `runtime { allowed_containers = ["c"] }`,
		`min_tcb_evaluation_data_number = 1`, `allowed_advisory_ids = []`, `denied_advisory_ids = ["INTEL-SA-00001"]`,
	} {
		if _, err := conf.ParsePolicies("policy \"p\" {\n"+body+"\n}", ""); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
	if p := (conf.Policy{Name: "x", Enforce: true}); !p.Empty() {
		t.Error("Empty() false on a policy without constraints")
	}
}

func TestPolicyErrors(t *testing.T) {
	short := hex48[:94]
	tests := []struct {
		name  string
		body  string // inside policy "p" { ... }, starting on line 2
		line  int
		parts []string
	}{
		{"rtmr1 short", "  rtmr1 = [\"" + short + "\"]", 2, []string{`policy "p": rtmr1[0]: want 96 hex characters, got 94`}},
		{"mrtd long", "  mrtd = [\"" + hex48 + "00\"]", 2, []string{`policy "p": mrtd[0]: want 96 hex characters, got 98`}},
		{"mrtd not hex", "  mrtd = [\n    \"" + hex48 + "\",\n    \"" + strings.Repeat("x", 96) + "\"]", 4, []string{`policy "p": mrtd[1]: character 1 ('x') is not a hex digit`}},
		{"mrtd 0x prefix", "  mrtd = [\"0x" + hex48[2:] + "\"]", 2, []string{`mrtd[0]: character 2 ('x')`}},
		{"mrtd duplicate by case", "  mrtd = [\"" + hex48 + "\", \"" + strings.ToUpper(hex48) + "\"]", 2, []string{"mrtd[1]", "listed twice"}},
		{"rtmr0 empty list", "  rtmr0 = []", 2, []string{`policy "p": rtmr0: empty allow-list`}},
		{"rtmr3 number", "  rtmr3 = [5]", 2, []string{`rtmr3[0]: want a string`}},
		{"mrconfigid size", "  mrconfigid = [\"" + hex32 + "\"]", 2, []string{`mrconfigid[0]: want 96 hex characters, got 64`}},
		{"pcr sha1 size", "  pcr \"7\" {\n    sha1 = [\"" + hex32 + "\"]\n  }", 3, []string{`policy "p": pcr "7".sha1[0]: want 40 hex characters, got 64`}},
		{"pcr sha256 size", "  pcr \"7\" {\n    sha256 = [\"" + hex20 + "\"]\n  }", 3, []string{`pcr "7".sha256[0]: want 64 hex characters, got 40`}},
		{"pcr sha384 size", "  pcr \"7\" {\n    sha384 = [\"" + hex32 + "\"]\n  }", 3, []string{`pcr "7".sha384[0]: want 96 hex characters`}},
		{"pcr sha512 size", "  pcr \"7\" {\n    sha512 = [\"" + hex48 + "\"]\n  }", 3, []string{`pcr "7".sha512[0]: want 128 hex characters`}},
		{"pcr index range", "  pcr \"24\" {\n    sha1 = [\"" + hex20 + "\"]\n  }", 2, []string{`pcr "24": want a PCR number 0..23`}},
		{"pcr index not canonical", "  pcr \"07\" {\n    sha1 = [\"" + hex20 + "\"]\n  }", 2, []string{`pcr "07": want a PCR number`}},
		{"pcr index word", "  pcr \"seven\" {\n    sha1 = [\"" + hex20 + "\"]\n  }", 2, []string{`pcr "seven": want a PCR number`}},
		{"pcr empty", "  pcr \"7\" {\n  }", 2, []string{`policy "p": pcr "7": empty block`}},
		{"pcr duplicate", "  pcr \"7\" { sha1 = [\"" + hex20 + "\"] }\n  pcr \"7\" { sha1 = [\"" + hex20 + "\"] }", 3, []string{`duplicate pcr "7"`, "line 2"}},
		{"pcr without label", "  pcr {\n    sha1 = []\n  }", 2, []string{"pcr block needs a name"}},
		{"pcr unknown bank", "  pcr \"7\" {\n    sm3_256 = []\n  }", 3, []string{`unknown key "sm3_256" in policy "p".pcr "7"`}},
		{"tee bad", "  tee = [\"tdx\", \"auto\"]", 2, []string{`policy "p": tee[1]: "auto" is not one of "tdx", "tpm", "azure_tdx", "sim"`}},
		{"tee duplicate", "  tee = [\"tdx\", \"tdx\"]", 2, []string{`tee[1]: "tdx" is listed twice`}},
		{"tee empty", "  tee = []", 2, []string{`policy "p": tee: empty list`}},
		{"tdx key with tpm tee", "  tee = [\"tpm\"]\n  mrtd = [\"" + hex48 + "\"]", 3, []string{`policy "p": mrtd: is a TDX value but tee does not include`}},
		{"allow_debug with tpm tee", "  tee = [\"tpm\"]\n  allow_debug = false", 3, []string{`allow_debug: is a TDX value`}},
		{"pcr with tdx tee", "  tee = [\"tdx\"]\n  pcr \"4\" {\n    sha256 = [\"" + hex32 + "\"]\n  }", 3, []string{`policy "p": pcr "4": is a TPM value but tee does not include`}},
		{"tcb revoked", "  accepted_tcb_statuses = [\"Revoked\"]", 2, []string{`policy "p": accepted_tcb_statuses[0]: "Revoked" is never acceptable`}},
		{"tcb unknown", "  accepted_tcb_statuses = [\"Good\"]", 2, []string{`accepted_tcb_statuses[0]: "Good" is not an Intel TCB status`}},
		{"tcb empty", "  accepted_tcb_statuses = []", 2, []string{`policy "p": accepted_tcb_statuses: empty list`}},
		{"allow_debug type", "  allow_debug = \"false\"", 2, []string{"allow_debug: want true or false"}},
		{"secure_boot type", "  secure_boot = 1", 2, []string{"secure_boot: want true or false"}},
		{"enforce type", "  enforce = \"no\"", 2, []string{"enforce: want true or false"}},
		{"enforce alone is empty", "  enforce = false", 1, []string{`policy "p": empty policy would match every node`}},
		{"kernel_cmdline empty string", "  kernel_cmdline = [\"a\", \"\"]", 2, []string{`kernel_cmdline[1]: empty string`}},
		{"kernel_cmdline duplicate", "  kernel_cmdline = [\"a\", \"a\"]", 2, []string{`kernel_cmdline[1]: "a" is listed twice`}},
		{"kernel_cmdline empty list", "  kernel_cmdline = []", 2, []string{`kernel_cmdline: empty allow-list`}},
		{"kernel_cmdline invalid utf8", "  kernel_cmdline = [\"\\xff\"]", 2, []string{`kernel_cmdline[0]: malformed string`}},
		{"runtime empty", "  secure_boot = true\n  runtime {\n  }", 3, []string{`policy "p": runtime: empty block`}},
		{"runtime exe size", "  runtime {\n    allowed_exe_sha256 = [\"" + hex48 + "\"]\n  }", 3, []string{`policy "p": runtime.allowed_exe_sha256[0]: want 64 hex characters, got 96`}},
		{"runtime containers empty", "  runtime {\n    allowed_containers = []\n  }", 3, []string{`runtime.allowed_containers: empty allow-list`}},
		{"runtime not block", "  runtime = [\"x\"]", 2, []string{`policy "p".runtime: want a block`}},
		{"unknown top key in policy", "  secure_boot = true\n  selector = \"x\"", 3, []string{`unknown key "selector" in policy "p"`}},
		{"duplicate key in policy", "  secure_boot = true\n  secure_boot = false", 3, []string{`duplicate key "secure_boot" in policy "p"`, "line 2"}},
		{"min eval zero", "  min_tcb_evaluation_data_number = 0", 2, []string{`policy "p": min_tcb_evaluation_data_number: 0 is outside 1..4294967295`}},
		{"min eval negative", "  min_tcb_evaluation_data_number = -3", 2, []string{`min_tcb_evaluation_data_number: -3 is outside`}},
		{"min eval too large", "  min_tcb_evaluation_data_number = 4294967296", 2, []string{`min_tcb_evaluation_data_number: 4294967296 is outside`}},
		{"min eval string", "  min_tcb_evaluation_data_number = \"17\"", 2, []string{`min_tcb_evaluation_data_number: want an integer`}},
		{"advisory lower case", "  allowed_advisory_ids = [\"intel-sa-00837\"]", 2, []string{`policy "p": allowed_advisory_ids[0]: "intel-sa-00837" is not an Intel advisory ID`}},
		{"advisory short", "  denied_advisory_ids = [\"INTEL-SA-0837\"]", 2, []string{`denied_advisory_ids[0]: "INTEL-SA-0837" is not an Intel advisory ID`}},
		{"advisory selector injection", "  denied_advisory_ids = [\"INTEL-SA-00837:x\"]", 2, []string{`denied_advisory_ids[0]`, "not an Intel advisory ID"}},
		{"advisory duplicate", "  allowed_advisory_ids = [\"INTEL-SA-00837\", \"INTEL-SA-00837\"]", 2, []string{`allowed_advisory_ids[1]: INTEL-SA-00837 is listed twice`}},
		{"denied empty", "  denied_advisory_ids = []", 2, []string{`policy "p": denied_advisory_ids: empty list denies nothing`}},
		{"allowed and denied", "  allowed_advisory_ids = [\"INTEL-SA-00837\"]\n  denied_advisory_ids = [\"INTEL-SA-00837\"]", 3, []string{`denied_advisory_ids: INTEL-SA-00837 is also in allowed_advisory_ids`}},
		{"advisories with tpm tee", "  tee = [\"tpm\"]\n  allowed_advisory_ids = []", 3, []string{`allowed_advisory_ids: is a TDX value`}},
		{"min eval with tpm tee", "  tee = [\"tpm\"]\n  min_tcb_evaluation_data_number = 17", 3, []string{`min_tcb_evaluation_data_number: is a TDX value`}},
		{"list too long", "  kernel_cmdline = [" + strings.Repeat("\"a\",", conf.MaxListLen+1) + "]", 2, []string{"kernel_cmdline", "more than the limit of 4096"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "policy \"p\" {\n" + tt.body + "\n}\n"
			_, err := conf.ParsePolicies(src, "policy.hcl")
			wantErr(t, err, "policy.hcl", tt.line, tt.parts...)
		})
	}
}

func TestPolicyFileErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		line  int
		parts []string
	}{
		{"bad name", "\npolicy \"has space\" { secure_boot = true }", 2, []string{`policy "has space": name must match`}},
		{"name too long", "policy \"" + strings.Repeat("a", 65) + "\" { secure_boot = true }", 1, []string{"name must match"}},
		{"name with colon", "policy \"a:b\" { secure_boot = true }", 1, []string{"name must match"}},
		{"empty name", "policy \"\" { secure_boot = true }", 1, []string{"name must match"}},
		{"duplicate names", "policy \"a\" { secure_boot = true }\n\npolicy \"a\" { tee = [\"tdx\"] }", 3, []string{`duplicate policy "a" (first defined on line 1)`}},
		{"unknown top", "policy \"a\" { secure_boot = true }\ntdx {}", 2, []string{`unknown key "tdx" at top level`}},
		{"syntax", "policy \"a\" {", 1, nil},
		{"json", "  {\"policy\": {}}", 1, []string{"JSON is not supported"}},
		{"oversized", strings.Repeat(" ", conf.MaxPolicyFileBytes+1), 0, []string{"more than the limit"}},
		{"too deep", "policy \"a\" " + strings.Repeat("{", 40), 1, []string{"nesting deeper than 16"}},
		{"too deep lists", "x = " + strings.Repeat("[", 1000), 1, []string{"nesting deeper"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conf.ParsePolicies(tt.src, "p.hcl")
			wantErr(t, err, "p.hcl", tt.line, tt.parts...)
		})
	}
}

func TestPolicyCountLimit(t *testing.T) {
	var b strings.Builder
	for i := range conf.MaxPolicies + 1 {
		fmt.Fprintf(&b, "policy \"p%d\" { secure_boot = true }\n", i)
	}
	_, err := conf.ParsePolicies(b.String(), "p.hcl")
	wantErr(t, err, "p.hcl", 0, "1025 policies is more than the limit of 1024")
	_, err = conf.ParseServerVerifier("tdx {}\n"+b.String(), nil)
	wantErr(t, err, "plugin_data", 0, "more than the limit")
}

func TestDigest(t *testing.T) {
	a := `
policy "golden" {
  tee  = ["tdx", "sim"]
  mrtd = ["` + "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c" + `",
          "` + "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f" + `"]
  rtmr2 = ["` + "4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d" + `"]
  pcr "7" { sha256 = ["` + hex32 + `"] }
  pcr "10" { sha1 = ["` + hex20 + `"] }
  secure_boot = true
  kernel_cmdline = ["root=/dev/vda1 ro", "console=ttyS0 quiet"]
}`
	// The same content: other key and list order, other name, upper-case
	// hex, other layout, explicit enforce = true.
	b := `policy "other" {
kernel_cmdline=["console=ttyS0 quiet","root=/dev/vda1 ro"]
    secure_boot=true
pcr "10" {
      sha1=["` + "1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A" + `"]
}
  pcr "7" { sha256 = ["` + hex32 + `"] } # comment
  enforce = true
  rtmr2 = ["` + "4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D4D" + `"]
  mrtd = ["` + "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f" + `", "` + "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c" + `"]
  tee = ["sim", "tdx"]
}`
	pa, err := conf.ParsePolicies(a, "a")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := conf.ParsePolicies(b, "b")
	if err != nil {
		t.Fatal(err)
	}
	// Computed independently with python3 from the encoding documented on
	// Digest:
	//   s = lambda x: struct.pack('>I', len(x.encode())) + x.encode()
	//   f = lambda n, vs: s(n) + struct.pack('>I', len(vs)) + b''.join(s(v) for v in sorted(vs))
	//   buf = b"ccnp-spire policy v1\x00" + f("enforce", ["true"]) + f("tee", ["tdx", "sim"]) +
	//         f("mrtd", ["3c"*48, "0f"*48]) + f("rtmr2", ["4d"*48]) + f("pcr7.sha256", ["2b"*32]) +
	//         f("pcr10.sha1", ["1a"*20]) + f("secure_boot", ["true"]) +
	//         f("kernel_cmdline", ["root=/dev/vda1 ro", "console=ttyS0 quiet"])
	//   hashlib.sha256(buf).hexdigest()
	const want = "6d57822c6d583c492a1218bcf58543610df2f879c77f837069fb883c2b2c3382"
	if got := pa[0].Digest(); got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
	if got := pb[0].Digest(); got != want {
		t.Errorf("reordered policy Digest = %s, want %s", got, want)
	}
	// python3: f("enforce", ["false"]) + f("runtime.allowed_containers", ["c1"]) after the domain.
	small := conf.Policy{Name: "x", Runtime: conf.RuntimePolicy{AllowedContainers: []string{"c1"}}}
	if got := small.Digest(); got != "15caa90bb1a06705aec12858b8ae6cc3e258f639875b6973bf7f0648622de9ff" {
		t.Errorf("small Digest = %s", got)
	}

	// Every change of content changes the digest.
	base := fullPolicyWant()
	mutations := map[string]func(p *conf.Policy){
		"enforce":         func(p *conf.Policy) { p.Enforce = !p.Enforce },
		"tee":             func(p *conf.Policy) { p.TEE = p.TEE[:2] },
		"mrtd":            func(p *conf.Policy) { p.MRTD = []string{strings.Repeat("ab", 48)} },
		"rtmr0":           func(p *conf.Policy) { p.RTMR[0] = p.RTMR[0][:1] },
		"rtmr3 unset":     func(p *conf.Policy) { p.RTMR[3] = nil },
		"rtmr moved":      func(p *conf.Policy) { p.RTMR[1], p.RTMR[2] = p.RTMR[2], p.RTMR[1] },
		"mrconfigid":      func(p *conf.Policy) { p.MRConfigID = nil },
		"pcr bank":        func(p *conf.Policy) { delete(p.PCRs[0], cctrusted.AlgSHA1) },
		"pcr index":       func(p *conf.Policy) { p.PCRs[22] = p.PCRs[23]; delete(p.PCRs, 23) },
		"tcb":             func(p *conf.Policy) { p.AcceptedTCBStatuses = []conf.TCBStatus{"UpToDate"} },
		"allow_debug":     func(p *conf.Policy) { p.AllowDebug = ptr(true) },
		"allow_debug nil": func(p *conf.Policy) { p.AllowDebug = nil },
		"secure_boot":     func(p *conf.Policy) { p.SecureBoot = ptr(false) },
		"kernel_cmdline":  func(p *conf.Policy) { p.KernelCmdline = []string{"root=/dev/vda1 ro"} },
		"cmdline split":   func(p *conf.Policy) { p.KernelCmdline = []string{"ab", "c"} },
		"exe":             func(p *conf.Policy) { p.Runtime.AllowedExeSHA256 = []string{strings.Repeat("00", 32)} },
		"containers":      func(p *conf.Policy) { p.Runtime.AllowedContainers = p.Runtime.AllowedContainers[1:] },
		"min eval":        func(p *conf.Policy) { p.MinTCBEvaluationDataNumber = 18 },
		"min eval unset":  func(p *conf.Policy) { p.MinTCBEvaluationDataNumber = 0 },
		"allowed adv":     func(p *conf.Policy) { p.AllowedAdvisoryIDs = p.AllowedAdvisoryIDs[1:] },
		"allowed none":    func(p *conf.Policy) { p.AllowedAdvisoryIDs = []string{} },
		"allowed unset":   func(p *conf.Policy) { p.AllowedAdvisoryIDs = nil },
		"denied adv":      func(p *conf.Policy) { p.DeniedAdvisoryIDs = []string{"INTEL-SA-00961"} },
		"adv moved": func(p *conf.Policy) {
			p.AllowedAdvisoryIDs, p.DeniedAdvisoryIDs = p.DeniedAdvisoryIDs, p.AllowedAdvisoryIDs
		},
		"containers to exe": func(p *conf.Policy) {
			p.Runtime.AllowedExeSHA256, p.Runtime.AllowedContainers = nil, []string{hex32, "0123abcd", "pod/ctr"}
		},
	}
	seen := map[string]string{base.Digest(): "base"}
	for name, m := range mutations {
		p := fullPolicyWant()
		m(&p)
		d := p.Digest()
		if prev, dup := seen[d]; dup {
			t.Errorf("mutation %q has the digest of %q", name, prev)
		}
		seen[d] = name
	}
	// Name and Source are not content.
	p := fullPolicyWant()
	p.Name, p.Source = "renamed", "elsewhere"
	if p.Digest() != base.Digest() {
		t.Error("Digest depends on Name or Source")
	}
}

func TestPolicyHCLRoundTrip(t *testing.T) {
	ps, err := conf.ParsePolicies(fullPolicy, "policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	odd := conf.Policy{
		Name:    "odd",
		Enforce: true,
		KernelCmdline: []string{
			`quote " backslash \ dollar $ interp ${var} $${x} brace {}`,
			"tab\there newline\nhere nul\x00 bell\a",
			"unicode é ✓ \u2028 emoji 🚀",
			"#not a comment // nor this /* nor this */",
			"<<EOF",
		},
		Runtime: conf.RuntimePolicy{AllowedContainers: []string{"a=b", "[x]"}},
	}
	for _, p := range []conf.Policy{ps[0], odd} {
		text := p.HCL()
		back, err := conf.ParsePolicies(text, "rendered")
		if err != nil {
			t.Fatalf("re-parse of\n%s: %v", text, err)
		}
		got := back[0]
		got.Source = p.Source
		if !reflect.DeepEqual(got, p) {
			t.Errorf("round trip changed the policy\nrendered:\n%s\ngot  %+v\nwant %+v", text, got, p)
		}
		if got.Digest() != p.Digest() {
			t.Error("round trip changed the digest")
		}
		if again := got.HCL(); again != text {
			t.Errorf("rendering is not stable:\n%s\n---\n%s", text, again)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	good := fullPolicyWant()
	if err := good.Validate(); err != nil {
		t.Fatalf("valid policy: %v", err)
	}
	tests := []struct {
		name string
		mut  func(p *conf.Policy)
		want string
	}{
		{"bad name", func(p *conf.Policy) { p.Name = "a\"b" }, "name must match"},
		{"short rtmr", func(p *conf.Policy) { p.RTMR[1] = []string{"abcd"} }, "rtmr1[0]: want 96 hex characters, got 4"},
		{"empty", func(p *conf.Policy) { *p = conf.Policy{Name: "e"} }, "empty policy"},
		{"revoked", func(p *conf.Policy) { p.AcceptedTCBStatuses = []conf.TCBStatus{"Revoked"} }, "never acceptable"},
		{"pcr bank size", func(p *conf.Policy) { p.PCRs[0][cctrusted.AlgSHA1] = []string{hex32} }, `pcr "0".sha1[0]`},
		{"pcr out of range", func(p *conf.Policy) { p.PCRs[24] = p.PCRs[23] }, `pcr "24"`},
		{"invalid utf8", func(p *conf.Policy) { p.KernelCmdline = []string{"\xff"} }, "malformed string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fullPolicyWant()
			tt.mut(&p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestInlinePolicies(t *testing.T) {
	c, err := conf.ParseServerVerifier("tdx {}\n"+fullPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := fullPolicyWant()
	want.Source = "plugin_data line 3"
	if len(c.Policies) != 1 || !reflect.DeepEqual(c.Policies[0], want) {
		t.Errorf("got %+v", c.Policies)
	}
	_, err = conf.ParseServerVerifier("tdx {}\npolicy \"p\" {\n  rtmr1 = [\"ab\"]\n}", nil)
	wantErr(t, err, "plugin_data", 3, `policy "p": rtmr1[0]: want 96 hex characters, got 2`)
}

func TestBounds(t *testing.T) {
	_, err := conf.ParseServerVerifier(strings.Repeat("#", conf.MaxConfigBytes+1), nil)
	wantErr(t, err, "plugin_data", 0, "more than the limit of 1048576")
	_, err = conf.ParseAgentNodeAttestor("tdx " + strings.Repeat("{", 17) + strings.Repeat("}", 17))
	wantErr(t, err, "plugin_data", 1, "nesting deeper than 16")
	// Braces inside strings do not count towards nesting.
	if _, err := conf.ParseServerVerifier("tdx {}\nagent_path_template = \"/ccnp/"+strings.Repeat("{{ .ID }}", 20)+"\"", nil); err != nil {
		t.Errorf("braces in a string: %v", err)
	}
	_, err = conf.ParseWorkloadAttestor("exe_digest_algs = [" + strings.Repeat("\"sha256\",", conf.MaxListLen+1) + "]")
	wantErr(t, err, "plugin_data", 1, "exe_digest_algs", "more than the limit")
}
