package serververifier

import "strconv"

// imaResult is what the IMA list of one attestation established, over the
// whole list: on an incremental attestation the checkpoint's prefix and the
// suffix together.
type imaResult struct {
	// verified: an IMA list replayed to the signed register (RTMR2, PCR10).
	verified bool
	// violations counts its violation entries (ToMToU, open-writers): the
	// kernel extended 0xFF for them and hashed nothing, so the list does not
	// say what those files held.
	violations int
}

// imaSelectors are ima:violations:<n> for a list with violations, and
// ima:verified:true for a replayed list without any, or with some when
// allow_ima_violations says they do not matter. A list with violations
// that replays is not rejected: the selector is withheld, so entries and
// policies that rely on IMA do not match, and the node keeps what else it
// proved.
func (a *attestation) imaSelectors(r imaResult) []string {
	var s []string
	if r.violations > 0 {
		s = append(s, "ima:violations:"+strconv.Itoa(r.violations))
	}
	switch {
	case !r.verified:
	case r.violations == 0 || a.st.cfg.AllowIMAViolations:
		s = append(s, "ima:verified:true")
	default:
		a.log.Warn("IMA list has violations: ima:verified:true withheld (allow_ima_violations = false)", "tee", a.tee, "violations", r.violations)
	}
	return s
}
