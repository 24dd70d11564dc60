// Package tee opens the TEE a node runs in, by name or by probing: Intel TDX
// first, then a TPM. The simulated TEE is opened only when asked for by name,
// so a misconfigured node can never fall back to a simulation, and only in
// binaries that link package tee/sim (it registers itself with RegisterSim):
// the production agent plugins do not, so on a production node a simulation
// cannot be opened at all.
package tee

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/tdx"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
)

// Config says which TEE to open and where its interfaces are.
type Config struct {
	// TEE is tdx, tpm or sim; empty or conf.TEEAuto detects TDX, then TPM.
	TEE cctrusted.TEE
	// HostRoot prefixes host paths (/sys, /dev) for agents in containers.
	HostRoot string
	// TDX options; HostRoot above applies when theirs is empty.
	TDX tdx.Options
	// TPM options; HostRoot above applies when theirs is empty.
	TPM tpm.Options
	// SimDir is the simulated TEE's state directory (TEE = sim only).
	SimDir string
}

// Provider is an open TEE: the CC Trusted API and a way to release it.
type Provider interface {
	cctrusted.Provider
	io.Closer
}

// Open opens the TEE cfg names, or detects one when cfg.TEE is auto or empty.
func Open(ctx context.Context, cfg Config) (Provider, error) {
	root := cfg.HostRoot
	if root == "" {
		root = "/"
	}
	if cfg.TDX.HostRoot == "" {
		cfg.TDX.HostRoot = root
	}
	if cfg.TPM.HostRoot == "" {
		cfg.TPM.HostRoot = root
	}
	switch cctrusted.TEE(strings.ToLower(string(cfg.TEE))) {
	case cctrusted.TEETDX:
		p, err := tdx.Open(ctx, cfg.TDX)
		if err != nil {
			return nil, fmt.Errorf("tee tdx: %w", err)
		}
		return noClose{p}, nil
	case cctrusted.TEETPM:
		p, err := tpm.Open(ctx, cfg.TPM)
		if err != nil {
			return nil, fmt.Errorf("tee tpm: %w", err)
		}
		return p, nil
	case cctrusted.TEESim:
		if simOpener == nil {
			return nil, ErrSimNotLinked
		}
		if cfg.SimDir == "" {
			return nil, errors.New("tee sim: no simulator directory given (sim dir)")
		}
		p, err := simOpener(ctx, cfg.SimDir)
		if err != nil {
			return nil, fmt.Errorf("tee sim: %w", err)
		}
		return noClose{p}, nil
	case "", conf.TEEAuto:
		return detect(ctx, cfg)
	}
	return nil, fmt.Errorf("tee %q: want auto, tdx, tpm or sim", cfg.TEE)
}

// ErrSimNotLinked is Open's answer to tee = sim in a binary built without
// the simulator.
var ErrSimNotLinked = errors.New("tee sim: this binary is built without the simulated TEE (production build); the demo and tests use binaries built with -tags ccnp_sim (make build puts them in .bin/sim/)")

// simOpener opens a simulated TEE; nil unless package tee/sim is linked in.
// Set only from init functions, before anything calls Open.
var simOpener func(ctx context.Context, dir string) (cctrusted.Provider, error)

// RegisterSim is called by package tee/sim's init so that Open can open the
// simulator without this package importing it: which binaries can run a
// simulation is then decided by what they import (see the agent plugins'
// ccnp_sim build tag), not by configuration alone.
func RegisterSim(open func(ctx context.Context, dir string) (cctrusted.Provider, error)) {
	simOpener = open
}

// SimAvailable reports whether this binary links the simulated TEE, so that
// a plugin can refuse tee = "sim" when it is configured, naming the key.
func SimAvailable() bool { return simOpener != nil }

// detect tries TDX, then TPM, and says what it probed when neither is there.
// The simulator is never a candidate.
func detect(ctx context.Context, cfg Config) (Provider, error) {
	var probes []string
	if p, err := tdx.Open(ctx, cfg.TDX); err == nil {
		return noClose{p}, nil
	} else {
		probes = append(probes, "tdx: "+err.Error())
	}
	dev := cfg.TPM.Device
	if dev == "" {
		dev = tpm.DefaultDevice
	}
	if !strings.HasPrefix(dev, "tcp://") {
		// A missing device node is the common case on non-TPM hosts; say so
		// plainly instead of surfacing an open error from deep inside go-tpm.
		// The device path is used as given (not under HostRoot), as tpm.Open does.
		if _, err := os.Stat(dev); err != nil {
			probes = append(probes, fmt.Sprintf("tpm: %s: %v", dev, errors.Unwrap(err)))
			return nil, &DetectError{Probes: probes}
		}
	}
	p, err := tpm.Open(ctx, cfg.TPM)
	if err == nil {
		return p, nil
	}
	probes = append(probes, "tpm: "+err.Error())
	return nil, &DetectError{Probes: probes}
}

// DetectError lists every TEE probed and why it was not usable.
type DetectError struct {
	Probes []string
}

func (e *DetectError) Error() string {
	return "no TEE found (the simulator is only used with tee = sim): " + strings.Join(e.Probes, "; ")
}

// noClose adapts providers that hold no open handles.
type noClose struct{ cctrusted.Provider }

func (noClose) Close() error { return nil }

// Unwrap returns the concrete provider behind p (for TEE-specific calls such
// as raw logs or the TPM's EK).
func Unwrap(p Provider) cctrusted.Provider {
	if n, ok := p.(noClose); ok {
		return n.Provider
	}
	return p
}
