package adversarial

import (
	"bytes"
	"encoding/binary"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// ccel is a CCEL split into its Spec ID header, its events and the
// padding after them. The walk is written here, not taken from package
// eventlog: u32 index, u32 type, u32 digest count, per digest u16
// algorithm and 48 bytes (TDX firmware logs SHA-384 only), u32 size, data.
type ccel struct {
	head   []byte
	events [][]byte
	size   int // the log area the table declares
}

func splitCCEL(t testing.TB, log []byte) *ccel {
	t.Helper()
	n := 32 + int(binary.LittleEndian.Uint32(log[28:]))
	c := &ccel{head: bytes.Clone(log[:n]), size: len(log)}
	off := n
	for off+8 <= len(log) && binary.LittleEndian.Uint32(log[off:]) != 0xffffffff {
		start := off
		count := int(binary.LittleEndian.Uint32(log[off+8:]))
		off += 12
		for range count {
			if alg := binary.LittleEndian.Uint16(log[off:]); alg != 0x0c {
				t.Fatalf("CCEL event at %d: digest algorithm %#x", start, alg)
			}
			off += 2 + 48
		}
		off += 4 + int(binary.LittleEndian.Uint32(log[off:]))
		c.events = append(c.events, bytes.Clone(log[start:off]))
	}
	return c
}

// join reassembles the log, padded with 0xFF to the table's log area when
// shorter.
func (c *ccel) join() []byte {
	out := bytes.Clone(c.head)
	for _, e := range c.events {
		out = append(out, e...)
	}
	if len(out) < c.size {
		out = append(out, bytes.Repeat([]byte{0xff}, c.size-len(out))...)
	}
	return out
}

func evIndex(e []byte) uint32 { return binary.LittleEndian.Uint32(e) }
func evType(e []byte) uint32  { return binary.LittleEndian.Uint32(e[4:]) }

// measured are the events that extend RTMR0..2 (CC MR 1..3).
func measured(e []byte) bool {
	return evIndex(e) >= 1 && evIndex(e) <= 3 && evType(e) != cctrusted.EventNoAction
}

// pick returns the first measured event after from, on CC MR idx when idx
// is not 0.
func (c *ccel) pick(t testing.TB, from int, idx uint32) int {
	t.Helper()
	for i := from; i < len(c.events); i++ {
		if measured(c.events[i]) && (idx == 0 || evIndex(c.events[i]) == idx) {
			return i
		}
	}
	t.Fatalf("no measured event on CC MR %d after %d", idx, from)
	return 0
}

// editCCEL is a case hook that edits the node's CCEL as sent.
func editCCEL(edit func(t *testing.T, c *ccel) []byte) func(t *testing.T, n *simNode, a *agent) {
	return func(t *testing.T, n *simNode, a *agent) {
		log, _ := sim.DefaultCCEL()
		edited := edit(t, splitCCEL(t, log))
		a.Mutate = func(e *evidencepb.Evidence) { e.Ccel = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_CCEL, edited) }
	}
}

// rawEvent encodes one CCEL event with the given SHA-384 digests.
func rawEvent(index, typ uint32, digests [][]byte, data []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, index)
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(digests)))
	for _, d := range digests {
		b = binary.LittleEndian.AppendUint16(b, 0x0c)
		b = append(b, d...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// TestFirmwareLogTampering: CCEL events reordered, moved between
// registers, retyped, injected, or with counts and sizes that lie.
func TestFirmwareLogTampering(t *testing.T) {
	zero := make([]byte, 48)
	runSimCases(t, []simCase{
		{
			name: "two events of one register swapped",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				j := i + 1
				for ; j < len(c.events); j++ {
					if measured(c.events[j]) && evIndex(c.events[j]) == 2 && !bytes.Equal(c.events[i][14:62], c.events[j][14:62]) {
						break
					}
				}
				c.events[i], c.events[j] = c.events[j], c.events[i]
				return c.join()
			}),
			want: reject(codes.PermissionDenied, "ccel_replay", "rtmr1"),
		},
		{
			name: "event moved from RTMR1 to RTMR2",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				binary.LittleEndian.PutUint32(c.events[i], 3)
				return c.join()
			}),
			want: reject(codes.PermissionDenied, "ccel_replay"),
		},
		{
			name: "event moved from RTMR0 to RTMR1",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 1)
				binary.LittleEndian.PutUint32(c.events[i], 2)
				return c.join()
			}),
			want: reject(codes.PermissionDenied, "ccel_replay"),
		},
		{
			name: "measured event removed",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 3)
				c.events = append(c.events[:i], c.events[i+1:]...)
				return c.join()
			}),
			want: reject(codes.PermissionDenied, "ccel_replay", "rtmr2"),
		},
		{
			// EV_NO_ACTION is never extended: retyping hides a measurement.
			name: "measured event retyped EV_NO_ACTION",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				binary.LittleEndian.PutUint32(c.events[i][4:], cctrusted.EventNoAction)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "EV_NO_ACTION"),
		},
		{
			// The same with its digest zeroed, as TCG wants for
			// EV_NO_ACTION: well-formed, and RTMR1 lacks the measurement.
			name: "measured event retyped EV_NO_ACTION with a zero digest",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				binary.LittleEndian.PutUint32(c.events[i][4:], cctrusted.EventNoAction)
				copy(c.events[i][14:62], zero)
				return c.join()
			}),
			want: reject(codes.PermissionDenied, "ccel_replay", "rtmr1"),
		},
		{
			// An EV_NO_ACTION event carrying a digest, as if it were
			// measured: TCG requires its digests to be zero.
			name: "EV_NO_ACTION event with a non-zero digest injected",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				ev := rawEvent(2, cctrusted.EventNoAction, [][]byte{bytes.Repeat([]byte{0xab}, 48)}, []byte("not measured"))
				c.events = append(c.events[:i+1], append([][]byte{ev}, c.events[i+1:]...)...)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "EV_NO_ACTION"),
		},
		{
			name: "second Spec ID event in the middle of the log",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				spec := c.head[32:]
				ev := rawEvent(0, cctrusted.EventNoAction, [][]byte{zero}, spec)
				c.events = append(c.events[:i+1], append([][]byte{ev}, c.events[i+1:]...)...)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "second Spec ID"),
		},
		{
			name: "digest count 0xFFFFFFFF",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				binary.LittleEndian.PutUint32(c.events[i][8:], 0xffffffff)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay"),
		},
		{
			name: "digest count 0 on a measured event",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				e := c.events[i]
				c.events[i] = rawEvent(evIndex(e), evType(e), nil, e[12+50+4:])
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay"),
		},
		{
			name: "digest count 2 (the bank twice)",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				e := c.events[i]
				d := e[14:62]
				c.events[i] = rawEvent(evIndex(e), evType(e), [][]byte{d, d}, e[12+50+4:])
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay"),
		},
		{
			name: "event on CC MR 5, outside the bank",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 3)
				binary.LittleEndian.PutUint32(c.events[i], 5)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay"),
		},
		{
			name: "event on CC MR 0xFFFFFFFE",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 3)
				binary.LittleEndian.PutUint32(c.events[i], 0xfffffffe)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay"),
		},
		{
			name: "event data size 0xFFFFFFF0",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				binary.LittleEndian.PutUint32(c.events[i][12+50:], 0xfffffff0)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay"),
		},
		{
			name: "log longer than the table's log area",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				return append(c.join(), bytes.Repeat([]byte{0xff}, 4096)...)
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "log area"),
		},
		{
			name: "table for another CC type",
			setup: func(t *testing.T, n *simNode, a *agent) {
				// CC type 2 (TDX) becomes 1 (SEV); the checksum byte keeps
				// the table's byte sum at zero so only the type is wrong.
				a.Mutate = func(e *evidencepb.Evidence) { e.CcelTable[36]--; e.CcelTable[9]++ }
			},
			want: reject(codes.InvalidArgument, "ccel_replay", "CC type"),
		},
		{
			name: "event type edited to one go-eventlog cannot map",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				for _, e := range c.events {
					if measured(e) && evIndex(e) == 3 {
						binary.LittleEndian.PutUint32(e[4:], 0x8100000d)
					}
				}
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "go-eventlog"),
		},
	})
}

// celCCMR is the CEL (TCG Canonical Event Log) TLV type of a CC MR
// index; a record is the TLVs recnum, index, digests and content, each a
// type byte, a big-endian u32 length and the value.
const celCCMR = 108

// TestRuntimeLogTampering: runtime log records (RTMR3) reordered,
// duplicated, dropped, or claimed for another register or bank.
func TestRuntimeLogTampering(t *testing.T) {
	three := func(t *testing.T, n *simNode) *runtimelog.Log {
		n.RunWorkloads(t, workload(0), workload(1), workload(2))
		return nil
	}
	// rebuild sends a runtime log with the given workloads, register and
	// bank instead of the node's.
	rebuild := func(imr cctrusted.IMR, alg cctrusted.Algorithm, ws ...int) func(t *testing.T, n *simNode, a *agent) {
		return func(t *testing.T, n *simNode, a *agent) {
			three(t, n)
			l := runtimelog.New(imr, alg)
			for _, i := range ws {
				if _, err := l.Append(workload(i)); err != nil {
					t.Fatal(err)
				}
			}
			b, err := l.Encode()
			if err != nil {
				t.Fatal(err)
			}
			a.Mutate = func(e *evidencepb.Evidence) {
				e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, b)
			}
		}
	}
	rtmr3 := cctrusted.RTMR(3).IMR()
	runSimCases(t, []simCase{
		{name: "records reordered", setup: rebuild(rtmr3, cctrusted.AlgSHA384, 1, 0, 2), want: reject(codes.PermissionDenied, "runtime_replay")},
		{name: "record duplicated", setup: rebuild(rtmr3, cctrusted.AlgSHA384, 0, 1, 1, 2), want: reject(codes.PermissionDenied, "runtime_replay")},
		{name: "record dropped", setup: rebuild(rtmr3, cctrusted.AlgSHA384, 0, 2), want: reject(codes.PermissionDenied, "runtime_replay")},
		{name: "record of a workload never run", setup: rebuild(rtmr3, cctrusted.AlgSHA384, 0, 1, 2, 3), want: reject(codes.PermissionDenied, "runtime_replay")},
		{
			// The records are genuine; their CEL index says CC MR 3
			// (RTMR2) instead of 4 (RTMR3).
			name: "records moved to RTMR2",
			setup: func(t *testing.T, n *simNode, a *agent) {
				three(t, n)
				a.Mutate = func(e *evidencepb.Evidence) {
					b := logBytes(t, e.RuntimeLog)
					for off := 0; off+5 <= len(b); {
						typ, size := b[off], int(binary.BigEndian.Uint32(b[off+1:]))
						if typ == celCCMR && size == 1 {
							b[off+5] = 3
						}
						off += 5 + size // the next top-level TLV
					}
					e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, b)
				}
			},
			want: reject(codes.InvalidArgument, "runtime_replay", "not RTMR3"),
		},
		{
			name:  "TPM runtime log (PCR23, SHA-256) from a TDX node",
			setup: rebuild(cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256, 0, 1, 2),
			want:  reject(codes.PermissionDenied, "runtime_replay", "pcr23"),
		},
		{
			name: "log truncated inside a record",
			setup: func(t *testing.T, n *simNode, a *agent) {
				three(t, n)
				a.Mutate = func(e *evidencepb.Evidence) {
					b := logBytes(t, e.RuntimeLog)
					e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, b[:len(b)-7])
				}
			},
			want: reject(codes.InvalidArgument, "runtime_replay"),
		},
	})
}
