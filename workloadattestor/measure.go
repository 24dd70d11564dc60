package workloadattestor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
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
	mode     conf.MeasureMode
	provider tee.Provider
	alg      cctrusted.Algorithm
	selector string // "measured:rtmr3" or "measured:pcr<N>"

	mu       sync.Mutex
	store    *runtimelog.Store
	storeErr error // why there is no store
	seen     map[string]bool
}

// openMeasurer opens the TEE and the runtime log (reconciled with the
// register). A log that cannot be reconciled leaves the measurer without a
// store: attestations go on without the measured selector.
func openMeasurer(ctx context.Context, cfg *conf.WorkloadAttestor, log hclog.Logger) (*measurer, error) {
	p, err := tee.Open(ctx, tee.Config{
		TEE:      string(cfg.TEE),
		HostRoot: cfg.HostRoot,
		SimDir:   cfg.SimDir,
		TPM:      tpm.Options{Device: cfg.TPMDevice, RuntimePCR: cfg.RuntimePCR},
	})
	if err != nil {
		return nil, fmt.Errorf("opening the TEE: %w", err)
	}
	m := &measurer{mode: cfg.Measure, provider: p, seen: make(map[string]bool)}
	reg, err := runtimeRegister(p, cfg.RuntimePCR)
	if err != nil {
		p.Close()
		return nil, err
	}
	m.alg = reg.alg
	m.selector = "measured:" + reg.imr.String()
	store, rec, err := runtimelog.OpenStore(ctx, cfg.RuntimeLogPath, reg, runtimelog.StoreOptions{IMR: reg.imr, Alg: reg.alg})
	if err != nil {
		var re *runtimelog.ReconcileError
		if !errors.As(err, &re) {
			p.Close()
			return nil, fmt.Errorf("opening the runtime log: %w", err)
		}
		log.Error("Runtime log does not match the register: workloads will not be measured", "error", err)
		m.storeErr = err
		return m, nil
	}
	if rec.DroppedTail > 0 || rec.Rotated {
		log.Warn("Runtime log repaired", "path", cfg.RuntimeLogPath, "records", rec.Records,
			"dropped_bytes", rec.DroppedTail, "previous_boot_log_moved", rec.Rotated)
	}
	m.store = store
	for _, w := range store.Workloads() {
		m.seen[identityOf(w)] = true
	}
	return m, nil
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

// measure records w as the mode says and returns the measured selector once
// the register holds the record (now or from an earlier attestation).
func (m *measurer) measure(ctx context.Context, w *workload, now time.Time) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.store == nil {
		return "", m.storeErr
	}
	id := w.identity()
	if m.mode == conf.MeasureFirstSeen && m.seen[id] {
		return m.selector, nil
	}
	if _, err := m.store.Append(ctx, w.record(now)); err != nil {
		return "", err
	}
	m.seen[id] = true
	return m.selector, nil
}

func (m *measurer) close() error { return m.provider.Close() }
