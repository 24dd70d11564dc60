package appraisal

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// ccnpList is the IMA list of a CCNP-patched TDX kernel, copied from
// cc-trusted-api: one ima-ng entry on register field 2 (the RTMR index)
// with a 48-byte SHA-384 template hash.
func ccnpList(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "ima", "cc-trusted-api", "ima_log.ascii"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// extendASCII extends start in SHA-384 with the template hash (second
// column) of every line of an ascii list, as a CCNP kernel extends RTMR2
// with a SHA-384 template hash. It reads the columns itself so that the
// expected value does not come from package ima.
func extendASCII(t *testing.T, list []byte, start []byte) []byte {
	t.Helper()
	cur := bytes.Clone(start)
	for _, line := range strings.Split(strings.TrimSuffix(string(list), "\n"), "\n") {
		cols := strings.Fields(line)
		th, err := hex.DecodeString(cols[1])
		if err != nil || len(th) != 48 {
			t.Fatalf("template hash %q: %v", cols[1], err)
		}
		h := sha512.New384()
		h.Write(cur)
		h.Write(th)
		cur = h.Sum(nil)
	}
	return cur
}

// TestIMACCNPKernelList is the list of a real CCNP kernel, whose entries
// carry register field 2 (RTMR2) rather than a PCR: the server replays
// them after the CCEL's RTMR2 events and accepts a quote whose RTMR2 needs
// both. Before the register field was read as the list's own convention,
// field 2 was taken for PCR2 (RTMR1), no entry was replayed and this real
// list was refused.
func TestIMACCNPKernelList(t *testing.T) {
	p := newTestPKI(t)
	ev := cos113(t)
	list := ccnpList(t)
	rtmr2 := extendASCII(t, list, ev.quote[472:520])
	q := p.mintQuote(t, func(s []byte) { copy(s[472:520], rtmr2) })
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool()}

	res, err := TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: list}, opts)
	if err != nil {
		t.Fatalf("the CCNP kernel's list is refused: %v", err)
	}
	last := res.Checks[len(res.Checks)-1]
	if last.Name != CheckIMAReplay || !last.OK || !strings.Contains(last.Detail, "1 IMA entries on register field 2 (0 violations)") {
		t.Fatalf("last check %+v", last)
	}

	// RTMR2 holds the CCEL's events and the IMA entry: neither alone
	// replays to it.
	_, err = TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table}, opts)
	wantCheck(t, err, CheckCCELReplay, CodeRejected, "rtmr2")
	alone := p.mintQuote(t, func(s []byte) { copy(s[472:520], extendASCII(t, list, make([]byte, 48))) })
	_, err = TDX(context.Background(), TDXEvidence{Quote: alone, CCEL: ev.ccel, CCELTable: ev.table, IMA: list}, opts)
	wantCheck(t, err, CheckIMAReplay, CodeRejected, "mismatch on rtmr2", "the last is event 0")

	// One byte of the file digest changed: the template hash no longer
	// matches its data, and the error names the entry.
	altered := bytes.Clone(list)
	i := bytes.Index(altered, []byte("sha384:cd01")) + len("sha384:")
	altered[i] = 'e'
	_, err = TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: altered}, opts)
	wantCheck(t, err, CheckIMAReplay, CodeInvalidEvidence, "line 1 (entry 0)", "template hash")

	// One byte of the register field changed: field 3 is neither
	// convention.
	altered = bytes.Clone(list)
	altered[1] = '3'
	_, err = TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: altered}, opts)
	wantCheck(t, err, CheckIMAReplay, CodeInvalidEvidence, "register fields 3 (first at entry 0)")
}

// TestIMAMixedRegisterFields: a list with entries on field 2 and on field
// 10 follows neither convention. Replaying only one of the two (the
// behaviour of a register-mapping replay) would leave entries out of the
// check; the list is refused, naming the fields and where each starts.
func TestIMAMixedRegisterFields(t *testing.T) {
	p := newTestPKI(t)
	ev := cos113(t)
	line := ccnpList(t)
	mixed := append(bytes.Clone(line), append([]byte("10"), line[2:]...)...)
	// RTMR2 extended with both entries, so only the fields are at fault.
	q := p.mintQuote(t, func(s []byte) { copy(s[472:520], extendASCII(t, mixed, ev.quote[472:520])) })
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool()}
	_, err := TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: mixed}, opts)
	wantCheck(t, err, CheckIMAReplay, CodeInvalidEvidence, "register fields 2 (first at entry 0), 10 (first at entry 1)")

	// The same two entries both on field 10 (PCR10 mapped onto RTMR2)
	// replay to the same RTMR2 and are accepted.
	ten := append(append([]byte("10"), line[2:]...), append([]byte("10"), line[2:]...)...)
	if _, err := TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: ten}, opts); err != nil {
		t.Fatalf("a list all on field 10: %v", err)
	}
}

// TestBootAggregates: the SHA-1 bank gives SHA-1 over PCR0..7 only (PCR8..9
// set, and left out, as the kernel leaves them out of SHA-1 aggregates);
// a SHA-256 bank without PCR9 quoted gives nothing rather than a digest
// over fewer registers.
func TestBootAggregates(t *testing.T) {
	regs := cctrusted.Registers{}
	want := sha1.New()
	for i := range 10 {
		v := bytes.Repeat([]byte{byte(i + 1)}, 20)
		regs.Set(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA1, v)
		if i < 8 {
			want.Write(v)
		}
		if i < 9 {
			regs.Set(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256, bytes.Repeat([]byte{byte(i + 1)}, 32))
		}
	}
	got := bootAggregates(regs)
	if len(got) != 1 || !bytes.Equal(got[0], want.Sum(nil)) {
		t.Fatalf("boot aggregates %x, want only %x", got, want.Sum(nil))
	}
}
