// Package ccnp is a Go client of the CCNP workload service (`ccnp serve`, or
// CCNP's own unified server): the CC Trusted API calls a workload makes to
// learn its container's measurements and event log and to get a quote bound
// to its own nonce.
//
// Every call takes a context, is bounded by the client's timeout, and returns
// errors (a *Error carrying the gRPC code, matching the Err* values with
// errors.Is); nothing here exits the process or logs.
//
// The server decides which container a caller is from the caller's PID; the
// container ID a Client sends (WithContainerID) is only checked against that,
// and may be left empty to mean "my own".
package ccnp

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// DefaultSocket is where the service listens unless told otherwise.
const DefaultSocket = "/run/ccnp/uds/ccnp-server.sock"

// DefaultTimeout bounds each call unless WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// TCG algorithm IDs of the banks the service reports.
const (
	AlgSHA1   uint16 = 0x0004
	AlgSHA256 uint16 = 0x000B
	AlgSHA384 uint16 = 0x000C
	AlgSHA512 uint16 = 0x000D
)

// CC types of Report.CCType (cc-api numbering).
const (
	CCTypeTPM int32 = 0
	CCTypeTDX int32 = 1
)

// Errors that *Error matches by gRPC code.
var (
	ErrUnavailable      = errors.New("ccnp: service unavailable")
	ErrPermissionDenied = errors.New("ccnp: permission denied")
	ErrInvalidArgument  = errors.New("ccnp: invalid argument")
	ErrTimeout          = errors.New("ccnp: deadline exceeded")
	ErrServer           = errors.New("ccnp: server error")
)

// Error is a failed call.
type Error struct {
	// Op is the call, e.g. "GetCcReport".
	Op string
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's explanation.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("ccnp: %s: %s: %s", e.Op, e.Code, e.Message)
}

// Is matches the Err* value of the error's code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnavailable:
		return e.Code == codes.Unavailable
	case ErrPermissionDenied:
		return e.Code == codes.PermissionDenied || e.Code == codes.Unauthenticated
	case ErrInvalidArgument:
		return e.Code == codes.InvalidArgument || e.Code == codes.OutOfRange
	case ErrTimeout:
		return e.Code == codes.DeadlineExceeded
	case ErrServer:
		return e.Code == codes.Internal || e.Code == codes.FailedPrecondition || e.Code == codes.Unknown || e.Code == codes.Unimplemented
	}
	return false
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			return &Error{Op: op, Code: codes.DeadlineExceeded, Message: err.Error()}
		}
		if errors.Is(err, context.Canceled) {
			return &Error{Op: op, Code: codes.Canceled, Message: err.Error()}
		}
		return &Error{Op: op, Code: codes.Unknown, Message: err.Error()}
	}
	return &Error{Op: op, Code: st.Code(), Message: st.Message()}
}

// Option configures a Client.
type Option func(*Client)

// WithContainerID sets the container_id sent with each request: the pod
// UID on Kubernetes, else the container ID. Empty (the default) lets the
// server use the caller's own.
func WithContainerID(id string) Option { return func(c *Client) { c.containerID = id } }

// WithTimeout bounds each call (default DefaultTimeout); 0 means no bound
// beyond the caller's context.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithDialOptions adds gRPC dial options (interceptors, for example).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *Client) { c.dial = append(c.dial, opts...) }
}

// Client talks to the service over its Unix socket. It is safe for
// concurrent use; Close releases the connection.
type Client struct {
	conn        *grpc.ClientConn
	rpc         ccnppb.CcnpClient
	containerID string
	timeout     time.Duration
	dial        []grpc.DialOption
}

// New returns a client of the service at socket (DefaultSocket if empty).
// It does not connect until the first call, so a missing service shows as
// ErrUnavailable there.
func New(socket string, opts ...Option) (*Client, error) {
	if socket == "" {
		socket = DefaultSocket
	}
	c := &Client{timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, c.dial...)
	conn, err := grpc.NewClient("unix://"+socket, dial...)
	if err != nil {
		return nil, fmt.Errorf("ccnp: socket %s: %w", socket, err)
	}
	c.conn, c.rpc = conn, ccnppb.NewCcnpClient(conn)
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

// DefaultAlgorithm returns the TCG ID of the bank measurements use by
// default (SHA-384 on TDX, SHA-256 on a TPM).
func (c *Client) DefaultAlgorithm(ctx context.Context) (uint16, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	r, err := c.rpc.GetDefaultAlgorithm(ctx, &ccnppb.GetDefaultAlgorithmRequest{})
	if err != nil {
		return 0, wrap("GetDefaultAlgorithm", err)
	}
	return uint16(r.GetAlgoId()), nil
}

// MeasurementCount returns the number of registers Measurement indexes.
func (c *Client) MeasurementCount(ctx context.Context) (int, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	r, err := c.rpc.GetMeasurementCount(ctx, &ccnppb.GetMeasurementCountRequest{})
	if err != nil {
		return 0, wrap("GetMeasurementCount", err)
	}
	return int(r.GetCount()), nil
}

// Digest is a register value or an event digest.
type Digest struct {
	AlgID uint16
	Hash  []byte
}

// Measurement reads register index (RTMR index on TDX, where 3 is the
// container's own register; PCR index on a TPM) in bank alg (0: the
// default).
func (c *Client) Measurement(ctx context.Context, index uint32, alg uint16) (Digest, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	r, err := c.rpc.GetCcMeasurement(ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: c.containerID, Index: index, AlgoId: uint32(alg)})
	if err != nil {
		return Digest{}, wrap("GetCcMeasurement", err)
	}
	m := r.GetMeasurement()
	if m == nil {
		return Digest{}, &Error{Op: "GetCcMeasurement", Code: codes.Internal, Message: "response without a measurement"}
	}
	return Digest{AlgID: uint16(m.GetAlgoId()), Hash: m.GetHash()}, nil
}

// Event is one event of the container's event log.
type Event struct {
	RecNum    uint32
	IMRIndex  uint32
	EventType uint32
	Digests   []Digest
	Event     []byte
	ExtraInfo map[string]string
}

// EventLog returns events [start, start+count) of the container's view
// (count 0: all remaining). start equal to the number of events returns
// none; a larger start is ErrInvalidArgument.
func (c *Client) EventLog(ctx context.Context, start, count uint32) ([]Event, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	r, err := c.rpc.GetCcEventlog(ctx, &ccnppb.GetCcEventlogRequest{ContainerId: c.containerID, Start: &start, Count: &count})
	if err != nil {
		return nil, wrap("GetCcEventlog", err)
	}
	out := make([]Event, 0, len(r.GetEventLogs()))
	for _, e := range r.GetEventLogs() {
		ev := Event{RecNum: e.GetRecNum(), IMRIndex: e.GetImrIndex(), EventType: e.GetEventType(), Event: e.GetEvent(), ExtraInfo: e.GetExtraInfo()}
		for _, d := range e.GetDigests() {
			ev.Digests = append(ev.Digests, Digest{AlgID: uint16(d.GetAlgoId()), Hash: d.GetHash()})
		}
		out = append(out, ev)
	}
	return out, nil
}

// Report is a quote from the service.
type Report struct {
	// CCType is CCTypeTDX (a TDX quote v4) or CCTypeTPM (JSON with the
	// TPM quote's parts in hex).
	CCType int32
	Quote  []byte
}

// Report returns a quote whose REPORTDATA (TDX) or extraData (TPM) is
// ReportData(container register, nonce, userData).
func (c *Client) Report(ctx context.Context, nonce, userData []byte) (*Report, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	req := &ccnppb.GetCcReportRequest{ContainerId: c.containerID}
	if nonce != nil {
		n := base64.StdEncoding.EncodeToString(nonce)
		req.Nonce = &n
	}
	if userData != nil {
		u := base64.StdEncoding.EncodeToString(userData)
		req.UserData = &u
	}
	// On a TPM the service sends its JSON form only to clients that ask
	// (workloadsvc.ReportFormatHeader): CCNP's SDKs cannot carry it.
	ctx = metadata.AppendToOutgoingContext(ctx, "ccnp-report-format", "json")
	r, err := c.rpc.GetCcReport(ctx, req)
	if err != nil {
		return nil, wrap("GetCcReport", err)
	}
	return &Report{CCType: r.GetCcType(), Quote: r.GetCcReport()}, nil
}

// ReportData is what the service binds into a report for a container:
// SHA-512(container register || nonce || userData) when a nonce is sent
// (non-nil, even empty), else SHA-512(userData), CCNP's rule: the register
// is bound only with a nonce. (The node view binds SHA-512(nonce ||
// userData): pass a nil containerIMR.)
func ReportData(containerIMR, nonce, userData []byte) [64]byte {
	if nonce == nil {
		containerIMR = nil
	}
	h := sha512.New()
	h.Write(containerIMR)
	h.Write(nonce)
	h.Write(userData)
	var out [64]byte
	copy(out[:], h.Sum(nil))
	return out
}
