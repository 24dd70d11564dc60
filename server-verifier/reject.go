package serververifier

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/evidence"
)

// Names of the server's own checks (appraisal's TDX checks keep their
// names: quote_format, pck_chain, ...). Stable: audit lines carry them and
// log queries match on them.
const (
	CheckProtocol       = "protocol"        // message order, kinds, timeouts
	CheckPayload        = "payload"         // size, version, structure of a payload
	CheckTEE            = "tee"             // TEE kind accepted by configuration, hello/evidence agree
	CheckNonce          = "nonce"           // this round's, answered within nonce_ttl
	CheckBinding        = "binding"         // SHA-512(nonce || SHA-256(hello)) in the evidence
	CheckEKTrust        = "ek_trust"        // EK certificate chain or EK hash allow-list
	CheckAKTrust        = "ak_trust"        // AK certificate chain to ak_ca_files, in addition to activation
	CheckTPMQuote       = "tpm_quote"       // AK signature, extraData, PCR selection and digest
	CheckActivation     = "activation"      // credential activation ties the AK to the EK
	CheckTPMLogReplay   = "tpm_log_replay"  // TPM firmware log against the quoted PCRs
	CheckIMAReplay      = "ima_replay"      // IMA log against RTMR2 / PCR10
	CheckRuntimeReplay  = "runtime_replay"  // runtime log against RTMR3 / PCR23
	CheckPolicy         = "policy"          // require_policy
	CheckAgentID        = "agent_id"        // agent ID rendering
	CheckSimulatedQuote = "simulated_quote" // a simulator's quote presented as TDX
	CheckCapacity       = "capacity"        // evidence over max_evidence_bytes_in_flight held at once
)

// rejection is a failed attestation: the gRPC code the agent sees, the
// check that failed, and why.
type rejection struct {
	code  codes.Code
	check string
	err   error
}

func (r *rejection) Error() string { return fmt.Sprintf("ccnp: %s: %v", r.check, r.err) }

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
		return reject(codes.PermissionDenied, CheckBinding, err)
	}
	return reject(code, CheckPayload, fmt.Errorf("%w (in the %s message)", err, what))
}

// appraisalRejection maps an appraisal failure, keeping its check name.
func appraisalRejection(err error) *rejection {
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
		return reject(s.Code(), CheckProtocol, errors.New(s.Message()))
	}
	return reject(codes.Internal, CheckProtocol, err)
}
