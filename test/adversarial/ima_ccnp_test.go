package adversarial

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// ccnpTD is a simulated TD with the IMA list a CCNP kernel keeps: the
// agent's nodeattestor reads it as it reads securityfs on a real TD.
type ccnpTD struct {
	*sim.Provider
	list []byte
}

// RawIMA is what the agent collects for ima_log_path.
func (p *ccnpTD) RawIMA(context.Context) ([]byte, error) { return bytes.Clone(p.list), nil }

// ccnpEntry is one entry of a binary list with 48-byte template hashes:
// where it starts, and where its template hash and template data are.
type ccnpEntry struct {
	off        int
	field      uint32
	hash, data []byte
}

// ccnpEntries walks a little-endian binary IMA list with 48-byte template
// hashes (u32 register field, hash, u32 name length, name, u32 data
// length, data) without package ima, so that what the kernel extended is
// computed independently of the code under test. The slices alias list.
func ccnpEntries(t *testing.T, list []byte) []ccnpEntry {
	t.Helper()
	var es []ccnpEntry
	for off := 0; off < len(list); {
		u32 := func() int { v := binary.LittleEndian.Uint32(list[off:]); off += 4; return int(v) }
		e := ccnpEntry{off: off}
		e.field = uint32(u32())
		e.hash = list[off : off+48]
		off += 48
		off += u32()
		n := u32()
		e.data = list[off : off+n]
		off += n
		es = append(es, e)
	}
	return es
}

// extendCCNP extends RTMR2 of the simulated TD after its CCEL events the
// way a CCNP kernel does: the 48-byte SHA-384 template hash of each entry,
// all 0xFF for a violation (zero template hash).
func extendCCNP(t *testing.T, p *sim.Provider, list []byte) {
	t.Helper()
	for _, e := range ccnpEntries(t, list) {
		d := [48]byte(e.hash)
		if d == ([48]byte{}) {
			d = [48]byte(bytes.Repeat([]byte{0xff}, 48))
		}
		if err := p.ExtendRTMR(context.Background(), 2, d); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIMACCNPKernelRTMR2 attests, through the server plugin, a TD whose
// kernel measures as CCNP's patched kernels do: entries on register field
// 2 (the RTMR index, not a PCR) with SHA-384 template hashes, extended into
// RTMR2 after the CCEL's RTMR2 events. Read as PCR2 (RTMR1) the entries
// would be skipped and the node refused.
func TestIMACCNPKernelRTMR2(t *testing.T) {
	list := simtest.Testdata(t, "ima", "rtmr2-sha384.bin")
	es := ccnpEntries(t, list)
	for _, e := range es {
		if e.field != 2 {
			t.Fatalf("fixture entry on register field %d, want 2", e.field)
		}
	}
	n := newSimNode(t, sim.InitOptions{})
	extendCCNP(t, n.Prov, list)
	a := n.agent(t)
	a.p = &ccnpTD{Provider: n.Prov, list: list}
	s := newServer(t, n.serverConfig("allow_ima_violations = true"))
	attrs, err := s.attest(a)
	if err != nil {
		t.Fatalf("CCNP kernel's IMA list rejected: %v", err)
	}
	for _, want := range []string{"sim:ima:verified:true", "sim:ima:violations:1"} {
		if !slices.Contains(attrs.GetSelectorValues(), want) {
			t.Errorf("no %s among %v", want, attrs.GetSelectorValues())
		}
	}
}

// TestIMACCNPKernelAlteredEntry is the attack on it: one entry's file path
// rewritten and its template hash recomputed, so that the list is
// well-formed and only RTMR2 (which holds the original entry) disagrees.
func TestIMACCNPKernelAlteredEntry(t *testing.T) {
	list := simtest.Testdata(t, "ima", "rtmr2-sha384.bin")
	n := newSimNode(t, sim.InitOptions{})
	extendCCNP(t, n.Prov, list)

	forged := bytes.Clone(list)
	es := ccnpEntries(t, forged)
	e := es[len(es)/2]
	i := bytes.LastIndexByte(e.data, '/')
	if i < 0 || bytes.Equal(e.hash, make([]byte, 48)) {
		t.Fatalf("fixture entry %d is not a measured file", len(es)/2)
	}
	e.data[i+1] ^= 0x20 // one letter of the file name changes case
	h := sha512.Sum384(e.data)
	copy(e.hash, h[:])

	a := n.agent(t)
	a.p = &ccnpTD{Provider: n.Prov, list: forged}
	s := newServer(t, n.serverConfig("allow_ima_violations = true"))
	_, err := s.attest(a)
	s.want(t, err, reject(codes.PermissionDenied, "ima_replay", "rtmr2"))
}

// TestIMAMixedFieldsOverPlugin: a list whose entries carry register field 2
// and field 10, every entry extended into RTMR2. The field is not covered
// by the template hash, so relabelling costs an attacker nothing; a replay
// that picked entries by field would leave some out. The list follows
// neither convention and is refused, naming the fields.
func TestIMAMixedFieldsOverPlugin(t *testing.T) {
	list := simtest.Testdata(t, "ima", "rtmr2-sha384.bin")
	n := newSimNode(t, sim.InitOptions{})
	extendCCNP(t, n.Prov, list)
	mixed := bytes.Clone(list)
	es := ccnpEntries(t, mixed)
	last := es[len(es)-1].off
	if binary.LittleEndian.Uint32(mixed[last:]) != 2 {
		t.Fatalf("no register field 2 at offset %d", last)
	}
	binary.LittleEndian.PutUint32(mixed[last:], 10)

	a := n.agent(t)
	a.p = &ccnpTD{Provider: n.Prov, list: mixed}
	s := newServer(t, n.serverConfig("allow_ima_violations = true"))
	_, err := s.attest(a)
	s.want(t, err, reject(codes.InvalidArgument, "ima_replay", "register fields 2 (first at entry 0), 10 (first at entry 7)"))
}
