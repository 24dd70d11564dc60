package workloadsvc

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/cgroup"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// anchorAttempts bounds how often a runtime log that changes while it is
// read is read again before the request fails.
const anchorAttempts = 4

// containerView is what one container sees of the runtime log: its own
// records, as events of its own register, and that register's value.
type containerView struct {
	events []*ccnppb.TcgEventlog
	imr    []byte
}

// runtimeLog reads the runtime log and checks it against the register it
// extends, so the per-container registers derived from it rest on a value
// the TEE signs. The workload attestor appends while we read (it writes the
// record, then extends), so a mismatch is retried while the file changes;
// a mismatch on an unchanged file is an error.
func (s *Service) runtimeLog(ctx context.Context) (*runtimelog.Log, error) {
	var lastErr error
	for range anchorAttempts {
		raw, err := runtimelog.ReadStoreFile(ctx, s.rtPath)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "runtime log %s: %v", s.rtPath, err)
		}
		log, err := s.decode(raw)
		if err != nil {
			return nil, err
		}
		reg, err := s.provider.Measurement(ctx, s.rtIMR, s.rtAlg)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "reading %v (%v), the runtime log's register: %v", s.rtIMR, s.rtAlg, err)
		}
		if lastErr = log.Verify(reg.Value); lastErr == nil {
			return log, nil
		}
		again, err := runtimelog.ReadStoreFile(ctx, s.rtPath)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "runtime log %s: %v", s.rtPath, err)
		}
		if bytes.Equal(raw, again) {
			break
		}
	}
	return nil, status.Errorf(codes.FailedPrecondition, "runtime log %s does not replay to %v: %v", s.rtPath, s.rtIMR, lastErr)
}

func (s *Service) decode(raw []byte) (*runtimelog.Log, error) {
	if len(raw) == 0 {
		return runtimelog.New(s.rtIMR, s.rtAlg), nil
	}
	log, err := runtimelog.Decode(raw, runtimelog.Limits{})
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "runtime log %s: %v", s.rtPath, err)
	}
	if !s.sameRegister(log.IMR(), s.rtIMR) || log.Algorithm() != s.rtAlg {
		return nil, status.Errorf(codes.FailedPrecondition, "runtime log %s extends %v (%v); this server is configured for %v (%v)",
			s.rtPath, log.IMR(), log.Algorithm(), s.rtIMR, s.rtAlg)
	}
	return log, nil
}

// sameRegister compares registers across the TDX index spaces (RTMR3 is
// CC MR 4).
func (s *Service) sameRegister(a, b cctrusted.IMR) bool {
	if s.tdxLike() {
		ta, err1 := a.TDX()
		tb, err2 := b.TDX()
		return err1 == nil && err2 == nil && ta == tb
	}
	return a == b
}

// view selects the caller's records and replays them into a fresh register,
// as CCNP's per-container IMR: zero, then new = H(old || record digest).
func (s *Service) view(ctx context.Context, c *Caller) (*containerView, error) {
	log, err := s.runtimeLog(ctx)
	if err != nil {
		return nil, err
	}
	r := cctrusted.NewReplayer(nil)
	own := cctrusted.IMR{Space: s.rtIMR.Space, Index: s.rtIMR.Index}
	v := &containerView{}
	for i, e := range log.Events() {
		w, ok := log.Workload(i) // false for a notice record, which is no container's
		if !ok || key(cgroup.Identity{PodUID: w.PodUID, ContainerID: w.ContainerID}) != c.Key {
			continue
		}
		d, ok := e.Digest(s.rtAlg)
		if !ok {
			return nil, status.Errorf(codes.Internal, "runtime log record %d has no %v digest", i, s.rtAlg)
		}
		if err := r.ExtendDigest(own, s.rtAlg, d); err != nil {
			return nil, status.Errorf(codes.Internal, "runtime log record %d: %v", i, err)
		}
		v.events = append(v.events, &ccnppb.TcgEventlog{
			RecNum:    uint32(len(v.events)),
			ImrIndex:  s.containerIndex,
			EventType: e.Type,
			Digests:   []*ccnppb.TcgDigest{{AlgoId: uint32(s.rtAlg), Hash: d}},
			EventSize: uint32(len(e.Data)),
			Event:     e.Data,
			ExtraInfo: recordInfo(i, w),
		})
	}
	if val, ok := r.Registers().Get(own, s.rtAlg); ok {
		v.imr = val
	} else {
		v.imr = make([]byte, s.rtAlg.Size())
	}
	return v, nil
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
func (s *Service) platformEvents(events []cctrusted.Event) ([]*ccnppb.TcgEventlog, error) {
	recs := map[uint32]uint32{}
	source := "tpm_log"
	if s.tdxLike() {
		source = "ccel"
	}
	var out []*ccnppb.TcgEventlog
	for i, e := range events {
		idx, name, err := s.wireIndex(e.IMR)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if idx == s.containerIndex && e.Type != cctrusted.EventNoAction {
			continue
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
		out = append(out, w)
	}
	return out, nil
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
