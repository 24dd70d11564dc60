package workloadsvc

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/cgroup"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// anchorAttempts bounds how often a runtime log that changes while it is
// read is read again before the request fails.
const anchorAttempts = 4

// containerView is what one container sees of the runtime log: its own
// records, as events of its own register, and that register's value.
type containerView struct {
	log *runtimelog.Log
	own *ownRecords
}

// ownRecords are one container's records of a runtime log: their indexes
// and the replay of their digests from zero. A value is never changed once
// published: a newer log gets a new value.
type ownRecords struct {
	idx []int
	imr []byte
}

// runtimeIndex is the runtime log as every request sees it, shared by all
// callers: the Follower's log, the replay of the whole log (compared with
// the register by every request) and each container's records and
// register. Appended records are folded in as they come; a request costs a
// stat, a small read and a map lookup, not a decode of the whole file.
type runtimeIndex struct {
	path string
	imr  cctrusted.IMR
	alg  cctrusted.Algorithm

	mu    sync.Mutex
	f     *runtimelog.Follower
	gen   uint64 // counts changes of the log
	log   *runtimelog.Log
	whole *cctrusted.Replayer
	value []byte // whole's value, for readers
	// scratch replays one container's record onto its register; zero is
	// a register's reset value.
	scratch *cctrusted.Replayer
	zero    []byte
	byKey   map[string]*ownRecords
}

func newRuntimeIndex(path string, imr cctrusted.IMR, alg cctrusted.Algorithm) (*runtimeIndex, error) {
	f, err := runtimelog.NewFollower(path, imr, alg, runtimelog.Limits{})
	if err != nil {
		return nil, err
	}
	return &runtimeIndex{path: path, imr: imr, alg: alg, f: f, scratch: cctrusted.NewReplayer(nil), zero: make([]byte, alg.Size())}, nil
}

// indexSnapshot is what one request uses, consistent with itself.
type indexSnapshot struct {
	gen   uint64
	log   *runtimelog.Log
	value []byte
	own   *ownRecords
}

// snapshot brings the index up to date with the file and returns the log,
// its replay and key's records.
func (x *runtimeIndex) snapshot(ctx context.Context, key string) (indexSnapshot, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	u, err := x.f.Read(ctx)
	if err != nil {
		return indexSnapshot{}, err
	}
	if u.Reset || x.byKey == nil {
		x.whole, x.byKey = cctrusted.NewReplayer(nil), map[string]*ownRecords{}
	}
	if u.Reset || u.Since < u.Log.Len() {
		if err := x.fold(u.Log, u.Since); err != nil {
			// Start again from the file at the next request rather than
			// keep an index that is half folded.
			x.f, _ = runtimelog.NewFollower(x.path, x.imr, x.alg, runtimelog.Limits{})
			x.byKey = nil
			return indexSnapshot{}, err
		}
		x.gen++
	}
	x.log = u.Log
	return indexSnapshot{gen: x.gen, log: x.log, value: x.value, own: x.byKey[key]}, nil
}

// fold adds records [from, log.Len()) to the whole replay and to their
// containers'.
func (x *runtimeIndex) fold(log *runtimelog.Log, from int) error {
	own := cctrusted.IMR{Space: x.imr.Space, Index: x.imr.Index}
	for i := from; i < log.Len(); i++ {
		ev, w := log.Record(i)
		d, ok := ev.Digest(x.alg)
		if !ok {
			return status.Errorf(codes.Internal, "runtime log record %d has no %v digest", i, x.alg)
		}
		if err := x.whole.ExtendDigest(own, x.alg, d); err != nil {
			return status.Errorf(codes.Internal, "runtime log record %d: %v", i, err)
		}
		if _, ok := log.Workload(i); !ok {
			continue // a notice record is in the register, but no container's
		}
		k := key(cgroup.Identity{PodUID: w.PodUID, ContainerID: w.ContainerID})
		prev := x.byKey[k]
		next := &ownRecords{}
		start := x.zero
		if prev != nil {
			// Appending may write into prev's array past its length,
			// which no reader of prev looks at.
			next.idx, start = prev.idx, prev.imr
		}
		// Set copies the start value, so the value extended below is a
		// new array that no later fold writes to.
		x.scratch.Registers().Set(own, x.alg, start)
		if err := x.scratch.ExtendDigest(own, x.alg, d); err != nil {
			return status.Errorf(codes.Internal, "runtime log record %d: %v", i, err)
		}
		next.imr, _ = x.scratch.Registers().Get(own, x.alg)
		next.idx = append(next.idx, i)
		x.byKey[k] = next
	}
	v, ok := x.whole.Registers().Get(own, x.alg)
	if !ok {
		v = make([]byte, x.alg.Size())
	}
	// The replayer overwrites its value in place on the next extend.
	x.value = bytes.Clone(v)
	return nil
}

// view returns the caller's records and register, from a runtime log whose
// replay equals the register it extends, so what a container is told rests
// on a value the TEE signs. The workload attestor appends while we read (it
// writes the record, then extends), so a mismatch is retried while the file
// changes; a mismatch on an unchanged file is an error.
func (s *Service) view(ctx context.Context, c *Caller) (*containerView, error) {
	var lastErr error
	var checked uint64
	for attempt := range anchorAttempts {
		snap, err := s.rt.snapshot(ctx, c.Key)
		if err != nil {
			var fe *runtimelog.FormatError
			if errors.As(err, &fe) {
				return nil, status.Errorf(codes.FailedPrecondition, "runtime log: %v", err)
			}
			if _, ok := status.FromError(err); ok {
				return nil, err
			}
			return nil, status.Errorf(codes.Unavailable, "runtime log %s: %v", s.rtPath, err)
		}
		if attempt > 0 && snap.gen == checked {
			break // the file did not change: no append raced the read
		}
		reg, err := s.provider.Measurement(ctx, s.rtIMR, s.rtAlg)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "reading %v (%v), the runtime log's register: %v", s.rtIMR, s.rtAlg, err)
		}
		if bytes.Equal(reg.Value, snap.value) {
			return &containerView{log: snap.log, own: snap.own}, nil
		}
		// Verify replays the whole log again, but only on a mismatch,
		// to name the first record the register lacks.
		if lastErr = snap.log.Verify(reg.Value); lastErr == nil {
			lastErr = fmt.Errorf("the register is %x, the log replays to %x", reg.Value, snap.value)
		}
		checked = snap.gen
	}
	return nil, status.Errorf(codes.FailedPrecondition, "runtime log %s does not replay to %v: %v", s.rtPath, s.rtIMR, lastErr)
}

// imr is the container's register: the replay of its records from zero,
// as CCNP's per-container IMR.
func (v *containerView) imr(alg cctrusted.Algorithm) []byte {
	if v.own == nil {
		return make([]byte, alg.Size())
	}
	return v.own.imr
}

// count is the number of the container's records.
func (v *containerView) count() int {
	if v.own == nil {
		return 0
	}
	return len(v.own.idx)
}

// events returns the container's records [start, end) as wire events of
// its register.
func (s *Service) events(v *containerView, start, end int) ([]*ccnppb.TcgEventlog, error) {
	out := make([]*ccnppb.TcgEventlog, 0, end-start)
	for n := start; n < end; n++ {
		i := v.own.idx[n]
		e, w := v.log.Record(i)
		d, ok := e.Digest(s.rtAlg)
		if !ok {
			return nil, status.Errorf(codes.Internal, "runtime log record %d has no %v digest", i, s.rtAlg)
		}
		out = append(out, &ccnppb.TcgEventlog{
			RecNum:    uint32(n + 1), // after the marker
			ImrIndex:  s.containerIndex,
			EventType: e.Type,
			Digests:   []*ccnppb.TcgDigest{{AlgoId: uint32(s.rtAlg), Hash: d}},
			EventSize: uint32(len(e.Data)),
			Event:     e.Data,
			ExtraInfo: recordInfo(i, w),
		})
	}
	return out, nil
}

// nodeRecords returns records [start, end) of the whole runtime log, for
// the node view, numbered as in the log.
func (s *Service) nodeRecords(v *containerView, start, end int) ([]*ccnppb.TcgEventlog, error) {
	out := make([]*ccnppb.TcgEventlog, 0, end-start)
	for i := start; i < end; i++ {
		e, w := v.log.Record(i)
		d, ok := e.Digest(s.rtAlg)
		if !ok {
			return nil, status.Errorf(codes.Internal, "runtime log record %d has no %v digest", i, s.rtAlg)
		}
		info := map[string]string{"source": "runtime_log", "record": strconv.Itoa(i), "register": "runtime"}
		if _, ok := v.log.Workload(i); ok {
			info = recordInfo(i, w)
			info["register"] = "runtime"
		}
		out = append(out, &ccnppb.TcgEventlog{
			RecNum:    uint32(i + 1), // after the marker
			ImrIndex:  s.containerIndex,
			EventType: e.Type,
			Digests:   []*ccnppb.TcgDigest{{AlgoId: uint32(s.rtAlg), Hash: d}},
			EventSize: uint32(len(e.Data)),
			Event:     e.Data,
			ExtraInfo: info,
		})
	}
	return out, nil
}

// recordInfo names what a runtime record says, so a client need not parse
// the record's TLV content to know which workload it is.
func recordInfo(i int, w runtimelog.Workload) map[string]string {
	m := map[string]string{
		"source":       "runtime_log",
		"record":       strconv.Itoa(i),
		"register":     "container",
		"exe_sha256":   hex.EncodeToString(w.ExeSHA256),
		"container_id": w.ContainerID,
	}
	for k, v := range map[string]string{"exe_sha384": hex.EncodeToString(w.ExeSHA384), "exe_path": w.ExePath,
		"pod_uid": w.PodUID, "cgroup": w.CgroupPath, "runtime": w.Runtime} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// platformEvents converts the provider's firmware/boot log (CCEL on TDX,
// the TPM's log) into wire events with indexes in the space GetCcMeasurement
// uses, numbering records per register from 0 as CCNP's cctrusted_base did.
// Events of the runtime register are left out: in this view that register
// is the container's own.
func (s *Service) platformEvents(events []cctrusted.Event) (platform, all []*ccnppb.TcgEventlog, err error) {
	recs := map[uint32]uint32{}
	source := "tpm_log"
	if s.tdxLike() {
		source = "ccel"
	}
	for i, e := range events {
		idx, name, err := s.wireIndex(e.IMR)
		if err != nil {
			return nil, nil, fmt.Errorf("event %d: %w", i, err)
		}
		w := &ccnppb.TcgEventlog{
			RecNum:    recs[idx],
			ImrIndex:  idx,
			EventType: e.Type,
			EventSize: uint32(len(e.Data)),
			Event:     e.Data,
			ExtraInfo: map[string]string{"source": source, "register": name, "log_register": e.IMR.String()},
		}
		recs[idx]++
		for _, d := range e.Digests {
			w.Digests = append(w.Digests, &ccnppb.TcgDigest{AlgoId: uint32(d.Alg), Hash: d.Value})
		}
		all = append(all, w)
		if idx == s.containerIndex && e.Type != cctrusted.EventNoAction {
			continue
		}
		platform = append(platform, w)
	}
	return platform, all, nil
}

// wireIndex maps a register to the index space of this TEE's measurement
// API: RTMR 0..3 on TDX (the MRTD, where only the Spec ID header event sits
// and nothing is extended, is reported as 0), PCR 0..23 on a TPM.
func (s *Service) wireIndex(m cctrusted.IMR) (uint32, string, error) {
	if s.tdxLike() {
		t, err := m.TDX()
		if err != nil {
			return 0, "", err
		}
		return t.Index, t.String(), nil
	}
	if m.Space != cctrusted.SpacePCR || !m.Valid() {
		return 0, "", fmt.Errorf("register %v is not a TPM PCR", m)
	}
	return m.Index, m.String(), nil
}
