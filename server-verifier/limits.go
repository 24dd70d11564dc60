package serververifier

import (
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
