package appraisal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/policy"
)

// Node is what an appraisal established about the node behind the
// evidence, whatever its TEE: the facts policies are evaluated on, the
// selectors those facts give (every selector the evidence gives is built
// here), and what a later, incremental appraisal can start from.
type Node struct {
	Facts     policy.Facts
	Selectors []string
	Next      Next
	// IMAWithheld is set when ima:verified:true was withheld from a list
	// that replayed, because of its violations (see NodeOptions).
	IMAWithheld bool
	// IMA is what each IMA runtime policy made of the IMA list (nil
	// without policies or without a verified list); Facts.IMAVerdicts
	// holds the same verdicts by name.
	IMA []IMAAppraisal
}

// NodeOptions are the choices about a node's logs that do not depend on
// its TEE.
type NodeOptions struct {
	// AllowIMAViolations grants ima:verified:true to a list with
	// violation entries.
	AllowIMAViolations bool
	// Start makes the appraisal incremental (see Start); nil appraises
	// whole logs.
	Start *Start
	// IMAPolicies appraise the replayed IMA list (see appraiseIMA).
	IMAPolicies []IMAPolicy
}

// factsFromFirmware copies what a verified firmware log established into
// the policy facts; nil facts (no log) leave them unknown.
func factsFromFirmware(f *policy.Facts, fw *eventlog.Facts) {
	if fw == nil {
		return
	}
	if fw.SecureBootKnown {
		sb := fw.SecureBoot
		f.SecureBoot = &sb
	}
	if fw.KernelCmdlineKnown {
		cmd := fw.KernelCmdline
		f.KernelCmdline = &cmd
	}
}

// bootSelectors are the selectors of the facts a firmware log proved.
func bootSelectors(f *policy.Facts, fw *eventlog.Facts) []string {
	var s []string
	if f.SecureBoot != nil {
		s = append(s, "boot:secure_boot:"+strconv.FormatBool(*f.SecureBoot))
	}
	if f.KernelCmdline != nil {
		sum := sha256.Sum256([]byte(*f.KernelCmdline))
		s = append(s, "boot:cmdline_sha256:"+hex.EncodeToString(sum[:]))
	}
	if fw != nil && fw.Bootloader != "" && isSelectorToken(fw.Bootloader) {
		s = append(s, "boot:bootloader:"+fw.Bootloader)
	}
	return s
}

// isSelectorToken keeps values derived from log contents short and plain.
func isSelectorToken(v string) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// imaResult is what the IMA list established, over the whole list: on an
// incremental appraisal the start's prefix and the suffix together.
type imaResult struct {
	// verified: an IMA list replayed to the signed register (RTMR2, PCR10).
	verified bool
	// appraisals are the IMA policies' (appraiseIMA).
	appraisals []IMAAppraisal
	// violations counts its violation entries (ToMToU, open-writers): the
	// kernel extended 0xFF for them and hashed nothing, so the list does not
	// say what those files held.
	violations int
}

// imaSelectors are ima:violations:<n> for a list with violations, and
// ima:verified:true for a replayed list without any, or with some when
// allow says they do not matter. A list with violations that replays is
// not rejected: the selector is withheld (withheld true), so entries and
// policies that rely on IMA do not match, and the node keeps what else it
// proved.
func imaSelectors(r imaResult, allow bool) (s []string, withheld bool) {
	if r.violations > 0 {
		s = append(s, "ima:violations:"+strconv.Itoa(r.violations))
	}
	switch {
	case !r.verified:
	case r.violations == 0 || allow:
		s = append(s, "ima:verified:true")
	default:
		withheld = true
	}
	return s, withheld
}

// imaSuffix is what the IMA list sent added: all of it, on a full
// appraisal.
type imaSuffix struct {
	entries, violations int
	// list holds the entries sent, for the IMA policies.
	list []ima.Entry
}

// with is the IMA result of the whole list: what the start recorded for
// the prefix (nothing on a full appraisal) and what the list sent added.
// Violations add up, so a suffix without any cannot clear the prefix's.
func (s imaSuffix) with(start *Start) imaResult {
	r := imaResult{verified: s.entries > 0, violations: s.violations}
	if start != nil {
		r.verified = r.verified || start.IMAVerified
		r.violations += start.IMAViolations
	}
	return r
}

// replayIMA parses the IMA list raw (whole, or from start's offset on) and
// replays it with verify, which starts from the value before its first
// entry; n records its end. what names the replay in errors ("CCEL then
// IMA", "IMA log").
func replayIMA(raw []byte, start *Start, n *Next, what string, verify func(*ima.Log) error) (imaSuffix, error) {
	base := Offset{}
	if start != nil {
		base = *start.IMA
	}
	var suffix imaSuffix
	if len(raw) > 0 {
		l, err := ima.Parse(raw, ima.Options{})
		if err != nil {
			if start != nil {
				return imaSuffix{}, startErr("the IMA suffix does not parse: %v", err)
			}
			return imaSuffix{}, &Error{Check: CheckIMAReplay, Code: CodeInvalidEvidence, Err: fmt.Errorf("%s: %w", what, err)}
		}
		if err := verify(l); err != nil {
			if start != nil {
				return imaSuffix{}, startErr("the checkpoint's register and the IMA suffix (%d entries from entry %d) do not replay to the signed value: %v", len(l.Entries), base.Events, err)
			}
			return imaSuffix{}, replayError(CheckIMAReplay, fmt.Sprintf("%s (%d entries)", what, len(l.Entries)), err)
		}
		suffix = imaSuffix{entries: len(l.Entries), violations: l.Violations(), list: l.Entries}
	}
	n.IMA = &Offset{Events: base.Events + uint64(suffix.entries), Bytes: base.Bytes + uint64(len(raw))}
	return suffix, nil
}

// replayError classes a log that does not replay as a rejection, and one
// that cannot be replayed as invalid evidence.
func replayError(check, what string, err error) *Error {
	var me *cctrusted.MismatchError
	if errors.As(err, &me) {
		return &Error{Check: check, Code: CodeRejected, Err: fmt.Errorf("%s does not replay to the quoted registers: %w", what, err)}
	}
	return &Error{Check: check, Code: CodeInvalidEvidence, Err: fmt.Errorf("%s: %w", what, err)}
}

// runtimeResult is what the runtime log established.
type runtimeResult struct {
	workloads []runtimelog.Workload
	// known is true when the log replayed to the signed register, or when
	// there was no log and the register is still at its reset value (the
	// node ran nothing it recorded).
	known bool
	// records is the size of the verified log, the start's records
	// included (0 without one); imr and alg the register it extends, when
	// there was a log.
	records int
	imr     cctrusted.IMR
	alg     cctrusted.Algorithm
	// incomplete is the log's first notice (a caller over its quota, or
	// the log full): from that record on the log does not name every
	// workload the node ran. full is the log-full notice.
	incomplete, full *runtimelog.Notice
}

// selectors are runtime:exe:sha256:<hex>, one per distinct executable, and
// runtime:incomplete:true / runtime:log_full:true when the log says so.
func (r *runtimeResult) selectors() []string {
	var s []string
	for _, w := range r.workloads {
		s = append(s, "runtime:exe:sha256:"+hex.EncodeToString(w.ExeSHA256))
	}
	slices.Sort(s)
	s = slices.Compact(s)
	if r.incomplete != nil {
		s = append(s, "runtime:incomplete:true")
	}
	if r.full != nil {
		s = append(s, "runtime:log_full:true")
	}
	return s
}

// decodeRuntime decodes the runtime log raw (nil for none): whole, or from
// the start's offset on. A start without a runtime offset did not ask for
// the log: it is judged as absent.
func decodeRuntime(raw []byte, start *Start) (*runtimelog.Log, error) {
	if len(raw) == 0 || start != nil && start.Runtime == nil {
		return nil, nil
	}
	if start == nil {
		l, err := runtimelog.Decode(raw, runtimelog.DefaultLimits())
		if err != nil {
			return nil, &Error{Check: CheckRuntimeReplay, Code: CodeInvalidEvidence, Err: fmt.Errorf("runtime log: %w", err)}
		}
		return l, nil
	}
	first := start.Runtime.Events
	if first > uint64(runtimelog.DefaultLimits().MaxRecords) {
		return nil, startErr("the checkpoint's runtime log offset %d is past the largest log", first)
	}
	l, err := runtimelog.DecodeFrom(raw, int(first), runtimelog.DefaultLimits())
	if err != nil {
		return nil, startErr("runtime suffix: %v", err)
	}
	return l, nil
}

// replayRuntime replays the runtime log l (nil: none sent) on imr, bank
// alg, to the signed value: from zero, or from the value the start
// recorded before the log's first record. n records its end.
func replayRuntime(l *runtimelog.Log, rawSize int, start *Start, imr cctrusted.IMR, alg cctrusted.Algorithm, signed []byte, n *Next) (*runtimeResult, error) {
	if start == nil || start.Runtime == nil {
		if start == nil {
			n.Runtime = &Offset{}
		}
		if l == nil {
			return &runtimeResult{known: allZero(signed)}, nil
		}
		if l.IMR() != imr {
			return nil, &Error{Check: CheckRuntimeReplay, Code: CodeRejected, Err: fmt.Errorf("runtime log extends %v, this node's runtime register is %v", l.IMR(), imr)}
		}
		if l.Algorithm() != alg {
			return nil, &Error{Check: CheckRuntimeReplay, Code: CodeRejected, Err: fmt.Errorf("runtime log is in the %v bank, want %v", l.Algorithm(), alg)}
		}
	}
	base := Offset{}
	rt := &runtimeResult{known: true, imr: imr, alg: alg}
	var from []byte
	if start != nil && start.Runtime != nil {
		base = *start.Runtime
		if from = start.register(imr, alg); from == nil {
			return nil, startErr("the checkpoint records no %v value in the %v bank", imr, alg)
		}
		rt.known = start.WorkloadsKnown
		rt.workloads = slices.Clone(start.Workloads)
		if l == nil && !bytes.Equal(from, signed) {
			return nil, startErr("%v moved since the checkpoint, but the runtime suffix is empty", imr)
		}
		if l != nil && (l.IMR() != imr || l.Algorithm() != alg) {
			return nil, startErr("the runtime suffix extends %v in the %v bank, the checkpoint recorded %v in %v", l.IMR(), l.Algorithm(), imr, alg)
		}
	}
	records := 0
	if l != nil {
		if err := l.VerifyFrom(from, signed); err != nil {
			var me *cctrusted.MismatchError
			switch {
			case from != nil:
				return nil, startErr("the checkpoint's %v and the runtime suffix (%d records from record %d) do not replay to the signed value: %v", imr, l.Len(), l.First(), err)
			case errors.As(err, &me):
				return nil, &Error{Check: CheckRuntimeReplay, Code: CodeRejected, Err: fmt.Errorf("runtime log does not replay to the signed %v: %w", imr, err)}
			}
			return nil, &Error{Check: CheckRuntimeReplay, Code: CodeInvalidEvidence, Err: fmt.Errorf("runtime log: %w", err)}
		}
		records = l.Len()
		rt.workloads = append(rt.workloads, l.Workloads()...)
		if n, ok := l.Incomplete(); ok {
			rt.incomplete = &n
		}
		if n, ok := l.Full(); ok {
			rt.full = &n
		}
	}
	rt.records = int(base.Events) + records
	n.Runtime = &Offset{Events: base.Events + uint64(records), Bytes: base.Bytes + uint64(rawSize)}
	return rt, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
