package nodeattestor

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failure of one step of attestation. It carries the gRPC code the
// plugin answers with, so that Hello, Collect and Activate, which have no
// transport, still report failures the way the plugin does: status.Convert
// and status.Code see Code through GRPCStatus, and errors.Is/As see Err.
type Error struct {
	// Code is the gRPC status code of the failure.
	Code codes.Code
	// Op names the step that failed, e.g. "tdx report" or "instance id".
	Op string
	// Err is the cause.
	Err error
}

// Error renders "<op>: <cause>"; SPIRE prefixes it with the plugin's
// configured name (nodeattestor(ccnp): ...) in its logs and errors.
func (e *Error) Error() string {
	return e.Op + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus lets grpc turn the error into a status with Code.
func (e *Error) GRPCStatus() *status.Status {
	return status.New(e.Code, e.Error())
}

// fail builds an *Error from a cause.
func fail(code codes.Code, op string, err error) *Error {
	return &Error{Code: code, Op: op, Err: err}
}

// failf builds an *Error from a message.
func failf(code codes.Code, op, format string, args ...any) *Error {
	return &Error{Code: code, Op: op, Err: fmt.Errorf(format, args...)}
}

// codeOf returns the gRPC code of err: its own when it carries one, else
// def.
func codeOf(err error, def codes.Code) codes.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return def
}
