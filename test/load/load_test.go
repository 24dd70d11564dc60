package load

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// malformation is one way the load test breaks an agent's evidence, and
// the code the server must answer with.
type malformation struct {
	name   string
	code   codes.Code
	tamper func(t *testing.T, b []byte) []byte
}

// editEvidence decodes the evidence payload, edits it and re-encodes it.
func editEvidence(t *testing.T, b []byte, edit func(*evidencepb.Evidence)) []byte {
	var p evidencepb.Payload
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Error(err)
		return b
	}
	edit(p.GetEvidence())
	out, err := proto.Marshal(&p)
	if err != nil {
		t.Error(err)
	}
	return out
}

var malformations = []malformation{
	{"quote signature flipped", codes.PermissionDenied, func(t *testing.T, b []byte) []byte {
		return editEvidence(t, b, func(e *evidencepb.Evidence) { e.Quote[640] ^= 1 })
	}},
	{"binding flipped", codes.PermissionDenied, func(t *testing.T, b []byte) []byte {
		return editEvidence(t, b, func(e *evidencepb.Evidence) { e.Binding[3] ^= 1 })
	}},
	{"payload truncated", codes.InvalidArgument, func(t *testing.T, b []byte) []byte { return b[:len(b)*2/3] }},
	{"log raw size lies", codes.InvalidArgument, func(t *testing.T, b []byte) []byte {
		return editEvidence(t, b, func(e *evidencepb.Evidence) { e.Ccel.RawSize-- })
	}},
	{"garbage", codes.InvalidArgument, func(t *testing.T, b []byte) []byte { return []byte("\xff\xfe not a payload") }},
}

// heapAfterGC is the live heap once garbage is collected.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// settledGoroutines waits (at most 10 s) for the goroutine count to come
// back to at most want, and returns the last count seen.
func settledGoroutines(want int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLoadConcurrentAgents: 1,000 attestations from 50 concurrent agents
// (50 nodes: five simulated TDs, 50 instance IDs) against one server plugin,
// every 20th malformed in one of five ways. Every good one is accepted
// with its agent's SPIFFE ID, every bad one rejected with its code, and
// after the run the goroutine count and the live heap are back where they
// were after a warm-up round.
func TestLoadConcurrentAgents(t *testing.T) {
	const (
		agents = 50
		total  = 1000
		every  = 20 // 5 % malformed
	)
	n := newSimNode(t)
	pcsSrv := simtest.ServePCS(t, pcs.Handler(n.Dir))
	s := newServer(t, n.serverConfig(pcsSrv.URL))
	ag := make([]*agent, agents)
	ids := make([]string, agents)
	ctx := context.Background()

	// Warm-up: one attestation per agent creates the instance IDs and
	// fills the collateral and verification caches.
	// Five TDs of one platform (one root), ten agents each; the logs go
	// uncompressed, so that the agents' zstd does not crowd out the server
	// on two cores under -race.
	tds := []*simNode{n}
	for len(tds) < 5 {
		tds = append(tds, n.clone(t))
	}
	for i := range ag {
		ag[i] = tds[i%len(tds)].agent(t, `compression = "none"`)
	}
	var warm sync.WaitGroup
	warmErrs := make([]error, agents)
	for i := range ag {
		warm.Go(func() { _, warmErrs[i] = s.attest(ctx, ag[i], nil) })
	}
	warm.Wait()
	for i := range ag {
		if warmErrs[i] != nil {
			t.Fatalf("warm-up attestation of agent %d: %v", i, warmErrs[i])
		}
		ids[i] = "spiffe://" + trustDomain + "/spire/agent/ccnp/sim/" + instanceID(t, ag[i])
	}
	goBefore := settledGoroutines(0)
	heapBefore := heapAfterGC()
	acc0, rej0 := s.audit.counts()

	type result struct {
		job     int
		agent   int
		err     error
		id      string
		latency time.Duration
	}
	jobs := make(chan int)
	results := make(chan result, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range agents {
		wg.Go(func() {
			for j := range jobs {
				var tamper func([]byte) []byte
				if j%every == every-1 {
					m := malformations[(j/every)%len(malformations)]
					tamper = func(b []byte) []byte { return m.tamper(t, b) }
				}
				t0 := time.Now()
				attrs, err := s.attest(ctx, ag[i], tamper)
				results <- result{job: j, agent: i, err: err, id: attrs.GetSpiffeId(), latency: time.Since(t0)}
			}
		})
	}
	for j := range total {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	close(results)
	elapsed := time.Since(start)

	var good, bad int
	var lat []time.Duration
	for r := range results {
		lat = append(lat, r.latency)
		if r.job%every == every-1 {
			bad++
			m := malformations[(r.job/every)%len(malformations)]
			if got := status.Code(r.err); got != m.code {
				t.Errorf("job %d (%s): %v, want %v", r.job, m.name, r.err, m.code)
			}
			continue
		}
		good++
		if r.err != nil {
			t.Errorf("job %d by agent %d rejected: %v", r.job, r.agent, r.err)
		} else if r.id != ids[r.agent] {
			t.Errorf("job %d by agent %d: SPIFFE ID %s, want %s", r.job, r.agent, r.id, ids[r.agent])
		}
	}
	acc, rej := s.audit.counts()
	if acc-acc0 != good || rej-rej0 != bad {
		t.Errorf("audit lines: %d accepted, %d rejected; want %d and %d", acc-acc0, rej-rej0, good, bad)
	}

	goAfter := settledGoroutines(goBefore)
	heapAfter := heapAfterGC()
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(time.Millisecond) }
	t.Logf("%d attestations (%d good, %d malformed) by %d agents in %v: %.0f/s; latency p50 %v p95 %v max %v",
		total, good, bad, agents, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), pct(0.5), pct(0.95), pct(1))
	t.Logf("goroutines %d before, %d after; live heap %s before, %s after", goBefore, goAfter, mib(heapBefore), mib(heapAfter))
	if goAfter > goBefore {
		t.Errorf("goroutines grew from %d to %d", goBefore, goAfter)
	}
	// The caches are bounded and warm; what a thousand attestations may
	// leave behind is their share of bounded caches, not per-attestation
	// state. 16 MiB is far below 1,000 evidence payloads (~15 KiB each
	// compressed, 256 KiB decompressed).
	if heapAfter > heapBefore+16<<20 {
		t.Errorf("live heap grew from %s to %s", mib(heapBefore), mib(heapAfter))
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
