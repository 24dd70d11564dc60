package eventlog

import (
	"bytes"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Event types with replay rules of their own (TCG PC Client PFP).
const (
	eventHCRTM = 0x80000010 // EV_EFI_HCRTM_EVENT: PCR0 restarts at 0...04
)

// startupLocality is the EV_NO_ACTION event that says from which locality
// TPM2_Startup ran; PCR0 then starts at 0...0<locality> instead of zero.
var startupLocality = []byte("StartupLocality\x00")

// Replay replays every bank of the log. CCEL registers come out in the TDX
// space (mrtd, rtmr0..3); TPM registers as PCRs, PCR0 starting from the
// startup locality or H-CRTM value the log announces. Registers no event
// extends are absent.
func (l *Log) Replay() (cctrusted.Registers, error) {
	r, err := l.replayer()
	if err != nil {
		return nil, err
	}
	return r.Registers(), nil
}

// replayer runs the replay and keeps the Replayer so callers can Check
// registers and get mismatch errors that name the last event.
func (l *Log) replayer() (*cctrusted.Replayer, error) {
	initial, err := l.initialValues()
	if err != nil {
		return nil, err
	}
	r := cctrusted.NewReplayer(initial)
	for i := range l.Events {
		e := l.Events[i]
		if e.Type == cctrusted.EventNoAction {
			continue
		}
		if l.Format == FormatCCEL {
			m, err := e.IMR.TDX()
			if err != nil {
				return nil, fmt.Errorf("eventlog: ccel event %d: %w", i, err)
			}
			e.IMR = m
		}
		e.Digests = replayableDigests(e.Digests)
		if err := r.Extend(i, &e); err != nil {
			return nil, fmt.Errorf("eventlog: %s: %w", l.Format, err)
		}
	}
	return r, nil
}

// replayableDigests drops digests of banks Go cannot compute (SM3): such a
// bank cannot be checked, and refusing the whole log for it would refuse
// logs whose SHA-2 banks are fine.
func replayableDigests(ds []cctrusted.Digest) []cctrusted.Digest {
	for i, d := range ds {
		if _, err := d.Alg.Hash(); err != nil {
			out := append([]cctrusted.Digest(nil), ds[:i]...)
			for _, d := range ds[i+1:] {
				if _, err := d.Alg.Hash(); err == nil {
					out = append(out, d)
				}
			}
			return out
		}
	}
	return ds
}

// initialValues applies the PCR0 start rules of a TPM log. CCELs start at
// zero: RTMRs have no locality.
func (l *Log) initialValues() (cctrusted.Registers, error) {
	if l.Format != FormatTPM {
		return nil, nil
	}
	pcr0 := cctrusted.PCR(0).IMR()
	var start byte
	set := false
	measured := false
	for i, e := range l.Events {
		if e.IMR != pcr0 {
			continue
		}
		switch {
		case e.Type == cctrusted.EventNoAction:
			if !measured && len(e.Data) == len(startupLocality)+1 && bytes.HasPrefix(e.Data, startupLocality) {
				start, set = e.Data[len(startupLocality)], true
			}
		case e.Type == eventHCRTM:
			if measured {
				return nil, fmt.Errorf("eventlog: tpm event %d: H-CRTM event after other PCR0 measurements", i)
			}
			start, set = 4, true
			measured = true
		default:
			measured = true
		}
	}
	if !set {
		return nil, nil
	}
	regs := make(cctrusted.Registers)
	for _, alg := range l.Algorithms {
		if _, err := alg.Hash(); err != nil {
			continue
		}
		v := make([]byte, alg.Size())
		v[len(v)-1] = start
		regs.Set(pcr0, alg, v)
	}
	return regs, nil
}

// touched reports which registers (in the replay's space) measured events
// extend.
func (l *Log) touched() map[cctrusted.IMR]bool {
	out := make(map[cctrusted.IMR]bool)
	for _, e := range l.Events {
		if e.Type == cctrusted.EventNoAction {
			continue
		}
		m := e.IMR
		if l.Format == FormatCCEL {
			if t, err := m.TDX(); err == nil {
				m = t
			}
		}
		out[m] = true
	}
	return out
}
