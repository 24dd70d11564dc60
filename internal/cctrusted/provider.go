package cctrusted

import (
	"context"
	"fmt"
)

// Provider is a TEE as the CC Trusted API sees it. TDX, TPM and the
// simulator implement it, so plugins and the CLI never ask which one runs.
type Provider interface {
	// TEE names the environment.
	TEE() TEE
	// DefaultAlgorithm is the bank measurements use by default (TDX: SHA-384,
	// TPM: SHA-256).
	DefaultAlgorithm(ctx context.Context) (Algorithm, error)
	// MeasurementCount is the number of runtime registers (TDX: 4 RTMRs; the
	// MRTD is read separately; TPM: 24 PCRs).
	MeasurementCount(ctx context.Context) (int, error)
	// Measurement reads one register in one bank.
	Measurement(ctx context.Context, imr IMR, alg Algorithm) (Digest, error)
	// EventLog returns events [start, start+count). start == len returns no
	// events; start > len is an error; count <= 0 means all remaining.
	EventLog(ctx context.Context, start, count int) ([]Event, error)
	// Report returns evidence whose report data is SHA-512(nonce || userData).
	Report(ctx context.Context, nonce, userData []byte) (*Report, error)
}

// Page applies the EventLog paging rule to a full log.
func Page(events []Event, start, count int) ([]Event, error) {
	if start < 0 || start > len(events) {
		return nil, &PageError{Start: start, Len: len(events)}
	}
	rest := events[start:]
	if count > 0 && count < len(rest) {
		rest = rest[:count]
	}
	return rest, nil
}

// PageError reports a start index beyond the end of the log.
type PageError struct {
	Start, Len int
}

func (e *PageError) Error() string {
	return fmt.Sprintf("cctrusted: event log start %d is beyond the log's %d events", e.Start, e.Len)
}
