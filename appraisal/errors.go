// Package appraisal verifies TEE evidence: the one verification path that
// both the `ccnp verify` command and the server-side node attestor run, so
// that what an operator checks by hand is exactly what the server enforces.
//
// For TDX, TDX checks a quote's structure, its PCK certificate chain, its
// signatures, (with collateral) the platform's TCB status and the quoting
// enclave's identity, the DEBUG attribute, the REPORTDATA binding, and
// replays the CCEL against the signed RTMRs.
package appraisal

import (
	"errors"
	"fmt"
)

// Code says what kind of failure an Error is, so a server can pick a gRPC
// status without reading messages.
type Code int

// Failure kinds.
const (
	// CodeInvalidEvidence: the evidence is malformed (unparsable quote, bad
	// log structure, wrong sizes). gRPC InvalidArgument.
	CodeInvalidEvidence Code = iota + 1
	// CodeRejected: the evidence is well-formed but a security check failed
	// (signature, chain, TCB status, debug, binding, replay). gRPC
	// PermissionDenied.
	CodeRejected
	// CodeUnavailable: collateral could not be fetched; retrying later may
	// succeed. gRPC Unavailable.
	CodeUnavailable
	// CodeConfig: the verifier's own options are wrong (unknown TCB status
	// name, unusable roots). gRPC FailedPrecondition or Internal.
	CodeConfig
)

func (c Code) String() string {
	switch c {
	case CodeInvalidEvidence:
		return "invalid_evidence"
	case CodeRejected:
		return "rejected"
	case CodeUnavailable:
		return "unavailable"
	case CodeConfig:
		return "config"
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Error is a failed check.
type Error struct {
	Check string
	Code  Code
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("appraisal: %s check failed: %v", e.Check, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Check is the outcome of one check.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Skipped is true when the check did not run because its input was not
	// supplied (no collateral getter, no CCEL, no expected REPORTDATA).
	// A skipped check is neither a pass nor a failure.
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail"`
}

func pass(cs []Check, name, detail string) []Check {
	return append(cs, Check{Name: name, OK: true, Detail: detail})
}

func skip(cs []Check, name, detail string) []Check {
	return append(cs, Check{Name: name, Skipped: true, Detail: detail})
}
