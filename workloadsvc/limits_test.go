package workloadsvc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// bigLogSize is the runtime log of the report: 6.4 MiB, where 32
// concurrent requests of one container held 750 MiB when every request
// decoded the whole file.
const bigLogSize = 64 << 20 / 10

// floodLogSize is the log of the flood test: bigLogSize, or half of it
// under the race detector, where the one decode of 6.4 MiB alone takes 8 s
// on two cores. Without the index, half the log still cost 127 MiB
// during the flood, over twice the bound.
func floodLogSize() int {
	if raceEnabled {
		return bigLogSize / 2
	}
	return bigLogSize
}

// countingTD is the simulated TD with RTMR3 held in memory (a log of
// thousands of records is built without thousands of simulated extends),
// counting the register reads and quotes the service makes and how many
// run at once.
type countingTD struct {
	*sim.Provider
	rtmr3 []byte
	delay time.Duration // per register read: the TEE's cost

	reads, quotes   atomic.Int64
	inFlight, worst atomic.Int64
}

func (p *countingTD) Measurement(ctx context.Context, imr cctrusted.IMR, alg cctrusted.Algorithm) (cctrusted.Digest, error) {
	if imr != cctrusted.RTMR(3).IMR() {
		return p.Provider.Measurement(ctx, imr, alg)
	}
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for w := p.worst.Load(); n > w && !p.worst.CompareAndSwap(w, n); w = p.worst.Load() {
	}
	p.reads.Add(1)
	time.Sleep(p.delay)
	return cctrusted.Digest{Alg: cctrusted.AlgSHA384, Value: bytes.Clone(p.rtmr3)}, nil
}

func (p *countingTD) Report(ctx context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	p.quotes.Add(1)
	return p.Provider.Report(ctx, nonce, userData)
}

// bigLog writes a runtime log of about size bytes in which every 50th
// record is container A's and every 50th (offset by 25) container B's, the
// rest other containers', and returns its register value.
func bigLog(t testing.TB, path string, size int) (rtmr3 []byte, b bView) {
	t.Helper()
	l := runtimelog.New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	b.imr = make([]byte, 48)
	n := 0
	for enc := 0; enc < size; n++ {
		cid := hex64(fmt.Sprint("other", n))
		switch n % 50 {
		case 0:
			cid = cidA
		case 25:
			cid = cidB
		}
		exe := fmt.Sprintf("/usr/lib/app-%d/bin/worker-%d", n%97, n)
		s256, s384 := sha256.Sum256([]byte(exe)), sha512.Sum384([]byte(exe))
		rec, ev, err := l.AppendEncoded(nil, runtimelog.Workload{ExeSHA256: s256[:], ExeSHA384: s384[:], ExePath: exe, ContainerID: cid,
			CgroupPath: "/system.slice/docker-" + cid + ".scope", Runtime: "docker", Time: time.Unix(1700000000, int64(n))})
		if err != nil {
			t.Fatal(err)
		}
		if cid == cidB {
			d, _ := ev.Digest(cctrusted.AlgSHA384)
			h := sha512.Sum384(append(b.imr, d...))
			b.imr = h[:]
			b.records++
		}
		enc += len(rec)
	}
	enc, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, enc, 0o600); err != nil {
		t.Fatal(err)
	}
	regs, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := regs.Get(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	t.Logf("runtime log: %d records, %.2f MiB", n, float64(len(enc))/(1<<20))
	return v, b
}

// bView is what container B should see of bigLog: its register (replayed
// here with crypto/sha512) and its number of records.
type bView struct {
	imr     []byte
	records int
}

// bigFixture serves a service over the real socket whose runtime log is
// bigLog's, with this process in container A.
func bigFixture(t *testing.T, lim Limits) (*fixture, *countingTD, bView) {
	t.Helper()
	f := baseFixture(t)
	td := &countingTD{Provider: f.provider}
	var b bView
	td.rtmr3, b = bigLog(t, f.logPath, floodLogSize())
	f.addProc(t, os.Getpid(), cgA)
	f.start(t, Options{Provider: td, Limits: lim})
	return f, td, b
}

// heapBytes is the live heap as the runtime counts it, read without
// stopping the world (ReadMemStats would, every sample).
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestAttackRequestFloodFromOneContainer: container A floods the service
// with register requests over many connections, each of which touches the
// 6.4 MiB runtime log. The service decodes the log once and answers from
// its index, admits at most max_caller_requests of A's requests at a time
// and refuses the rest at once with ResourceExhausted, so the heap stays
// bounded and container B, in another process, is served promptly meanwhile.
func TestAttackRequestFloodFromOneContainer(t *testing.T) {
	lim := Limits{MaxRequests: 8, MaxCallerRequests: 4}
	f, td, wantB := bigFixture(t, lim)
	td.delay = 2 * time.Millisecond
	start := time.Now()
	if _, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3}); err != nil {
		t.Fatal(err)
	}
	t.Logf("first request (reads and indexes the log): %v", time.Since(start))
	victim := startClient(t)
	f.addProc(t, victim.cmd.Process.Pid, cgB)

	runtime.GC()
	base := heapBytes()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})

	const conns, perConn, rounds = 4, 8, 8
	var ok, refused atomic.Int64
	var worstRefusal atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns*perConn)
	for range conns {
		rpc := ccnppb.NewCcnpClient(dial(t, f.socket))
		for range perConn {
			wg.Go(func() {
				for range rounds {
					t0 := time.Now()
					_, err := rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
					switch status.Code(err) {
					case codes.OK:
						ok.Add(1)
					case codes.ResourceExhausted:
						refused.Add(1)
						if d := int64(time.Since(t0)); d > worstRefusal.Load() {
							worstRefusal.Store(d)
						}
					default:
						errs <- err
						return
					}
				}
			})
		}
	}
	// Container B asks while A's flood runs.
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	r := victim.run(t, f.socket, cidB, cidA)
	victimTime := time.Since(t0)
	wg.Wait()
	close(stop)
	sampler.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("flood request: %v", err)
	}
	if r.Err != "" {
		t.Fatalf("container B during the flood: %s", r.Err)
	}
	own := len(r.OwnDigests)
	if own != wantB.records || r.IMR != fmt.Sprintf("%x", wantB.imr) || r.ForgedCode != "PermissionDenied" {
		t.Fatalf("container B saw %d records (want %d), register %s (want %x), naming A: %s", own, wantB.records, r.IMR, wantB.imr, r.ForgedCode)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("flood: %d answered, %d ResourceExhausted (slowest refusal %v); TEE register reads %d, at most %d at once; heap %.1f MiB before, peak +%.1f MiB; container B served in %v (%d records)",
		ok.Load(), refused.Load(), time.Duration(worstRefusal.Load()), td.reads.Load(), td.worst.Load(),
		float64(base)/(1<<20), float64(growth)/(1<<20), victimTime, own)
	if refused.Load() == 0 {
		t.Error("no request of the flood was refused: nothing limits one container")
	}
	if w := td.worst.Load(); w > int64(lim.MaxRequests) {
		t.Errorf("%d register reads at once, over max_requests %d", w, lim.MaxRequests)
	}
	// The bound: one decode of the log is ~30 MiB; the flood must not add
	// one per admitted request. 48 MiB is what 8 connections' buffers and
	// the race detector's shadow of small allocations stay well under.
	// Without the index, the same flood added 271 MiB (6.4 MiB log).
	if growth > 48<<20 {
		t.Errorf("heap grew by %.1f MiB during the flood, over 48 MiB", float64(growth)/(1<<20))
	}
	if time.Duration(worstRefusal.Load()) > 2*time.Second {
		t.Errorf("a refusal took %v: excess requests must fail fast, not queue", time.Duration(worstRefusal.Load()))
	}
	if victimTime > 15*time.Second {
		t.Errorf("container B waited %v during the flood", victimTime)
	}
}

// TestAttackConnectionFloodFromOneContainer: container A opens more
// connections than max_caller_connections; those beyond are closed at the
// handshake, and container B can still connect and is served.
func TestAttackConnectionFloodFromOneContainer(t *testing.T) {
	f := newFixture(t)
	f.start(t, Options{Limits: Limits{MaxCallerConnections: 3, MaxConnections: 5}})
	var held []*grpc.ClientConn
	var refusedErr error
	for i := range 6 {
		c := dial(t, f.socket)
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		_, err := ccnppb.NewCcnpClient(c).GetDefaultAlgorithm(ctx, &ccnppb.GetDefaultAlgorithmRequest{})
		cancel()
		if i < 3 && err != nil {
			t.Fatalf("connection %d of container A: %v", i, err)
		}
		if i >= 3 {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("connection %d of container A (limit 3): %v, want Unavailable", i, err)
			}
			refusedErr = err
			c.Close()
			continue
		}
		held = append(held, c)
	}
	t.Logf("container A's 4th connection: %v", refusedErr)
	victim := startClient(t)
	f.addProc(t, victim.cmd.Process.Pid, cgB)
	checkClient(t, f, victim.run(t, f.socket, cidB, cidA), cidB)
	// Closing A's connections gives its slots back.
	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(t, f.socket)
		_, err := ccnppb.NewCcnpClient(c).GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container A's slots were not given back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAttackQuoteFloodFromOneContainer: quotes (each a TEE operation)
// beyond the caller's burst fail at once with ResourceExhausted saying when
// to retry, without reaching the TEE; another container has its own budget.
func TestAttackQuoteFloodFromOneContainer(t *testing.T) {
	f := newFixture(t)
	td := &countingTD{Provider: f.provider}
	reg, err := f.provider.Measurement(f.ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	if err != nil {
		t.Fatal(err)
	}
	td.rtmr3 = reg.Value
	f.start(t, Options{Provider: td, Limits: Limits{QuoteRate: 0.5, QuoteBurst: 3}})
	nonce := b64(randomBytes(t, 32))
	var slowest time.Duration
	ok, refused := 0, 0
	for range 20 {
		t0 := time.Now()
		_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &nonce})
		d := time.Since(t0)
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			refused++
			slowest = max(slowest, d)
			if !strings.Contains(status.Convert(err).Message(), "retry in") || !strings.Contains(status.Convert(err).Message(), "quote_rate") {
				t.Fatalf("refusal does not say when to retry or which setting: %v", err)
			}
		default:
			t.Fatal(err)
		}
	}
	t.Logf("20 quotes at once: %d answered, %d refused, slowest refusal %v, TEE quotes %d", ok, refused, slowest, td.quotes.Load())
	if ok != 3 || refused != 17 || td.quotes.Load() != 3 {
		t.Fatalf("%d answered, %d refused, %d TEE quotes; want 3, 17, 3 (burst 3)", ok, refused, td.quotes.Load())
	}
	if slowest > time.Second {
		t.Errorf("a refused quote took %v", slowest)
	}
	f.setCgroup(t, os.Getpid(), cgB)
	if _, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &nonce}); err != nil {
		t.Fatalf("container B, after A spent its budget: %v", err)
	}
	// A's bucket refills at the rate: 0.5/s is one quote within ~2 s.
	f.setCgroup(t, os.Getpid(), cgA)
	time.Sleep(2100 * time.Millisecond)
	if _, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &nonce}); err != nil {
		t.Fatalf("container A after its bucket refilled: %v", err)
	}
}

// TestRuntimeIndexFollowsAppends: records appended while the service runs
// reach the right container's view, and a rotated log (a new boot's) is
// read whole.
func TestRuntimeIndexFollowsAppends(t *testing.T) {
	f := newFixture(t)
	check := func() {
		t.Helper()
		want, n := f.wantIMR(cidA)
		m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.GetMeasurement().GetHash(), want) {
			t.Fatalf("container A's register %x, want %x (%d records)", m.GetMeasurement().GetHash(), want, n)
		}
		ev, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
		if err != nil {
			t.Fatal(err)
		}
		own := 0
		for _, e := range ev.GetEventLogs() {
			if e.GetExtraInfo()["source"] == "runtime_log" {
				own++
			}
		}
		if own != n {
			t.Fatalf("%d own events, want %d", own, n)
		}
	}
	check()
	f.appendRecord(t, "/bin/a3", cidA, "")
	f.appendRecord(t, "/bin/b3", cidB, "")
	check()
	f.appendRecord(t, "/bin/a4", cidA, "")
	check()
}

// BenchmarkRegisterRequest compares the container register request
// (GetCcMeasurement at index 3) on a 6.4 MiB runtime log answered from the
// service's incremental index with the same answer computed as before it:
// read the whole file, decode it, verify it against the register, select
// the caller's records and replay them.
func BenchmarkRegisterRequest(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "runtime.cel")
	rtmr3, _ := bigLog(b, path, bigLogSize)
	ctx := context.Background()
	simDir := filepath.Join(dir, "sim")
	if err := sim.Init(simDir, sim.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	p, err := sim.Open(ctx, simDir)
	if err != nil {
		b.Fatal(err)
	}
	td := &countingTD{Provider: p, rtmr3: rtmr3}
	want := func(imr []byte) {
		if bytes.Equal(imr, make([]byte, 48)) {
			b.Fatal("container A has no records")
		}
	}
	b.Run("incremental", func(b *testing.B) {
		s, err := New(ctx, Options{Provider: td, RuntimeLogPath: path, ProcRoot: dir})
		if err != nil {
			b.Fatal(err)
		}
		cctx := context.WithValue(ctx, callerKey{}, &Caller{PID: 1, Key: cidA})
		// The first request reads the whole log; the service runs for
		// days on the index it builds.
		if _, err := s.GetCcMeasurement(cctx, &ccnppb.GetCcMeasurementRequest{Index: 3}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			m, err := s.GetCcMeasurement(cctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
			if err != nil {
				b.Fatal(err)
			}
			want(m.GetMeasurement().GetHash())
		}
	})
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw, err := runtimelog.ReadStoreFile(ctx, path)
			if err != nil {
				b.Fatal(err)
			}
			log, err := runtimelog.Decode(raw, runtimelog.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			reg, err := td.Measurement(ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
			if err != nil {
				b.Fatal(err)
			}
			if err := log.Verify(reg.Value); err != nil {
				b.Fatal(err)
			}
			r := cctrusted.NewReplayer(nil)
			ws := log.Workloads()
			for i, e := range log.Events() {
				if ws[i].ContainerID != cidA {
					continue
				}
				d, _ := e.Digest(cctrusted.AlgSHA384)
				if err := r.ExtendDigest(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384, d); err != nil {
					b.Fatal(err)
				}
			}
			v, _ := r.Registers().Get(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
			want(v)
		}
	})
}

// TestLimitListener: connections beyond max_connections, of any caller,
// are closed as soon as they are accepted, and a closed connection frees
// its slot.
func TestLimitListener(t *testing.T) {
	f := newFixture(t)
	f.start(t, Options{Limits: Limits{MaxConnections: 2, MaxCallerConnections: 2}})
	// f.conn is not connected until used: use it and one more.
	if _, err := f.rpc.GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{}); err != nil {
		t.Fatal(err)
	}
	f.setCgroup(t, os.Getpid(), cgB) // another caller: only the listener's limit applies
	second := dial(t, f.socket)
	if _, err := ccnppb.NewCcnpClient(second).GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{}); err != nil {
		t.Fatal(err)
	}
	f.setCgroup(t, os.Getpid(), cgP)
	third := dial(t, f.socket)
	_, err := ccnppb.NewCcnpClient(third).GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("third connection with max_connections 2: %v", err)
	}
	second.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(t, f.socket)
		_, err := ccnppb.NewCcnpClient(c).GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{})
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed connection's slot was not freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
