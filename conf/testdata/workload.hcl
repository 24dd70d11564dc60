# Full plugin_data of the ccnp workload attestor: every key set.
host_root         = "/host"
measure           = "first_seen"
tee               = "tpm"
tpm_device        = "/dev/tpmrm0"
runtime_pcr       = 23
runtime_log_path  = "/var/lib/spire/agent/ccnp_runtime.cel"
digest_cache_size = 4096
exe_digest_algs   = ["sha256", "sha384"]
ima_log_path      = "/sys/kernel/security/ima/binary_runtime_measurements"
