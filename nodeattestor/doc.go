// Package nodeattestor is the agent side of the ccnp SPIRE NodeAttestor
// (DESIGN.md §3): it opens the node's TEE (Intel TDX, a TPM, or the
// simulator when configured by name), sends a Hello, answers the server's
// nonce with a TEE report bound to that nonce and to the Hello, together with
// the event logs the server replays, and on a TPM node answers the credential
// activation challenge that ties the attestation key to the EK.
//
// Hello, Collect and Activate do the protocol's work without any transport,
// so the server side's tests produce real evidence with them; Plugin wires
// them to the SPIRE plugin stream. Every failure is an *Error carrying the
// gRPC code the plugin answers with and naming the step that failed.
package nodeattestor
