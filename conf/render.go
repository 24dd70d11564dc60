package conf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// digestDomain starts every canonical encoding so that a policy digest can
// never collide with a hash of some other structure, and so the encoding can
// be versioned.
const digestDomain = "ccnp-spire policy v1\x00"

// Digest returns the lower-case hex SHA-256 of the policy's canonical
// encoding, for audit logs. It covers the content (every constraint and
// Enforce) but not Name or Source, and does not depend on the order of keys
// or list entries in the HCL it came from, nor on hex case or whitespace.
//
// Canonical encoding, after digestDomain: for each constraint that is set,
// in the order enforce, tee, mrtd, rtmr0..rtmr3, mrconfigid, pcr<N>.<bank>
// (PCRs ascending, banks sha1, sha256, sha384, sha512),
// accepted_tcb_statuses, allow_debug, secure_boot, kernel_cmdline,
// runtime.allowed_exe_sha256, runtime.allowed_containers,
// min_tcb_evaluation_data_number (decimal), allowed_advisory_ids,
// denied_advisory_ids, ima (see imaDigestValue):
//
//	str(name) || u32be(count) || str(v) for each value, values sorted bytewise
//
// where str(s) = u32be(len(s)) || s and booleans are "true" or "false".
func (p *Policy) Digest() string {
	var buf []byte
	field := func(name string, vals []string) {
		buf = appendStr(buf, name)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(vals)))
		for _, v := range slices.Sorted(slices.Values(vals)) {
			buf = appendStr(buf, v)
		}
	}
	buf = append(buf, digestDomain...)
	field("enforce", []string{strconv.FormatBool(p.Enforce)})
	if p.TEE != nil {
		field("tee", teeStrings(p.TEE))
	}
	if p.MRTD != nil {
		field("mrtd", p.MRTD)
	}
	for i, r := range p.RTMR {
		if r != nil {
			field(fmt.Sprintf("rtmr%d", i), r)
		}
	}
	if p.MRConfigID != nil {
		field("mrconfigid", p.MRConfigID)
	}
	for _, idx := range slices.Sorted(maps.Keys(p.PCRs)) {
		for _, alg := range pcrBanks {
			if v, ok := p.PCRs[idx][alg]; ok {
				field(fmt.Sprintf("pcr%d.%s", idx, alg), v)
			}
		}
	}
	if p.AcceptedTCBStatuses != nil {
		field("accepted_tcb_statuses", tcbStrings(p.AcceptedTCBStatuses))
	}
	if p.AllowDebug != nil {
		field("allow_debug", []string{strconv.FormatBool(*p.AllowDebug)})
	}
	if p.SecureBoot != nil {
		field("secure_boot", []string{strconv.FormatBool(*p.SecureBoot)})
	}
	if p.KernelCmdline != nil {
		field("kernel_cmdline", p.KernelCmdline)
	}
	if p.Runtime.AllowedExeSHA256 != nil {
		field("runtime.allowed_exe_sha256", p.Runtime.AllowedExeSHA256)
	}
	if p.Runtime.AllowedContainers != nil {
		field("runtime.allowed_containers", p.Runtime.AllowedContainers)
	}
	// Appended after the v1 fields, so policies without them keep their
	// digests.
	if p.MinTCBEvaluationDataNumber != 0 {
		field("min_tcb_evaluation_data_number", []string{strconv.FormatUint(uint64(p.MinTCBEvaluationDataNumber), 10)})
	}
	if p.AllowedAdvisoryIDs != nil {
		field("allowed_advisory_ids", p.AllowedAdvisoryIDs)
	}
	if p.DeniedAdvisoryIDs != nil {
		field("denied_advisory_ids", p.DeniedAdvisoryIDs)
	}
	if v := p.imaDigestValue(); v != "" {
		field("ima", []string{v})
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

func appendStr(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

func teeStrings(ts []cctrusted.TEE) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

func tcbStrings(ts []TCBStatus) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// HCL renders the policy as a policy block that ParsePolicies reads back to
// an equal Policy (Source aside). Lists keep their order; keys come in a
// fixed order so that generated policies diff cleanly.
func (p *Policy) HCL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s {\n", quoteHCL(p.Name))
	fmt.Fprintf(&b, "  enforce = %t\n", p.Enforce)
	list := func(indent, key string, vals []string) {
		if vals == nil {
			return
		}
		if len(vals) == 0 {
			fmt.Fprintf(&b, "%s%s = []\n", indent, key)
			return
		}
		if len(vals) == 1 {
			fmt.Fprintf(&b, "%s%s = [%s]\n", indent, key, quoteHCL(vals[0]))
			return
		}
		fmt.Fprintf(&b, "%s%s = [\n", indent, key)
		for _, v := range vals {
			fmt.Fprintf(&b, "%s  %s,\n", indent, quoteHCL(v))
		}
		fmt.Fprintf(&b, "%s]\n", indent)
	}
	if p.TEE != nil {
		list("  ", "tee", teeStrings(p.TEE))
	}
	list("  ", "mrtd", p.MRTD)
	for i, r := range p.RTMR {
		list("  ", fmt.Sprintf("rtmr%d", i), r)
	}
	list("  ", "mrconfigid", p.MRConfigID)
	for _, idx := range slices.Sorted(maps.Keys(p.PCRs)) {
		fmt.Fprintf(&b, "  pcr \"%d\" {\n", idx)
		for _, alg := range pcrBanks {
			if v, ok := p.PCRs[idx][alg]; ok {
				list("    ", alg.String(), v)
			}
		}
		b.WriteString("  }\n")
	}
	if p.AcceptedTCBStatuses != nil {
		list("  ", "accepted_tcb_statuses", tcbStrings(p.AcceptedTCBStatuses))
	}
	if p.MinTCBEvaluationDataNumber != 0 {
		fmt.Fprintf(&b, "  min_tcb_evaluation_data_number = %d\n", p.MinTCBEvaluationDataNumber)
	}
	list("  ", "allowed_advisory_ids", p.AllowedAdvisoryIDs)
	list("  ", "denied_advisory_ids", p.DeniedAdvisoryIDs)
	if p.AllowDebug != nil {
		fmt.Fprintf(&b, "  allow_debug = %t\n", *p.AllowDebug)
	}
	if p.SecureBoot != nil {
		fmt.Fprintf(&b, "  secure_boot = %t\n", *p.SecureBoot)
	}
	list("  ", "kernel_cmdline", p.KernelCmdline)
	if p.Runtime.AllowedExeSHA256 != nil || p.Runtime.AllowedContainers != nil {
		b.WriteString("  runtime {\n")
		list("    ", "allowed_exe_sha256", p.Runtime.AllowedExeSHA256)
		list("    ", "allowed_containers", p.Runtime.AllowedContainers)
		b.WriteString("  }\n")
	}
	p.writeIMAHCL(&b)
	b.WriteString("}\n")
	return b.String()
}

// Validate checks a policy built in code (for example by a CLI from a golden
// node) with the same rules as a parsed one, by rendering and re-parsing it.
func (p *Policy) Validate() error {
	ps, err := ParsePolicies(p.HCL(), "policy")
	if err != nil {
		return err
	}
	if len(ps) != 1 {
		return fmt.Errorf("policy %q: rendered to %d policies", p.Name, len(ps))
	}
	return nil
}

// quoteHCL quotes s for HCL v1. Go's quoting uses only escapes HCL v1 also
// reads; "$" is escaped as well because HCL v1 does not unescape inside
// "${...}", which would change the value.
func quoteHCL(s string) string {
	return strings.ReplaceAll(strconv.Quote(s), "$", `\u0024`)
}
