package nodeattestor

import (
	"fmt"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tdx"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
)

// Where the TDX provider looks for its quote and TDREPORT interfaces. It
// always looks there under host_root, so a config naming other places would
// be silently ignored: checkSupported refuses that instead.
const (
	tdxConfigfsTSMPath = "/" + tdx.TSMReportPath
	tdxDevicePath      = "/" + tdx.DefaultDevicePath
)

// checkSupported refuses config values that parse but that this build
// cannot honour, naming the key.
func checkSupported(c *conf.AgentNodeAttestor) error {
	if c.TEE == conf.TEESim && !simAvailable() {
		return fmt.Errorf("plugin_data: tee: %q: %w", c.TEE, tee.ErrSimNotLinked)
	}
	if c.TDX.ConfigfsTSMPath != tdxConfigfsTSMPath {
		return fmt.Errorf("plugin_data: tdx.configfs_tsm_path: %q is not supported: the TDX provider uses %s under host_root", c.TDX.ConfigfsTSMPath, tdxConfigfsTSMPath)
	}
	if c.TDX.DevicePath != tdxDevicePath {
		return fmt.Errorf("plugin_data: tdx.device_path: %q is not supported: the TDX provider uses %s under host_root", c.TDX.DevicePath, tdxDevicePath)
	}
	return nil
}

// simAvailable says whether this binary links the simulated TEE; a variable
// so that tests, which always link it, can check the production refusal.
var simAvailable = tee.SimAvailable

// TEEConfig translates the plugin's configuration into what tee.Open takes.
// Paths in plugin_data are absolute host paths; the TDX provider wants them
// relative to host_root and resolves them itself, while a TPM character
// device is opened as given and so is resolved under host_root here.
func TEEConfig(c *conf.AgentNodeAttestor) tee.Config {
	dev := c.TPM.Device
	if !strings.HasPrefix(dev, "tcp://") {
		dev = c.HostPath(dev)
	}
	return tee.Config{
		TEE:      string(c.TEE),
		HostRoot: c.HostRoot,
		TDX: tdx.Options{
			CCELPath:      relative(c.TDX.CCELPath),
			CCELTablePath: relative(c.TDX.CCELTablePath),
			IMAPath:       relative(c.TDX.IMAPath),
		},
		TPM: tpm.Options{
			Device:    dev,
			AKType:    string(c.TPM.AKType),
			AKHandle:  c.TPM.AKHandle,
			PersistAK: c.TPM.AKHandle != 0,
			// The EK certificate index defaults by ak_type (conf), so the
			// EK is the one of the same algorithm.
			EKType:     string(c.TPM.AKType),
			EKNVIndex:  c.TPM.EKNVIndex,
			RuntimePCR: c.TPM.RuntimePCR,
			QuotePCRs:  c.TPM.PCRs,
		},
		SimDir: c.Sim.Dir,
	}
}

func relative(p string) string { return strings.TrimPrefix(p, "/") }

// wireLog maps a configured log name to its protocol kind.
func wireLog(k conf.LogKind) evidencepb.LogKind {
	switch k {
	case conf.LogCCEL:
		return evidencepb.LogKind_LOG_KIND_CCEL
	case conf.LogTPM:
		return evidencepb.LogKind_LOG_KIND_TPM
	case conf.LogIMA:
		return evidencepb.LogKind_LOG_KIND_IMA
	case conf.LogRuntime:
		return evidencepb.LogKind_LOG_KIND_RUNTIME
	}
	return evidencepb.LogKind_LOG_KIND_UNSPECIFIED
}

// wireEncoding maps the configured compression to its protocol encoding.
func wireEncoding(c conf.Compression) evidencepb.Encoding {
	switch c {
	case conf.CompressionZstd:
		return evidencepb.Encoding_ENCODING_ZSTD
	case conf.CompressionGzip:
		return evidencepb.Encoding_ENCODING_GZIP
	}
	return evidencepb.Encoding_ENCODING_NONE
}
