package serververifier

import (
	"os"
	"runtime/debug"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/evidence"
)

// MaxSelectors bounds the selectors of one agent. Most of them come from
// the runtime log (one per distinct executable, and the log may hold
// 65,536 records); SPIRE stores every selector of a node in its datastore
// and sends them all in one message on every attestation, so an unbounded
// count would let one node (with a genuine quote: its register really was
// extended that often) make every attestation of it expensive for the
// server. A node with more distinct executables than this is refused with
// ResourceExhausted rather than given a truncated, misleading set.
const MaxSelectors = 4096

// maxHelloBytes bounds the hello payload. The hello is held for as long as
// the server waits for the agent, which costs the agent nothing, so it gets
// a bound of its own instead of max_payload_bytes: its largest legitimate
// content is a checkpoint token (evidence.MaxCheckpointTokenBytes, 32 KiB)
// next to a few hundred bytes of identity and capabilities.
const maxHelloBytes = 2 * evidence.MaxCheckpointTokenBytes

// checkSelectorCount refuses more than MaxSelectors selectors.
func checkSelectorCount(sels []string) error {
	if len(sels) > MaxSelectors {
		return rejectf(codes.ResourceExhausted, appraisal.CheckSelectors, "%d selectors, more than the %d an agent may have (the runtime log names %d or more distinct executables)",
			len(sels), MaxSelectors, len(sels)-MaxSelectors)
	}
	return nil
}

// memoryLimitMargin is what the plugin process may use besides the
// evidence it holds (max_evidence_bytes_in_flight) before the garbage
// collector works harder: the verifications in progress (a decoded copy
// of their evidence and the parsed logs, a few MiB each for the usual
// evidence), the caches and the runtime.
const memoryLimitMargin = 192 << 20

// memoryLimitFromEnv is whether the operator set GOMEMLIMIT, which then
// wins over the limit the configuration implies.
var memoryLimitFromEnv = os.Getenv("GOMEMLIMIT") != ""

// gcPercent is the collector's pacing (GOGC) the plugin binary runs with
// under its memory limit, unless GOGC is set. An attestation allocates
// about 60 KiB and keeps almost nothing, so with the default of 100 the
// live heap of a few MiB made the collector run every hundred or so
// attestations, and each cycle scans the stack of every waiting stream:
// with 256 concurrent attestations, collection was 13% of the plugin's CPU
// (perf). The memory limit still bounds the heap when evidence is large.
const gcPercent = 400

var gcPercentFromEnv = os.Getenv("GOGC") != ""

// memoryLimit returns the Go runtime's soft memory limit for a server that
// holds at most evidenceInFlight bytes of evidence.
//
// Why: every attestation's evidence arrives through the plugin transport,
// which assembles and copies a message before the plugin sees it (about
// three times its size, briefly), and the evidence itself is garbage once
// verified. With the runtime's default pacing that garbage may grow as
// large as everything live, so 256 concurrent attestations of 1 MiB each
// peaked at 821-928 MiB although less than 300 MiB was ever live. The
// live memory is bounded by configuration (the evidence budget and the
// verification slots); the soft limit makes the collector return the rest
// before it adds up, at the price of more collector CPU only when the
// process comes near it. It is soft: the runtime exceeds it rather than
// stall.
func memoryLimit(evidenceInFlight int64) int64 {
	return evidenceInFlight + memoryLimitMargin
}

// applyMemoryLimit sets the runtime's soft memory limit for cfg's evidence
// budget, unless GOMEMLIMIT was set. The limit is process-wide: the plugin
// process serves one plugin.
func applyMemoryLimit(evidenceInFlight int64) (limit int64, set bool) {
	if memoryLimitFromEnv {
		return debug.SetMemoryLimit(-1), false
	}
	limit = memoryLimit(evidenceInFlight)
	debug.SetMemoryLimit(limit)
	if !gcPercentFromEnv {
		debug.SetGCPercent(gcPercent)
	}
	return limit, true
}
