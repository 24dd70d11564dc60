package conf

import (
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// AgentNodeAttestor is the agent-side node attestor's plugin_data.
type AgentNodeAttestor struct {
	// TEE selects the provider; TEEAuto detects Azure TDX (from the
	// vTPM's HCL report), then TDX, then TPM, and never selects the
	// simulator.
	TEE cctrusted.TEE
	// HostRoot prefixes the device and firmware paths of TDX and TPM, for
	// agents running in a container with the host's / mounted elsewhere.
	// Empty means "/".
	HostRoot string
	TDX      AgentTDX
	TPM      AgentTPM
	Sim      AgentSim
	// AzureTDX configures an Azure TDX guest (tee azure_tdx, or auto
	// when it detects one).
	AzureTDX AgentAzureTDX
	// Logs are the event logs to send; a log that does not apply to the
	// TEE in use (ccel on a TPM node, tpm on a TDX node) is skipped.
	Logs []LogKind
	// InstanceIDPath holds the agent's random TDX instance ID. It is the
	// agent's own state, so it is not under HostRoot.
	InstanceIDPath string
	Compression    Compression
	// RuntimeLogPath is the runtime log the workload attestor appends to;
	// like InstanceIDPath it is not under HostRoot.
	RuntimeLogPath string
}

// AgentTDX holds TDX device and firmware paths, all absolute and resolved
// under HostRoot (see HostPath).
type AgentTDX struct {
	ConfigfsTSMPath string // default /sys/kernel/config/tsm/report
	DevicePath      string // default /dev/tdx_guest
	CCELPath        string // default /sys/firmware/acpi/tables/data/CCEL
	CCELTablePath   string // default /sys/firmware/acpi/tables/CCEL
	// IMAPath is the binary IMA list; empty means the provider probes the
	// two places kernels put it (security/ima and integrity/ima).
	IMAPath string
}

// AKType is the TPM attestation key algorithm.
type AKType string

// The AK types.
const (
	AKTypeECC AKType = "ecc"
	AKTypeRSA AKType = "rsa"
)

// AgentTPM configures the TPM provider.
type AgentTPM struct {
	// Device is a character device (resolved under HostRoot) or
	// tcp://host:port for a software TPM.
	Device string
	// AKHandle is a persistent AK handle (0x81xxxxxx); 0 creates a
	// transient AK for each attestation.
	AKHandle uint32
	AKType   AKType
	// EKNVIndex holds the EK certificate; the default is the TCG index for
	// AKType's algorithm (0x01c0000a ECC, 0x01c00002 RSA).
	EKNVIndex uint32
	// RuntimePCR is the PCR the runtime log extends (16..23).
	RuntimePCR cctrusted.PCR
	// PCRs are quoted, ascending; always includes RuntimePCR.
	PCRs []cctrusted.PCR
}

// AgentSim configures the simulated TEE (tee = "sim" only).
type AgentSim struct {
	Dir string
}

// AgentAzureTDX configures the Azure TDX guest's metadata service client.
type AgentAzureTDX struct {
	// IMDSURL is the TD quote endpoint of the instance metadata service.
	IMDSURL string
	// IMDSTimeout bounds each request to it.
	IMDSTimeout time.Duration
}

// Defaults of the Azure TDX guest: the link-local metadata service every
// Azure VM has, and a timeout a healthy service never comes near.
const (
	DefaultIMDSURL     = "http://169.254.169.254/acc/tdquote"
	DefaultIMDSTimeout = 5 * time.Second
)

// TCG EK certificate NV indices (TCG EK Credential Profile).
const (
	ekNVIndexRSA = 0x01c00002
	ekNVIndexECC = 0x01c0000a
)

// HostPath resolves an absolute host path under HostRoot.
func (c *AgentNodeAttestor) HostPath(p string) string {
	if c.HostRoot == "" || c.HostRoot == "/" {
		return p
	}
	return path.Join(c.HostRoot, p)
}

type rawAgent struct {
	TEE            string        `hcl:"tee"`
	HostRoot       string        `hcl:"host_root"`
	TDX            rawAgentTDX   `hcl:"tdx"`
	TPM            rawAgentTPM   `hcl:"tpm"`
	Sim            rawSim        `hcl:"sim"`
	AzureTDX       rawAgentAzure `hcl:"azure_tdx"`
	Logs           []string      `hcl:"logs"`
	InstanceIDPath string        `hcl:"instance_id_path"`
	Compression    string        `hcl:"compression"`
	RuntimeLogPath string        `hcl:"runtime_log_path"`
}

type rawAgentTDX struct {
	ConfigfsTSMPath string `hcl:"configfs_tsm_path"`
	DevicePath      string `hcl:"device_path"`
	CCELPath        string `hcl:"ccel_path"`
	CCELTablePath   string `hcl:"ccel_table_path"`
	IMAPath         string `hcl:"ima_path"`
}

type rawAgentTPM struct {
	Device     string `hcl:"device"`
	AKHandle   int    `hcl:"ak_handle"`
	AKType     string `hcl:"ak_type"`
	EKNVIndex  int    `hcl:"ek_nv_index"`
	RuntimePCR int    `hcl:"runtime_pcr"`
	PCRs       []int  `hcl:"pcrs"`
}

type rawAgentAzure struct {
	IMDSURL     string `hcl:"imds_url"`
	IMDSTimeout string `hcl:"imds_timeout"`
}

type rawSim struct {
	Dir string `hcl:"dir"`
}

// ParseAgentNodeAttestor parses, defaults and validates the agent node
// attestor's plugin_data.
func ParseAgentNodeAttestor(src string) (*AgentNodeAttestor, error) {
	var errs errList
	d := newDoc("plugin_data", &errs)
	var r rawAgent
	if !parseDoc(d, src, MaxConfigBytes, &r) {
		return nil, errs.err()
	}
	c := &AgentNodeAttestor{TEE: TEEAuto, Compression: CompressionZstd}
	if d.has("tee") {
		c.TEE, _ = oneOf(d, "tee", r.TEE, TEEAuto, cctrusted.TEEAzureTDX, cctrusted.TEETDX, cctrusted.TEETPM, cctrusted.TEESim)
	}
	c.HostRoot = absPath(d, "host_root", r.HostRoot)
	c.TDX = AgentTDX{
		ConfigfsTSMPath: orDefault(absPath(d, "tdx.configfs_tsm_path", r.TDX.ConfigfsTSMPath), "/sys/kernel/config/tsm/report"),
		DevicePath:      orDefault(absPath(d, "tdx.device_path", r.TDX.DevicePath), "/dev/tdx_guest"),
		CCELPath:        orDefault(absPath(d, "tdx.ccel_path", r.TDX.CCELPath), "/sys/firmware/acpi/tables/data/CCEL"),
		CCELTablePath:   orDefault(absPath(d, "tdx.ccel_table_path", r.TDX.CCELTablePath), "/sys/firmware/acpi/tables/CCEL"),
		IMAPath:         absPath(d, "tdx.ima_path", r.TDX.IMAPath),
	}
	c.TPM = agentTPM(d, r.TPM)
	if d.has("sim") && c.TEE != cctrusted.TEESim {
		d.errf("sim", "only used with tee = \"sim\" (auto never selects the simulator)")
	}
	c.Sim.Dir = absPath(d, "sim.dir", r.Sim.Dir)
	if c.TEE == cctrusted.TEESim && c.Sim.Dir == "" && !d.has("sim.dir") {
		d.errLine(d.line("tee"), "tee = \"sim\" needs sim { dir = \"...\" }")
	}
	c.AzureTDX = agentAzure(d, r.AzureTDX, c.TEE)
	c.Logs = logs(d, r.Logs, c.TEE)
	c.InstanceIDPath = orDefault(absPath(d, "instance_id_path", r.InstanceIDPath), DefaultInstanceIDPath)
	if d.has("compression") {
		c.Compression, _ = oneOf(d, "compression", r.Compression, CompressionNone, CompressionZstd, CompressionGzip)
	}
	c.RuntimeLogPath = orDefault(absPath(d, "runtime_log_path", r.RuntimeLogPath), DefaultRuntimeLogPath)
	if !errs.empty() {
		return nil, errs.err()
	}
	return c, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func agentAzure(d *doc, r rawAgentAzure, tee cctrusted.TEE) AgentAzureTDX {
	a := AgentAzureTDX{
		IMDSURL:     DefaultIMDSURL,
		IMDSTimeout: duration(d, "azure_tdx.imds_timeout", r.IMDSTimeout, DefaultIMDSTimeout, 100*time.Millisecond, time.Minute),
	}
	if d.has("azure_tdx") && tee != TEEAuto && tee != cctrusted.TEEAzureTDX {
		d.errf("azure_tdx", "only used with tee = \"azure_tdx\" or \"auto\"")
	}
	if d.has("azure_tdx.imds_url") {
		if u := httpURL(d, "azure_tdx.imds_url", r.IMDSURL); u != "" {
			a.IMDSURL = u
		}
	}
	return a
}

func agentTPM(d *doc, r rawAgentTPM) AgentTPM {
	t := AgentTPM{
		Device:     tpmDevice(d, "tpm.device", r.Device),
		AKType:     AKTypeECC,
		RuntimePCR: cctrusted.PCR(runtimePCR(d, "tpm.runtime_pcr", r.RuntimePCR)),
	}
	if d.has("tpm.ak_type") {
		t.AKType, _ = oneOf(d, "tpm.ak_type", r.AKType, AKTypeECC, AKTypeRSA)
	}
	if d.has("tpm.ak_handle") {
		if r.AKHandle < 0x81000000 || r.AKHandle > 0x81ffffff {
			d.errf("tpm.ak_handle", "%#x is not a persistent handle (0x81000000..0x81ffffff)", r.AKHandle)
		} else {
			t.AKHandle = uint32(r.AKHandle)
		}
	}
	t.EKNVIndex = ekNVIndexECC
	if t.AKType == AKTypeRSA {
		t.EKNVIndex = ekNVIndexRSA
	}
	if d.has("tpm.ek_nv_index") {
		if r.EKNVIndex < 0x01000000 || r.EKNVIndex > 0x01ffffff {
			d.errf("tpm.ek_nv_index", "%#x is not an NV index (0x01000000..0x01ffffff)", r.EKNVIndex)
		} else {
			t.EKNVIndex = uint32(r.EKNVIndex)
		}
	}
	if !d.has("tpm.pcrs") {
		for i := range 16 {
			t.PCRs = append(t.PCRs, cctrusted.PCR(i))
		}
	} else if len(r.PCRs) == 0 {
		d.errf("tpm.pcrs", "empty list: remove the key for the default (0..15 and the runtime PCR)")
	}
	for i, p := range r.PCRs {
		key := fmt.Sprintf("tpm.pcrs[%d]", i)
		switch {
		case p < 0 || p >= cctrusted.NumPCRs:
			d.errf(key, "%d is not a PCR (0..23)", p)
		case slices.Contains(t.PCRs, cctrusted.PCR(p)):
			d.errf(key, "PCR %d is listed twice", p)
		default:
			t.PCRs = append(t.PCRs, cctrusted.PCR(p))
		}
	}
	if !slices.Contains(t.PCRs, t.RuntimePCR) {
		t.PCRs = append(t.PCRs, t.RuntimePCR)
	}
	slices.Sort(t.PCRs)
	return t
}

func logs(d *doc, vals []string, tee cctrusted.TEE) []LogKind {
	if !d.has("logs") {
		return []LogKind{LogCCEL, LogTPM, LogIMA, LogRuntime}
	}
	if len(vals) == 0 {
		d.errf("logs", "empty list: remove the key to send every log")
		return nil
	}
	var out []LogKind
	for i, v := range vals {
		key := fmt.Sprintf("logs[%d]", i)
		k, ok := oneOf(d, key, v, LogCCEL, LogTPM, LogIMA, LogRuntime)
		switch {
		case !ok:
		case slices.Contains(out, k):
			d.errf(key, "%q is listed twice", v)
		case tee == cctrusted.TEETDX && k == LogTPM, (tee == cctrusted.TEETPM || tee == cctrusted.TEEAzureTDX) && k == LogCCEL:
			d.errf(key, "%q does not exist on tee %q", v, tee)
		default:
			out = append(out, k)
		}
	}
	return out
}
