package ccnp

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// fakeServer records what the client sent and answers from its fields.
type fakeServer struct {
	ccnppb.UnimplementedCcnpServer
	mu       sync.Mutex
	last     any
	err      error
	delay    time.Duration
	events   []*ccnppb.TcgEventlog
	reportCC int32
}

func (s *fakeServer) record(ctx context.Context, req any) error {
	s.mu.Lock()
	s.last = req
	err, delay := s.err, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (s *fakeServer) GetDefaultAlgorithm(ctx context.Context, r *ccnppb.GetDefaultAlgorithmRequest) (*ccnppb.GetDefaultAlgorithmResponse, error) {
	if err := s.record(ctx, r); err != nil {
		return nil, err
	}
	return &ccnppb.GetDefaultAlgorithmResponse{AlgoId: uint32(AlgSHA384)}, nil
}

func (s *fakeServer) GetMeasurementCount(ctx context.Context, r *ccnppb.GetMeasurementCountRequest) (*ccnppb.GetMeasurementCountResponse, error) {
	if err := s.record(ctx, r); err != nil {
		return nil, err
	}
	return &ccnppb.GetMeasurementCountResponse{Count: 4}, nil
}

func (s *fakeServer) GetCcMeasurement(ctx context.Context, r *ccnppb.GetCcMeasurementRequest) (*ccnppb.GetCcMeasurementResponse, error) {
	if err := s.record(ctx, r); err != nil {
		return nil, err
	}
	if r.GetIndex() == 99 {
		return &ccnppb.GetCcMeasurementResponse{}, nil // a broken server
	}
	return &ccnppb.GetCcMeasurementResponse{Measurement: &ccnppb.TcgDigest{AlgoId: r.GetAlgoId(), Hash: []byte{byte(r.GetIndex())}}}, nil
}

func (s *fakeServer) GetCcEventlog(ctx context.Context, r *ccnppb.GetCcEventlogRequest) (*ccnppb.GetCcEventlogResponse, error) {
	if err := s.record(ctx, r); err != nil {
		return nil, err
	}
	return &ccnppb.GetCcEventlogResponse{EventLogs: s.events}, nil
}

func (s *fakeServer) GetCcReport(ctx context.Context, r *ccnppb.GetCcReportRequest) (*ccnppb.GetCcReportResponse, error) {
	if err := s.record(ctx, r); err != nil {
		return nil, err
	}
	return &ccnppb.GetCcReportResponse{CcType: s.reportCC, CcReport: []byte("quote")}, nil
}

func (s *fakeServer) lastReq() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func serveFake(t *testing.T, s *fakeServer) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ccnpsdk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ccnppb.RegisterCcnpServer(g, s)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return sock
}

func TestClientCalls(t *testing.T) {
	s := &fakeServer{reportCC: CCTypeTDX, events: []*ccnppb.TcgEventlog{{RecNum: 1, ImrIndex: 3, EventType: 0xCC,
		Digests: []*ccnppb.TcgDigest{{AlgoId: 12, Hash: []byte{9}}}, Event: []byte("e"), ExtraInfo: map[string]string{"source": "runtime_log"}}}}
	c, err := New(serveFake(t, s), WithContainerID("cid"), WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if a, err := c.DefaultAlgorithm(ctx); err != nil || a != AlgSHA384 {
		t.Fatalf("DefaultAlgorithm = %v, %v", a, err)
	}
	if n, err := c.MeasurementCount(ctx); err != nil || n != 4 {
		t.Fatalf("MeasurementCount = %v, %v", n, err)
	}
	d, err := c.Measurement(ctx, 3, AlgSHA384)
	if err != nil || d.AlgID != AlgSHA384 || !bytes.Equal(d.Hash, []byte{3}) {
		t.Fatalf("Measurement = %+v, %v", d, err)
	}
	if r := s.lastReq().(*ccnppb.GetCcMeasurementRequest); r.GetContainerId() != "cid" || r.GetIndex() != 3 || r.GetAlgoId() != 12 {
		t.Fatalf("sent %v", r)
	}
	if _, err := c.Measurement(ctx, 99, 0); !errors.Is(err, ErrServer) {
		t.Fatalf("response without a measurement: %v", err)
	}
	evs, err := c.EventLog(ctx, 2, 5)
	if err != nil || len(evs) != 1 || evs[0].IMRIndex != 3 || evs[0].Digests[0].AlgID != 12 || evs[0].ExtraInfo["source"] != "runtime_log" {
		t.Fatalf("EventLog = %+v, %v", evs, err)
	}
	if r := s.lastReq().(*ccnppb.GetCcEventlogRequest); r.GetStart() != 2 || r.GetCount() != 5 || r.Start == nil {
		t.Fatalf("sent %v", r)
	}
	nonce, ud := []byte{1, 2, 3}, []byte("user")
	rep, err := c.Report(ctx, nonce, ud)
	if err != nil || rep.CCType != CCTypeTDX || string(rep.Quote) != "quote" {
		t.Fatalf("Report = %+v, %v", rep, err)
	}
	r := s.lastReq().(*ccnppb.GetCcReportRequest)
	if r.GetNonce() != base64.StdEncoding.EncodeToString(nonce) || r.GetUserData() != base64.StdEncoding.EncodeToString(ud) || r.GetContainerId() != "cid" {
		t.Fatalf("sent %v", r)
	}
	if _, err := c.Report(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if r := s.lastReq().(*ccnppb.GetCcReportRequest); r.Nonce != nil || r.UserData != nil {
		t.Fatalf("absent nonce sent as %v", r)
	}
}

func TestClientErrors(t *testing.T) {
	for _, tt := range []struct {
		code codes.Code
		is   error
	}{
		{codes.PermissionDenied, ErrPermissionDenied},
		{codes.InvalidArgument, ErrInvalidArgument},
		{codes.Unavailable, ErrUnavailable},
		{codes.FailedPrecondition, ErrServer},
		{codes.Internal, ErrServer},
	} {
		s := &fakeServer{err: status.Error(tt.code, "because")}
		c, err := New(serveFake(t, s))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Measurement(context.Background(), 0, 0)
		var e *Error
		if !errors.As(err, &e) || e.Code != tt.code || e.Message != "because" || e.Op != "GetCcMeasurement" || !errors.Is(err, tt.is) {
			t.Errorf("%v: %v", tt.code, err)
		}
		for _, other := range []error{ErrPermissionDenied, ErrInvalidArgument, ErrUnavailable, ErrTimeout, ErrServer} {
			if other != tt.is && errors.Is(err, other) {
				t.Errorf("%v matches %v too", tt.code, other)
			}
		}
		c.Close()
	}

	// The client's timeout bounds a call to a server that does not answer.
	s := &fakeServer{delay: time.Minute}
	c, err := New(serveFake(t, s), WithTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.DefaultAlgorithm(context.Background()); !errors.Is(err, ErrTimeout) || time.Since(start) > 5*time.Second {
		t.Fatalf("timeout: %v after %v", err, time.Since(start))
	}
	c.Close()

	// No server behind the socket.
	c, err = New(filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.MeasurementCount(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no server: %v", err)
	}
	c.Close()
}

func TestReportData(t *testing.T) {
	imr, nonce, ud := bytes.Repeat([]byte{1}, 48), []byte("n"), []byte("u")
	want := sha512.Sum512(append(append(append([]byte{}, imr...), nonce...), ud...))
	if ReportData(imr, nonce, ud) != want {
		t.Fatal("ReportData is not SHA-512(imr || nonce || user data)")
	}
	if ReportData(imr, ud, nonce) == want {
		t.Fatal("ReportData ignores order")
	}
	// Without a nonce CCNP bound the user data alone.
	if ReportData(imr, nil, ud) != sha512.Sum512(ud) {
		t.Fatal("ReportData without a nonce is not SHA-512(user data)")
	}
	if ReportData(imr, []byte{}, ud) != sha512.Sum512(append(append([]byte{}, imr...), ud...)) {
		t.Fatal("ReportData with an empty nonce does not bind the register")
	}
}
