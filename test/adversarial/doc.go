// Package adversarial holds the adversarial evidence suite of the ccnp
// server plugin: table-driven cases, one file per threat area of
// docs/threat-model.md, each of which produces real evidence with the agent
// side (package nodeattestor over the simulated TDX of package tee/sim, or
// a software TPM), mutates it the way an attacker would, sends it to the
// server plugin over the SDK's real plugin transport (plugintest) and
// asserts the rejection: its gRPC status code and the name of the check
// that refused it. The package has no non-test code besides this comment.
package adversarial
