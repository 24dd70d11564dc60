package workloadsvc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Limits bound what callers can make the service do at once. Every caller
// that can reach the socket can ask, and each answer costs the node: the
// runtime log's register is read from the TEE on every request touching the
// container register, and each quote is a TEE operation. Excess requests
// fail at once with ResourceExhausted rather than queueing, so a flood
// cannot build a backlog that others wait behind. Zero fields mean the
// defaults (DefaultLimits).
type Limits struct {
	// MaxConnections bounds open connections to the socket; a connection
	// beyond it is closed as soon as it is accepted.
	MaxConnections int
	// MaxCallerConnections bounds the open connections of one caller
	// (container key; UID when the process is in no container), so one
	// container cannot hold every connection.
	MaxCallerConnections int
	// MaxStreams bounds concurrent requests on one connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS): the client holds further ones back.
	MaxStreams uint32
	// MaxRequests bounds requests in flight server-wide that read the
	// runtime log or the TEE (measurements, event logs, quotes).
	MaxRequests int
	// MaxCallerRequests bounds one caller's requests in flight, so one
	// container cannot take every slot of MaxRequests.
	MaxCallerRequests int
	// QuoteRate is the sustained number of quotes per second one caller
	// gets; QuoteBurst how many it may ask for at once after being idle.
	QuoteRate  float64
	QuoteBurst int
}

// Defaults of Limits. A container asks for a quote when it proves itself to
// someone, not in a loop: one per second with a burst of 5 leaves room for
// retries. 8 requests in flight (4 per caller) keep two callers busy on two
// cores; more would only queue on the TEE.
const (
	DefaultMaxConnections       = 256
	DefaultMaxCallerConnections = 16
	DefaultMaxStreams           = 16
	DefaultMaxRequests          = 8
	DefaultMaxCallerRequests    = 4
	DefaultQuoteRate            = 1.0
	DefaultQuoteBurst           = 5
)

// DefaultLimits returns the defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections: DefaultMaxConnections, MaxCallerConnections: DefaultMaxCallerConnections,
		MaxStreams: DefaultMaxStreams, MaxRequests: DefaultMaxRequests, MaxCallerRequests: DefaultMaxCallerRequests,
		QuoteRate: DefaultQuoteRate, QuoteBurst: DefaultQuoteBurst,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxConnections <= 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.MaxCallerConnections <= 0 {
		l.MaxCallerConnections = d.MaxCallerConnections
	}
	if l.MaxStreams == 0 {
		l.MaxStreams = d.MaxStreams
	}
	if l.MaxRequests <= 0 {
		l.MaxRequests = d.MaxRequests
	}
	if l.MaxCallerRequests <= 0 {
		l.MaxCallerRequests = d.MaxCallerRequests
	}
	if l.QuoteRate <= 0 {
		l.QuoteRate = d.QuoteRate
	}
	if l.QuoteBurst <= 0 {
		l.QuoteBurst = d.QuoteBurst
	}
	return l
}

// limiter holds the counters behind Limits.
type limiter struct {
	lim Limits
	now func() time.Time
	log *throttledLog

	// requests is the server-wide semaphore of expensive requests.
	requests chan struct{}

	mu       sync.Mutex
	inFlight map[string]int // per caller key; entries at zero are removed
	conns    map[string]int // per caller key or "uid:N"
	quotes   map[string]*bucket
}

func newLimiter(lim Limits, log *slog.Logger) *limiter {
	lim = lim.withDefaults()
	return &limiter{
		lim: lim, now: time.Now, log: &throttledLog{log: log},
		requests: make(chan struct{}, lim.MaxRequests),
		inFlight: map[string]int{}, conns: map[string]int{}, quotes: map[string]*bucket{},
	}
}

// exhausted is the error of every limit: ResourceExhausted, which SPIRE's
// and gRPC's clients treat as "try again later".
func exhausted(format string, args ...any) error {
	return status.Errorf(codes.ResourceExhausted, format, args...)
}

// acquire takes a request slot for caller key (and a server-wide one when
// expensive), failing at once when none is free. release gives them back.
func (l *limiter) acquire(key string, expensive bool) (release func(), err error) {
	l.mu.Lock()
	if l.inFlight[key] >= l.lim.MaxCallerRequests {
		n := l.inFlight[key]
		l.mu.Unlock()
		return nil, exhausted("caller %s has %d requests in flight, the most one caller may (max_caller_requests); retry when one has finished", key, n)
	}
	l.inFlight[key]++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if l.inFlight[key]--; l.inFlight[key] <= 0 {
			delete(l.inFlight, key)
		}
		l.mu.Unlock()
	}
	if !expensive {
		return done, nil
	}
	select {
	case l.requests <- struct{}{}:
		return func() { <-l.requests; done() }, nil
	default:
		done()
		return nil, exhausted("the server has %d requests in flight, its limit (max_requests); retry shortly", l.lim.MaxRequests)
	}
}

// bucket is a token bucket: tokens accrue at QuoteRate per second up to
// QuoteBurst, and each quote takes one.
type bucket struct {
	tokens float64
	at     time.Time
}

// quote takes a quote token of caller key or says how long until there is
// one.
func (l *limiter) quote(key string) error {
	now := l.now()
	burst := float64(l.lim.QuoteBurst)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.quotes[key]
	if !ok {
		l.sweepQuotes(now)
		b = &bucket{tokens: burst, at: now}
		l.quotes[key] = b
	}
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = min(burst, b.tokens+el*l.lim.QuoteRate)
	}
	b.at = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / l.lim.QuoteRate * float64(time.Second))
		return exhausted("caller %s asked for quotes faster than %g per second (burst %d; quote_rate, quote_burst): retry in %v",
			key, l.lim.QuoteRate, l.lim.QuoteBurst, wait.Round(time.Millisecond))
	}
	b.tokens--
	return nil
}

// sweepQuotes drops the buckets that have refilled: a full bucket is the
// same as none, so the map holds only callers that asked recently, however
// many containers come and go.
func (l *limiter) sweepQuotes(now time.Time) {
	if len(l.quotes) < 1024 {
		return
	}
	full := time.Duration(float64(l.lim.QuoteBurst) / l.lim.QuoteRate * float64(time.Second))
	for k, b := range l.quotes {
		if now.Sub(b.at) >= full {
			delete(l.quotes, k)
		}
	}
}

// connection counts a new connection of caller key, or refuses it.
func (l *limiter) connection(key string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.conns[key]; n >= l.lim.MaxCallerConnections {
		return nil, fmt.Errorf("workloadsvc: caller %s has %d connections open, the most one caller may (max_caller_connections)", key, n)
	}
	l.conns[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.conns[key]--; l.conns[key] <= 0 {
				delete(l.conns, key)
			}
			l.mu.Unlock()
		})
	}, nil
}

// expensiveMethods read the runtime log or the TEE.
var expensiveMethods = map[string]bool{
	"/" + ServiceName + "/GetCcMeasurement": true,
	"/" + ServiceName + "/GetCcEventlog":    true,
	"/" + ServiceName + "/GetCcReport":      true,
}

// anyCaller are the methods CCNP answered whoever asked: they say what the
// TEE is, nothing about a container, and read nothing per request.
var anyCaller = map[string]bool{
	"/" + ServiceName + "/GetDefaultAlgorithm": true,
	"/" + ServiceName + "/GetMeasurementCount": true,
}

// admit is the unary interceptor in front of the CCNP service: it
// identifies the caller once, applies the caller's quote rate and request
// limits and the server-wide one, and hands the caller to the handler
// through the context. Health checks and reflection pass untouched (they
// cost nothing, and the kubelet's probes come from no container).
func (s *Service) admit(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, "/"+ServiceName+"/") || anyCaller[info.FullMethod] {
		return h(ctx, req)
	}
	c, err := s.identifyPeer(ctx)
	if err != nil {
		return nil, err
	}
	if info.FullMethod == "/"+ServiceName+"/GetCcReport" {
		if err := s.limits.quote(c.Key); err != nil {
			return nil, err
		}
	}
	release, err := s.limits.acquire(c.Key, expensiveMethods[info.FullMethod])
	if err != nil {
		return nil, err
	}
	defer release()
	return h(context.WithValue(ctx, callerKey{}, c), req)
}

type callerKey struct{}

// limitedCreds count each caller's connections at the handshake, when the
// peer's credentials are known, and close a caller's connections beyond
// MaxCallerConnections. The caller is identified as requests identify it;
// a process that cannot be (in no container, gone) is counted by its UID,
// and its requests are refused anyway.
type limitedCreds struct {
	credentials.TransportCredentials
	s *Service
}

func (lc limitedCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// The peer credentials need the Unix connection itself; the listener's
	// slot goes with whatever connection gRPC ends up closing.
	freeSlot := func() {}
	if sc, ok := c.(*slotConn); ok {
		c, freeSlot = sc.Conn, sc.close
	}
	conn, ai, err := lc.TransportCredentials.ServerHandshake(c)
	if err != nil {
		return nil, nil, err
	}
	p, ok := ai.(*Peer)
	if !ok {
		conn.Close()
		return nil, nil, fmt.Errorf("workloadsvc: handshake gave %T, not peer credentials", ai)
	}
	key := hostKey(p.UID)
	if id, err := identify(lc.s.procRoot, lc.s.cgroups, p, lc.s.nodeView); err == nil {
		key = id.Key
	}
	release, err := lc.s.limits.connection(key)
	if err != nil {
		lc.s.limits.log.warn("Connection refused", "pid", p.PID, "reason", err.Error())
		conn.Close()
		return nil, nil, err
	}
	return &countedConn{Conn: conn, release: func() { release(); freeSlot() }}, ai, nil
}

func (lc limitedCreds) Clone() credentials.TransportCredentials {
	return limitedCreds{TransportCredentials: lc.TransportCredentials.Clone(), s: lc.s}
}

// countedConn gives its caller's connection slot back when first closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Limit wraps the service's listener so that at most MaxConnections
// connections are open: one beyond it is closed as soon as it is accepted
// (the client sees the connection fail and backs off) rather than left in
// the kernel's backlog. Serve the server NewServer returns on it.
func (s *Service) Limit(l net.Listener) net.Listener {
	return &limitListener{Listener: l, slots: make(chan struct{}, s.limits.lim.MaxConnections), log: s.limits.log}
}

type limitListener struct {
	net.Listener
	slots chan struct{}
	log   *throttledLog
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, free: func() { <-l.slots }}, nil
		default:
			l.log.warn("Connection refused", "reason", fmt.Sprintf("%d connections open, the limit (max_connections)", cap(l.slots)))
			c.Close()
		}
	}
}

// slotConn frees its listener slot once, however often it is closed.
type slotConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.close()
	return err
}

func (c *slotConn) close() { c.once.Do(c.free) }

// throttledLog writes at most one line a second of a kind that a flood
// produces, counting what it left out, so a flood does not fill the disk.
type throttledLog struct {
	log *slog.Logger

	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (t *throttledLog) warn(msg string, args ...any) {
	if t.log == nil {
		return
	}
	t.mu.Lock()
	now := time.Now()
	if now.Sub(t.last) < time.Second {
		t.skipped++
		t.mu.Unlock()
		return
	}
	skipped := t.skipped
	t.last, t.skipped = now, 0
	t.mu.Unlock()
	t.log.Warn(msg, append(args, "similar_lines_skipped", skipped)...)
}
