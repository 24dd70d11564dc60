# Full plugin_data of the ccnp agent node attestor: every key set.
tee       = "auto"
host_root = "/host"
tdx {
  configfs_tsm_path = "/sys/kernel/config/tsm/report"
  device_path       = "/dev/tdx_guest"
  ccel_path         = "/sys/firmware/acpi/tables/data/CCEL"
  ccel_table_path   = "/sys/firmware/acpi/tables/CCEL"
  ima_path          = "/sys/kernel/security/ima/binary_runtime_measurements"
}
tpm {
  device      = "/dev/tpmrm0"
  ak_handle   = 0x81010002
  ak_type     = "ecc"
  ek_nv_index = 0x01c0000a
  runtime_pcr = 23
  pcrs        = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]
}
logs             = ["ccel", "tpm", "ima", "runtime"]
instance_id_path = "/var/lib/spire/agent/ccnp_instance_id"
compression      = "zstd"
runtime_log_path = "/var/lib/spire/agent/ccnp_runtime.cel"
