package appraisal

import (
	"context"
	"errors"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/eventlog/ima/imapolicy"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// IMAPolicy is one configured IMA runtime policy, compiled once by the
// caller (per configuration, never per appraisal), under the name of the
// server policy that holds it.
type IMAPolicy struct {
	Name   string
	Policy *imapolicy.Policy
}

// IMAAppraisal is what one IMA policy made of the node's IMA list.
type IMAAppraisal struct {
	// Name is the server policy's.
	Name string
	// Verdict covers the whole list: on an incremental appraisal the
	// start's verdict continued over the suffix.
	Verdict *imapolicy.Verdict
	// Appraised counts, by result, the entries appraised by this
	// appraisal only (the suffix on an incremental one): what metrics
	// count, and what shows that a prefix was not appraised again.
	Appraised imapolicy.Counts
}

// appraiseIMA appraises the replayed IMA entries against every policy,
// after the replay proved them: the whole list, or (with a start) the
// suffix, continuing the verdict the start recorded for each policy. It
// returns nothing when no list was verified (the policy evaluation then
// says "no IMA list"). A start that cannot be continued (no verdict for a
// policy, another policy fingerprint, a verdict that does not match the
// suffix) is a *StartError: the caller asks for the whole list and every
// entry is appraised again.
//
// boot holds the boot_aggregate digests the signed registers give
// (bootAggregates on TPM; none on TDX): the boot_aggregate entry is allowed
// with one of them, or when the policy lists or excludes it.
func appraiseIMA(ctx context.Context, policies []IMAPolicy, s imaSuffix, start *Start, ir imaResult, boot [][]byte) ([]IMAAppraisal, error) {
	if len(policies) == 0 || !ir.verified {
		return nil, nil
	}
	first := 0
	if start != nil && start.IMA != nil {
		first = int(start.IMA.Events)
	}
	out := make([]IMAAppraisal, 0, len(policies))
	for _, p := range policies {
		if err := ctx.Err(); err != nil {
			return nil, &Error{Check: CheckIMAPolicy, Code: CodeUnavailable, Err: err}
		}
		prev, from := p.Policy.Start(), 0
		if start != nil {
			pv, ok := start.IMAVerdicts[p.Name]
			if !ok || pv == nil {
				return nil, startErr("the checkpoint carries no verdict of the IMA policy of policy %q", p.Name)
			}
			prev, from = *pv, first
		}
		v, err := p.Policy.Appraise(prev, from, s.list, imapolicy.Options{BootAggregates: boot})
		if err != nil {
			if start != nil && errors.Is(err, imapolicy.ErrResume) {
				return nil, startErr("policy %q: %v", p.Name, err)
			}
			return nil, &Error{Check: CheckIMAPolicy, Code: CodeInvalidEvidence, Err: fmt.Errorf("policy %q: %w", p.Name, err)}
		}
		out = append(out, IMAAppraisal{Name: p.Name, Verdict: &v, Appraised: countsSince(v.Counts, prev.Counts)})
	}
	return out, nil
}

// bootAggregates computes, from quoted PCRs, the boot_aggregate digest a
// Linux kernel with this TPM writes as the first IMA entry
// (ima_calc_boot_aggregate, security/integrity/ima/ima_crypto.c): the
// bank's hash over the concatenated values of PCR0..7 in that bank, and
// in any bank other than SHA-1 of PCR8..9 too (kernels since 5.8; older
// ones used the SHA-1 bank only). The kernel takes the bank of its IMA
// hash algorithm, else SHA-256, else SHA-1, and names that algorithm in the
// entry's digest, so every bank the quote fully covers gives one candidate
// and the entry's digest selects it (they differ in length).
//
// The values are those at quote time: PCR0..9 do not move after the kernel
// starts on a normal boot; where something extends them later the digest
// does not match and the entry fails unless the policy allows it. A bank
// the quote leaves a needed PCR out of gives nothing, never a guess. An
// all-zero boot_aggregate (a kernel that found no TPM) is never computed
// here: it proves nothing about the boot, so only a policy that lists it
// allows it.
func bootAggregates(pcrs cctrusted.Registers) [][]byte {
	var out [][]byte
	for _, alg := range []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384, cctrusted.AlgSHA512} {
		last := cctrusted.PCR(9)
		if alg == cctrusted.AlgSHA1 {
			last = 7
		}
		ch, err := alg.Hash()
		if err != nil || !ch.Available() {
			continue
		}
		h := ch.New()
		complete := true
		for i := cctrusted.PCR(0); i <= last; i++ {
			v, ok := pcrs.Get(i.IMR(), alg)
			if !ok || len(v) != alg.Size() {
				complete = false
				break
			}
			h.Write(v)
		}
		if complete {
			out = append(out, h.Sum(nil))
		}
	}
	return out
}

// countsSince is what a verdict added to prev's counts.
func countsSince(c, prev imapolicy.Counts) imapolicy.Counts {
	return imapolicy.Counts{
		Digest: c.Digest - prev.Digest, Signature: c.Signature - prev.Signature, Excluded: c.Excluded - prev.Excluded,
		Boot: c.Boot - prev.Boot, Keyring: c.Keyring - prev.Keyring, Buffer: c.Buffer - prev.Buffer,
		Violation: c.Violation - prev.Violation, OutOfScope: c.OutOfScope - prev.OutOfScope, Failed: c.Failed - prev.Failed,
	}
}

// imaVerdicts indexes the verdicts by policy name, for policy.Facts and
// Next.
func imaVerdicts(as []IMAAppraisal) map[string]*imapolicy.Verdict {
	if as == nil {
		return nil
	}
	m := make(map[string]*imapolicy.Verdict, len(as))
	for _, a := range as {
		m[a.Name] = a.Verdict
	}
	return m
}
