# Example policy file (policy_file in server-tdx.conf), generated from a real
# TDX VM's quote and CCEL (testdata/tdx) with:
#   ccnp policy generate --quote cos-113-tdx-quote.dat --ccel ccel_data.dat --ccel-table ccel_table.dat --name cos-113
policy "cos-113" {
  enforce = true
  tee = ["tdx"]
  mrtd = ["dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a"]
  rtmr0 = ["3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6"]
  rtmr1 = ["f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1"]
  rtmr2 = ["4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1"]
  allow_debug = false
  secure_boot = false
  kernel_cmdline = ["/syslinux/vmlinuz.A init=/usr/lib/systemd/systemd rootwait ro noresume loglevel=7 console=tty1 console=ttyS0,115200 security=apparmor virtio_net.napi_tx=1 nmi_watchdog=0 csm.disabled=1 loadpin.exclude=kernel-module,firmware modules-load=loadpin_trigger firmware_class.path=/var/lib/nvidia/firmware module.sig_enforce=1 dm_verity.error_behavior=3 dm_verity.max_bios=-1 dm_verity.dev_wait=1 i915.modeset=1 cros_efi root=/dev/dm-0 \"dm-mod.create=vroot,,,ro,0 4077568 verity 0 PARTUUID=F981B9DF-D3B0-A349-9594-C1B5B28A3BEE PARTUUID=F981B9DF-D3B0-A349-9594-C1B5B28A3BEE 4096 4096 509696 509696 sha256 2a0357a89582144472ca882632611094c66babdb6486d5d7b49597638bf52b12 5d0efafbace0a8274f4875002856103d582a438bd0c479f9d379deae00e66fa0\""]
}
