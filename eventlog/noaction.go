package eventlog

// isZero reports whether every byte of b is zero: the digests of an
// EV_NO_ACTION event must be (TCG PC Client PFP, "EV_NO_ACTION"), since
// the event is never extended and a digest in it would be unverifiable
// data dressed as a measurement.
func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
