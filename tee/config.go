package tee

import (
	"path"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/azure"
	"github.com/ccnp-spire/ccnp-spire/tee/tdx"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
)

// ForNodeAttestor is the TEE the node attestor's plugin_data selects, for
// Open. The node attestor and `ccnp evidence collect` use it, so the
// evidence the CLI records comes from the TEE the plugin would open.
func ForNodeAttestor(c *conf.AgentNodeAttestor) Config {
	cfg := fromConf(c.TEE, c.HostRoot, c.Sim.Dir,
		tdx.Options{
			CCELPath:      c.TDX.CCELPath,
			CCELTablePath: c.TDX.CCELTablePath,
			IMAPath:       c.TDX.IMAPath,
		},
		tpm.Options{
			Device:    c.TPM.Device,
			AKType:    string(c.TPM.AKType),
			AKHandle:  c.TPM.AKHandle,
			PersistAK: c.TPM.AKHandle != 0,
			// The EK certificate index defaults by ak_type (conf), so the
			// EK is the one of the same algorithm.
			EKType:     string(c.TPM.AKType),
			EKNVIndex:  c.TPM.EKNVIndex,
			RuntimePCR: c.TPM.RuntimePCR,
			QuotePCRs:  c.TPM.PCRs,
		})
	cfg.IMDS = azure.IMDSOptions{URL: c.AzureTDX.IMDSURL, Timeout: c.AzureTDX.IMDSTimeout}
	return cfg
}

// ForWorkloadAttestor is the TEE whose runtime register the workload
// attestor's plugin_data selects, for Open. It must be the one the node
// attestor on the same node opens, or the runtime log and the register the
// server replays it against would belong to different TEEs.
func ForWorkloadAttestor(c *conf.WorkloadAttestor) Config {
	return fromConf(c.TEE, c.HostRoot, c.SimDir, tdx.Options{},
		tpm.Options{Device: c.TPMDevice, RuntimePCR: c.RuntimePCR})
}

// fromConf is the one translation of agent configuration into providers'
// options. Paths in plugin_data are absolute host paths: the TDX provider
// wants them relative to HostRoot and resolves them itself, while a TPM
// character device is opened as given and so is resolved under host_root
// here (a tcp:// TPM is a network address, not a path).
func fromConf(t cctrusted.TEE, hostRoot, simDir string, x tdx.Options, m tpm.Options) Config {
	x.CCELPath = relative(x.CCELPath)
	x.CCELTablePath = relative(x.CCELTablePath)
	x.IMAPath = relative(x.IMAPath)
	if m.Device == "" {
		m.Device = tpm.DefaultDevice
	}
	if !strings.HasPrefix(m.Device, "tcp://") && hostRoot != "" && hostRoot != "/" {
		m.Device = path.Join(hostRoot, m.Device)
	}
	return Config{TEE: t, HostRoot: hostRoot, TDX: x, TPM: m, SimDir: simDir}
}

func relative(p string) string { return strings.TrimPrefix(p, "/") }
