package workloadattestor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
)

// rtmrExtender is what the TDX provider and the simulator offer.
type rtmrExtender interface {
	ExtendRTMR(ctx context.Context, index int, digest [48]byte) error
}

// pcrExtender is what the TPM provider offers.
type pcrExtender interface {
	Extend(ctx context.Context, pcr cctrusted.PCR, alg cctrusted.Algorithm, digest []byte) error
}

// register adapts a provider to runtimelog.Register.
type register struct {
	p      cctrusted.Provider
	imr    cctrusted.IMR
	alg    cctrusted.Algorithm
	extend func(ctx context.Context, digest []byte) error
}

func (r *register) Read(ctx context.Context) ([]byte, error) {
	d, err := r.p.Measurement(ctx, r.imr, r.alg)
	if err != nil {
		return nil, err
	}
	return d.Value, nil
}

func (r *register) Extend(ctx context.Context, digest []byte) error { return r.extend(ctx, digest) }

// measurer records workloads in the runtime log and its register.
type measurer struct {
	provider tee.Provider
	alg      cctrusted.Algorithm
	selector string // "measured:rtmr3" or "measured:pcr<N>"

	// quotaUID and quotaContainer bound the new records one user and one
	// container (or pod) can add.
	quotaUID, quotaContainer int

	mu       sync.Mutex
	log      hclog.Logger
	store    *runtimelog.Store
	storeErr error // why there is no store
	seen     map[string]bool
	// added counts the new records per caller key (callerKeys); a key at
	// its quota adds no more. Container keys are counted again from the
	// log at start, uid keys only since the start (the log does not name
	// users); a key with a quota notice stays at its quota.
	added      map[string]int
	warnedFull bool
}

// Selectors of a workload that measuring did not record (measure != "off").
const (
	unmeasuredLogFull     = "unmeasured:log_full"
	unmeasuredQuota       = "unmeasured:quota"
	unmeasuredLogUnusable = "unmeasured:log_unusable"
	unmeasuredLogError    = "unmeasured:log_error"
)

// openMeasurer opens the TEE and the runtime log (reconciled with the
// register). Only the TEE can fail it: a log that cannot be opened or
// reconciled (edited, replaced, over the reader's limits, unreadable) leaves
// the measurer without a store, logged as an error, and attestations go on
// with an unmeasured selector instead of the measured one, so nothing in the
// log keeps the agent from starting. The register is never extended then.
func openMeasurer(ctx context.Context, cfg *conf.WorkloadAttestor, log hclog.Logger) (*measurer, error) {
	p, err := tee.Open(ctx, tee.ForWorkloadAttestor(cfg))
	if err != nil {
		return nil, fmt.Errorf("opening the TEE: %w", err)
	}
	m := &measurer{provider: p, seen: make(map[string]bool), added: make(map[string]int), log: log,
		quotaUID: cfg.RuntimeLogQuotaPerUID, quotaContainer: cfg.RuntimeLogQuotaPerContainer}
	reg, err := runtimeRegister(p, cfg.RuntimePCR)
	if err != nil {
		p.Close()
		return nil, err
	}
	m.alg = reg.alg
	m.selector = "measured:" + reg.imr.String()
	store, rec, err := runtimelog.OpenStore(ctx, cfg.RuntimeLogPath, reg, runtimelog.StoreOptions{
		IMR: reg.imr, Alg: reg.alg, MaxRecords: cfg.RuntimeLogMaxRecords})
	if err != nil {
		msg := "Runtime log cannot be used: workloads will not be measured until the node reboots (its register resets) or the log is restored"
		var re *runtimelog.ReconcileError
		if errors.As(err, &re) {
			msg = "Runtime log does not match the register: workloads will not be measured"
		}
		log.Error(msg, "path", cfg.RuntimeLogPath, "error", err)
		m.storeErr = fmt.Errorf("runtime log %s: %w", cfg.RuntimeLogPath, err)
		return m, nil
	}
	if rec.DroppedTail > 0 || rec.Rotated {
		log.Warn("Runtime log repaired", "path", cfg.RuntimeLogPath, "records", rec.Records,
			"dropped_bytes", rec.DroppedTail, "previous_boot_log_moved", rec.Rotated)
	}
	m.store = store
	for _, w := range store.Workloads() {
		m.seen[identityOf(w)] = true
		if k := containerKey(w); k != "" {
			m.added[k]++
		}
	}
	for _, n := range store.Notices() {
		if n.Kind == runtimelog.NoticeQuota {
			m.added[n.Subject] = max(m.added[n.Subject], m.quotaUID, m.quotaContainer)
		}
	}
	if n, ok := store.Full(); ok {
		m.warnFull(n.Record)
	}
	return m, nil
}

// warnFull logs, once, that the log is full. Called with mu held or
// before the measurer is shared.
func (m *measurer) warnFull(record int) {
	if m.warnedFull {
		return
	}
	m.warnedFull = true
	m.log.Warn("Runtime log is full: new workloads are attested but not measured until the node reboots; the server sees runtime:log_full",
		"full_since_record", record, "capacity_records", m.store.Capacity())
}

// runtimeRegister picks RTMR3 (SHA-384) on TDX and the simulator, the
// configured PCR (SHA-256) on a TPM.
func runtimeRegister(p tee.Provider, pcr cctrusted.PCR) (*register, error) {
	inner := tee.Unwrap(p)
	if x, ok := inner.(rtmrExtender); ok {
		return &register{p: p, imr: cctrusted.RTMR(3).IMR(), alg: cctrusted.AlgSHA384,
			extend: func(ctx context.Context, d []byte) error {
				if len(d) != 48 {
					return fmt.Errorf("rtmr3 digest is %d bytes, want 48", len(d))
				}
				return x.ExtendRTMR(ctx, 3, [48]byte(d))
			}}, nil
	}
	if x, ok := inner.(pcrExtender); ok {
		if rp, ok := inner.(interface{ RuntimePCR() cctrusted.PCR }); ok && pcr == 0 {
			pcr = rp.RuntimePCR()
		}
		return &register{p: p, imr: pcr.IMR(), alg: cctrusted.AlgSHA256,
			extend: func(ctx context.Context, d []byte) error {
				return x.Extend(ctx, pcr, cctrusted.AlgSHA256, d)
			}}, nil
	}
	return nil, fmt.Errorf("the %s TEE offers no runtime register to extend", p.TEE())
}

func identityOf(w runtimelog.Workload) string {
	return fmt.Sprintf("%x/%s", w.ExeSHA256, w.ContainerID)
}

// containerKey is the caller key a record is charged to besides its user:
// the pod on Kubernetes (a restarted container gets a new ID, its pod
// keeps its UID), else the container, else none (a host process).
func containerKey(w runtimelog.Workload) string {
	switch {
	case w.PodUID != "":
		return "pod:" + w.PodUID
	case w.ContainerID != "":
		return "container:" + w.ContainerID
	}
	return ""
}

// measure records w the first time its identity is seen and returns the
// measured selector once the register holds the record (now or from an
// earlier attestation). A workload it does not record gets an unmeasured
// selector, and the error says why when it is worth a log line.
//
// Each new record is charged to the caller's real UID and to its pod or
// container; a caller at either quota adds no record, and the first time
// a key reaches its quota one quota notice goes into the log, so the server
// knows the log is incomplete. When the log is full, nothing is added.
func (m *measurer) measure(ctx context.Context, w *workload, now time.Time) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.store == nil {
		return unmeasuredLogUnusable, m.storeErr
	}
	id := w.identity()
	if m.seen[id] {
		return m.selector, nil
	}
	rec := w.record(now).Bounded()
	uidKey := "uid:" + strconv.FormatUint(uint64(w.status.UID[0]), 10)
	ctrKey := containerKey(rec)
	over := ""
	switch {
	case m.added[uidKey] >= m.quotaUID:
		over = uidKey
	case ctrKey != "" && m.added[ctrKey] >= m.quotaContainer:
		over = ctrKey
	}
	if over != "" {
		err := m.store.NoteQuota(ctx, over, now)
		if errors.Is(err, runtimelog.ErrFull) {
			return m.full(err)
		}
		if err != nil {
			return unmeasuredLogError, err
		}
		if m.added[over] == m.quotaFor(over) {
			m.added[over]++ // warn once per key
			m.log.Warn("Runtime log quota reached: this caller's new workloads are attested but not measured; the server sees runtime:incomplete",
				"caller", over, "quota", m.quotaFor(over))
		}
		return unmeasuredQuota, nil
	}
	if _, err := m.store.Append(ctx, rec); err != nil {
		if errors.Is(err, runtimelog.ErrFull) {
			return m.full(err)
		}
		return unmeasuredLogError, err
	}
	m.seen[id] = true
	m.added[uidKey]++
	if ctrKey != "" {
		m.added[ctrKey]++
	}
	return m.selector, nil
}

func (m *measurer) quotaFor(key string) int {
	if strings.HasPrefix(key, "uid:") {
		return m.quotaUID
	}
	return m.quotaContainer
}

// full is measure's answer once the log is full: warned about once, not
// an error on every attestation.
func (m *measurer) full(err error) (string, error) {
	if n, ok := m.store.Full(); ok {
		m.warnFull(n.Record)
	} else if !m.warnedFull {
		m.warnedFull = true
		m.log.Warn("Runtime log is full: new workloads are attested but not measured until the node reboots", "error", err)
	}
	return unmeasuredLogFull, nil
}

func (m *measurer) close() error { return m.provider.Close() }
