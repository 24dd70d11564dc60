// Package load holds the load and fault tests of the ccnp plugins, run
// with the SDK's real plugin transport: many concurrent agents against one
// server plugin with a share of malformed evidence (every good attestation
// accepted, every bad one rejected, no goroutine or heap growth after), a
// collateral service that fails in each way it can (cached collateral
// serves until its nextUpdate, then Unavailable, never an acceptance), and
// a workload attestor's runtime log writer killed with SIGKILL mid-append
// (reopening recovers with nothing lost or duplicated). Each test logs its
// figures. The package has no non-test code besides this comment.
package load
