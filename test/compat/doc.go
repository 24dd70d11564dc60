// Package compat holds the tests behind docs/compatibility.md: what a
// server plugin of this build does with the hellos of agents of other
// builds (an older agent that leaves fields out, a payload version it does
// not speak), and that it names the agent's version in its audit line. Each
// runs the agent side (package nodeattestor on the simulated TDX) against
// the server plugin over the SDK's real plugin transport. The package has
// no non-test code besides this comment.
package compat
