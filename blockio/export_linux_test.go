//go:build linux

package blockio

// SetTestDirectAlign forces the O_DIRECT block size of files opened later
// (when larger than the probed one) and returns a function restoring it.
func SetTestDirectAlign(a int64) func() {
	old := testDirectAlign
	testDirectAlign = a
	return func() { testDirectAlign = old }
}
