package cctrusted

import "fmt"

// Event types that replay treats specially (TCG PC Client PFP).
const (
	EventNoAction  uint32 = 0x00000003 // EV_NO_ACTION: informational, never extended
	EventSeparator uint32 = 0x00000004
)

// Event is one measured event as any log format reports it: the register it
// was extended into (with its index space), the event type, one digest per
// bank and the event data.
type Event struct {
	IMR     IMR
	Type    uint32
	Digests []Digest
	Data    []byte
}

// Digest returns the event's digest for alg.
func (e *Event) Digest(alg Algorithm) ([]byte, bool) {
	for _, d := range e.Digests {
		if d.Alg == alg {
			return d.Value, true
		}
	}
	return nil, false
}

// Validate checks the register and every digest's size.
func (e *Event) Validate() error {
	if !e.IMR.Valid() {
		return fmt.Errorf("cctrusted: event register %v is outside its space", e.IMR)
	}
	for _, d := range e.Digests {
		if err := d.Validate(); err != nil {
			return err
		}
	}
	return nil
}
