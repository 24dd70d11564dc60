package conf_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func pcrRange(lo, hi int, extra ...int) []cctrusted.PCR {
	var out []cctrusted.PCR
	for i := lo; i <= hi; i++ {
		out = append(out, cctrusted.PCR(i))
	}
	for _, e := range extra {
		out = append(out, cctrusted.PCR(e))
	}
	return out
}

func TestAgentDefaults(t *testing.T) {
	c, err := conf.ParseAgentNodeAttestor("")
	if err != nil {
		t.Fatal(err)
	}
	want := &conf.AgentNodeAttestor{
		TEE: "auto",
		TDX: conf.AgentTDX{
			ConfigfsTSMPath: "/sys/kernel/config/tsm/report",
			DevicePath:      "/dev/tdx_guest",
			CCELPath:        "/sys/firmware/acpi/tables/data/CCEL",
			CCELTablePath:   "/sys/firmware/acpi/tables/CCEL",
		},
		TPM: conf.AgentTPM{
			Device:     "/dev/tpmrm0",
			AKType:     "ecc",
			EKNVIndex:  0x01c0000a, // TCG EK Credential Profile: ECC NIST P-256 EK certificate
			RuntimePCR: 23,
			PCRs:       pcrRange(0, 15, 23),
		},
		AzureTDX:       conf.AgentAzureTDX{IMDSURL: "http://169.254.169.254/acc/tdquote", IMDSTimeout: 5 * time.Second},
		Logs:           []conf.LogKind{"ccel", "tpm", "ima", "runtime"},
		InstanceIDPath: "/var/lib/ccnp-spire/instance_id",
		Compression:    "zstd",
		RuntimeLogPath: "/var/lib/ccnp-spire/runtime.cel",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if got := c.HostPath("/dev/tpmrm0"); got != "/dev/tpmrm0" {
		t.Errorf("HostPath without host_root = %q", got)
	}
}

func TestAgentKeys(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(*conf.AgentNodeAttestor) bool
	}{
		{"tee tdx", `tee = "tdx"`, func(c *conf.AgentNodeAttestor) bool { return c.TEE == cctrusted.TEETDX }},
		{"tee tpm", `tee = "tpm"`, func(c *conf.AgentNodeAttestor) bool { return c.TEE == cctrusted.TEETPM }},
		{"tee azure_tdx", "tee = \"azure_tdx\"\nazure_tdx {\n  imds_url = \"http://127.0.0.1:8080/acc/tdquote\"\n  imds_timeout = \"2s\"\n}", func(c *conf.AgentNodeAttestor) bool {
			return c.TEE == cctrusted.TEEAzureTDX && c.AzureTDX.IMDSURL == "http://127.0.0.1:8080/acc/tdquote" && c.AzureTDX.IMDSTimeout == 2*time.Second
		}},
		{"azure_tdx block with auto", "azure_tdx {\n  imds_timeout = \"500ms\"\n}", func(c *conf.AgentNodeAttestor) bool {
			return c.TEE == conf.TEEAuto && c.AzureTDX.IMDSURL == conf.DefaultIMDSURL && c.AzureTDX.IMDSTimeout == 500*time.Millisecond
		}},
		{"tee sim", "tee = \"sim\"\nsim { dir = \"/var/sim/\" }", func(c *conf.AgentNodeAttestor) bool { return c.TEE == cctrusted.TEESim && c.Sim.Dir == "/var/sim" }},
		{"host_root", `host_root = "/host"`, func(c *conf.AgentNodeAttestor) bool {
			return c.HostRoot == "/host" && c.HostPath(c.TDX.DevicePath) == "/host/dev/tdx_guest"
		}},
		{"host_root slash", `host_root = "/"`, func(c *conf.AgentNodeAttestor) bool { return c.HostPath("/dev/x") == "/dev/x" }},
		{"tdx paths", `tdx {
  configfs_tsm_path = "/a"
  device_path       = "/b"
  ccel_path         = "/c"
  ccel_table_path   = "/d"
  ima_path          = "/e"
}`, func(c *conf.AgentNodeAttestor) bool {
			return c.TDX == conf.AgentTDX{ConfigfsTSMPath: "/a", DevicePath: "/b", CCELPath: "/c", CCELTablePath: "/d", IMAPath: "/e"}
		}},
		{"tpm device tcp", `tpm { device = "tcp://127.0.0.1:2321" }`, func(c *conf.AgentNodeAttestor) bool { return c.TPM.Device == "tcp://127.0.0.1:2321" }},
		{"tpm device path", `tpm { device = "/dev/tpm0" }`, func(c *conf.AgentNodeAttestor) bool { return c.TPM.Device == "/dev/tpm0" }},
		{"ak_handle hex", `tpm { ak_handle = 0x81010002 }`, func(c *conf.AgentNodeAttestor) bool { return c.TPM.AKHandle == 0x81010002 }},
		{"ak_type rsa changes ek index", `tpm { ak_type = "rsa" }`, func(c *conf.AgentNodeAttestor) bool {
			return c.TPM.AKType == conf.AKTypeRSA && c.TPM.EKNVIndex == 0x01c00002
		}},
		{"ek_nv_index", `tpm { ek_nv_index = 0x01c00012 }`, func(c *conf.AgentNodeAttestor) bool { return c.TPM.EKNVIndex == 0x01c00012 }},
		{"runtime_pcr", `tpm { runtime_pcr = 16 }`, func(c *conf.AgentNodeAttestor) bool {
			return c.TPM.RuntimePCR == 16 && slices.Equal(c.TPM.PCRs, pcrRange(0, 16))
		}},
		{"runtime_pcr protected", `tpm { runtime_pcr = 15 }`, func(c *conf.AgentNodeAttestor) bool {
			return c.TPM.RuntimePCR == 15 && slices.Equal(c.TPM.PCRs, pcrRange(0, 15))
		}},
		{"pcrs sorted, runtime added", `tpm { pcrs = [7, 0, 4] }`, func(c *conf.AgentNodeAttestor) bool {
			return slices.Equal(c.TPM.PCRs, []cctrusted.PCR{0, 4, 7, 23})
		}},
		{"pcrs with runtime", `tpm { pcrs = [23, 7] }`, func(c *conf.AgentNodeAttestor) bool {
			return slices.Equal(c.TPM.PCRs, []cctrusted.PCR{7, 23})
		}},
		{"logs", `logs = ["runtime", "ima"]`, func(c *conf.AgentNodeAttestor) bool {
			return slices.Equal(c.Logs, []conf.LogKind{"runtime", "ima"})
		}},
		{"logs tdx", "tee = \"tdx\"\nlogs = [\"ccel\"]", func(c *conf.AgentNodeAttestor) bool { return slices.Equal(c.Logs, []conf.LogKind{"ccel"}) }},
		{"instance_id_path", `instance_id_path = "/data/id"`, func(c *conf.AgentNodeAttestor) bool { return c.InstanceIDPath == "/data/id" }},
		{"compression none", `compression = "none"`, func(c *conf.AgentNodeAttestor) bool { return c.Compression == conf.CompressionNone }},
		{"compression gzip", `compression = "gzip"`, func(c *conf.AgentNodeAttestor) bool { return c.Compression == conf.CompressionGzip }},
		{"runtime_log_path", `runtime_log_path = "/data/rt.cel"`, func(c *conf.AgentNodeAttestor) bool { return c.RuntimeLogPath == "/data/rt.cel" }},
		{"comments", "# c1\n// c2\n/* c3 */ tee = \"tpm\" # c4", func(c *conf.AgentNodeAttestor) bool { return c.TEE == cctrusted.TEETPM }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := conf.ParseAgentNodeAttestor(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestAgentErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		line  int
		parts []string
	}{
		{"unknown top", "\ncompresion = \"gzip\"", 2, []string{`unknown key "compresion" at top level`, `did you mean "compression"`}},
		{"unknown in tdx", "tdx {\n  ccel = \"/x\"\n}", 2, []string{`unknown key "ccel" in tdx`}},
		{"unknown in tpm", "tpm {\n\n  handle = 1\n}", 3, []string{`unknown key "handle" in tpm`}},
		{"unknown in sim", "tee = \"sim\"\nsim {\n  directory = \"/x\"\n}", 3, []string{`unknown key "directory" in sim`}},
		{"tee bad", "tee = \"sgx\"", 1, []string{"tee", `"sgx" is not one of "auto", "azure_tdx", "tdx", "tpm", "sim"`}},
		{"azure_tdx with tee tpm", "tee = \"tpm\"\nazure_tdx {\n  imds_timeout = \"2s\"\n}", 2, []string{"azure_tdx", `only used with tee = "azure_tdx" or "auto"`}},
		{"azure_tdx unknown key", "azure_tdx {\n  url = \"http://x\"\n}", 2, []string{`unknown key "url" in azure_tdx`}},
		{"azure_tdx imds_url scheme", "azure_tdx {\n  imds_url = \"ftp://x/acc/tdquote\"\n}", 2, []string{"azure_tdx.imds_url", "http(s)"}},
		{"azure_tdx imds_url credentials", "azure_tdx {\n  imds_url = \"http://u:p@x/acc/tdquote\"\n}", 2, []string{"azure_tdx.imds_url", "without credentials"}},
		{"azure_tdx imds_timeout", "azure_tdx {\n  imds_timeout = \"5\"\n}", 2, []string{"azure_tdx.imds_timeout", "not a duration"}},
		{"azure_tdx imds_timeout range", "azure_tdx {\n  imds_timeout = \"10m\"\n}", 2, []string{"azure_tdx.imds_timeout", "outside"}},
		{"logs ccel on azure_tdx", "tee = \"azure_tdx\"\nlogs = [\"ccel\"]", 2, []string{"logs[0]", `"ccel" does not exist on tee "azure_tdx"`}},
		{"tee type", "tee = [\"tdx\"]", 1, []string{"tee", "want a string"}},
		{"host_root relative", "host_root = \"host\"", 1, []string{"host_root", "not an absolute path"}},
		{"tdx path relative", "tdx {\n  ccel_path = \"sys/ccel\"\n}", 2, []string{"tdx.ccel_path", "not an absolute path"}},
		{"tdx path empty", "tdx {\n  device_path = \"\"\n}", 2, []string{"tdx.device_path", "not an absolute path"}},
		{"tpm device relative", "tpm {\n  device = \"tpm0\"\n}", 2, []string{"tpm.device", "absolute device path or tcp://host:port"}},
		{"tpm device tcp no port", "tpm {\n  device = \"tcp://localhost\"\n}", 2, []string{"tpm.device", "tcp://host:port"}},
		{"tpm device tcp bad port", "tpm {\n  device = \"tcp://localhost:99999\"\n}", 2, []string{"tpm.device", "port in 1..65535"}},
		{"tpm device tcp path", "tpm {\n  device = \"tcp://localhost:1/x\"\n}", 2, []string{"tpm.device", "tcp://host:port"}},
		{"ak_handle range", "tpm {\n  ak_handle = 0x80000001\n}", 2, []string{"tpm.ak_handle", "not a persistent handle"}},
		{"ak_handle string", "tpm {\n  ak_handle = \"0x81000001\"\n}", 2, []string{"tpm.ak_handle", "want an integer"}},
		{"ak_handle float", "tpm {\n  ak_handle = 1.5\n}", 2, []string{"tpm.ak_handle", "want an integer", "1.5"}},
		{"ak_handle huge", "tpm {\n  ak_handle = 99999999999999999999\n}", 2, []string{"tpm.ak_handle", "out of range"}},
		{"ak_type", "tpm {\n  ak_type = \"ecdsa\"\n}", 2, []string{"tpm.ak_type", `"ecdsa" is not one of "ecc", "rsa"`}},
		{"ek_nv_index range", "tpm {\n  ek_nv_index = 0x81000000\n}", 2, []string{"tpm.ek_nv_index", "not an NV index"}},
		{"runtime_pcr low", "tpm {\n  runtime_pcr = 10\n}", 2, []string{"tpm.runtime_pcr", "11..23"}},
		{"runtime_pcr high", "tpm {\n  runtime_pcr = 24\n}", 2, []string{"tpm.runtime_pcr", "11..23"}},
		{"pcrs out of range", "tpm {\n  pcrs = [0,\n    24]\n}", 3, []string{"tpm.pcrs[1]", "not a PCR"}},
		{"pcrs negative", "tpm {\n  pcrs = [-1]\n}", 2, []string{"tpm.pcrs[0]", "not a PCR"}},
		{"pcrs duplicate", "tpm {\n  pcrs = [1, 1]\n}", 2, []string{"tpm.pcrs[1]", "listed twice"}},
		{"pcrs empty", "tpm {\n  pcrs = []\n}", 2, []string{"tpm.pcrs", "empty list"}},
		{"pcrs strings", "tpm {\n  pcrs = [\"7\"]\n}", 2, []string{"tpm.pcrs[0]", "want an integer"}},
		{"sim without tee sim", "sim {\n  dir = \"/x\"\n}", 1, []string{"sim", `only used with tee = "sim"`}},
		{"tee sim without dir", "\ntee = \"sim\"", 2, []string{`tee = "sim" needs sim`}},
		{"sim dir relative", "tee = \"sim\"\nsim {\n  dir = \"x\"\n}", 3, []string{"sim.dir", "not an absolute path"}},
		{"logs bad name", "logs = [\"ccel\", \"uefi\"]", 1, []string{"logs[1]", `"uefi" is not one of "ccel", "tpm", "ima", "runtime"`}},
		{"logs duplicate", "logs = [\"ima\", \"ima\"]", 1, []string{"logs[1]", "listed twice"}},
		{"logs empty", "logs = []", 1, []string{"logs", "empty list"}},
		{"logs tpm on tdx", "tee = \"tdx\"\nlogs = [\"tpm\"]", 2, []string{"logs[0]", `"tpm" does not exist on tee "tdx"`}},
		{"logs ccel on tpm", "tee = \"tpm\"\nlogs = [\"ccel\"]", 2, []string{"logs[0]", `"ccel" does not exist on tee "tpm"`}},
		{"instance_id_path relative", "instance_id_path = \"id\"", 1, []string{"instance_id_path", "not an absolute path"}},
		{"compression", "compression = \"lz4\"", 1, []string{"compression", `"lz4" is not one of "none", "zstd", "gzip"`}},
		{"runtime_log_path relative", "runtime_log_path = \"rt\"", 1, []string{"runtime_log_path", "not an absolute path"}},
		{"duplicate tee", "tee = \"tdx\"\ntee = \"tpm\"", 2, []string{`duplicate key "tee" at top level`, "line 1"}},
		{"server key in agent", "nonce_ttl = \"1s\"", 1, []string{`unknown key "nonce_ttl"`}},
		// "\400" scans but makes hcl's Token.Value panic (octal > 255).
		{"unquotable string", "\nhost_root = \"\\400\"", 2, []string{"host_root: malformed string"}},
		{"unquotable key", "tdx {\n  \"\\400\" = 1\n}", 2, []string{"malformed key in tdx"}},
		{"unquotable list element", "logs = [\"\\400\"]", 1, []string{"logs[0]: malformed string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conf.ParseAgentNodeAttestor(tt.src)
			wantErr(t, err, "plugin_data", tt.line, tt.parts...)
		})
	}
}

func TestWorkloadDefaults(t *testing.T) {
	c, err := conf.ParseWorkloadAttestor("")
	if err != nil {
		t.Fatal(err)
	}
	want := &conf.WorkloadAttestor{
		Measure:         "first_seen",
		TEE:             "auto",
		TPMDevice:       "/dev/tpmrm0",
		RuntimePCR:      23,
		RuntimeLogPath:  "/var/lib/ccnp-spire/runtime.cel",
		DigestCacheSize: 4096,

		RuntimeLogMaxRecords: 2048, RuntimeLogQuotaPerUID: 256, RuntimeLogQuotaPerContainer: 256,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if got := c.DigestAlgs(cctrusted.TEETDX); !slices.Equal(got, []cctrusted.Algorithm{cctrusted.AlgSHA256, cctrusted.AlgSHA384}) {
		t.Errorf("tdx algs %v", got)
	}
	if got := c.DigestAlgs(cctrusted.TEETPM); !slices.Equal(got, []cctrusted.Algorithm{cctrusted.AlgSHA256}) {
		t.Errorf("tpm algs %v", got)
	}
}

func TestWorkloadKeys(t *testing.T) {
	c, err := conf.ParseWorkloadAttestor(`
host_root         = "/host"
measure           = "first_seen"
tee               = "sim"
sim_dir           = "/sim"
tpm_device        = "tcp://[::1]:2321"
runtime_pcr       = 17
runtime_log_path  = "/rt.cel"
digest_cache_size = 7
exe_digest_algs   = ["sha512", "sha256"]
ima_log_path      = "/ima"
runtime_log_max_records = 1000
runtime_log_quota_per_uid = 10
runtime_log_quota_per_container = 20
`)
	if err != nil {
		t.Fatal(err)
	}
	want := &conf.WorkloadAttestor{
		HostRoot: "/host", Measure: "first_seen", TEE: "sim", SimDir: "/sim", TPMDevice: "tcp://[::1]:2321",
		RuntimePCR: 17, RuntimeLogPath: "/rt.cel", DigestCacheSize: 7,
		ExeDigestAlgs: []cctrusted.Algorithm{cctrusted.AlgSHA512, cctrusted.AlgSHA256}, IMALogPath: "/ima",
		RuntimeLogMaxRecords: 1000, RuntimeLogQuotaPerUID: 10, RuntimeLogQuotaPerContainer: 20,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if got := c.DigestAlgs(cctrusted.TEETDX); !slices.Equal(got, want.ExeDigestAlgs) {
		t.Errorf("configured algs not used: %v", got)
	}
	for _, m := range []string{"off", "first_seen"} {
		c, err := conf.ParseWorkloadAttestor(`measure = "` + m + `"`)
		if err != nil || string(c.Measure) != m {
			t.Errorf("measure %s: %v %v", m, c, err)
		}
	}
}

func TestWorkloadErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		line  int
		parts []string
	}{
		{"unknown", "\nmeasure_mode = \"off\"", 2, []string{`unknown key "measure_mode" at top level`, `did you mean "measure"`}},
		{"block not allowed", "tpm {\n}", 1, []string{`unknown key "tpm"`}},
		{"measure", "measure = \"always\"", 1, []string{"measure", `"always" is not one of "off", "first_seen"`}},
		{"measure every", "measure = \"every\"", 1, []string{"measure", `"every" is no longer supported`, `use "first_seen"`}},
		{"max records low", "runtime_log_max_records = 15", 1, []string{"runtime_log_max_records", "15 is outside 16..3584"}},
		{"max records high", "runtime_log_max_records = 3585", 1, []string{"runtime_log_max_records", "outside 16..3584", "4096 selectors"}},
		{"uid quota", "runtime_log_max_records = 100\nruntime_log_quota_per_uid = 101", 2, []string{"runtime_log_quota_per_uid", "101 is outside 1..100"}},
		{"container quota", "runtime_log_quota_per_container = 0", 1, []string{"runtime_log_quota_per_container", "0 is outside 1..2048"}},
		{"tee", "tee = \"snp\"", 1, []string{"tee", `"snp" is not one of`}},
		{"sim without dir", "tee = \"sim\"", 1, []string{`tee = "sim" needs sim_dir`}},
		{"sim_dir without sim", "sim_dir = \"/x\"", 1, []string{"sim_dir", `only used with tee = "sim"`}},
		{"host_root", "host_root = \"./h\"", 1, []string{"host_root", "not an absolute path"}},
		{"tpm_device", "tpm_device = \"udp://x:1\"", 1, []string{"tpm_device", "absolute device path or tcp://host:port"}},
		{"runtime_pcr", "runtime_pcr = 7", 1, []string{"runtime_pcr", "11..23"}},
		{"runtime_log_path", "runtime_log_path = \"\"", 1, []string{"runtime_log_path", "not an absolute path"}},
		{"digest_cache_size zero", "digest_cache_size = 0", 1, []string{"digest_cache_size", "outside 1..1048576"}},
		{"digest_cache_size huge", "digest_cache_size = 2000000", 1, []string{"digest_cache_size", "outside"}},
		{"exe_digest_algs sha1", "exe_digest_algs = [\"sha256\", \"sha1\"]", 1, []string{"exe_digest_algs[1]", `"sha1" is not one of "sha256", "sha384", "sha512"`}},
		{"exe_digest_algs without sha256", "exe_digest_algs = [\"sha384\"]", 1, []string{"exe_digest_algs", `must include "sha256"`}},
		{"exe_digest_algs duplicate", "exe_digest_algs = [\"sha256\", \"sha256\"]", 1, []string{"exe_digest_algs[1]", "listed twice"}},
		{"ima_log_path", "ima_log_path = \"ima\"", 1, []string{"ima_log_path", "not an absolute path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conf.ParseWorkloadAttestor(tt.src)
			wantErr(t, err, "plugin_data", tt.line, tt.parts...)
		})
	}
}

// The HCL parser drops an assignment with no value at the end of the input;
// the checker must not let that pass as "all defaults".
func TestDanglingAssignment(t *testing.T) {
	for _, src := range []string{"tee = ", "logs = [\"ccel\"]\ntee =", "tee = # comment\n"} {
		_, err := conf.ParseAgentNodeAttestor(src)
		if err == nil || !strings.Contains(err.Error(), "no value") {
			t.Errorf("%q: err = %v, want an error about the missing value", src, err)
		}
	}
}
