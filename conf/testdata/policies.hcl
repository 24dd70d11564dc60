# A policy_file: only policy blocks.
policy "fleet-2025" {
  tee                   = ["tdx", "sim"]
  accepted_tcb_statuses = ["UpToDate", "OutOfDate"]
  kernel_cmdline        = ["console=ttyS0 root=/dev/sda1"]
}
