package evidence

import (
	"errors"
	"fmt"
)

// Sentinel errors, one per class of failure, so a plugin can map any error
// of this package to a gRPC code with errors.Is without parsing messages.
// Suggested mapping: ErrTooLarge -> ResourceExhausted, ErrVersion ->
// FailedPrecondition, ErrMalformed and ErrWrongKind -> InvalidArgument,
// ErrBinding -> PermissionDenied. The messages are written for operators
// and can be passed on as the status message.
var (
	// ErrTooLarge: a payload or its decompressed logs exceed the Limits.
	ErrTooLarge = errors.New("evidence: too large")
	// ErrVersion: the payload's version is not the one this build speaks.
	ErrVersion = errors.New("evidence: unsupported version")
	// ErrMalformed: the bytes are not a well-formed payload of this version.
	ErrMalformed = errors.New("evidence: malformed payload")
	// ErrWrongKind: a well-formed payload of another kind than expected,
	// e.g. evidence where a hello was due.
	ErrWrongKind = errors.New("evidence: unexpected message kind")
	// ErrBinding: the evidence's binding is not SHA-512(nonce || SHA-256(hello)).
	ErrBinding = errors.New("evidence: binding mismatch")
)

// LimitError is returned when something exceeds a limit. It matches
// ErrTooLarge.
type LimitError struct {
	// What is the payload or the log that is too large ("payload",
	// "ima log", "decompressed payload").
	What string
	// Size is the size seen or claimed, Limit the most allowed, in bytes.
	Size, Limit uint64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("evidence: %s is %d bytes, above the limit of %d bytes (the limit is configurable on the server; compressing logs with zstd helps)",
		e.What, e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

// VersionError is returned for a payload of another version. It matches
// ErrVersion.
type VersionError struct {
	Got, Supported uint32
}

func (e *VersionError) Error() string {
	if e.Got == 0 {
		return fmt.Sprintf("evidence: payload carries no version (this build supports version %d only); is the peer a ccnp plugin?", e.Supported)
	}
	return fmt.Sprintf("evidence: payload version %d is not supported (this build supports version %d only); run agent and server plugins of compatible releases",
		e.Got, e.Supported)
}

// Is makes errors.Is(err, ErrVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// KindError is returned by the Decode* helpers for a payload of another
// kind. It matches ErrWrongKind.
type KindError struct {
	Want, Got Kind
}

func (e *KindError) Error() string {
	return fmt.Sprintf("evidence: expected %s, got %s", e.Want, e.Got)
}

// Is makes errors.Is(err, ErrWrongKind) true.
func (e *KindError) Is(target error) bool { return target == ErrWrongKind }

// MalformedError names the field of a payload that is wrong. It matches
// ErrMalformed and unwraps to the underlying cause, if any.
type MalformedError struct {
	// Field is the path of the offending field ("evidence.binding"), or
	// "payload" when the bytes do not parse at all.
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying error (protobuf, zstd, gzip), or nil.
	Err error
}

func (e *MalformedError) Error() string {
	msg := "evidence: malformed payload: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Unwrap returns the underlying cause.
func (e *MalformedError) Unwrap() error { return e.Err }

func malformed(field, format string, args ...any) error {
	return &MalformedError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
