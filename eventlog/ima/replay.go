package ima

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// maxDigest is the largest digest a bank can have (SHA-512).
const maxDigest = 64

// sum writes H_alg(data) into dst (at least alg.Size() bytes). The
// fixed-size functions keep the state on the stack: replaying a long list
// then costs no allocation per entry.
func sum(alg cctrusted.Algorithm, dst, data []byte) {
	switch alg {
	case cctrusted.AlgSHA1:
		h := sha1.Sum(data)
		copy(dst, h[:])
	case cctrusted.AlgSHA256:
		h := sha256.Sum256(data)
		copy(dst, h[:])
	case cctrusted.AlgSHA384:
		h := sha512.Sum384(data)
		copy(dst, h[:])
	case cctrusted.AlgSHA512:
		h := sha512.Sum512(data)
		copy(dst, h[:])
	}
}

func checkAlg(alg cctrusted.Algorithm) error {
	switch alg {
	case cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384, cctrusted.AlgSHA512:
		return nil
	}
	return fmt.Errorf("ima: cannot replay the %v bank (sha1, sha256, sha384 or sha512)", alg)
}

// EntryDigest writes into dst (alg.Size() bytes) what entry e extends into
// bank alg: all 0xFF for a violation, the template hash in the bank of its
// own algorithm (SHA-1 upstream, SHA-384 on CCNP's TDX kernels),
// H_alg(TemplateData) in the others. The template hash is trusted there
// because the parsers checked it against TemplateData.
func EntryDigest(alg cctrusted.Algorithm, e *Entry, dst []byte) error {
	if err := checkAlg(alg); err != nil {
		return err
	}
	size := alg.Size()
	if len(dst) < size {
		return fmt.Errorf("ima: digest buffer of %d bytes for %v", len(dst), alg)
	}
	entryDigest(alg, e, dst[:size])
	return nil
}

func entryDigest(alg cctrusted.Algorithm, e *Entry, dst []byte) {
	if e.Violation {
		for i := range dst {
			dst[i] = 0xFF
		}
		return
	}
	if own, _ := TemplateHashAlgorithm(len(e.TemplateHash)); own == alg {
		copy(dst, e.TemplateHash)
		return
	}
	sum(alg, dst, e.TemplateData)
}

// bank is the replay state of one algorithm over the 24 PCRs.
type bank struct {
	alg     cctrusted.Algorithm
	size    int
	vals    [cctrusted.NumPCRs][maxDigest]byte
	touched [cctrusted.NumPCRs]bool
	last    [cctrusted.NumPCRs]int
	count   [cctrusted.NumPCRs]int
	buf     [2 * maxDigest]byte
}

// extend folds entry i into its PCR; the only buffers are the bank's own.
func (b *bank) extend(i int, e *Entry) error {
	p := uint32(e.PCR)
	if p >= cctrusted.NumPCRs {
		return fmt.Errorf("ima: entry %d: PCR %d is outside 0..23", i, p)
	}
	s := b.size
	copy(b.buf[:s], b.vals[p][:s])
	entryDigest(b.alg, e, b.buf[s:2*s])
	sum(b.alg, b.vals[p][:s], b.buf[:2*s])
	b.touched[p] = true
	b.last[p] = i
	b.count[p]++
	return nil
}

func (l *Log) replay(alg cctrusted.Algorithm) (*bank, error) {
	if err := checkAlg(alg); err != nil {
		return nil, err
	}
	b := &bank{alg: alg, size: alg.Size()}
	for i := range l.Entries {
		if err := b.extend(i, &l.Entries[i]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Replay extends every entry into zero-initialised PCRs of bank alg (SHA-1:
// the template hash; SHA-256/384/512: H_alg(TemplateData); a violation:
// all 0xFF) and returns the PCRs the list touched, keyed by
// cctrusted.PCR(n).IMR(). On TDX kernels that extend RTMR2, map with
// IMR.TDX() and start from the firmware's RTMR2 value (see Verify).
func (l *Log) Replay(alg cctrusted.Algorithm) (cctrusted.Registers, error) {
	b, err := l.replay(alg)
	if err != nil {
		return nil, err
	}
	regs := make(cctrusted.Registers)
	for p := range b.vals {
		if b.touched[p] {
			regs.Set(cctrusted.PCR(p).IMR(), alg, b.vals[p][:b.size])
		}
	}
	return regs, nil
}

// Verify replays bank alg into register imr and compares the result with the
// signed value. imr is either a PCR (only that PCR's entries count) or a TDX
// register (every entry whose PCR maps to it through IMR.TDX(): PCR10 ->
// RTMR2 on CCNP kernels). initial is the register's value before the first
// entry: nil for a PCR (zero), the value the firmware log replays to for
// RTMR2, which boot components extend before IMA. A mismatch is returned
// wrapping *cctrusted.MismatchError, whose LastEvent is the index of the
// last entry that extended imr.
func (l *Log) Verify(alg cctrusted.Algorithm, imr cctrusted.IMR, signed, initial []byte) error {
	if err := checkAlg(alg); err != nil {
		return err
	}
	if !imr.Valid() {
		return fmt.Errorf("ima: invalid register %v", imr)
	}
	size := alg.Size()
	if len(signed) != size {
		return fmt.Errorf("ima: signed %v value of %v is %d bytes, want %d", alg, imr, len(signed), size)
	}
	var sel [cctrusted.NumPCRs]bool
	for p := range sel {
		m := cctrusted.PCR(p).IMR()
		if imr.Space == cctrusted.SpacePCR {
			sel[p] = m == imr
			continue
		}
		t, err := m.TDX()
		sel[p] = err == nil && t == imr
	}
	if initial != nil && len(initial) != size {
		return fmt.Errorf("ima: initial %v value of %v is %d bytes, want %d", alg, imr, len(initial), size)
	}
	return l.compare(alg, imr, &sel, signed, initial)
}

// compare replays the selected entries from initial and wraps a
// *cctrusted.MismatchError naming imr when the result is not signed.
func (l *Log) compare(alg cctrusted.Algorithm, imr cctrusted.IMR, sel *[cctrusted.NumPCRs]bool, signed, initial []byte) error {
	size := alg.Size()
	var cur [maxDigest]byte
	last, n, err := l.fold(alg, sel, initial, &cur)
	if err != nil {
		return err
	}
	if string(cur[:size]) == string(signed) {
		return nil
	}
	return fmt.Errorf("ima: %w", &cctrusted.MismatchError{
		IMR: imr, Alg: alg,
		Expected:  append([]byte(nil), signed...),
		Replayed:  append([]byte(nil), cur[:size]...),
		LastEvent: last, Events: n,
	})
}

// fold is the one replay of a register that starts from a given value:
// cur = initial (nil: zero), then cur = H_alg(cur || digest) for every
// entry whose register field sel marks. It returns the index of the last
// entry folded (-1 for none) and how many were. initial must be alg.Size()
// bytes; the callers check that and alg.
func (l *Log) fold(alg cctrusted.Algorithm, sel *[cctrusted.NumPCRs]bool, initial []byte, cur *[maxDigest]byte) (last, n int, err error) {
	size := alg.Size()
	copy(cur[:size], initial)
	var buf [2 * maxDigest]byte
	last = -1
	for i := range l.Entries {
		e := &l.Entries[i]
		if uint32(e.PCR) >= cctrusted.NumPCRs {
			return 0, 0, fmt.Errorf("ima: entry %d: PCR %d is outside 0..23", i, uint32(e.PCR))
		}
		if !sel[e.PCR] {
			continue
		}
		copy(buf[:size], cur[:size])
		entryDigest(alg, e, buf[size:2*size])
		sum(alg, cur[:size], buf[:2*size])
		last, n = i, n+1
	}
	return last, n, nil
}

// ReplayFrom replays bank alg over the entries whose register field is reg,
// starting from initial (nil: zero), and returns the final value and how
// many entries extended it. It is the building block for a register that
// others extend before IMA: on CCNP's TDX kernels RTMR2 holds the CCEL's
// RTMR2 events and then every entry with register field 2, so
// ReplayFrom(sha384, 2, rtmr2AfterCCEL) must equal the quoted RTMR2.
func (l *Log) ReplayFrom(alg cctrusted.Algorithm, reg cctrusted.PCR, initial []byte) ([]byte, int, error) {
	if err := checkAlg(alg); err != nil {
		return nil, 0, err
	}
	size := alg.Size()
	if initial != nil && len(initial) != size {
		return nil, 0, fmt.Errorf("ima: initial %v value is %d bytes, want %d", alg, len(initial), size)
	}
	var sel [cctrusted.NumPCRs]bool
	if uint32(reg) < cctrusted.NumPCRs {
		sel[reg] = true
	}
	var cur [maxDigest]byte
	_, n, err := l.fold(alg, &sel, initial, &cur)
	if err != nil {
		return nil, 0, err
	}
	return append([]byte(nil), cur[:size]...), n, nil
}

// Events converts the entries to cctrusted events in PCR space, each with
// its bank-alg digest (what Replay extends), type EventTypeIMA and the
// template data as event data (shared, read-only). cctrusted.Replay of the
// result equals Replay(alg).
func (l *Log) Events(alg cctrusted.Algorithm) ([]cctrusted.Event, error) {
	if err := checkAlg(alg); err != nil {
		return nil, err
	}
	size := alg.Size()
	n := len(l.Entries)
	// Three allocations for the whole list, not three per event.
	evs := make([]cctrusted.Event, n)
	ds := make([]cctrusted.Digest, n)
	vals := make([]byte, n*size)
	for i := range l.Entries {
		e := &l.Entries[i]
		v := vals[i*size : (i+1)*size : (i+1)*size]
		entryDigest(alg, e, v)
		ds[i] = cctrusted.Digest{Alg: alg, Value: v}
		evs[i] = cctrusted.Event{
			IMR:     e.PCR.IMR(),
			Type:    EventTypeIMA,
			Digests: ds[i : i+1 : i+1],
			Data:    e.TemplateData,
		}
	}
	return evs, nil
}

// Register fields a TDX kernel that extends RTMR2 writes into its list.
const (
	// FieldRTMR2 is what CCNP's patched kernels write: the RTMR index.
	FieldRTMR2 cctrusted.PCR = 2
	// FieldPCR10 is what a kernel writes that measures to PCR10 and has
	// the platform map PCR10 onto RTMR2.
	FieldPCR10 cctrusted.PCR = 10
)

// FieldError is a list from a TDX kernel whose entries do not all carry
// the same register field, FieldRTMR2 or FieldPCR10.
type FieldError struct {
	// Fields are the register fields seen, ascending; First the index of
	// the first entry carrying each.
	Fields []cctrusted.PCR
	First  []int
}

func (e *FieldError) Error() string {
	var b strings.Builder
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d (first at entry %d)", uint32(f), e.First[i])
	}
	return fmt.Sprintf("ima: entries carry register fields %s: a TDX kernel's list is all on %d (RTMR2, CCNP kernels) or all on %d (PCR10 mapped onto RTMR2)",
		b.String(), uint32(FieldRTMR2), uint32(FieldPCR10))
}

// RTMR2Field decides which convention a list from a TDX kernel follows:
// FieldRTMR2 or FieldPCR10, whichever every entry carries. Anything else
// (a mix of the two, or any other field) is a *FieldError naming the
// fields seen: reading entries on other fields as RTMR2's, or leaving them
// out of the replay, would both be a guess about what the kernel extended.
// An empty list has no entries to disagree and gives FieldRTMR2.
func (l *Log) RTMR2Field() (cctrusted.PCR, error) {
	var first [cctrusted.NumPCRs]int
	var seen [cctrusted.NumPCRs]bool
	kinds := 0
	for i := range l.Entries {
		p := l.Entries[i].PCR
		if uint32(p) >= cctrusted.NumPCRs {
			return 0, fmt.Errorf("ima: entry %d: PCR %d is outside 0..23", i, uint32(p))
		}
		if !seen[p] {
			seen[p], first[p] = true, i
			kinds++
		}
	}
	switch {
	case kinds == 0:
		return FieldRTMR2, nil
	case kinds == 1 && seen[FieldRTMR2]:
		return FieldRTMR2, nil
	case kinds == 1 && seen[FieldPCR10]:
		return FieldPCR10, nil
	}
	fe := &FieldError{}
	for p := range seen {
		if seen[p] {
			fe.Fields = append(fe.Fields, cctrusted.PCR(p))
			fe.First = append(fe.First, first[p])
		}
	}
	return 0, fe
}

// VerifyRTMR2 checks a list from a TDX kernel against RTMR2: initial (the
// value the CCEL's RTMR2 events replay to, 48 bytes) extended in SHA-384
// with every entry of the list, in order, must equal signed. Every entry
// counts: the list must pass RTMR2Field, so none is skipped for carrying
// another register field. It returns the field the list uses. A mismatch
// wraps *cctrusted.MismatchError for RTMR2 whose LastEvent is the last
// entry's index; a list on the wrong fields is a *FieldError.
func (l *Log) VerifyRTMR2(signed, initial []byte) (cctrusted.PCR, error) {
	alg := cctrusted.AlgSHA384
	size := alg.Size()
	if len(signed) != size || len(initial) != size {
		return 0, fmt.Errorf("ima: RTMR2 values of %d (signed) and %d (initial) bytes, want %d", len(signed), len(initial), size)
	}
	field, err := l.RTMR2Field()
	if err != nil {
		return 0, err
	}
	var sel [cctrusted.NumPCRs]bool
	sel[field] = true
	return field, l.compare(alg, cctrusted.RTMR(2).IMR(), &sel, signed, initial)
}
