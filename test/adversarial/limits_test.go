package adversarial

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// The resource limits on everything an agent (or the collateral service)
// can make unbounded, one test each, through the plugin transport. The
// limits themselves: evidence.DefaultMaxPayloadBytes and
// DefaultMaxDecompressedBytes (max_payload_bytes), eventlog.DefaultMaxEvents,
// runtimelog.DefaultMaxRecords and DefaultMaxFieldSize, ima.DefaultMaxFieldLen,
// collateral.MaxResponseBytes, challenge_timeout, serververifier.MaxSelectors.

// TestLimitPayloadBytes: a payload over max_payload_bytes is refused
// before it is parsed.
func TestLimitPayloadBytes(t *testing.T) {
	runSimCases(t, []simCase{{
		name:   "evidence of 70,000 bytes under a 65,536 byte limit",
		config: "max_payload_bytes = 65536",
		setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
			e.Ccel = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_CCEL, RawSize: 70000, Data: make([]byte, 70000)}
		}),
		want: reject(codes.InvalidArgument, "payload", "payload is", "above the limit of 65536"),
	}})
}

// TestLimitDecompressedBytes: logs that inflate past the decompression
// budget (max_payload_bytes) are refused, by their declared size before
// anything is inflated, and by their actual size when they lie.
func TestLimitDecompressedBytes(t *testing.T) {
	small := bomb(t, evidencepb.Encoding_ENCODING_ZSTD, 2<<20)
	runSimCases(t, []simCase{
		{
			name:   "declared 2 MiB under a 1 MiB budget",
			config: "max_payload_bytes = 1048576",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.RuntimeLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Encoding: evidencepb.Encoding_ENCODING_ZSTD, RawSize: 2 << 20, Data: small}
			}),
			want: reject(codes.InvalidArgument, "payload", "after decompression", "above the limit of 1048576"),
		},
		{
			name:   "declared 1 KiB, inflates to 2 MiB",
			config: "max_payload_bytes = 1048576",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.RuntimeLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Encoding: evidencepb.Encoding_ENCODING_ZSTD, RawSize: 1024, Data: small}
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
	})
}

// TestLimitCCELEvents: a CCEL of 65,537 events (the limit is 65,536,
// Spec ID event included) is refused, even with a table whose log area
// holds it.
func TestLimitCCELEvents(t *testing.T) {
	log, table := sim.DefaultCCEL()
	c := splitCCEL(t, log)
	ev := rawEvent(1, 0x80000001, [][]byte{make([]byte, 48)}, nil) // EV_EFI_VARIABLE_DRIVER_CONFIG, empty
	big := append(bytes.Clone(c.head), bytes.Repeat(ev, 65537)...)
	tab := bytes.Clone(table)
	binary.LittleEndian.PutUint64(tab[40:], uint64(len(big)))
	var sum byte
	for i, b := range tab {
		if i != 9 {
			sum += b
		}
	}
	tab[9] = -sum
	runSimCases(t, []simCase{{
		name: "65,537 events",
		setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
			e.Ccel, e.CcelTable = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_CCEL, big), tab
		}),
		want: reject(codes.InvalidArgument, "ccel_replay", "more than 65536 events"),
	}})
}

// TestLimitRuntimeRecords: a runtime log of 65,537 records is refused
// before any replay.
func TestLimitRuntimeRecords(t *testing.T) {
	l := runtimelog.New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	w := workload(0)
	for i := range runtimelog.DefaultMaxRecords + 1 {
		w.ContainerID = fmt.Sprintf("c%d", i)
		if _, err := l.Append(w); err != nil {
			t.Fatal(err)
		}
	}
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	runSimCases(t, []simCase{{
		name: "65,537 records",
		setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
			e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, b)
		}),
		want: reject(codes.InvalidArgument, "runtime_replay", "65536"),
	}})
}

// TestLimitEventSize: one event larger than its format allows: a CCEL
// event whose data runs past the log, a runtime log field over 4,096
// bytes, an IMA field over 1 MiB.
func TestLimitEventSize(t *testing.T) {
	runSimCases(t, []simCase{
		{
			name: "CCEL event data size past the end of the log",
			setup: editCCEL(func(t *testing.T, c *ccel) []byte {
				i := c.pick(t, 0, 2)
				binary.LittleEndian.PutUint32(c.events[i][12+50:], 1<<20)
				return c.join()
			}),
			want: reject(codes.InvalidArgument, "ccel_replay", "runs past the end"),
		},
		{
			name: "runtime log field of 4,097 bytes",
			setup: func(t *testing.T, n *simNode, a *agent) {
				n.RunWorkloads(t, workload(0))
				a.Mutate = func(e *evidencepb.Evidence) {
					b := logBytes(t, e.RuntimeLog)
					e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, growPath(t, b, 4097))
				}
			},
			want: reject(codes.InvalidArgument, "runtime_replay", "over the 4096 byte limit"),
		},
		{
			name: "IMA file name of 1 MiB + 1",
			setup: func(t *testing.T, n *simNode, a *agent) {
				imaList(imaEntry(10, "ima-ng", dng("a"), nng(strings.Repeat("a", 1<<20))))(t, n, a)
			},
			want: reject(codes.InvalidArgument, "ima_replay"),
		},
	})
}

// growPath rewrites the path field of the single record of a runtime log
// to n bytes, fixing the TLV lengths around it (content, then field), so
// that only the field's size is wrong. Layout: TLVs of a type byte and a
// big-endian u32 length; the content TLV (runtimelog.ContentType) holds fields of the same
// shape, the path being field 3.
func growPath(t *testing.T, log []byte, n int) []byte {
	t.Helper()
	var out []byte
	for off := 0; off < len(log); {
		typ, size := log[off], int(binary.BigEndian.Uint32(log[off+1:]))
		val := log[off+5 : off+5+size]
		off += 5 + size
		if typ != runtimelog.ContentType {
			out = append(out, typ)
			out = binary.BigEndian.AppendUint32(out, uint32(size))
			out = append(out, val...)
			continue
		}
		var content []byte
		for f := 0; f < len(val); {
			ft, fs := val[f], int(binary.BigEndian.Uint32(val[f+1:]))
			fv := val[f+5 : f+5+fs]
			f += 5 + fs
			if ft == 3 {
				fv = bytes.Repeat([]byte{'/'}, n)
			}
			content = append(content, ft)
			content = binary.BigEndian.AppendUint32(content, uint32(len(fv)))
			content = append(content, fv...)
		}
		out = append(out, typ)
		out = binary.BigEndian.AppendUint32(out, uint32(len(content)))
		out = append(out, content...)
	}
	if bytes.Equal(out, log) {
		t.Fatal("no path field found in the runtime log")
	}
	return out
}

// TestLimitCollateralResponseSize: a collateral service answering with
// more than collateral.MaxResponseBytes is an outage (Unavailable), never
// read whole and never an acceptance.
func TestLimitCollateralResponseSize(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	real := pcs.Handler(n.Dir)
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == pcs.TCBInfoPath {
			chunk := bytes.Repeat([]byte("{"), 1<<20)
			for range 6 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		real.ServeHTTP(w, r)
	}))
	t.Cleanup(huge.Close)
	s := newServer(t, fmt.Sprintf("tdx {\n collateral { pcs_url = %q }\n}\nsim { trusted_root_file = %q }\n", huge.URL, filepath.Join(n.Dir, sim.RootFile)))
	_, err := s.attest(n.agent(t))
	s.want(t, err, reject(codes.Unavailable, "collateral", "larger than"))
}

// TestLimitChallengeTimeout: an agent that sends its hello and never
// answers the challenge is dropped after challenge_timeout with
// DeadlineExceeded, without the agent closing anything.
func TestLimitChallengeTimeout(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	s := newServer(t, n.serverConfig(`challenge_timeout = "1s"`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := s.client.Attest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := n.agent(t)
	hello, err := nodeattestor.Hello(ctx, a.p, a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("no challenge: %v", err)
	}
	start := time.Now()
	_, err = stream.Recv() // the agent stays silent
	waited := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(status.Convert(err).Message(), "challenge_timeout") {
		t.Fatalf("got %v, want DeadlineExceeded naming challenge_timeout", err)
	}
	if waited < 900*time.Millisecond || waited > 10*time.Second {
		t.Fatalf("dropped after %v, want about 1s", waited)
	}
	t.Logf("silent agent dropped after %v", waited.Round(time.Millisecond))
}

// TestLimitSelectors: a node whose runtime log (genuinely extended into
// RTMR3) names more distinct executables than an agent may have selectors
// is refused with ResourceExhausted, not answered with thousands of
// selectors; at the limit's edge of a few hundred it is accepted.
func TestLimitSelectors(t *testing.T) {
	distinct := func(from, count int) []runtimelog.Workload {
		ws := make([]runtimelog.Workload, count)
		for i := range ws {
			s256 := sha256.Sum256([]byte(fmt.Sprint(from + i)))
			s384 := sha512.Sum384([]byte(fmt.Sprint(from + i)))
			ws[i] = runtimelog.Workload{ExeSHA256: s256[:], ExeSHA384: s384[:], ExePath: fmt.Sprintf("/usr/bin/w%d", from+i)}
		}
		return ws
	}
	n := newSimNode(t, sim.InitOptions{})
	n.RunWorkloads(t, distinct(0, 300)...)
	attrs, err := newServer(t, n.serverConfig("")).attest(n.agent(t))
	if err != nil {
		t.Fatalf("300 workloads: %v", err)
	}
	if got := len(attrs.GetSelectorValues()); got < 300 {
		t.Fatalf("%d selectors for 300 distinct executables", got)
	}
	n.RunWorkloads(t, distinct(300, serververifier.MaxSelectors)...)
	s := newServer(t, n.serverConfig(""))
	_, err = s.attest(n.agent(t))
	s.want(t, err, reject(codes.ResourceExhausted, appraisal.CheckSelectors, fmt.Sprint(serververifier.MaxSelectors)))
}
