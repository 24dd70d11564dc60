package workloadsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/ccnpimr"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc/ccnppb"
)

// Which register a container gets at the container index, as the first
// event of that register in its event log says (Marker*).
const (
	// RegisterIMA is CCNP's: the host seed, then the container's
	// ima-cgpath entries (ccnpimr).
	RegisterIMA = "ima-cgpath"
	// RegisterRuntimeLog is the replay of the container's records in the
	// workload attestor's runtime log.
	RegisterRuntimeLog = "runtime-log"
)

// MarkerPrefix starts the event data of the informational event
// (EV_NO_ACTION, which replay skips) that opens the container register's
// events; the register's kind (Register*) follows it.
const MarkerPrefix = "ccnp-spire container register: "

// imaMode is the service's state when the container register is CCNP's.
type imaMode struct {
	idx   *ccnpimr.Index
	hosts []ccnpimr.HostProcess
	seed  []byte
	// initial is RTMR2 after the boot events (the CCEL's), where IMA's
	// extends start; ccelRTMR2 the number of those events on the wire.
	initial   []byte
	ccelRTMR2 int

	mu sync.Mutex
	// last anchored prefix of the list: its length and RTMR2 after it,
	// for the list of generation gen.
	gen uint64
	n   int
	v   []byte
}

// imaView is the part of the IMA list RTMR2 vouches for, as one request
// sees it: entries [0, n), the caller's among them.
type imaView struct {
	snap *ccnpimr.Snapshot
	n    int
	own  []int
}

// newIMAMode reads the list once (it must hold ima-cgpath entries) and
// measures the host seed.
func newIMAMode(ctx context.Context, path string, pol ccnpimr.Policy, procRoot string, boot []cctrusted.Event) (*imaMode, error) {
	m := &imaMode{idx: ccnpimr.NewIndex(path, 0)}
	snap, err := m.idx.Snapshot(ctx, "")
	if err != nil {
		return nil, err
	}
	cg := false
	for i := range snap.Entries {
		if snap.Entries[i].Template == ccnpimr.Template {
			cg = true
			break
		}
	}
	if !cg {
		return nil, fmt.Errorf("IMA list %s has no %s entries (%d entries): the kernel does not record cgroup paths, so there is no CCNP container register; use the runtime-log register", path, ccnpimr.Template, len(snap.Entries))
	}
	if m.hosts, err = ccnpimr.MeasureHost(ctx, procRoot, pol); err != nil {
		return nil, err
	}
	if m.seed, err = ccnpimr.Seed(m.hosts); err != nil {
		return nil, err
	}
	r := cctrusted.NewReplayer(nil)
	rtmr2 := cctrusted.RTMR(2).IMR()
	for i := range boot {
		e := &boot[i]
		t, err := e.IMR.TDX()
		if err != nil || t != rtmr2 {
			continue
		}
		m.ccelRTMR2++
		if e.Type == cctrusted.EventNoAction {
			continue
		}
		d, ok := e.Digest(ccnpimr.Alg)
		if !ok {
			return nil, fmt.Errorf("boot event %d (RTMR2) has no SHA-384 digest", i)
		}
		if err := r.ExtendDigest(rtmr2, ccnpimr.Alg, d); err != nil {
			return nil, fmt.Errorf("boot event %d (RTMR2): %w", i, err)
		}
	}
	m.initial, _ = r.Registers().Get(rtmr2, ccnpimr.Alg)
	if m.initial == nil {
		m.initial = make([]byte, ccnpimr.Alg.Size())
	}
	m.initial = bytes.Clone(m.initial)
	m.v = m.initial
	return m, nil
}

// view returns the prefix of the IMA list that replays, after the boot
// events, to RTMR2 as read first, and key's entries in it. The kernel adds
// an entry to the list before it extends RTMR2, so a list read after the
// register holds every entry extended and maybe a few more: those are left
// out until the register has them. A list no prefix of which gives RTMR2
// (after a few attempts, for appends racing the read) is refused: nothing
// of it is served, since nothing of it rests on a signed value.
func (m *imaMode) view(ctx context.Context, p cctrusted.Provider, key string) (*imaView, error) {
	var lastErr error
	rtmr2 := cctrusted.RTMR(2).IMR()
	for range anchorAttempts {
		reg, err := p.Measurement(ctx, rtmr2, ccnpimr.Alg)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "reading RTMR2, which the IMA list extends: %v", err)
		}
		snap, err := m.idx.Snapshot(ctx, key)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, status.Errorf(codes.FailedPrecondition, "%v (the service was started with it as the container register's source)", err)
			}
			if errors.Is(err, ccnpimr.ErrTooLarge) {
				return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
			}
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		if err := checkFields(snap); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "IMA list %s: %v", m.idx.Path(), err)
		}
		n, v, ok := m.anchor(snap, reg.Value)
		if ok {
			m.mu.Lock()
			if snap.Gen != m.gen || n >= m.n {
				m.gen, m.n, m.v = snap.Gen, n, v
			}
			m.mu.Unlock()
			own := snap.Own
			for len(own) > 0 && own[len(own)-1] >= n {
				own = own[:len(own)-1]
			}
			return &imaView{snap: snap, n: n, own: own}, nil
		}
		lastErr = fmt.Errorf("RTMR2 is %x; the boot events and no prefix of the list's %d entries replay to it", reg.Value, len(snap.Entries))
	}
	return nil, status.Errorf(codes.FailedPrecondition, "IMA list %s does not replay to RTMR2: %v", m.idx.Path(), lastErr)
}

// anchor finds n such that entries [0, n) extend the boot events' RTMR2 to
// reg, starting from the prefix anchored last when the list continues it.
func (m *imaMode) anchor(snap *ccnpimr.Snapshot, reg []byte) (int, []byte, bool) {
	m.mu.Lock()
	start, cur := 0, m.initial
	if snap.Gen == m.gen && m.n <= len(snap.Entries) {
		start, cur = m.n, m.v
	}
	m.mu.Unlock()
	if bytes.Equal(cur, reg) {
		return start, cur, true
	}
	rtmr2 := cctrusted.RTMR(2).IMR()
	r := cctrusted.NewReplayer(nil)
	r.Registers().Set(rtmr2, ccnpimr.Alg, cur)
	for i := start; i < len(snap.Entries); i++ {
		if err := r.ExtendDigest(rtmr2, ccnpimr.Alg, snap.Entries[i].Digest); err != nil {
			return 0, nil, false
		}
		v, _ := r.Registers().Get(rtmr2, ccnpimr.Alg)
		if bytes.Equal(v, reg) {
			return i + 1, bytes.Clone(v), true
		}
	}
	return 0, nil, false
}

// checkFields requires every part of the list to be on one register field
// that a TDX kernel extends RTMR2 for (ima.Log.RTMR2Field).
func checkFields(snap *ccnpimr.Snapshot) error {
	var want cctrusted.PCR
	have := false
	for _, l := range snap.Logs {
		if len(l.Entries) == 0 {
			continue
		}
		f, err := l.RTMR2Field()
		if err != nil {
			return err
		}
		if have && f != want {
			return fmt.Errorf("entries carry register fields %d and %d: a TDX kernel's list is all on one", uint32(want), uint32(f))
		}
		want, have = f, true
	}
	return nil
}

// register is the caller's container register: the seed extended with its
// anchored entries.
func (m *imaMode) register(v *imaView) ([]byte, error) {
	s := *v.snap
	s.Own = v.own
	r, err := s.Register(m.seed)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	return r, nil
}

// rtmr2Events returns entries [a, b) of the anchored list as RTMR2 events:
// what replay needs (the digest IMA extended) for every entry, the entry
// itself only for the caller's own (all of them in the node view). Other
// containers' file names and cgroups are theirs: CCNP's isolated mode
// showed none of them, and left RTMR2 out.
func (m *imaMode) rtmr2Events(v *imaView, a, b int, all bool) []*ccnppb.TcgEventlog {
	own := make(map[int]bool, len(v.own))
	if !all {
		for _, i := range v.own {
			if i >= a && i < b {
				own[i] = true
			}
		}
	}
	out := make([]*ccnppb.TcgEventlog, 0, b-a)
	for i := a; i < b; i++ {
		e := &v.snap.Entries[i]
		w := &ccnppb.TcgEventlog{
			RecNum:    uint32(m.ccelRTMR2 + i),
			ImrIndex:  2,
			EventType: ima.EventTypeIMA,
			Digests:   []*ccnppb.TcgDigest{{AlgoId: uint32(ccnpimr.Alg), Hash: e.Digest}},
			ExtraInfo: map[string]string{"source": "ima", "register": "RTMR2", "entry": strconv.Itoa(i), "template_name": e.Template},
		}
		if all || own[i] {
			w.Event, w.EventSize = e.Fields, uint32(len(e.Fields))
		} else {
			w.ExtraInfo["redacted"] = "another container's or the host's entry: only its digest is shown"
		}
		out = append(out, w)
	}
	return out
}

// containerEvents returns events [a, b) of the container register's
// events after the marker: the host seed, then the caller's entries.
func (m *imaMode) containerEvents(v *imaView, index uint32, a, b int) []*ccnppb.TcgEventlog {
	out := make([]*ccnppb.TcgEventlog, 0, b-a)
	for n := a; n < b; n++ {
		if n < len(m.hosts) {
			h := &m.hosts[n]
			out = append(out, &ccnppb.TcgEventlog{
				RecNum:    uint32(n + 1),
				ImrIndex:  index,
				EventType: ima.EventTypeIMA,
				Digests:   []*ccnppb.TcgDigest{{AlgoId: uint32(ccnpimr.Alg), Hash: h.Digest}},
				EventSize: uint32(len(h.Value)),
				Event:     h.Value,
				ExtraInfo: map[string]string{"source": "host_process", "register": "container", "process": h.Name, "pid": strconv.Itoa(h.PID)},
			})
			continue
		}
		i := v.own[n-len(m.hosts)]
		e := &v.snap.Entries[i]
		out = append(out, &ccnppb.TcgEventlog{
			RecNum:    uint32(n + 1),
			ImrIndex:  index,
			EventType: ima.EventTypeIMA,
			Digests:   []*ccnppb.TcgDigest{{AlgoId: uint32(ccnpimr.Alg), Hash: e.Digest}},
			EventSize: uint32(len(e.Fields)),
			Event:     e.Fields,
			ExtraInfo: map[string]string{"source": "ima", "register": "container", "entry": strconv.Itoa(i), "template_name": e.Template},
		})
	}
	return out
}

// marker is the informational event that opens the container register's
// events and says which register the caller got. It is EV_NO_ACTION, which
// every replay (cctrusted, cc-api's Python and Go SDKs) skips, with a zero
// digest because CCNP's Python SDK reads only events that carry digests.
func (s *Service) marker(host bool) *ccnppb.TcgEventlog {
	kind, what := RegisterRuntimeLog, "the replay from zero of the container's records in the workload attestor's runtime log"
	switch {
	case host:
		what = "the node view: the real register, every runtime-log record"
	case s.ima != nil:
		kind = RegisterIMA
		what = fmt.Sprintf("CCNP's: %d host processes (seed), then the container's ima-cgpath entries, SHA-384", len(s.ima.hosts))
	}
	data := []byte(MarkerPrefix + kind + " (" + what + ")")
	return &ccnppb.TcgEventlog{
		RecNum:    0,
		ImrIndex:  s.containerIndex,
		EventType: cctrusted.EventNoAction,
		Digests:   []*ccnppb.TcgDigest{{AlgoId: uint32(s.rtAlg), Hash: make([]byte, s.rtAlg.Size())}},
		EventSize: uint32(len(data)),
		Event:     data,
		ExtraInfo: map[string]string{"source": "ccnp-spire", "container_register": kind},
	}
}

// HasCgpathEntries reports whether the IMA list at path exists and records
// cgroup paths (has an ima-cgpath entry): a node whose container register
// can be CCNP's.
func HasCgpathEntries(ctx context.Context, path string) (bool, error) {
	snap, err := ccnpimr.NewIndex(path, 0).Snapshot(ctx, "")
	if err != nil {
		return false, err
	}
	for i := range snap.Entries {
		if snap.Entries[i].Template == ccnpimr.Template {
			return true, nil
		}
	}
	return false, nil
}
