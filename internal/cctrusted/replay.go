package cctrusted

import (
	"encoding/hex"
	"fmt"
)

// Replay extends every event's digests into zero-initialised registers, one
// bank per digest algorithm, and returns the final values. EV_NO_ACTION
// events are skipped as the TCG PFP requires. Registers keep the space their
// events name: map CCMR/PCR events to TDX registers before comparing with a
// TDX quote (see IMR.TDX).
func Replay(events []Event) (Registers, error) {
	r := NewReplayer(nil)
	for i := range events {
		if err := r.Extend(i, &events[i]); err != nil {
			return nil, err
		}
	}
	return r.Registers(), nil
}

// Replayer replays events incrementally. It remembers, per register and
// bank, the last event that extended it so a mismatch can name it.
type Replayer struct {
	regs Registers
	last map[IMR]int
	n    map[IMR]int
	buf  []byte
}

// NewReplayer starts a replay from initial values (nil: all zero). Starting
// values are copied.
func NewReplayer(initial Registers) *Replayer {
	r := &Replayer{regs: make(Registers), last: make(map[IMR]int), n: make(map[IMR]int)}
	for m, banks := range initial {
		for alg, v := range banks {
			r.regs.Set(m, alg, v)
		}
	}
	return r
}

// Extend folds event number index into the registers.
func (r *Replayer) Extend(index int, e *Event) error {
	if e.Type == EventNoAction {
		return nil
	}
	if !e.IMR.Valid() {
		return fmt.Errorf("cctrusted: event %d: register %v is outside its space", index, e.IMR)
	}
	for _, d := range e.Digests {
		if err := r.ExtendDigest(e.IMR, d.Alg, d.Value); err != nil {
			return fmt.Errorf("cctrusted: event %d (%v): %w", index, e.IMR, err)
		}
	}
	r.last[e.IMR] = index
	r.n[e.IMR]++
	return nil
}

// ExtendDigest extends one digest into one bank of m: new = H(old || value).
func (r *Replayer) ExtendDigest(m IMR, alg Algorithm, value []byte) error {
	h, err := alg.Hash()
	if err != nil {
		return err
	}
	if len(value) != alg.Size() {
		return fmt.Errorf("%v digest is %d bytes, want %d", alg, len(value), alg.Size())
	}
	b, ok := r.regs[m]
	if !ok {
		b = make(map[Algorithm][]byte)
		r.regs[m] = b
	}
	cur, ok := b[alg]
	if !ok {
		cur = make([]byte, alg.Size())
	}
	hh := h.New()
	r.buf = append(append(r.buf[:0], cur...), value...)
	hh.Write(r.buf)
	b[alg] = hh.Sum(cur[:0])
	return nil
}

// Registers returns the current values. The map is the replayer's own: copy
// it before extending further if the snapshot must stay.
func (r *Replayer) Registers() Registers { return r.regs }

// Check compares the replayed value of m in bank alg with want (the value the
// hardware signed). A register no event touched replays to all zeros.
func (r *Replayer) Check(m IMR, alg Algorithm, want []byte) error {
	got, ok := r.regs.Get(m, alg)
	if !ok {
		got = make([]byte, alg.Size())
	}
	if string(got) == string(want) {
		return nil
	}
	last, touched := r.last[m]
	if !touched {
		last = -1
	}
	return &MismatchError{IMR: m, Alg: alg, Expected: want, Replayed: got, LastEvent: last, Events: r.n[m]}
}

// MismatchError says that a log does not replay to a signed register value.
type MismatchError struct {
	IMR       IMR
	Alg       Algorithm
	Expected  []byte // what the hardware signed
	Replayed  []byte // what the log replays to
	LastEvent int    // index of the last event that extended IMR, -1 if none
	Events    int    // number of events that extended IMR
}

func (e *MismatchError) Error() string {
	where := "no event extends it"
	if e.LastEvent >= 0 {
		where = fmt.Sprintf("%d events extend it, the last is event %d", e.Events, e.LastEvent)
	}
	return fmt.Sprintf("replay mismatch on %v (%v): signed %s, log replays to %s; %s",
		e.IMR, e.Alg, hex.EncodeToString(e.Expected), hex.EncodeToString(e.Replayed), where)
}
