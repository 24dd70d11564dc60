package appraisal

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima/imapolicy"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// An incremental appraisal is a full one that starts later: from the
// register values and log ends an earlier appraisal of the same node
// established (a checkpoint, which the server signs and the agent keeps),
// with logs that hold only what was added since. The quote is verified in
// full. A suffix that replays from the recorded value to the newly signed
// one proves, by the hash chain, that the register saw exactly the recorded
// history and then the suffix, so the recorded facts still hold. Registers
// a start stands for without a log (RTMR0/1 on TDX, whose firmware log is
// not resent) must not have moved. The logs are replayed by the same code
// as a full appraisal's, from the recorded values instead of from zero (or
// from the firmware log's RTMR2).
//
// Whatever does not add up is a *StartError, not a rejection: the caller
// asks for whole logs and appraises again.

// Offset is a position in a growing log (IMA, runtime): entries or records
// before it, and its size in bytes there.
type Offset struct {
	Events, Bytes uint64
}

// Start is where an incremental appraisal begins.
type Start struct {
	// Registers are the recorded register values.
	Registers cctrusted.Registers
	// IMA and Runtime are where the logs sent start; nil for a log that
	// is not sent (the register must then be as recorded, or, for the
	// runtime log, is judged as a full appraisal judges a missing log).
	IMA, Runtime *Offset
	// Firmware holds the recorded firmware facts; nil when none were.
	Firmware *eventlog.Facts
	// IMAVerified and IMAViolations are the IMA list's before IMA.
	IMAVerified   bool
	IMAViolations int
	// IMAVerdicts are the IMA policies' verdicts over the list before
	// IMA, by policy name.
	IMAVerdicts map[string]*imapolicy.Verdict
	// Workloads are the runtime log's before Runtime, and WorkloadsKnown
	// whether they were all it named.
	Workloads      []runtimelog.Workload
	WorkloadsKnown bool
}

// StartError says why evidence cannot be appraised from a Start; a full
// appraisal of whole logs may still succeed.
type StartError struct{ Reason string }

func (e *StartError) Error() string { return "checkpoint not usable: " + e.Reason }

func startErr(format string, args ...any) error {
	return &StartError{Reason: fmt.Sprintf(format, args...)}
}

// register is the recorded value of imr in bank alg, nil when none is.
func (s *Start) register(imr cctrusted.IMR, alg cctrusted.Algorithm) []byte {
	v, ok := s.Registers.Get(imr, alg)
	if !ok {
		return nil
	}
	return v
}

// Next is what an appraisal established that a later one can start from.
type Next struct {
	// Registers are the values to start from, in the order recorded.
	Registers []Register
	// IMA and Runtime are the ends of the logs appraised (zero for one not
	// sent: a later suffix starts at its beginning); nil when the
	// appraisal started from a Start without that log.
	IMA, Runtime *Offset
	Firmware     *eventlog.Facts
	// IMAVerified and IMAViolations are the whole list's.
	IMAVerified   bool
	IMAViolations int
	// IMAVerdicts are the IMA policies' verdicts over the whole list.
	IMAVerdicts map[string]*imapolicy.Verdict
	// Workloads are the distinct (executable, container) pairs of the
	// whole runtime log, sorted.
	Workloads      []runtimelog.Workload
	WorkloadsKnown bool
	// Unusable says why no later appraisal can start from this one (an
	// incomplete runtime log); empty when one can.
	Unusable string
}

// Register is one recorded register value.
type Register struct {
	IMR   cctrusted.IMR
	Alg   cctrusted.Algorithm
	Value []byte
}

func (n *Next) register(imr cctrusted.IMR, alg cctrusted.Algorithm, v []byte) {
	n.Registers = append(n.Registers, Register{IMR: imr, Alg: alg, Value: bytes.Clone(v)})
}

// record fills in the facts: firmware, IMA and the runtime log's workloads.
func (n *Next) record(fw *eventlog.Facts, ir imaResult, rt *runtimeResult) {
	n.Firmware = fw
	n.IMAVerified, n.IMAViolations = ir.verified, ir.violations
	n.IMAVerdicts = imaVerdicts(ir.appraisals)
	n.WorkloadsKnown = rt.known
	if rt.incomplete != nil {
		// A start carries no notices: without one, every later appraisal
		// replays the notice again and keeps the fact.
		n.Unusable = fmt.Sprintf("the runtime log is incomplete from record %d (%v)", rt.incomplete.Record, rt.incomplete.Kind)
		return
	}
	type pair struct{ exe, container string }
	seen := map[pair]bool{}
	for _, w := range rt.workloads {
		k := pair{string(w.ExeSHA256), w.ContainerID}
		if seen[k] {
			continue
		}
		seen[k] = true
		n.Workloads = append(n.Workloads, runtimelog.Workload{ExeSHA256: bytes.Clone(w.ExeSHA256), ContainerID: w.ContainerID})
	}
	slices.SortFunc(n.Workloads, func(a, b runtimelog.Workload) int {
		if c := bytes.Compare(a.ExeSHA256, b.ExeSHA256); c != 0 {
			return c
		}
		return strings.Compare(a.ContainerID, b.ContainerID)
	})
}
