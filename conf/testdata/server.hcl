# Full plugin_data of the ccnp server verifier: every key set.
tdx {
  trusted_roots_file = "/etc/spire/intel-sgx-root.pem"
  collateral {
    pcs_url   = "https://api.trustedservices.intel.com/tdx/certification/v4"
    cache_dir = "/var/lib/spire/ccnp-collateral"
    refresh   = "12h"
  }
  accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
  allow_debug           = false
}
tpm {
  ek_ca_files        = ["/etc/spire/ek-roots.pem"]
  ek_hash_allow_list = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
  ak_ca_files        = ["/etc/spire/ak-roots.pem"]
}
sim {
  trusted_root_file = "/etc/spire/sim-root.pem"
}
nonce_ttl           = "60s"
max_payload_bytes   = 16777216
challenge_timeout   = "30s"
agent_path_template = "/{{ .PluginName }}/{{ .TEE }}/{{ .ID }}"
require_policy      = true
policy_file         = "policies.hcl"

policy "golden" {
  enforce    = true
  tee        = ["tdx"]
  mrtd       = ["d2b2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8"]
  rtmr0      = ["0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30"]
  rtmr1      = ["1102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30"]
  rtmr2      = ["2102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30"]
  rtmr3      = ["3102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30"]
  mrconfigid = ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"]
  accepted_tcb_statuses = ["UpToDate"]
  allow_debug    = false
  secure_boot    = true
  kernel_cmdline = ["BOOT_IMAGE=/vmlinuz-6.8.0 root=/dev/vda1 ro console=ttyS0"]
  runtime {
    allowed_exe_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    allowed_containers = ["4f1c0e6b2a5d"]
  }
}

policy "tpm-canary" {
  enforce = false
  tee     = ["tpm"]
  pcr "7" {
    sha256 = ["b5710bf57d25623e4019027da116821fa99f5c81e9e38b87671cc574f9281439"]
  }
  pcr "0" {
    sha1   = ["a89fb8f88caa9590e6129b633b144a68514490d5"]
    sha256 = ["0f2d3a2a1adaa479aeeca8f5df76aadc41b862ea4a4d4e8f2d9cb6a35d8e4b8a"]
  }
}
