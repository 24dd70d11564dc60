package nodeattestor

// SetSimAvailable replaces simAvailable for a test and returns the undo.
func SetSimAvailable(f func() bool) (restore func()) {
	orig := simAvailable
	simAvailable = f
	return func() { simAvailable = orig }
}
