// Package policy evaluates the named golden-value policies of the server
// configuration (conf.Policy) against the facts a verified attestation
// established (Facts). It decides nothing about the evidence itself: every
// fact handed to it has already been proven against hardware-signed values.
//
// Rules, shared by every constraint:
//
//   - A constraint the policy leaves unset does not constrain.
//   - A constraint over a fact this node did not establish (a TDX register
//     on a TPM node, secure boot without a verified firmware log, workloads
//     without a verified runtime log) does not match: a policy can only be
//     satisfied by what was proven.
//   - Allow-lists match when the node's value equals one entry exactly;
//     hex is compared in lower case.
//   - A simulated node (tee "sim") matches only a policy whose tee list names
//     "sim": a policy written without a tee list is written for hardware,
//     and a simulation has no hardware root to stand on.
//
// A node receives the selector "policy:<name>" for every policy it matches,
// whether enforced or warn-only, and "policy_warn:<name>" for every warn-only
// policy it fails. With require_policy, a node that matches no enforced
// policy is rejected (Outcome.Rejection).
package policy

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima/imapolicy"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Facts are what one attestation proved about a node.
type Facts struct {
	// TEE is the node's kind (tdx, tpm, sim).
	TEE cctrusted.TEE
	// MRTD, RTMR and MRConfigID are the TD's signed registers (TDX and the
	// simulator); nil on a TPM node.
	MRTD       []byte
	RTMR       [cctrusted.NumRTMRs][]byte
	MRConfigID []byte
	// PCRs are the quoted PCR values of a TPM node, every quoted bank.
	PCRs cctrusted.Registers
	// TCBStatus is the platform's TDX TCB status; empty when collateral was
	// not evaluated.
	TCBStatus string
	// TCBInfoEvaluationDataNumber and QEIdentityEvaluationDataNumber are the
	// tcbEvaluationDataNumber of the collateral TCBStatus came from, and
	// AdvisoryIDs the Intel advisories of the matching TCB levels. They are
	// established exactly when TCBStatus is.
	TCBInfoEvaluationDataNumber    uint32
	QEIdentityEvaluationDataNumber uint32
	AdvisoryIDs                    []string
	// Debug is the TD DEBUG attribute; nil where there is none (TPM).
	Debug *bool
	// SecureBoot is the measured secure-boot state; nil when no verified
	// firmware log established it.
	SecureBoot *bool
	// KernelCmdline is the measured kernel command line; nil when unknown.
	KernelCmdline *string
	// Workloads are the records of the verified runtime log;
	// WorkloadsKnown is false when there was no log to verify, in which
	// case a runtime constraint cannot be met.
	Workloads      []runtimelog.Workload
	WorkloadsKnown bool
	// WorkloadsUnknown, when set with WorkloadsKnown false, says why the
	// node's runtime record proves nothing (a TPM runtime PCR that can be
	// reset), for the mismatch message.
	WorkloadsUnknown string
	// RuntimeNotice is the verified runtime log's first notice (a caller
	// over its quota, or the log full) and RuntimeFull its log-full
	// notice; both nil when the log names every workload. A runtime
	// constraint cannot be met past a notice.
	RuntimeNotice, RuntimeFull *runtimelog.Notice
	// IMAVerdicts are the verdicts of the IMA runtime policies over the
	// node's verified IMA list, by policy name; a policy with an IMA
	// policy and no verdict here had no verified list to appraise.
	IMAVerdicts map[string]*imapolicy.Verdict
}

// Result is the evaluation of one policy.
type Result struct {
	Name    string
	Digest  string
	Enforce bool
	Match   bool
	// Mismatches name each failed constraint by its configuration key and
	// say what the node had, e.g. `rtmr1: 3fa2... is not in the allow-list`.
	Mismatches []string
	// Warnings are what a warn-only IMA policy (mode = "warn") found: the
	// offending entries (at most imapolicy.MaxFindings, then how many more),
	// which do not fail the policy.
	Warnings []string
}

// Selector is the selector value the result yields: "policy:<name>" on a
// match, "policy_warn:<name>" for a failed warn-only policy, empty for a
// failed enforced policy.
func (r *Result) Selector() string {
	switch {
	case r.Match:
		return "policy:" + r.Name
	case !r.Enforce:
		return "policy_warn:" + r.Name
	}
	return ""
}

// Outcome is the evaluation of every configured policy.
type Outcome struct {
	Results []Result
	// Require mirrors require_policy.
	Require bool
}

// Evaluate checks the node's facts against every policy, in configuration
// order.
func Evaluate(policies []conf.Policy, f *Facts, requirePolicy bool) *Outcome {
	o := &Outcome{Results: make([]Result, 0, len(policies)), Require: requirePolicy}
	for i := range policies {
		o.Results = append(o.Results, EvaluateOne(&policies[i], f))
	}
	return o
}

// Selectors returns the policy selectors of the outcome.
func (o *Outcome) Selectors() []string {
	var s []string
	for i := range o.Results {
		if v := o.Results[i].Selector(); v != "" {
			s = append(s, v)
		}
	}
	return s
}

// Rejection returns an error when require_policy is set and the node
// matches no enforced policy; the message names every enforced policy's
// first failed constraint. It is nil otherwise: a failed policy on its own
// only withholds its selector.
func (o *Outcome) Rejection() error {
	if !o.Require {
		return nil
	}
	var failed []string
	for i := range o.Results {
		r := &o.Results[i]
		if !r.Enforce {
			continue
		}
		if r.Match {
			return nil
		}
		failed = append(failed, fmt.Sprintf("policy %q: %s", r.Name, strings.Join(r.Mismatches, "; ")))
	}
	if len(failed) == 0 {
		return fmt.Errorf("require_policy: the node matches no enforced policy (none is configured: every policy is warn-only)")
	}
	return fmt.Errorf("require_policy: the node matches no enforced policy: %s", strings.Join(failed, " | "))
}

// EvaluateOne checks the node's facts against one policy.
func EvaluateOne(p *conf.Policy, f *Facts) Result {
	r := Result{Name: p.Name, Digest: p.Digest(), Enforce: p.Enforce}
	miss := func(key, format string, args ...any) {
		r.Mismatches = append(r.Mismatches, key+": "+fmt.Sprintf(format, args...))
	}
	switch {
	case len(p.TEE) > 0 && !slices.Contains(p.TEE, f.TEE):
		miss("tee", "node is %s, the policy allows %s", f.TEE, joinTEE(p.TEE))
	case len(p.TEE) == 0 && f.TEE == cctrusted.TEESim:
		miss("tee", "node is simulated; a policy matches a sim node only when its tee list names \"sim\"")
	}
	tdxList := func(key string, allow []string, v []byte) {
		if allow == nil {
			return
		}
		if v == nil {
			miss(key, "not established for a %s node", f.TEE)
			return
		}
		if h := hex.EncodeToString(v); !containsHex(allow, h) {
			miss(key, "%s is not in the allow-list", h)
		}
	}
	tdxList("mrtd", p.MRTD, f.MRTD)
	for i := range p.RTMR {
		tdxList(fmt.Sprintf("rtmr%d", i), p.RTMR[i], f.RTMR[i])
	}
	tdxList("mrconfigid", p.MRConfigID, f.MRConfigID)

	pcrs := make([]cctrusted.PCR, 0, len(p.PCRs))
	for n := range p.PCRs {
		pcrs = append(pcrs, n)
	}
	slices.Sort(pcrs)
	for _, n := range pcrs {
		banks := make([]cctrusted.Algorithm, 0, len(p.PCRs[n]))
		for alg := range p.PCRs[n] {
			banks = append(banks, alg)
		}
		slices.Sort(banks)
		for _, alg := range banks {
			key := fmt.Sprintf("pcr %d %s", n, alg)
			v, ok := f.PCRs.Get(n.IMR(), alg)
			if !ok {
				miss(key, "not quoted by this node")
				continue
			}
			if h := hex.EncodeToString(v); !containsHex(p.PCRs[n][alg], h) {
				miss(key, "%s is not in the allow-list", h)
			}
		}
	}

	if len(p.AcceptedTCBStatuses) > 0 {
		switch {
		case f.TCBStatus == "":
			miss("accepted_tcb_statuses", "the TCB status was not evaluated for this node")
		case !slices.Contains(p.AcceptedTCBStatuses, conf.TCBStatus(f.TCBStatus)):
			miss("accepted_tcb_statuses", "%s is not accepted", f.TCBStatus)
		}
	}
	evaluateCollateral(p, f, miss)
	boolFact := func(key string, want *bool, have *bool, what string) {
		if want == nil {
			return
		}
		switch {
		case have == nil:
			miss(key, "%s is not established for this node", what)
		case *have != *want:
			miss(key, "%s is %v, the policy requires %v", what, *have, *want)
		}
	}
	boolFact("allow_debug", p.AllowDebug, f.Debug, "the DEBUG attribute")
	boolFact("secure_boot", p.SecureBoot, f.SecureBoot, "secure boot")
	if p.KernelCmdline != nil {
		switch {
		case f.KernelCmdline == nil:
			miss("kernel_cmdline", "no verified firmware log established the command line")
		case !slices.Contains(p.KernelCmdline, *f.KernelCmdline):
			miss("kernel_cmdline", "%q is not in the allow-list", truncate(*f.KernelCmdline))
		}
	}
	evaluateRuntime(&p.Runtime, f, miss)
	r.Warnings = evaluateIMA(p, f, miss)
	r.Match = len(r.Mismatches) == 0
	return r
}

// evaluateCollateral checks the evaluation data numbers and advisories of
// the TDX collateral the node's TCB status came from.
func evaluateCollateral(p *conf.Policy, f *Facts, miss func(string, string, ...any)) {
	if f.TCBStatus == "" {
		// Without collateral nothing says which advisories apply: even a
		// deny-list cannot be satisfied by what was not established.
		for _, k := range []struct {
			key string
			set bool
		}{
			{"min_tcb_evaluation_data_number", p.MinTCBEvaluationDataNumber != 0},
			{"allowed_advisory_ids", p.AllowedAdvisoryIDs != nil},
			{"denied_advisory_ids", p.DeniedAdvisoryIDs != nil},
		} {
			if k.set {
				miss(k.key, "the TCB status was not evaluated for this node")
			}
		}
		return
	}
	if min := p.MinTCBEvaluationDataNumber; min != 0 {
		if n := f.TCBInfoEvaluationDataNumber; n < min {
			miss("min_tcb_evaluation_data_number", "TCB info has evaluation data number %d, the policy requires at least %d", n, min)
		}
		if n := f.QEIdentityEvaluationDataNumber; n < min {
			miss("min_tcb_evaluation_data_number", "QE identity has evaluation data number %d, the policy requires at least %d", n, min)
		}
	}
	for _, id := range f.AdvisoryIDs {
		if p.AllowedAdvisoryIDs != nil && !slices.Contains(p.AllowedAdvisoryIDs, id) {
			miss("allowed_advisory_ids", "advisory %s of the node's TCB level is not allowed", id)
		}
		if slices.Contains(p.DeniedAdvisoryIDs, id) {
			miss("denied_advisory_ids", "advisory %s of the node's TCB level is denied", id)
		}
	}
}

// evaluateRuntime checks every recorded workload against the runtime
// allow-lists. A workload without a container ID is outside every
// allowed_containers list: a host process is not one of the allowed
// containers, and treating it as allowed would widen the list.
func evaluateRuntime(rp *conf.RuntimePolicy, f *Facts, miss func(string, string, ...any)) {
	if rp.AllowedExeSHA256 == nil && rp.AllowedContainers == nil {
		return
	}
	if !f.WorkloadsKnown {
		if f.WorkloadsUnknown != "" {
			miss("runtime", "%s", f.WorkloadsUnknown)
		} else {
			miss("runtime", "no verified runtime log says what the node ran")
		}
		return
	}
	if n := f.RuntimeNotice; n != nil && n.Kind == runtimelog.NoticeQuota {
		miss("runtime", "the runtime log is incomplete since record %d: caller %s reached its quota and its later workloads are not recorded", n.Record, truncate(n.Subject))
	}
	if n := f.RuntimeFull; n != nil {
		miss("runtime", "the runtime log is full since record %d: workloads started after it are not recorded", n.Record)
	}
	for i, w := range f.Workloads {
		if rp.AllowedExeSHA256 != nil {
			if h := hex.EncodeToString(w.ExeSHA256); !containsHex(rp.AllowedExeSHA256, h) {
				miss("runtime.allowed_exe_sha256", "runtime log record %d ran exe sha256 %s (%s), which is not allowed", i, h, truncate(w.ExePath))
			}
		}
		if rp.AllowedContainers != nil && !slices.Contains(rp.AllowedContainers, w.ContainerID) {
			if w.ContainerID == "" {
				miss("runtime.allowed_containers", "runtime log record %d ran outside any container (%s)", i, truncate(w.ExePath))
			} else {
				miss("runtime.allowed_containers", "runtime log record %d ran in container %q, which is not allowed", i, truncate(w.ContainerID))
			}
		}
	}
}

func containsHex(allow []string, h string) bool {
	for _, a := range allow {
		if strings.EqualFold(a, h) {
			return true
		}
	}
	return false
}

func joinTEE(ts []cctrusted.TEE) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// truncate keeps node-supplied strings short in messages and log lines.
func truncate(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
