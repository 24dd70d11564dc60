package nodeattestor

import (
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tdx"
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
	if c.TEE == cctrusted.TEESim && !simAvailable() {
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
