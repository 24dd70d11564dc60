// Package workloadsvc is the workload-facing CCNP service: a gRPC server on a
// Unix socket, wire-compatible with CCNP's unified server (proto package
// ccnp_server_pb, service ccnp), that gives each container its measurements,
// event log and a quote bound to its own nonce.
//
// Unlike CCNP, the container a request is answered for is never taken from
// the request. The kernel reports the connecting process's PID
// (SO_PEERCRED, and a pidfd where the kernel has SO_PEERPIDFD); the workload
// attestor's code maps it to its cgroup and from there to the container key
// CCNP used (the pod UID on Kubernetes, else the container ID). A request
// whose container_id names anything else is refused with PermissionDenied,
// and so is a caller in no container, unless the operator turned on the
// node view (Options.NodeView). GetDefaultAlgorithm and
// GetMeasurementCount answer anyone, as CCNP's did.
//
// Each container sees, as CCNP's container-isolated mode showed it:
//
//   - the platform's boot events (the CCEL on TDX: RTMR0..2; the TPM event
//     log on a TPM), with registers in the measurement API's index space
//     (RTMR index on TDX, PCR index on a TPM);
//   - its own records of the runtime log that the workload attestor keeps,
//     as events of its own register: index 3 on TDX (where CCNP put the
//     container IMR), the runtime PCR (23 by default) on a TPM.
//
// With Options.IMALogPath, the container's register is CCNP's instead
// (package ccnpimr: a host seed, then the container's ima-cgpath entries),
// resting on RTMR2, and RTMR2's IMA entries join the event log (other
// containers' by digest only). An informational event (EV_NO_ACTION, which
// replay skips) opens the register's events and says which one it is.
//
// The runtime-log register is the replay of its own records from zero. The
// runtime log is checked against the real register (RTMR3 or the runtime
// PCR) on every read, so what a container is told rests on a value the TEE
// signs. GetCcReport returns a real quote whose REPORTDATA is
// SHA-512(container register || nonce || user_data), CCNP's binding.
package workloadsvc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/cgroup"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/ccnpimr"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// Bounds of GetCcReport's inputs, after base64 decoding. A nonce longer than
// a SHA-512 adds nothing; user data leaves room for a raw public key.
const (
	MaxNonceSize    = 64
	MaxUserDataSize = 256
)

// MaxRequestSize bounds a request message; the largest valid one (a report
// request with the largest nonce and user data) is well under it.
const MaxRequestSize = 16 << 10

// CC types in GetCcReportResponse.cc_type (cc-api's TeeType numbering).
const (
	CCTypeTPM int32 = 0
	CCTypeTDX int32 = 1
)

// ServiceName is the full name of the CCNP service, as health checks name it.
const ServiceName = "ccnp_server_pb.ccnp"

// Options configure a Service.
type Options struct {
	// Provider is the TEE (tee.Open). Required.
	Provider cctrusted.Provider
	// RuntimeLogPath is the workload attestor's runtime log
	// (runtime_log_path in its configuration). Required. A missing file is
	// an empty log.
	RuntimeLogPath string
	// RuntimeIMR is the register the runtime log extends: zero means RTMR3
	// on TDX and the simulator, PCR 23 on a TPM.
	RuntimeIMR cctrusted.IMR
	// RuntimeAlg is the runtime log's bank: zero means SHA-384 on TDX and
	// the simulator, SHA-256 on a TPM.
	RuntimeAlg cctrusted.Algorithm
	// ProcRoot is where callers' /proc entries are read: "/proc", or the
	// host's /proc mounted elsewhere. Empty means "/proc". It must be the
	// procfs of the server's own PID namespace (New checks).
	ProcRoot string
	// CgroupRoot is the host's cgroup filesystem, where callers' container
	// cgroups are checked (cgroup.Tree). Empty means "/sys/fs/cgroup".
	CgroupRoot string
	// Logger receives one line per refused request (refusals for a limit at
	// most one a second); nil discards.
	Logger *slog.Logger
	// Limits bound connections, requests in flight and quotes (zero
	// fields: the defaults).
	Limits Limits
	// NodeView answers processes in no container with the node's own
	// registers, its whole event log and quotes binding SHA-512(nonce ||
	// user_data), as CCNP did with `isolated: false`. Off, they are
	// refused. Containers get their own view either way.
	NodeView bool
	// IMALogPath, when set, makes the container register CCNP's (TDX and
	// the simulator only): the host seed (HostPolicy), then the
	// container's entries of this ima-cgpath IMA list, which must replay
	// to RTMR2 after the boot events. New fails if the list has no
	// ima-cgpath entry. Empty: the runtime-log register.
	IMALogPath string
	// HostPolicy names the host processes of the seed; nil means
	// ccnpimr.DefaultPolicy (CCNP's shipped policy).
	HostPolicy *ccnpimr.Policy
}

// Service implements ccnppb.CcnpServer.
type Service struct {
	ccnppb.UnimplementedCcnpServer

	provider cctrusted.Provider
	tee      cctrusted.TEE
	alg      cctrusted.Algorithm
	count    uint32
	rtPath   string
	rtIMR    cctrusted.IMR
	rtAlg    cctrusted.Algorithm
	procRoot string
	cgroups  cgroup.Tree
	log      *slog.Logger
	limits   *limiter
	rt       *runtimeIndex

	// containerIndex is the container register's index on the wire.
	containerIndex uint32
	// platform is the boot event log without the container register's
	// events, immutable after boot, read once; boot is all of it (the node
	// view).
	platform []*ccnppb.TcgEventlog
	boot     []*ccnppb.TcgEventlog
	nodeView bool
	// ima is set when the container register is CCNP's.
	ima *imaMode
}

// New checks the options, reads the platform's boot event log once (it does
// not change after boot) and returns the service.
func New(ctx context.Context, opts Options) (*Service, error) {
	p := opts.Provider
	if p == nil {
		return nil, errors.New("workloadsvc: no TEE provider")
	}
	if opts.RuntimeLogPath == "" {
		return nil, errors.New("workloadsvc: no runtime log path")
	}
	s := &Service{provider: p, tee: p.TEE(), rtPath: opts.RuntimeLogPath, procRoot: opts.ProcRoot, log: opts.Logger, nodeView: opts.NodeView}
	if s.procRoot == "" {
		s.procRoot = "/proc"
	}
	if err := checkProcRoot(s.procRoot); err != nil {
		return nil, err
	}
	s.cgroups = cgroup.Tree{Root: opts.CgroupRoot}
	if s.cgroups.Root == "" {
		s.cgroups.Root = "/sys/fs/cgroup"
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.limits = newLimiter(opts.Limits, s.log)
	var err error
	if s.alg, err = p.DefaultAlgorithm(ctx); err != nil {
		return nil, fmt.Errorf("workloadsvc: default algorithm: %w", err)
	}
	n, err := p.MeasurementCount(ctx)
	if err != nil {
		return nil, fmt.Errorf("workloadsvc: measurement count: %w", err)
	}
	s.count = uint32(n)
	s.rtIMR, s.rtAlg = opts.RuntimeIMR, opts.RuntimeAlg
	switch {
	case s.tdxLike():
		if s.rtIMR == (cctrusted.IMR{}) {
			s.rtIMR = cctrusted.RTMR(3).IMR()
		}
		if s.rtAlg == 0 {
			s.rtAlg = cctrusted.AlgSHA384
		}
		t, err := s.rtIMR.TDX()
		if err != nil || t != cctrusted.RTMR(3).IMR() {
			return nil, fmt.Errorf("workloadsvc: runtime register %v: on TDX the runtime log extends RTMR3", s.rtIMR)
		}
		s.rtIMR = t
	case s.tee == cctrusted.TEETPM:
		if s.rtIMR == (cctrusted.IMR{}) {
			s.rtIMR = cctrusted.PCR(23).IMR()
		}
		if s.rtAlg == 0 {
			s.rtAlg = cctrusted.AlgSHA256
		}
		if s.rtIMR.Space != cctrusted.SpacePCR || !s.rtIMR.Valid() {
			return nil, fmt.Errorf("workloadsvc: runtime register %v: on a TPM the runtime log extends a PCR", s.rtIMR)
		}
	default:
		return nil, fmt.Errorf("workloadsvc: TEE %q is not supported", s.tee)
	}
	if _, err := s.rtAlg.Hash(); err != nil {
		return nil, fmt.Errorf("workloadsvc: runtime log bank: %w", err)
	}
	s.containerIndex = s.rtIMR.Index
	if s.containerIndex >= s.count {
		return nil, fmt.Errorf("workloadsvc: runtime register %v is outside the %d registers the TEE reports", s.rtIMR, s.count)
	}
	events, err := p.EventLog(ctx, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("workloadsvc: boot event log: %w", err)
	}
	if s.platform, s.boot, err = s.platformEvents(events); err != nil {
		return nil, fmt.Errorf("workloadsvc: boot event log: %w", err)
	}
	if s.rt, err = newRuntimeIndex(s.rtPath, s.rtIMR, s.rtAlg); err != nil {
		return nil, fmt.Errorf("workloadsvc: %w", err)
	}
	if opts.IMALogPath != "" {
		if !s.tdxLike() {
			return nil, fmt.Errorf("workloadsvc: IMA container register: CCNP's register is built on TDX (RTMR3, SHA-384); this TEE is %s", s.tee)
		}
		pol := ccnpimr.DefaultPolicy()
		if opts.HostPolicy != nil {
			pol = *opts.HostPolicy
		}
		if s.ima, err = newIMAMode(ctx, opts.IMALogPath, pol, s.procRoot, events); err != nil {
			return nil, fmt.Errorf("workloadsvc: IMA container register: %w", err)
		}
		names := make([]string, len(s.ima.hosts))
		for i, h := range s.ima.hosts {
			names[i] = fmt.Sprintf("%s (pid %d)", h.Name, h.PID)
		}
		s.log.Info("Container register: CCNP's, from the IMA list", "ima_log", opts.IMALogPath, "host_processes", strings.Join(names, ", "),
			"host_processes_missing", len(pol.Processes)-len(s.ima.hosts), "with_parameter", pol.WithParameter, "seed", fmt.Sprintf("%x", s.ima.seed))
	}
	if s.nodeView {
		s.log.Warn("Node view on: processes in no container get the node's registers, its whole event log (every container's records) and quotes over their own nonce")
	}
	return s, nil
}

// tdxLike reports whether the TEE speaks TDX (the simulator does).
func (s *Service) tdxLike() bool { return s.tee == cctrusted.TEETDX || s.tee == cctrusted.TEESim }

// ContainerIndex is the wire index of the container's own register.
func (s *Service) ContainerIndex() uint32 { return s.containerIndex }

// ContainerRegister says which register containers get at ContainerIndex:
// RegisterIMA or RegisterRuntimeLog.
func (s *Service) ContainerRegister() string {
	if s.ima != nil {
		return RegisterIMA
	}
	return RegisterRuntimeLog
}

// containerRegister is the caller's register at the container index.
func (s *Service) containerRegister(ctx context.Context, c *Caller) ([]byte, error) {
	if s.ima != nil {
		v, err := s.ima.view(ctx, s.provider, c.Key)
		if err != nil {
			return nil, err
		}
		return s.ima.register(v)
	}
	v, err := s.view(ctx, c)
	if err != nil {
		return nil, err
	}
	return v.imr(s.rtAlg), nil
}

// MaxConnectionIdle is how long a connection with no request in flight
// stays open; gRPC clients reconnect on their next call, so closing it
// costs an idle client one handshake.
const MaxConnectionIdle = 2 * time.Minute

// NewServer returns a gRPC server with the service, the standard health
// service (reporting ServiceName and "" as serving) and reflection, whose
// connections carry the peer credentials the service needs, within the
// service's Limits. Serve it on s.Limit(listener). opts are appended to the
// server's own.
func (s *Service) NewServer(opts ...grpc.ServerOption) *grpc.Server {
	all := append([]grpc.ServerOption{
		grpc.Creds(limitedCreds{TransportCredentials: PeerCredentials(s.procRoot), s: s}),
		grpc.MaxRecvMsgSize(MaxRequestSize),
		grpc.MaxConcurrentStreams(s.limits.lim.MaxStreams),
		// Idle connections count against max_connections and the caller's
		// max_caller_connections: close them, so a tenant cannot keep the
		// slots of the others by connecting and doing nothing.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: MaxConnectionIdle}),
		grpc.ChainUnaryInterceptor(s.logRefusals, s.admit),
	}, opts...)
	g := grpc.NewServer(all...)
	ccnppb.RegisterCcnpServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	return g
}

// logRefusals writes one line per refused request: who asked, what, why.
func (s *Service) logRefusals(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		pid := 0
		if p, ok := peerFromContext(ctx); ok {
			pid = p.PID
		}
		st, _ := status.FromError(err)
		if st.Code() == codes.ResourceExhausted {
			// A flood makes one of these per request.
			s.limits.log.warn("Request refused", "method", info.FullMethod, "pid", pid, "code", st.Code().String(), "reason", st.Message())
			return resp, err
		}
		s.log.Warn("Request refused", "method", info.FullMethod, "pid", pid, "code", st.Code().String(), "reason", st.Message())
	}
	return resp, err
}

// identifyPeer identifies the process behind ctx.
func (s *Service) identifyPeer(ctx context.Context) (*Caller, error) {
	p, ok := peerFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "no peer credentials on this connection: the service answers only over its Unix socket")
	}
	return identify(s.procRoot, s.cgroups, p, s.nodeView)
}

// caller is the caller admit identified (or, called outside the server,
// identifies it) after checking the request's container_id against it.
func (s *Service) caller(ctx context.Context, containerID string) (*Caller, error) {
	c, ok := ctx.Value(callerKey{}).(*Caller)
	if !ok {
		var err error
		if c, err = s.identifyPeer(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.checkContainerID(containerID); err != nil {
		return nil, err
	}
	return c, nil
}

// GetDefaultAlgorithm returns the TEE's default bank, to any caller (as
// CCNP did): it says what the TEE is, nothing about a container.
func (s *Service) GetDefaultAlgorithm(ctx context.Context, _ *ccnppb.GetDefaultAlgorithmRequest) (*ccnppb.GetDefaultAlgorithmResponse, error) {
	return &ccnppb.GetDefaultAlgorithmResponse{AlgoId: uint32(s.alg)}, nil
}

// GetMeasurementCount returns the number of registers GetCcMeasurement
// indexes: 4 on TDX (RTMR0..3, with 3 the container's), 24 on a TPM. Any
// caller gets it, as from CCNP.
func (s *Service) GetMeasurementCount(ctx context.Context, _ *ccnppb.GetMeasurementCountRequest) (*ccnppb.GetMeasurementCountResponse, error) {
	return &ccnppb.GetMeasurementCountResponse{Count: s.count}, nil
}

// GetCcMeasurement returns one register: the container's own at
// ContainerIndex, the platform's at the others.
func (s *Service) GetCcMeasurement(ctx context.Context, req *ccnppb.GetCcMeasurementRequest) (*ccnppb.GetCcMeasurementResponse, error) {
	c, err := s.caller(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	alg, err := s.algorithm(req.GetAlgoId())
	if err != nil {
		return nil, err
	}
	idx := req.GetIndex()
	if idx >= s.count {
		return nil, status.Errorf(codes.InvalidArgument, "index %d: this %s TEE has registers 0..%d (%s)", idx, s.tee, s.count-1, s.indexHelp())
	}
	if idx == s.containerIndex && !c.Host {
		if alg != s.rtAlg {
			return nil, status.Errorf(codes.InvalidArgument, "algo_id 0x%04x (%v): the container register %d is kept in %v only", uint32(alg), alg, idx, s.rtAlg)
		}
		v, err := s.containerRegister(ctx, c)
		if err != nil {
			return nil, err
		}
		return &ccnppb.GetCcMeasurementResponse{Measurement: &ccnppb.TcgDigest{AlgoId: uint32(alg), Hash: v}}, nil
	}
	if s.tdxLike() && alg != cctrusted.AlgSHA384 {
		return nil, status.Errorf(codes.InvalidArgument, "algo_id 0x%04x (%v): TDX registers are SHA-384 (0x000c) only", uint32(alg), alg)
	}
	m := cctrusted.RTMR(idx).IMR()
	if !s.tdxLike() {
		m = cctrusted.PCR(idx).IMR()
	}
	if idx == s.containerIndex && alg != s.rtAlg {
		return nil, status.Errorf(codes.InvalidArgument, "algo_id 0x%04x (%v): the runtime register %d is read in %v only", uint32(alg), alg, idx, s.rtAlg)
	}
	d, err := s.provider.Measurement(ctx, m, alg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading %v (%v): %v", m, alg, err)
	}
	return &ccnppb.GetCcMeasurementResponse{Measurement: &ccnppb.TcgDigest{AlgoId: uint32(d.Alg), Hash: d.Value}}, nil
}

func (s *Service) indexHelp() string {
	if s.tdxLike() {
		return fmt.Sprintf("RTMR0..2 of the platform, %d the container's own", s.containerIndex)
	}
	return fmt.Sprintf("PCRs, %d the container's own", s.containerIndex)
}

// algorithm validates algo_id; 0 (proto3's unset) means the default bank.
func (s *Service) algorithm(id uint32) (cctrusted.Algorithm, error) {
	if id == 0 {
		return s.alg, nil
	}
	alg := cctrusted.Algorithm(id)
	if id > 0xffff || !alg.Known() {
		return 0, status.Errorf(codes.InvalidArgument, "algo_id 0x%04x is not a supported TCG hash algorithm (sha1 0x0004, sha256 0x000b, sha384 0x000c, sha512 0x000d)", id)
	}
	if _, err := alg.Hash(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "algo_id 0x%04x (%v) is not supported here", id, alg)
	}
	return alg, nil
}

// GetCcEventlog returns events [start, start+count) of the caller's view:
// a container's is the platform's boot events, then its own records; the
// node view's is the whole boot log, then every runtime record. start ==
// the number of events gives none; a larger start is InvalidArgument; count
// 0 (or unset) means all remaining and a larger count is clamped.
func (s *Service) GetCcEventlog(ctx context.Context, req *ccnppb.GetCcEventlogRequest) (*ccnppb.GetCcEventlogResponse, error) {
	c, err := s.caller(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	segs, err := s.segments(ctx, c)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, g := range segs {
		total += g.n
	}
	start := int(req.GetStart())
	end, err := pageOf(total, start, int(req.GetCount()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "start %d: the caller's event log has %d events (start may be at most that)", req.GetStart(), total)
	}
	page, err := pageSegments(segs, start, end)
	if err != nil {
		return nil, err
	}
	return &ccnppb.GetCcEventlogResponse{EventLogs: page}, nil
}

// segments lays out the caller's view: a container's is the platform's
// boot events, with the RTMR2 extends of the IMA list when the service reads
// one, then the container register's events: the marker saying which
// register it is, then its events (the host seed and the container's IMA
// entries, or its runtime-log records). The node view's is the whole boot
// log, the whole IMA list, the marker and every runtime-log record.
func (s *Service) segments(ctx context.Context, c *Caller) ([]segment, error) {
	var iv *imaView
	if s.ima != nil {
		var err error
		if iv, err = s.ima.view(ctx, s.provider, c.Key); err != nil {
			return nil, err
		}
	}
	var v *containerView
	if s.ima == nil || c.Host {
		var err error
		if v, err = s.view(ctx, c); err != nil {
			return nil, err
		}
	}
	segs := []segment{fixed(s.platform)}
	if c.Host {
		segs[0] = fixed(s.boot)
	}
	if iv != nil {
		segs = append(segs, segment{n: iv.n, page: func(a, b int) ([]*ccnppb.TcgEventlog, error) { return s.ima.rtmr2Events(iv, a, b, c.Host), nil }})
	}
	segs = append(segs, fixed([]*ccnppb.TcgEventlog{s.marker(c.Host)}))
	switch {
	case c.Host:
		segs = append(segs, segment{n: v.log.Len(), page: func(a, b int) ([]*ccnppb.TcgEventlog, error) { return s.nodeRecords(v, a, b) }})
	case iv != nil:
		segs = append(segs, segment{n: len(s.ima.hosts) + len(iv.own), page: func(a, b int) ([]*ccnppb.TcgEventlog, error) {
			return s.ima.containerEvents(iv, s.containerIndex, a, b), nil
		}})
	default:
		segs = append(segs, segment{n: v.count(), page: func(a, b int) ([]*ccnppb.TcgEventlog, error) { return s.events(v, a, b) }})
	}
	return segs, nil
}

// segment is a run of a view's events; page builds events [a, b) of it, so
// the events outside a page are never built.
type segment struct {
	n    int
	page func(a, b int) ([]*ccnppb.TcgEventlog, error)
}

func fixed(evs []*ccnppb.TcgEventlog) segment {
	return segment{n: len(evs), page: func(a, b int) ([]*ccnppb.TcgEventlog, error) { return evs[a:b], nil }}
}

// pageSegments returns events [start, end) of the segments laid end to end.
func pageSegments(segs []segment, start, end int) ([]*ccnppb.TcgEventlog, error) {
	page := make([]*ccnppb.TcgEventlog, 0, end-start)
	off := 0
	for _, g := range segs {
		a, b := max(start-off, 0), min(end-off, g.n)
		if a < b {
			evs, err := g.page(a, b)
			if err != nil {
				return nil, err
			}
			page = append(page, evs...)
		}
		off += g.n
	}
	return page, nil
}

// pageOf applies cctrusted.Page's rule to n events: the page is [start,
// end).
func pageOf(n, start, count int) (end int, err error) {
	if start < 0 || start > n {
		return 0, &cctrusted.PageError{Start: start, Len: n}
	}
	end = n
	if count > 0 && count < n-start {
		end = start + count
	}
	return end, nil
}

// GetCcReport returns a quote whose REPORTDATA is, as CCNP's server and
// cc-api's SDK computed it (nonce and user_data base64-decoded, an absent
// field hashing as empty):
//
//   - a container with a nonce (even an empty one): SHA-512(container
//     register || nonce || user_data);
//   - a container without a nonce: SHA-512(user_data), binding no
//     register: CCNP prefixed the register to the nonce only when there
//     was one;
//   - the node view: SHA-512(nonce || user_data).
//
// The provider computes SHA-512(n || u) over what it is given.
//
// On a TPM, CCNP's SDKs turn anything but a TDX quote into None or an
// error, so a TPM report is refused unless the client asks for this
// service's JSON form (ReportFormatHeader, as sdk/ccnp does).
func (s *Service) GetCcReport(ctx context.Context, req *ccnppb.GetCcReportRequest) (*ccnppb.GetCcReportResponse, error) {
	c, err := s.caller(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if s.tee == cctrusted.TEETPM && !wantsJSONReport(ctx) {
		return nil, status.Errorf(codes.FailedPrecondition, "this node's TEE is a TPM: CCNP's SDKs carry only TDX quotes (cc_type 1) and turn a TPM report into None; "+
			"get TPM reports with `ccnp client report` (or sdk/ccnp), which asks for them as JSON (gRPC metadata %s: %s)", ReportFormatHeader, ReportFormatJSON)
	}
	nonce, err := decodeField("nonce", req.GetNonce(), MaxNonceSize)
	if err != nil {
		return nil, err
	}
	ud, err := decodeField("user_data", req.GetUserData(), MaxUserDataSize)
	if err != nil {
		return nil, err
	}
	var n, u []byte
	switch {
	case c.Host || req.Nonce == nil:
		n, u = nonce, ud
	default:
		v, err := s.containerRegister(ctx, c)
		if err != nil {
			return nil, err
		}
		n, u = v, append(append([]byte{}, nonce...), ud...)
	}
	r, err := s.provider.Report(ctx, n, u)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%s quote: %v", s.tee, err)
	}
	// The binding is the point of the call: never hand out a quote that
	// does not carry it.
	if err := cctrusted.CheckReportData(r.ReportData, n, u); err != nil {
		return nil, status.Errorf(codes.Internal, "%s quote: %v", s.tee, err)
	}
	resp := &ccnppb.GetCcReportResponse{CcType: CCTypeTDX, CcReport: r.Quote}
	if s.tee == cctrusted.TEETPM {
		resp.CcType = CCTypeTPM
		if resp.CcReport, err = tpmReport(r); err != nil {
			return nil, status.Errorf(codes.Internal, "tpm quote: %v", err)
		}
	}
	return resp, nil
}

// ReportFormatHeader is the gRPC metadata key with which a client asks for
// a TPM report as JSON (ReportFormatJSON); CCNP's SDKs never send it.
const (
	ReportFormatHeader = "ccnp-report-format"
	ReportFormatJSON   = "json"
)

func wantsJSONReport(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(ReportFormatHeader) {
		if v == ReportFormatJSON {
			return true
		}
	}
	return false
}

// decodeField decodes a base64 request field (standard alphabet, padded or
// not, as CCNP's SDKs differ) of at most max bytes, checking the length
// before decoding.
func decodeField(name, v string, max int) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	if len(v) > base64.StdEncoding.EncodedLen(max) {
		return nil, status.Errorf(codes.InvalidArgument, "%s is %d base64 characters: at most %d bytes (%d characters) are accepted", name, len(v), max, base64.StdEncoding.EncodedLen(max))
	}
	// Go's decoders skip CR and LF even in strict mode; a field with
	// anything but the alphabet and padding is not what a client meant.
	if i := strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=')
	}); i >= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%s is not base64 (standard alphabet): byte %d is %q", name, i, v[i])
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(v, "=") && len(v)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	b, err := enc.Strict().DecodeString(v)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s is not base64 (standard alphabet): %v", name, err)
	}
	if len(b) > max {
		return nil, status.Errorf(codes.InvalidArgument, "%s is %d bytes: at most %d are accepted", name, len(b), max)
	}
	return b, nil
}

// tpmReport is the cc_report of a TPM: its quote has several parts, sent as
// the JSON `ccnp quote get` writes (hex fields).
func tpmReport(r *cctrusted.Report) ([]byte, error) {
	out := struct {
		TEE        cctrusted.TEE                `json:"tee"`
		ReportData string                       `json:"report_data"`
		Quote      string                       `json:"quote"`
		Signature  string                       `json:"signature,omitempty"`
		PCRs       map[string]map[string]string `json:"pcrs,omitempty"`
	}{TEE: r.TEE, ReportData: fmt.Sprintf("%x", r.ReportData), Quote: fmt.Sprintf("%x", r.Quote), Signature: fmt.Sprintf("%x", r.Signature)}
	for m, banks := range r.Registers {
		for a, v := range banks {
			if out.PCRs == nil {
				out.PCRs = map[string]map[string]string{}
			}
			if out.PCRs[a.String()] == nil {
				out.PCRs[a.String()] = map[string]string{}
			}
			out.PCRs[a.String()][m.String()] = fmt.Sprintf("%x", v)
		}
	}
	return json.Marshal(out)
}
