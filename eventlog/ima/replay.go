package ima

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"

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
	var cur [maxDigest]byte
	if initial != nil {
		if len(initial) != size {
			return fmt.Errorf("ima: initial %v value of %v is %d bytes, want %d", alg, imr, len(initial), size)
		}
		copy(cur[:], initial)
	}
	var buf [2 * maxDigest]byte
	last, n := -1, 0
	for i := range l.Entries {
		e := &l.Entries[i]
		if uint32(e.PCR) >= cctrusted.NumPCRs {
			return fmt.Errorf("ima: entry %d: PCR %d is outside 0..23", i, uint32(e.PCR))
		}
		if !sel[e.PCR] {
			continue
		}
		copy(buf[:size], cur[:size])
		entryDigest(alg, e, buf[size:2*size])
		sum(alg, cur[:size], buf[:2*size])
		last, n = i, n+1
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
	var cur [maxDigest]byte
	if initial != nil {
		if len(initial) != size {
			return nil, 0, fmt.Errorf("ima: initial %v value is %d bytes, want %d", alg, len(initial), size)
		}
		copy(cur[:], initial)
	}
	var buf [2 * maxDigest]byte
	n := 0
	for i := range l.Entries {
		e := &l.Entries[i]
		if e.PCR != reg {
			continue
		}
		copy(buf[:size], cur[:size])
		entryDigest(alg, e, buf[size:2*size])
		sum(alg, cur[:size], buf[:2*size])
		n++
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
