// Package tee opens the TEE a node runs in, by name or by probing: an Azure
// TDX paravisor's vTPM first (recognised only by the HCL report in its NV
// index 0x01400001), then Intel TDX, then a TPM. The simulated TEE is opened only when asked for by name,
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
	"github.com/ccnp-spire/ccnp-spire/tee/azure"
	"github.com/ccnp-spire/ccnp-spire/tee/tdx"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
)

// Config says which TEE to open and where its interfaces are.
type Config struct {
	// TEE is azure_tdx, tdx, tpm or sim; empty or conf.TEEAuto detects
	// Azure TDX, then TDX, then TPM.
	TEE cctrusted.TEE
	// HostRoot prefixes host paths (/sys, /dev) for agents in containers.
	HostRoot string
	// TDX options; HostRoot above applies when theirs is empty.
	TDX tdx.Options
	// TPM options; HostRoot above applies when theirs is empty.
	TPM tpm.Options
	// SimDir is the simulated TEE's state directory (TEE = sim only).
	SimDir string
	// IMDS is the metadata service an Azure TDX guest gets its TD quote
	// from (azure_tdx only; the vTPM is TPM.Device).
	IMDS azure.IMDSOptions
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
	case cctrusted.TEEAzureTDX:
		p, err := openAzure(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("tee azure_tdx: %w", err)
		}
		return p, nil
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
	return nil, fmt.Errorf("tee %q: want auto, azure_tdx, tdx, tpm or sim", cfg.TEE)
}

// openAzure opens an Azure TDX guest. Its quote always covers all 24
// SHA-256 PCRs, as Azure's own attestation does, whatever the TPM node's
// PCR list says; the AK is the paravisor's.
func openAzure(ctx context.Context, cfg Config) (*azure.Provider, error) {
	o := cfg.TPM
	o.QuotePCRs = nil
	return azure.Open(ctx, azure.Options{TPM: o, IMDS: cfg.IMDS})
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

// detect tries an Azure paravisor's vTPM, then TDX, then a TPM, and says
// what it probed when none is there. Azure comes first because its guest
// also has a TPM (the vTPM) that would otherwise be opened as a plain one;
// it is recognised only by what the vTPM's HCL report index holds, and a
// TPM whose index is absent or holds anything else is not Azure. The
// simulator is never a candidate.
func detect(ctx context.Context, cfg Config) (Provider, error) {
	var probes []string
	dev := cfg.TPM.Device
	if dev == "" {
		dev = tpm.DefaultDevice
	}
	tpmErr := error(nil)
	if !strings.HasPrefix(dev, "tcp://") {
		// A missing device node is the common case on non-TPM hosts; say so
		// plainly instead of surfacing an open error from deep inside go-tpm.
		// The device path is used as given (not under HostRoot), as tpm.Open does.
		if _, err := os.Stat(dev); err != nil {
			tpmErr = fmt.Errorf("%s: %v", dev, errors.Unwrap(err))
		}
	}
	if tpmErr == nil {
		_, err := azure.Probe(ctx, dev)
		switch {
		case err == nil:
			// The vTPM holds an HCL report: this is an Azure guest, and
			// failing to open it is an error, never a fallback to a
			// plain TPM.
			p, err := openAzure(ctx, cfg)
			if err != nil {
				return nil, fmt.Errorf("tee azure_tdx (detected from NV index 0x%08x of %s): %w", azure.HCLReportNVIndex, dev, err)
			}
			return p, nil
		case errors.Is(err, azure.ErrNotAzure):
			probes = append(probes, "azure_tdx: "+err.Error())
		default:
			// Unreadable: whether this is an Azure vTPM is unknown, so it
			// is not opened as a plain TPM either (that could downgrade
			// an Azure guest).
			probes = append(probes, "azure_tdx: "+err.Error())
			tpmErr = fmt.Errorf("not opened: cannot tell whether it is an Azure vTPM: %w", err)
		}
	} else {
		probes = append(probes, "azure_tdx: no TPM: "+tpmErr.Error())
	}
	if p, err := tdx.Open(ctx, cfg.TDX); err == nil {
		return noClose{p}, nil
	} else {
		probes = append(probes, "tdx: "+err.Error())
	}
	if tpmErr != nil {
		probes = append(probes, "tpm: "+tpmErr.Error())
		return nil, &DetectError{Probes: probes}
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
