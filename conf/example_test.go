package conf_test

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// A server's plugin_data: TDX with an on-premises PCCS, TPM nodes trusted
// by their EK certificate chain, two inline policies and more in a file.
// In server.conf this is the body of
//
//	NodeAttestor "ccnp" { plugin_cmd = "..." plugin_checksum = "..." plugin_data { ... } }
func ExampleParseServerVerifier() {
	const pluginData = `
tdx {
  # trusted_roots_file defaults to the Intel SGX Root CA.
  collateral {
    pccs_url  = "https://pccs.example.internal:8081/tdx/certification/v4"
    cache_dir = "/var/lib/spire/ccnp-collateral"
    refresh   = "12h"
  }
  accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
  allow_debug           = false
}
tpm {
  ek_ca_files = ["/etc/spire/ek-roots.pem"]
}
nonce_ttl           = "30s"
max_payload_bytes   = 8388608
challenge_timeout   = "20s"
agent_path_template = "/spire/agent/ccnp/{{ .TEE }}/{{ .ID }}"
require_policy      = true

policy "golden" {
  tee   = ["tdx"]
  mrtd  = ["d2b2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8"]
  rtmr0 = ["0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30"]
  secure_boot    = true
  kernel_cmdline = ["BOOT_IMAGE=/vmlinuz-6.8.0 root=/dev/vda1 ro console=ttyS0"]
  runtime {
    allowed_exe_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
  }
}

policy "canary" {
  enforce = false # warn only: selector policy_warn:canary on mismatch
  pcr "7" {
    sha256 = ["b5710bf57d25623e4019027da116821fa99f5c81e9e38b87671cc574f9281439"]
  }
}

policy_file = "/etc/spire/ccnp-policies.hcl"
`
	files := map[string]string{
		"/etc/spire/ccnp-policies.hcl": `
policy "fleet-2025" {
  tee                   = ["tdx"]
  accepted_tcb_statuses = ["UpToDate"]
}
`,
	}
	readFile := func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
	c, err := conf.ParseServerVerifier(pluginData, readFile)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("collateral:", c.TDX.Collateral.Source, c.TDX.Collateral.URL, c.TDX.Collateral.Refresh)
	fmt.Println("tcb:", c.TDX.AcceptedTCBStatuses, "debug:", c.TDX.AllowDebug)
	fmt.Println("nonce_ttl:", c.NonceTTL, "max_payload_bytes:", c.MaxPayloadBytes)
	id, _ := c.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "5f0c"})
	fmt.Println("agent path:", id)
	for _, p := range c.Policies {
		fmt.Printf("policy %s enforce=%t from %s\n", p.Name, p.Enforce, p.Source)
	}
	// Output:
	// collateral: pccs https://pccs.example.internal:8081/tdx/certification/v4 12h0m0s
	// tcb: [UpToDate SWHardeningNeeded] debug: false
	// nonce_ttl: 30s max_payload_bytes: 8388608
	// agent path: /spire/agent/ccnp/tdx/5f0c
	// policy golden enforce=true from plugin_data line 21
	// policy canary enforce=false from plugin_data line 32
	// policy fleet-2025 enforce=true from /etc/spire/ccnp-policies.hcl line 2
}

// An agent's plugin_data for a TDX node whose agent runs in a container with
// the host's root mounted at /host. In agent.conf this is the body of
// NodeAttestor "ccnp" { ... plugin_data { ... } }.
func ExampleParseAgentNodeAttestor() {
	const pluginData = `
tee       = "auto"
host_root = "/host"
tdx {
  configfs_tsm_path = "/sys/kernel/config/tsm/report"
  ima_path          = "/sys/kernel/security/ima/binary_runtime_measurements"
}
tpm {
  device      = "/dev/tpmrm0"
  ak_type     = "ecc"
  runtime_pcr = 23
}
logs             = ["ccel", "tpm", "ima", "runtime"]
instance_id_path = "/var/lib/spire/agent/ccnp_instance_id"
compression      = "zstd"
runtime_log_path = "/var/lib/spire/agent/ccnp_runtime.cel"
`
	c, err := conf.ParseAgentNodeAttestor(pluginData)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("tee:", c.TEE, "compression:", c.Compression, "logs:", c.Logs)
	fmt.Println("ccel:", c.HostPath(c.TDX.CCELPath))
	fmt.Printf("tpm: %s %s ek_nv_index=%#x pcrs=%v\n", c.HostPath(c.TPM.Device), c.TPM.AKType, c.TPM.EKNVIndex, c.TPM.PCRs)
	// Output:
	// tee: auto compression: zstd logs: [ccel tpm ima runtime]
	// ccel: /host/sys/firmware/acpi/tables/data/CCEL
	// tpm: /host/dev/tpmrm0 ecc ek_nv_index=0x1c0000a pcrs=[0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 23]
}

// A workload attestor's plugin_data.
func ExampleParseWorkloadAttestor() {
	c, err := conf.ParseWorkloadAttestor(`
host_root         = "/host"
measure           = "first_seen"
tee               = "tdx"
runtime_log_path  = "/var/lib/spire/agent/ccnp_runtime.cel"
digest_cache_size = 1024
ima_log_path      = "/sys/kernel/security/ima/binary_runtime_measurements"
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Measure, c.TEE, c.DigestCacheSize, c.DigestAlgs(c.TEE))
	// Output:
	// first_seen tdx 1024 [sha256 sha384]
}

// Errors name the source, the line and the key.
func ExampleParsePolicies_error() {
	_, err := conf.ParsePolicies(`
policy "golden" {
  rtmr1 = ["0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"]
  alow_debug = false
}
`, "policy.hcl")
	var ce *conf.Error
	if errors.As(err, &ce) {
		fmt.Println(ce.Line)
	}
	fmt.Println(err)
	// Output:
	// 4
	// policy.hcl: line 4: unknown key "alow_debug" in policy "golden" (did you mean "allow_debug"?)
}

// A policy renders back to HCL, for example to generate one from a golden
// node.
func ExamplePolicy_HCL() {
	p := conf.Policy{
		Name:          "golden",
		Enforce:       true,
		TEE:           []cctrusted.TEE{cctrusted.TEETDX},
		KernelCmdline: []string{"root=/dev/vda1 ro", "root=/dev/vda1 ro quiet"},
	}
	fmt.Print(p.HCL())
	fmt.Println(p.Validate())
	// Output:
	// policy "golden" {
	//   enforce = true
	//   tee = ["tdx"]
	//   kernel_cmdline = [
	//     "root=/dev/vda1 ro",
	//     "root=/dev/vda1 ro quiet",
	//   ]
	// }
	// <nil>
}
