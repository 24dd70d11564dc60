package conf

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Policy is a named set of golden values. A node matches a policy when every
// constraint the policy sets holds; a constraint left unset (nil list, nil
// pointer) does not constrain. Allow-lists match when the node's value
// equals one entry exactly. Hex values are lower case.
//
// In HCL:
//
//	policy "golden" {
//	  enforce = true                       # false: warn only (selector policy_warn:<name>)
//	  tee     = ["tdx"]                    # tdx, tpm, sim (a sim node needs "sim" here)
//	  mrtd    = ["<96 hex>"]               # also rtmr0 .. rtmr3, mrconfigid (48 bytes each)
//	  pcr "7" {                            # one block per PCR (0..23), one list per bank
//	    sha256 = ["<64 hex>"]              # sha1, sha256, sha384, sha512
//	  }
//	  accepted_tcb_statuses = ["UpToDate"]
//	  min_tcb_evaluation_data_number = 17  # TCB info and QE identity at least this
//	  allowed_advisory_ids = ["INTEL-SA-00837"] # every advisory of the node listed ([]: none)
//	  denied_advisory_ids  = ["INTEL-SA-00960"] # none of these
//	  allow_debug    = false
//	  secure_boot    = true
//	  kernel_cmdline = ["console=ttyS0 root=/dev/sda1"] # exact strings, no globbing
//	  runtime {
//	    allowed_exe_sha256 = ["<64 hex>"]
//	    allowed_containers = ["<container id>"]
//	  }
//	  ima { ... }                          # an IMA runtime policy (see IMAPolicy), or:
//	  ima_policy_file = "/etc/ccnp/ima.json" # an ima block or Keylime runtime policy JSON
//	}
//
// Kernel command lines are compared as exact strings: a measured command
// line is a golden value, and a pattern would silently widen it.
type Policy struct {
	// Name is the block label; it becomes the selector "policy:<Name>".
	Name string
	// Enforce false makes the policy warn-only: a mismatch is logged and
	// reported as "policy_warn:<Name>", never a rejection.
	Enforce bool
	// TEE restricts the TEE kinds the policy matches. Unset, it matches
	// every hardware TEE but never a simulated node: a policy matches a sim
	// node only when TEE names cctrusted.TEESim.
	TEE []cctrusted.TEE
	// MRTD, RTMR and MRConfigID are TDX allow-lists (48-byte values).
	MRTD       []string
	RTMR       [cctrusted.NumRTMRs][]string
	MRConfigID []string
	// PCRs maps a PCR and a bank to its allow-list.
	PCRs map[cctrusted.PCR]map[cctrusted.Algorithm][]string
	// AcceptedTCBStatuses narrows the server-wide accepted TDX TCB statuses.
	AcceptedTCBStatuses []TCBStatus
	// MinTCBEvaluationDataNumber, when non-zero, requires the TCB info and
	// QE identity the node was evaluated with to have at least this
	// tcbEvaluationDataNumber.
	MinTCBEvaluationDataNumber uint32
	// AllowedAdvisoryIDs, when non-nil, must list every Intel advisory of
	// the node's matching TCB levels; empty (not nil) allows none.
	// DeniedAdvisoryIDs lists advisories the node must not have.
	AllowedAdvisoryIDs []string
	DeniedAdvisoryIDs  []string
	// AllowDebug, when set, requires the TD DEBUG attribute to equal it.
	AllowDebug *bool
	// SecureBoot, when set, requires the measured secure-boot state to equal it.
	SecureBoot *bool
	// KernelCmdline is an allow-list of exact kernel command lines.
	KernelCmdline []string
	// Runtime constrains what the node's runtime log says it ran.
	Runtime RuntimePolicy
	// IMA is the IMA runtime policy the node's IMA list must satisfy: the
	// policy's ima block, or what IMAPolicyFile held once the server
	// loaded it (LoadIMAPolicyFile's caller sets it at Configure).
	IMA *IMAPolicy
	// IMAPolicyFile names a file holding the IMA runtime policy (an HCL
	// ima block or Keylime runtime policy JSON); conf only records it,
	// since reading Keylime JSON is eventlog/ima/imapolicy's.
	IMAPolicyFile string
	// IMAFingerprint identifies the compiled IMA policy's content (keys
	// read from their files included); the server sets it at Configure so
	// that Digest covers what is enforced without re-hashing a large
	// policy at every attestation.
	IMAFingerprint string
	// Source says where the policy was defined ("policies.hcl line 3"). It
	// is not part of the policy's content or Digest.
	Source string
}

// RuntimePolicy is an allow-list over the workloads recorded in a node's
// runtime log: a node that ran anything outside it does not match.
type RuntimePolicy struct {
	// AllowedExeSHA256 lists executable SHA-256 digests (lower-case hex).
	AllowedExeSHA256 []string
	// AllowedContainers lists container IDs as recorded in the runtime log.
	AllowedContainers []string
}

// SelectorValue is the selector (without SPIRE's plugin-name prefix) that a
// node matching the policy receives.
func (p *Policy) SelectorValue() string { return "policy:" + p.Name }

// WarnSelectorValue is the selector a node receives when it fails a
// warn-only policy.
func (p *Policy) WarnSelectorValue() string { return "policy_warn:" + p.Name }

// Empty reports whether the policy constrains nothing, which would match
// every node: such policies are refused at parse time.
func (p *Policy) Empty() bool {
	if p.TEE != nil || p.MRTD != nil || p.MRConfigID != nil || len(p.PCRs) != 0 ||
		p.AcceptedTCBStatuses != nil || p.AllowDebug != nil || p.SecureBoot != nil ||
		p.MinTCBEvaluationDataNumber != 0 || p.AllowedAdvisoryIDs != nil || p.DeniedAdvisoryIDs != nil ||
		p.KernelCmdline != nil || p.Runtime.AllowedExeSHA256 != nil || p.Runtime.AllowedContainers != nil ||
		p.IMA != nil || p.IMAPolicyFile != "" {
		return false
	}
	for _, r := range p.RTMR {
		if r != nil {
			return false
		}
	}
	return true
}

// policyNameRE is the allowed shape of a policy name: it ends up in a
// selector value and in log lines.
var policyNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

// PCR banks a policy can name, in rendering order.
var pcrBanks = []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384, cctrusted.AlgSHA512}

type rawPolicyFile struct {
	Policies []rawPolicy `hcl:"policy"`
}

type rawPolicy struct {
	Name                string   `hcl:",key"`
	Enforce             bool     `hcl:"enforce"`
	TEE                 []string `hcl:"tee"`
	MRTD                []string `hcl:"mrtd"`
	RTMR0               []string `hcl:"rtmr0"`
	RTMR1               []string `hcl:"rtmr1"`
	RTMR2               []string `hcl:"rtmr2"`
	RTMR3               []string `hcl:"rtmr3"`
	MRConfigID          []string `hcl:"mrconfigid"`
	PCR                 []rawPCR `hcl:"pcr"`
	AcceptedTCBStatuses []string `hcl:"accepted_tcb_statuses"`
	AllowDebug          bool     `hcl:"allow_debug"`

	MinTCBEvaluationDataNumber int      `hcl:"min_tcb_evaluation_data_number"`
	AllowedAdvisoryIDs         []string `hcl:"allowed_advisory_ids"`
	DeniedAdvisoryIDs          []string `hcl:"denied_advisory_ids"`

	SecureBoot    bool       `hcl:"secure_boot"`
	KernelCmdline []string   `hcl:"kernel_cmdline"`
	Runtime       rawRuntime `hcl:"runtime"`

	IMA           *rawIMA `hcl:"ima"`
	IMAPolicyFile string  `hcl:"ima_policy_file"`
}

type rawPCR struct {
	Index  string   `hcl:",key"`
	SHA1   []string `hcl:"sha1"`
	SHA256 []string `hcl:"sha256"`
	SHA384 []string `hcl:"sha384"`
	SHA512 []string `hcl:"sha512"`
}

func (r *rawPCR) bank(alg cctrusted.Algorithm) []string {
	switch alg {
	case cctrusted.AlgSHA1:
		return r.SHA1
	case cctrusted.AlgSHA256:
		return r.SHA256
	case cctrusted.AlgSHA384:
		return r.SHA384
	}
	return r.SHA512
}

type rawRuntime struct {
	AllowedExeSHA256  []string `hcl:"allowed_exe_sha256"`
	AllowedContainers []string `hcl:"allowed_containers"`
}

// ParsePolicies parses a policy file: HCL holding only policy blocks.
// filename is used in error messages ("policies.hcl: line 3: ...").
func ParsePolicies(src, filename string) ([]Policy, error) {
	if filename == "" {
		filename = "policies"
	}
	var errs errList
	d := newDoc(filename, &errs)
	ps := parsePolicyFile(d, src)
	if !errs.empty() {
		return nil, errs.err()
	}
	return ps, nil
}

func parsePolicyFile(d *doc, src string) []Policy {
	var raw rawPolicyFile
	if !parseDoc(d, src, MaxPolicyFileBytes, &raw) {
		return nil
	}
	return policies(d, raw.Policies)
}

// policies validates decoded policy blocks; the walker already refused
// duplicate names within one document.
func policies(d *doc, raws []rawPolicy) []Policy {
	if len(raws) > MaxPolicies {
		d.errLine(0, "%d policies is more than the limit of %d", len(raws), MaxPolicies)
		return nil
	}
	out := make([]Policy, 0, len(raws))
	for _, r := range raws {
		if p, ok := policy(d, r); ok {
			out = append(out, p)
		}
	}
	return out
}

// policyCheck validates one policy, prefixing messages with its name.
type policyCheck struct {
	d    *doc
	path string // key path of the block, e.g. `policy "golden"`
	sep  string // between path and key in messages: ": " in policies
	ok   bool
}

func (c *policyCheck) has(sub string) bool { return c.d.has(c.path + "." + sub) }

func (c *policyCheck) errf(sub, format string, args ...any) {
	c.ok = false
	c.d.errLine(c.d.line(c.path+"."+sub), "%s%s%s: %s", c.path, c.sep, sub, fmt.Sprintf(format, args...))
}

func policy(d *doc, r rawPolicy) (Policy, bool) {
	c := &policyCheck{d: d, path: fmt.Sprintf("policy %q", r.Name), sep: ": ", ok: true}
	p := Policy{
		Name:    r.Name,
		Enforce: true,
		Source:  fmt.Sprintf("%s line %d", d.name, d.line(c.path)),
	}
	if !policyNameRE.MatchString(r.Name) {
		c.ok = false
		d.errLine(d.line(c.path), "%s: name must match %s (it becomes the selector policy:<name>)", c.path, policyNameRE)
	}
	if c.has("enforce") {
		p.Enforce = r.Enforce
	}
	if c.has("tee") {
		p.TEE = c.tees(r.TEE)
	}
	p.MRTD = c.hexList("mrtd", r.MRTD, 48)
	for i, vals := range [][]string{r.RTMR0, r.RTMR1, r.RTMR2, r.RTMR3} {
		p.RTMR[i] = c.hexList(fmt.Sprintf("rtmr%d", i), vals, 48)
	}
	p.MRConfigID = c.hexList("mrconfigid", r.MRConfigID, 48)
	p.PCRs = c.pcrs(r.PCR)
	if c.has("accepted_tcb_statuses") {
		before := len(d.errs.errs)
		p.AcceptedTCBStatuses = tcbStatuses(d, c.path+".accepted_tcb_statuses",
			c.path+": accepted_tcb_statuses", r.AcceptedTCBStatuses)
		if len(d.errs.errs) != before {
			c.ok = false
		}
	}
	if c.has("min_tcb_evaluation_data_number") {
		before := len(d.errs.errs)
		p.MinTCBEvaluationDataNumber = evaluationNumber(d, c.path+".min_tcb_evaluation_data_number",
			c.path+": min_tcb_evaluation_data_number", r.MinTCBEvaluationDataNumber)
		if len(d.errs.errs) != before {
			c.ok = false
		}
	}
	p.AllowedAdvisoryIDs = c.advisoryIDs("allowed_advisory_ids", r.AllowedAdvisoryIDs, true)
	p.DeniedAdvisoryIDs = c.advisoryIDs("denied_advisory_ids", r.DeniedAdvisoryIDs, false)
	for _, id := range p.DeniedAdvisoryIDs {
		if slices.Contains(p.AllowedAdvisoryIDs, id) {
			c.errf("denied_advisory_ids", "%s is also in allowed_advisory_ids", id)
		}
	}
	if c.has("allow_debug") {
		p.AllowDebug = new(r.AllowDebug)
	}
	if c.has("secure_boot") {
		p.SecureBoot = new(r.SecureBoot)
	}
	p.KernelCmdline = c.strList("kernel_cmdline", r.KernelCmdline)
	if c.has("runtime") {
		p.Runtime.AllowedExeSHA256 = c.hexList("runtime.allowed_exe_sha256", r.Runtime.AllowedExeSHA256, 32)
		p.Runtime.AllowedContainers = c.strList("runtime.allowed_containers", r.Runtime.AllowedContainers)
		if !c.has("runtime.allowed_exe_sha256") && !c.has("runtime.allowed_containers") {
			c.errf("runtime", "empty block: set allowed_exe_sha256 or allowed_containers")
		}
	}
	c.imaPolicy(&p, r)
	c.consistent(&p)
	if c.ok && p.Empty() {
		c.ok = false
		d.errLine(d.line(c.path), "%s: empty policy would match every node: set at least one golden value", c.path)
	}
	return p, c.ok
}

func (c *policyCheck) tees(vals []string) []cctrusted.TEE {
	if len(vals) == 0 {
		c.errf("tee", "empty list matches nothing; remove the key to allow every TEE")
		return nil
	}
	out := make([]cctrusted.TEE, 0, len(vals))
	for i, v := range vals {
		t := cctrusted.TEE(v)
		switch {
		case t != cctrusted.TEETDX && t != cctrusted.TEETPM && t != cctrusted.TEESim && t != cctrusted.TEEAzureTDX:
			c.errf(fmt.Sprintf("tee[%d]", i), "%q is not one of \"tdx\", \"tpm\", \"azure_tdx\", \"sim\"", v)
		case slices.Contains(out, t):
			c.errf(fmt.Sprintf("tee[%d]", i), "%q is listed twice", v)
		default:
			out = append(out, t)
		}
	}
	return out
}

// hexList validates an allow-list of size-byte values written in hex and
// returns it lower-cased. Unset keys return nil (no constraint).
func (c *policyCheck) hexList(key string, vals []string, size int) []string {
	if !c.has(key) {
		return nil
	}
	if len(vals) == 0 {
		c.errf(key, "empty allow-list matches nothing; remove the key to leave it unconstrained")
		return nil
	}
	out := make([]string, 0, len(vals))
	for i, v := range vals {
		ek := fmt.Sprintf("%s[%d]", key, i)
		if len(v) != 2*size {
			c.errf(ek, "want %d hex characters, got %d", 2*size, len(v))
			continue
		}
		if j := badHex(v); j >= 0 {
			c.errf(ek, "character %d (%q) is not a hex digit", j+1, v[j])
			continue
		}
		lv := lowerHex(v)
		if slices.Contains(out, lv) {
			c.errf(ek, "%s is listed twice", lv)
			continue
		}
		out = append(out, lv)
	}
	return out
}

// advisoryIDs validates a list of Intel advisory IDs. An empty allow-list
// is meaningful (the node may have no advisory at all); an empty deny-list
// denies nothing and is refused as a mistake. Unset keys return nil.
func (c *policyCheck) advisoryIDs(key string, vals []string, emptyOK bool) []string {
	if !c.has(key) {
		return nil
	}
	if len(vals) == 0 && !emptyOK {
		c.errf(key, "empty list denies nothing; remove the key")
		return nil
	}
	out := make([]string, 0, len(vals))
	for i, v := range vals {
		ek := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case !ValidAdvisoryID(v):
			c.errf(ek, "%q is not an Intel advisory ID (%s, upper case)", truncateValue(v), AdvisoryIDPattern)
		case slices.Contains(out, v):
			c.errf(ek, "%s is listed twice", v)
		default:
			out = append(out, v)
		}
	}
	return out
}

// truncateValue keeps a configured value short in a message.
func truncateValue(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// strList validates an allow-list of exact strings.
func (c *policyCheck) strList(key string, vals []string) []string {
	if !c.has(key) {
		return nil
	}
	if len(vals) == 0 {
		c.errf(key, "empty allow-list matches nothing; remove the key to leave it unconstrained")
		return nil
	}
	out := make([]string, 0, len(vals))
	for i, v := range vals {
		ek := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case v == "":
			c.errf(ek, "empty string")
		case !utf8.ValidString(v):
			c.errf(ek, "not valid UTF-8")
		case slices.Contains(out, v):
			c.errf(ek, "%q is listed twice", v)
		default:
			out = append(out, v)
		}
	}
	return out
}

func (c *policyCheck) pcrs(raws []rawPCR) map[cctrusted.PCR]map[cctrusted.Algorithm][]string {
	if len(raws) == 0 {
		return nil
	}
	out := make(map[cctrusted.PCR]map[cctrusted.Algorithm][]string)
	for _, r := range raws {
		sub := fmt.Sprintf("pcr %q", r.Index)
		idx, err := strconv.Atoi(r.Index)
		if err != nil || idx < 0 || idx >= cctrusted.NumPCRs || strconv.Itoa(idx) != r.Index {
			c.errf(sub, "want a PCR number 0..23 written in decimal")
			continue
		}
		banks := make(map[cctrusted.Algorithm][]string)
		written := false
		for _, alg := range pcrBanks {
			key := sub + "." + alg.String()
			written = written || c.has(key)
			if l := c.hexList(key, r.bank(alg), alg.Size()); l != nil {
				banks[alg] = l
			}
		}
		if !written {
			c.errf(sub, "empty block: set at least one of sha1, sha256, sha384, sha512")
			continue
		}
		if len(banks) == 0 {
			continue
		}
		out[cctrusted.PCR(idx)] = banks
	}
	return out
}

// consistent refuses golden values that the policy's own tee list makes
// unreachable, which is always an operator mistake.
func (c *policyCheck) consistent(p *Policy) {
	if p.TEE == nil {
		return
	}
	// An Azure TD has both: a TD quote and vTPM PCRs.
	both := slices.Contains(p.TEE, cctrusted.TEESim) || slices.Contains(p.TEE, cctrusted.TEEAzureTDX)
	tdxLike := slices.Contains(p.TEE, cctrusted.TEETDX) || both
	tpmLike := slices.Contains(p.TEE, cctrusted.TEETPM) || both
	tdxKeys := []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "accepted_tcb_statuses", "allow_debug",
		"min_tcb_evaluation_data_number", "allowed_advisory_ids", "denied_advisory_ids"}
	if !tdxLike {
		for _, k := range tdxKeys {
			if c.has(k) {
				c.errf(k, "is a TDX value but tee does not include \"tdx\", \"azure_tdx\" or \"sim\"")
			}
		}
	}
	if !tpmLike && len(p.PCRs) > 0 {
		first := slices.Min(slices.Collect(maps.Keys(p.PCRs)))
		c.errf(fmt.Sprintf("pcr %q", strconv.Itoa(int(first))), "is a TPM value but tee does not include \"tpm\", \"azure_tdx\" or \"sim\"")
	}
}

func badHex(s string) int {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f' || 'A' <= ch && ch <= 'F') {
			return i
		}
	}
	return -1
}

func lowerHex(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if 'A' <= ch && ch <= 'F' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}
