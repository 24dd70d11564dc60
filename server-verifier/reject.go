package serververifier

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/evidence"
)

// rejection is a failed attestation: the gRPC code the agent sees, the
// check that failed, and why.
type rejection struct {
	code  codes.Code
	check string
	err   error
}

// Error names the check first: SPIRE puts "nodeattestor(ccnp): " in front
// of what the agent and the server log, so no prefix of ours.
func (r *rejection) Error() string { return fmt.Sprintf("%s: %v", r.check, r.err) }

func (r *rejection) Unwrap() error { return r.err }

// GRPCStatus lets status.FromError (and the gRPC server) see the code.
func (r *rejection) GRPCStatus() *status.Status { return status.New(r.code, r.Error()) }

func reject(code codes.Code, check string, err error) *rejection {
	return &rejection{code: code, check: check, err: err}
}

func rejectf(code codes.Code, check, format string, args ...any) *rejection {
	return reject(code, check, fmt.Errorf(format, args...))
}

// payloadRejection maps package evidence's error classes onto gRPC codes.
// A payload over the limit is InvalidArgument: the agent sent what the
// challenge told it not to.
func payloadRejection(what string, err error) *rejection {
	code := codes.InvalidArgument
	switch {
	case errors.Is(err, evidence.ErrVersion):
		code = codes.FailedPrecondition
	case errors.Is(err, evidence.ErrBinding):
		return reject(codes.PermissionDenied, appraisal.CheckBinding, err)
	}
	return reject(code, appraisal.CheckPayload, fmt.Errorf("%w (in the %s message)", err, what))
}

// appraisalRejection maps an appraisal failure, keeping its check name; a
// rejection of the server's own (an activation round trip's) is kept.
func appraisalRejection(err error) *rejection {
	var r *rejection
	if errors.As(err, &r) {
		return r
	}
	ae, ok := appraisal.AsError(err)
	if !ok {
		return reject(codes.Internal, "appraisal", err)
	}
	code := codes.Internal
	switch ae.Code {
	case appraisal.CodeInvalidEvidence:
		code = codes.InvalidArgument
	case appraisal.CodeRejected:
		code = codes.PermissionDenied
	case appraisal.CodeUnavailable:
		code = codes.Unavailable
	case appraisal.CodeConfig:
		code = codes.FailedPrecondition
	}
	return reject(code, ae.Check, ae.Err)
}

func asRejection(err error) *rejection {
	var r *rejection
	if errors.As(err, &r) {
		return r
	}
	if s, ok := status.FromError(err); ok {
		return reject(s.Code(), appraisal.CheckProtocol, errors.New(s.Message()))
	}
	return reject(codes.Internal, appraisal.CheckProtocol, err)
}
