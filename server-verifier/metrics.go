package serververifier

import "time"

// Phases of an attestation, as the metrics name them.
const (
	phaseParse  = "parse"
	phaseQuote  = "quote"
	phaseReplay = "replay"
	phasePolicy = "policy"
)

// metrics records per-phase durations; a nil *metrics records nothing.
type metrics struct{}

// phaseTimer is one running phase.
type phaseTimer struct {
	m     *metrics
	name  string
	start time.Time
}

func (m *metrics) start(name string) phaseTimer {
	if m == nil {
		return phaseTimer{}
	}
	return phaseTimer{m: m, name: name, start: time.Now()}
}

func (t phaseTimer) done() {}
