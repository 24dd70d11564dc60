package workloadsvc

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// TestContainerViews: each container sees the platform's events and only its
// own runtime records, and its register is the replay of exactly those.
func TestContainerViews(t *testing.T) {
	f := newFixture(t)
	platform, err := f.provider.EventLog(f.ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, cgroup, key, asked string
	}{
		{"docker A", cgA, cidA, cidA},
		{"docker B", cgB, cidB, ""},
		{"pod P by UID", cgP, podUID, podUID},
		{"pod P by systemd UID", cgP, podUID, underscores(podUID)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.setCgroup(t, os.Getpid(), tt.cgroup)
			resp, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{ContainerId: tt.asked})
			if err != nil {
				t.Fatal(err)
			}
			wantIMR, n := f.wantIMR(tt.key)
			evs := resp.GetEventLogs()
			if len(evs) != len(platform)+1+n {
				t.Fatalf("%d events, want %d platform + the marker + %d own", len(evs), len(platform), n)
			}
			// The marker says which register this is, and replay skips it.
			mk := evs[len(platform)]
			if mk.GetImrIndex() != 3 || mk.GetEventType() != cctrusted.EventNoAction || string(mk.GetEvent()) != MarkerPrefix+RegisterRuntimeLog+" (the replay from zero of the container's records in the workload attestor's runtime log)" ||
				mk.GetExtraInfo()["container_register"] != RegisterRuntimeLog || len(mk.GetDigests()) != 1 {
				t.Errorf("marker: %v", mk)
			}
			var own [][]byte
			for i, e := range evs[len(platform)+1:] {
				if e.GetImrIndex() != 3 || e.GetRecNum() != uint32(i+1) || e.GetExtraInfo()["source"] != "runtime_log" {
					t.Errorf("own event %d: index %d rec %d info %v", i, e.GetImrIndex(), e.GetRecNum(), e.GetExtraInfo())
				}
				cid := e.GetExtraInfo()["container_id"]
				if pod := e.GetExtraInfo()["pod_uid"]; pod != tt.key && cid != tt.key {
					t.Errorf("own event %d belongs to %s/%s", i, cid, pod)
				}
				own = append(own, e.GetDigests()[0].GetHash())
			}
			for _, r := range f.records {
				if r.key == tt.key {
					if len(own) == 0 || !bytes.Equal(own[0], r.digest) {
						t.Fatalf("own events out of order or missing %x", r.digest)
					}
					own = own[1:]
				}
			}
			m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: tt.asked, Index: 3, AlgoId: uint32(cctrusted.AlgSHA384)})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.GetMeasurement().GetHash(), wantIMR) {
				t.Fatalf("container IMR %x, want %x", m.GetMeasurement().GetHash(), wantIMR)
			}
		})
	}
}

// TestPlatformEventsReplay: a CCNP-style verifier replays events by
// imr_index and must get the registers GetCcMeasurement reports for 0..2.
func TestPlatformEventsReplay(t *testing.T) {
	f := newFixture(t)
	resp, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	regs := map[uint32][]byte{}
	for _, e := range resp.GetEventLogs() {
		if e.GetEventType() == cctrusted.EventNoAction || e.GetImrIndex() == 3 {
			continue
		}
		if e.GetExtraInfo()["source"] != "ccel" {
			t.Fatalf("platform event from %q", e.GetExtraInfo()["source"])
		}
		for _, d := range e.GetDigests() {
			if d.GetAlgoId() != uint32(cctrusted.AlgSHA384) {
				continue
			}
			cur := regs[e.GetImrIndex()]
			if cur == nil {
				cur = make([]byte, 48)
			}
			h := sha512.Sum384(append(cur, d.GetHash()...))
			regs[e.GetImrIndex()] = h[:]
		}
	}
	if len(regs) == 0 {
		t.Fatal("no platform events replayed")
	}
	for i := uint32(0); i < 3; i++ {
		m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: i})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.GetMeasurement().GetHash(), regs[i]) {
			t.Errorf("rtmr%d: measured %x, events replay to %x", i, m.GetMeasurement().GetHash(), regs[i])
		}
	}
	// The real RTMR3 (all containers' records) is not what index 3 says.
	real3, err := f.provider.Measurement(f.ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(m.GetMeasurement().GetHash(), real3.Value) {
		t.Fatal("index 3 shows the node's RTMR3, not the container's register")
	}
}

// TestForgedContainerID: naming another container, a pod by one of its
// containers, or anything else is refused; so is a host process.
func TestForgedContainerID(t *testing.T) {
	f := newFixture(t)
	nonce := base64.StdEncoding.EncodeToString([]byte("nonce"))
	for _, tt := range []struct {
		name, cgroup, asked string
	}{
		{"A asks for B", cgA, cidB},
		{"B asks for A", cgB, cidA},
		{"A asks for the pod", cgA, podUID},
		{"pod asks by container ID", cgP, cidP},
		{"A asks for a prefix of its ID", cgA, cidA[:12]},
		{"A asks in upper case", cgA, strings.ToUpper(cidA)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.setCgroup(t, os.Getpid(), tt.cgroup)
			_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{ContainerId: tt.asked, Nonce: &nonce})
			wantCode(t, err, codes.PermissionDenied, "is not the caller's")
			_, err = f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{ContainerId: tt.asked})
			wantCode(t, err, codes.PermissionDenied, "is not the caller's")
			_, err = f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{ContainerId: tt.asked, Index: 3})
			wantCode(t, err, codes.PermissionDenied, "is not the caller's")
		})
	}
	t.Run("host process", func(t *testing.T) {
		f.setCgroup(t, os.Getpid(), cgHost)
		_, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
		wantCode(t, err, codes.PermissionDenied, "in no container")
		_, err = f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{})
		wantCode(t, err, codes.PermissionDenied, "in no container")
	})
	t.Run("process not in the proc tree", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(f.procRoot)); err != nil {
			t.Fatal(err)
		}
		_, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
		wantCode(t, err, codes.PermissionDenied)
	})
}

// TestReusedPID: a process whose start time differs from the one seen at
// connection time is not the caller.
func TestReusedPID(t *testing.T) {
	f := newFixture(t)
	if _, err := f.rpc.GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{}); err != nil {
		t.Fatal(err)
	}
	statPath := filepath.Join(f.procRoot, strconv.Itoa(os.Getpid()), "stat")
	st, err := os.ReadFile(statPath)
	if err != nil {
		t.Fatal(err)
	}
	// Field 22 (start time) is the 20th after the ')' that ends comm.
	rest := string(st[bytes.LastIndexByte(st, ')')+2:])
	fields := strings.Fields(rest)
	fields[19] = fields[19] + "7"
	forged := string(st[:bytes.LastIndexByte(st, ')')+2]) + strings.Join(fields, " ") + "\n"
	if err := os.WriteFile(statPath, []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	// GetDefaultAlgorithm answers anyone; the calls about a container do
	// not answer a reused PID.
	_, err = f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{})
	wantCode(t, err, codes.PermissionDenied, "not the process that connected")
}

// TestPaging follows cctrusted.Page: start == len gives nothing, start > len
// is InvalidArgument, count is clamped, 0 or unset means all remaining.
func TestPaging(t *testing.T) {
	f := newFixture(t)
	all, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := uint32(len(all.GetEventLogs()))
	u := func(v uint32) *uint32 { return &v }
	for _, tt := range []struct {
		name         string
		start, count *uint32
		want         uint32 // events returned
		first        uint32 // index into all of the first
		err          bool
	}{
		{"unset", nil, nil, n, 0, false},
		{"zeros", u(0), u(0), n, 0, false},
		{"first two", u(0), u(2), 2, 0, false},
		{"middle", u(5), u(3), 3, 5, false},
		{"count clamped", u(n - 2), u(100), 2, n - 2, false},
		{"last", u(n - 1), nil, 1, n - 1, false},
		{"start == len", u(n), u(5), 0, 0, false},
		{"start > len", u(n + 1), nil, 0, 0, true},
		{"start huge", u(1 << 31), u(1), 0, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{Start: tt.start, Count: tt.count})
			if tt.err {
				wantCode(t, err, codes.InvalidArgument, "start", "events")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := resp.GetEventLogs()
			if uint32(len(got)) != tt.want {
				t.Fatalf("%d events, want %d", len(got), tt.want)
			}
			for i, e := range got {
				if !proto.Equal(e, all.GetEventLogs()[tt.first+uint32(i)]) {
					t.Fatalf("event %d is not event %d of the whole log", i, tt.first+uint32(i))
				}
			}
		})
	}
	// pageOf agrees with cctrusted.Page on every start and count.
	ev := make([]cctrusted.Event, 4)
	for start := -1; start <= 6; start++ {
		for count := -1; count <= 6; count++ {
			end, errA := pageOf(len(ev), start, count)
			b, errB := cctrusted.Page(ev, start, count)
			if (errA == nil) != (errB == nil) || errA == nil && end-start != len(b) {
				t.Errorf("pageOf(%d,%d) = %d,%v; Page = %d,%v", start, count, end, errA, len(b), errB)
			}
		}
	}
}

// TestBadRequests: each is InvalidArgument with a message naming the field.
func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	b64 := func(n int) *string { s := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)); return &s }
	str := func(s string) *string { return &s }
	for _, tt := range []struct {
		name string
		call func() error
		want []string
	}{
		{"index 4", func() error {
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 4})
			return err
		}, []string{"index 4", "0..3"}},
		{"index huge", func() error {
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 1 << 31})
			return err
		}, []string{"index"}},
		{"sha256 on TDX", func() error {
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 1, AlgoId: uint32(cctrusted.AlgSHA256)})
			return err
		}, []string{"algo_id 0x000b", "SHA-384"}},
		{"sha256 container register", func() error {
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3, AlgoId: uint32(cctrusted.AlgSHA256)})
			return err
		}, []string{"algo_id 0x000b", "container register"}},
		{"unknown algorithm", func() error {
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 0, AlgoId: 0x99})
			return err
		}, []string{"algo_id 0x0099", "not a supported"}},
		{"algorithm over 16 bits", func() error {
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 0, AlgoId: 0x1000c})
			return err
		}, []string{"algo_id 0x1000c"}},
		{"sm3 (no hash here)", func() error {
			_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 0, AlgoId: uint32(cctrusted.AlgSM3256)})
			return err
		}, []string{"sm3_256"}},
		{"nonce 65 bytes", func() error {
			_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: b64(65)})
			return err
		}, []string{"nonce", "at most 64"}},
		{"user data 257 bytes", func() error {
			_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{UserData: b64(257)})
			return err
		}, []string{"user_data", "at most 256"}},
		{"nonce not base64", func() error {
			_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: str("not base64!")})
			return err
		}, []string{"nonce is not base64"}},
		{"user data with bad padding", func() error {
			_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{UserData: str("QUJD=")})
			return err
		}, []string{"user_data is not base64"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), codes.InvalidArgument, tt.want...)
		})
	}
	// Larger than any valid request: refused by the transport before it
	// is decoded.
	big := strings.Repeat("A", MaxRequestSize)
	_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &big})
	wantCode(t, err, codes.ResourceExhausted)
	// The largest accepted inputs, padded and unpadded base64, work.
	raw := base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, MaxUserDataSize-1))
	if _, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: b64(MaxNonceSize), UserData: &raw}); err != nil {
		t.Fatalf("largest valid report request: %v", err)
	}
}

// TestReport: the quote verifies under the simulated root, and its
// REPORTDATA is SHA-512(container IMR || nonce || user_data).
func TestReport(t *testing.T) {
	f := newFixture(t)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(f.provider.RootPEM()) {
		t.Fatal("sim root.pem")
	}
	nonce, ud := randomBytes(t, 32), randomBytes(t, 48)
	n64, u64 := base64.StdEncoding.EncodeToString(nonce), base64.StdEncoding.EncodeToString(ud)
	for _, tt := range []struct{ name, cgroup, key string }{{"A", cgA, cidA}, {"pod", cgP, podUID}} {
		t.Run(tt.name, func(t *testing.T) {
			f.setCgroup(t, os.Getpid(), tt.cgroup)
			resp, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{ContainerId: tt.key, Nonce: &n64, UserData: &u64})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetCcType() != CCTypeTDX {
				t.Errorf("cc_type %d", resp.GetCcType())
			}
			imr, _ := f.wantIMR(tt.key)
			want := sha512.Sum512(append(append(append([]byte{}, imr...), nonce...), ud...))
			if _, err := appraisal.TDX(f.ctx, appraisal.TDXEvidence{Quote: resp.GetCcReport(), ReportData: want[:]}, appraisal.TDXOptions{TrustedRoots: roots}); err != nil {
				t.Fatalf("appraisal: %v", err)
			}
			// REPORTDATA sits at 568..632 of a quote v4 (48-byte header,
			// body field at 520 of it).
			q := resp.GetCcReport()
			if len(q) < 632 || !bytes.Equal(q[568:632], want[:]) {
				t.Fatalf("REPORTDATA %x, want %x", q[568:min(len(q), 632)], want)
			}
			// Another container's binding is not this quote's.
			other, _ := f.wantIMR(cidB)
			bad := sha512.Sum512(append(append(append([]byte{}, other...), nonce...), ud...))
			if _, err := appraisal.TDX(f.ctx, appraisal.TDXEvidence{Quote: resp.GetCcReport(), ReportData: bad[:]}, appraisal.TDXOptions{TrustedRoots: roots}); err == nil {
				t.Fatal("quote accepted for another container's register")
			}
			// And Intel's root does not accept a simulated quote.
			if _, err := appraisal.TDX(f.ctx, appraisal.TDXEvidence{Quote: resp.GetCcReport(), ReportData: want[:]}, appraisal.TDXOptions{}); err == nil {
				t.Fatal("simulated quote accepted under the Intel root")
			}
		})
	}
}

// TestAnchor: a runtime log that does not replay to RTMR3 is not served.
func TestAnchor(t *testing.T) {
	t.Run("record appended without extending", func(t *testing.T) {
		f := newFixture(t)
		raw, err := os.ReadFile(f.logPath)
		if err != nil {
			t.Fatal(err)
		}
		// A well-formed next record that RTMR3 never saw (a forged
		// workload, or a crash between write and extend).
		log, err := runtimelog.Decode(raw, runtimelog.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		s256, s384 := sha256.Sum256([]byte("x")), sha512.Sum384([]byte("x"))
		grown, _, err := log.AppendEncoded(raw, runtimelog.Workload{ExeSHA256: s256[:], ExeSHA384: s384[:], ContainerID: cidA})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.logPath, grown, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
		wantCode(t, err, codes.FailedPrecondition, "does not replay to rtmr3")
	})
	t.Run("RTMR3 extended behind the log's back", func(t *testing.T) {
		f := newFixture(t)
		if err := f.provider.ExtendRTMR(f.ctx, 3, sha512.Sum384([]byte("stray"))); err != nil {
			t.Fatal(err)
		}
		nonce := base64.StdEncoding.EncodeToString([]byte("n"))
		_, err := f.rpc.GetCcReport(f.ctx, &ccnppb.GetCcReportRequest{Nonce: &nonce})
		wantCode(t, err, codes.FailedPrecondition, "does not replay")
	})
	t.Run("garbage log", func(t *testing.T) {
		f := newFixture(t)
		if err := os.WriteFile(f.logPath, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 3})
		wantCode(t, err, codes.FailedPrecondition, "runtime log")
		// Platform registers do not depend on the runtime log.
		if _, err := f.rpc.GetCcMeasurement(f.ctx, &ccnppb.GetCcMeasurementRequest{Index: 0}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("missing log while RTMR3 holds records", func(t *testing.T) {
		f := newFixture(t)
		f.start(t, Options{RuntimeLogPath: filepath.Join(t.TempDir(), "none.cel")})
		_, err := f.rpc.GetCcEventlog(f.ctx, &ccnppb.GetCcEventlogRequest{})
		wantCode(t, err, codes.FailedPrecondition, "does not replay")
	})
}

// TestServiceBasics: algorithm, count, health.
func TestServiceBasics(t *testing.T) {
	f := newFixture(t)
	a, err := f.rpc.GetDefaultAlgorithm(f.ctx, &ccnppb.GetDefaultAlgorithmRequest{})
	if err != nil || a.GetAlgoId() != 0x0c {
		t.Fatalf("default algorithm %v, %v", a, err)
	}
	c, err := f.rpc.GetMeasurementCount(f.ctx, &ccnppb.GetMeasurementCountRequest{})
	if err != nil || c.GetCount() != 4 {
		t.Fatalf("count %v, %v", c, err)
	}
	if f.svc.ContainerIndex() != 3 {
		t.Fatalf("container index %d", f.svc.ContainerIndex())
	}
	h, err := healthpb.NewHealthClient(f.conn).Check(f.ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %v, %v", h, err)
	}
	// Reflection lists the service under CCNP's name (what grpcurl uses).
	stream, err := reflectionpb.NewServerReflectionClient(f.conn).ServerReflectionInfo(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sv := range r.GetListServicesResponse().GetService() {
		names = append(names, sv.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), ServiceName) {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestNewRejects(t *testing.T) {
	f := newFixture(t)
	for name, o := range map[string]Options{
		"no provider":  {RuntimeLogPath: f.logPath},
		"no log":       {Provider: f.provider},
		"rtmr2":        {Provider: f.provider, RuntimeLogPath: f.logPath, RuntimeIMR: cctrusted.RTMR(2).IMR()},
		"pcr23 on tdx": {Provider: f.provider, RuntimeLogPath: f.logPath, RuntimeIMR: cctrusted.PCR(23).IMR()},
		"sm3 bank":     {Provider: f.provider, RuntimeLogPath: f.logPath, RuntimeAlg: cctrusted.AlgSM3256},
	} {
		if _, err := New(f.ctx, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// CC MR 4 is RTMR3.
	if _, err := New(f.ctx, Options{Provider: f.provider, RuntimeLogPath: f.logPath, RuntimeIMR: cctrusted.CCMR(4).IMR()}); err != nil {
		t.Errorf("ccmr4: %v", err)
	}
}
