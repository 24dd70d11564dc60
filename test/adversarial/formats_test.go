package adversarial

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// zeroFilled reassembles the CCEL with the unused log area zero, as some
// firmware leaves it (no end marker, no 0xFF), plus extra after the fill
// starts.
func (c *ccel) zeroFilled(extra []byte, at int) []byte {
	out := bytes.Clone(c.head)
	for _, e := range c.events {
		out = append(out, e...)
	}
	fill := make([]byte, c.size-len(out))
	copy(fill[at:], extra)
	return append(out, fill...)
}

// TestZeroFilledCCEL: a CCEL whose unused area is zero is read up to the
// fill, over the real plugin transport; nothing in the fill is read as an
// event, and anything but zeros there is refused.
func TestZeroFilledCCEL(t *testing.T) {
	t.Run("genuine log, zero filled", func(t *testing.T) {
		n := newSimNode(t, sim.InitOptions{})
		a := n.agent(t)
		editCCEL(func(t *testing.T, c *ccel) []byte { return c.zeroFilled(nil, 0) })(t, n, a)
		s := newServer(t, n.serverConfig(""))
		if _, err := s.attest(a); err != nil {
			t.Fatalf("zero-filled genuine CCEL rejected: %v", err)
		}
	})
	runSimCases(t, []simCase{
		{
			// A reader that stops at the first zeros (and reads no
			// further) would take this log; one that reads zero events
			// would count phantoms. Both are wrong: refused.
			name: "measured event hidden after a zero gap",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				ev := c.events[i]
				c.events = append(c.events[:i:i], c.events[i+1:]...)
				return c.zeroFilled(ev, 4096)
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "zero fill"),
		},
		{
			// Zero index and type is fill, never an event: an "event" of
			// type 0 on CC MR 0 with data after it is refused.
			name: "event of type 0 on CC MR 0 where the fill starts",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				ev := rawEvent(0, 0, [][]byte{make([]byte, 48)}, []byte("x"))
				return c.zeroFilled(ev, 0)
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "zero fill"),
		},
	})
}

// legacyTPMNode is a swtpm whose firmware log is the real legacy SHA-1
// format log of a Debian 10 machine, replayed into its SHA-1 bank.
func legacyTPMNode(t *testing.T) *tpmNode {
	t.Helper()
	return &tpmNode{simtest.StartTPMNodeWithLog(t, simtest.Testdata(t, "tpmlog", "debian-10.bin"), nil)}
}

// TestLegacySHA1TPMLog: a TPM node whose firmware writes the legacy SHA-1
// log format is verified against the SHA-1 PCRs its agent quotes; edits
// to that log, and another machine's log, are refused.
func TestLegacySHA1TPMLog(t *testing.T) {
	n := legacyTPMNode(t)
	var exp struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	if err := json.Unmarshal(simtest.Testdata(t, "tpmlog", "debian-10.expected.json"), &exp); err != nil {
		t.Fatal(err)
	}
	const ev19 = 18726 // event 19: EV_EFI_VARIABLE_AUTHORITY on PCR 7
	edited := func(off int, v byte) []byte {
		b := bytes.Clone(n.Firmware)
		b[off] = v
		return b
	}
	retyped := func(off int, typ uint32) []byte {
		b := bytes.Clone(n.Firmware)
		binary.LittleEndian.PutUint32(b[off+4:], typ)
		return b
	}
	sendLog := func(log []byte) func(t *testing.T, a *agent) {
		return func(t *testing.T, a *agent) {
			a.Mutate = func(e *evidencepb.Evidence) { e.TpmLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_TPM, log) }
		}
	}
	t.Run("baseline", func(t *testing.T) {
		s := newServer(t, n.serverConfig(""))
		attrs, err := s.attest(n.agent(t, ""))
		if err != nil {
			t.Fatalf("genuine legacy-log TPM evidence rejected: %v", err)
		}
		sel := strings.Join(attrs.GetSelectorValues(), " ")
		if want := "tpm:pcr:sha1:7:" + exp.Banks["sha1"]["pcr7"]; !strings.Contains(sel, want) {
			t.Fatalf("no %s among %s", want, sel)
		}
		if !strings.Contains(sel, "boot:secure_boot:true") {
			t.Errorf("secure boot not established from the SHA-1 log: %s", sel)
		}
	})
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, a *agent)
		want  rejection
	}{
		{"legacy log event digest edited", sendLog(edited(ev19+8, n.Firmware[ev19+8]^1)),
			reject(codes.PermissionDenied, "tpm_log_replay", "pcr7 (sha1)")},
		{"legacy log event moved to PCR 30", sendLog(edited(ev19, 30)),
			reject(codes.InvalidArgument, "tpm_log_replay", "register index 30")},
		{"legacy log event retyped EV_NO_ACTION", sendLog(retyped(ev19, 3)),
			reject(codes.InvalidArgument, "tpm_log_replay", "EV_NO_ACTION")},
		{"another machine's crypto-agile log", sendLog(simtest.Testdata(t, "tpmlog", simtest.TPMLogName)),
			reject(codes.PermissionDenied, "tpm_log_replay")},
		{"legacy log cut after event 18", sendLog(n.Firmware[:ev19]),
			reject(codes.PermissionDenied, "tpm_log_replay", "(sha1)", "does not replay")},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := n.agent(t, "")
			c.setup(t, a)
			s := newServer(t, n.serverConfig(""))
			_, err := s.attest(a)
			s.want(t, err, c.want)
		})
	}
}
