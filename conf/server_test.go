package conf_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func TestServerDefaults(t *testing.T) {
	c, err := conf.ParseServerVerifier("tdx {}", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Expected values are the documented defaults, written out literally.
	checks := []struct {
		name      string
		got, want any
	}{
		{"nonce_ttl", c.NonceTTL, 60 * time.Second},
		{"max_payload_bytes", c.MaxPayloadBytes, int64(16 * 1024 * 1024)},
		{"challenge_timeout", c.ChallengeTimeout, time.Duration(0)},
		{"answer timeout tdx", c.AnswerTimeout(cctrusted.TEETDX), 5 * time.Second},
		{"answer timeout tpm", c.AnswerTimeout(cctrusted.TEETPM), 15 * time.Second},
		{"answer timeout sim", c.AnswerTimeout(cctrusted.TEESim), 30 * time.Second},
		{"answer timeout before the hello", c.AnswerTimeout(""), 30 * time.Second},
		{"max_evidence_bytes_in_flight", c.MaxEvidenceBytesInFlight, int64(256 * 1024 * 1024)},
		{"agent_path_template", c.AgentPathTemplate, "/{{ .PluginName }}/{{ .TEE }}/{{ .ID }}"},
		{"agent_path_template legacy", c.AgentPathLegacy, false},
		{"require_policy", c.RequirePolicy, false},
		{"allow_ima_violations", c.AllowIMAViolations, false},
		{"policies", len(c.Policies), 0},
		{"tpm", c.TPM == nil, true},
		{"sim", c.Sim == nil, true},
		{"tdx.trusted_roots_file", c.TDX.TrustedRootsFile, ""},
		{"tdx.accepted_tcb_statuses", c.TDX.AcceptedTCBStatuses, []conf.TCBStatus{"UpToDate"}},
		{"tdx.allow_debug", c.TDX.AllowDebug, false},
		{"tdx.collateral.source", c.TDX.Collateral.Source, conf.CollateralSource("pcs")},
		{"tdx.collateral.url", c.TDX.Collateral.URL, "https://api.trustedservices.intel.com/tdx/certification/v4"},
		{"tdx.collateral.refresh", c.TDX.Collateral.Refresh, 24 * time.Hour},
		{"tdx.collateral.fetch_timeout", c.TDX.Collateral.FetchTimeout, 30 * time.Second},
		{"tdx.collateral.cache_dir", c.TDX.Collateral.CacheDir, ""},
		{"checkpoint_key_file", c.CheckpointKeyFile, ""},
		{"checkpoint_previous_key_file", c.CheckpointPreviousKeyFile, ""},
		{"checkpoint_ttl", c.CheckpointTTL, 24 * time.Hour},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	p, err := c.AgentPath(conf.AgentPathData{TEE: "tpm", ID: "abc"})
	if err != nil || p != "/spire/agent/ccnp/tpm/abc" {
		t.Errorf("AgentPath = %q, %v", p, err)
	}
}

func TestServerKeys(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(*conf.ServerVerifier) bool
	}{
		{"trusted_roots_file", `tdx { trusted_roots_file = "/r.pem" }`, func(c *conf.ServerVerifier) bool { return c.TDX.TrustedRootsFile == "/r.pem" }},
		{"pccs_url", `tdx { collateral { pccs_url = "https://pccs:8081/tdx/certification/v4/" } }`, func(c *conf.ServerVerifier) bool {
			return c.TDX.Collateral.Source == conf.CollateralPCCS && c.TDX.Collateral.URL == "https://pccs:8081/tdx/certification/v4"
		}},
		{"pcs_url http loopback", `tdx { collateral { pcs_url = "http://127.0.0.1:9000" } }`, func(c *conf.ServerVerifier) bool {
			return c.TDX.Collateral.Source == conf.CollateralPCS && c.TDX.Collateral.URL == "http://127.0.0.1:9000"
		}},
		{"offline_dir", `tdx { collateral { offline_dir = "/c" } }`, func(c *conf.ServerVerifier) bool {
			return c.TDX.Collateral.Source == conf.CollateralOffline && c.TDX.Collateral.OfflineDir == "/c" && c.TDX.Collateral.URL == ""
		}},
		{"shorthand block", `tdx collateral { offline_dir = "/c" }`, func(c *conf.ServerVerifier) bool { return c.TDX.Collateral.OfflineDir == "/c" }},
		{"cache_dir", `tdx { collateral { cache_dir = "/cache" } }`, func(c *conf.ServerVerifier) bool { return c.TDX.Collateral.CacheDir == "/cache" }},
		{"refresh", `tdx { collateral { refresh = "90m" } }`, func(c *conf.ServerVerifier) bool { return c.TDX.Collateral.Refresh == 90*time.Minute }},
		{"fetch_timeout", `tdx { collateral { fetch_timeout = "5s" } }`, func(c *conf.ServerVerifier) bool { return c.TDX.Collateral.FetchTimeout == 5*time.Second }},
		{"accepted_tcb_statuses all", `tdx { accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"] }`,
			func(c *conf.ServerVerifier) bool {
				return len(c.TDX.AcceptedTCBStatuses) == 6 && c.TDX.AcceptedTCBStatuses[5] == "OutOfDateConfigurationNeeded"
			}},
		{"allow_debug", `tdx { allow_debug = true }`, func(c *conf.ServerVerifier) bool { return c.TDX.AllowDebug }},
		{"min_tcb_evaluation_data_number", `tdx { min_tcb_evaluation_data_number = 17 }`, func(c *conf.ServerVerifier) bool { return c.TDX.MinTCBEvaluationDataNumber == 17 }},
		{"min_tcb_evaluation_data_number unset", `tdx {}`, func(c *conf.ServerVerifier) bool { return c.TDX.MinTCBEvaluationDataNumber == 0 }},
		{"checkpoint keys", "tdx {}\ncheckpoint_key_file = \"/etc/k\"\ncheckpoint_previous_key_file = \"/etc/old\"\ncheckpoint_ttl = \"2h\"", func(c *conf.ServerVerifier) bool {
			return c.CheckpointKeyFile == "/etc/k" && c.CheckpointPreviousKeyFile == "/etc/old" && c.CheckpointTTL == 2*time.Hour
		}},
		{"tdx object assignment", `tdx = { allow_debug = true }`, func(c *conf.ServerVerifier) bool { return c.TDX.AllowDebug }},
		{"ek_ca_files", `tpm { ek_ca_files = ["/a.pem", "/b.pem"] }`, func(c *conf.ServerVerifier) bool {
			return slices.Equal(c.TPM.EKCAFiles, []string{"/a.pem", "/b.pem"}) && c.TDX == nil
		}},
		{"ek_hash_allow_list lower-cased", `tpm { ek_hash_allow_list = ["` + strings.ToUpper(hex32) + `"] }`, func(c *conf.ServerVerifier) bool {
			return slices.Equal(c.TPM.EKHashAllowList, []string{hex32})
		}},
		{"ak_ca_files", `tpm {
  ek_ca_files = ["/a.pem"]
  ak_ca_files = ["/ak.pem"]
}`, func(c *conf.ServerVerifier) bool { return slices.Equal(c.TPM.AKCAFiles, []string{"/ak.pem"}) }},
		{"runtime_pcr", `tpm {
  ek_ca_files = ["/a.pem"]
  runtime_pcr = 15
}`, func(c *conf.ServerVerifier) bool { return c.TPM.RuntimePCR == 15 }},
		{"runtime_pcr unset", `tpm { ek_ca_files = ["/a.pem"] }`, func(c *conf.ServerVerifier) bool { return c.TPM.RuntimePCR == 0 }},
		{"sim", `sim { trusted_root_file = "/sim.pem" }`, func(c *conf.ServerVerifier) bool { return c.Sim.TrustedRootFile == "/sim.pem" }},
		{"nonce_ttl", `tdx {}
nonce_ttl = "2m"`, func(c *conf.ServerVerifier) bool { return c.NonceTTL == 2*time.Minute }},
		{"max_payload_bytes", `tdx {}
max_payload_bytes = 1048576`, func(c *conf.ServerVerifier) bool { return c.MaxPayloadBytes == 1<<20 }},
		{"challenge_timeout", `tdx {}
challenge_timeout = "5s"`, func(c *conf.ServerVerifier) bool { return c.ChallengeTimeout == 5*time.Second }},
		{"challenge_timeout overrides every TEE's default", `tdx {}
challenge_timeout = "45s"`, func(c *conf.ServerVerifier) bool {
			return c.AnswerTimeout(cctrusted.TEETDX) == 45*time.Second && c.AnswerTimeout(cctrusted.TEETPM) == 45*time.Second && c.AnswerTimeout("") == 45*time.Second
		}},
		{"max_evidence_bytes_in_flight", `tdx {}
max_evidence_bytes_in_flight = 33554432`, func(c *conf.ServerVerifier) bool { return c.MaxEvidenceBytesInFlight == 32<<20 }},
		{"max_evidence_bytes_in_flight default follows a larger max_payload_bytes", `tdx {}
max_payload_bytes = 536870912`, func(c *conf.ServerVerifier) bool { return c.MaxEvidenceBytesInFlight == 512<<20 }},
		{"agent_path_template", `tdx {}
agent_path_template = "/{{ .PluginName }}/vm-{{ .ID }}"`, func(c *conf.ServerVerifier) bool {
			p, err := c.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "x1"})
			return err == nil && p == "/spire/agent/ccnp/vm-x1" && !c.AgentPathLegacy
		}},
		{"agent_path_template legacy form", `tdx {}
agent_path_template = "/spire/agent/ccnp/{{ .ID }}"`, func(c *conf.ServerVerifier) bool {
			p, err := c.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "x1"})
			return err == nil && p == "/spire/agent/ccnp/x1" && c.AgentPathLegacy
		}},
		{"agent_path_template with quote fields", `tdx {}
tpm { ek_hash_allow_list = ["` + strings.Repeat("ab", 32) + `"] }
agent_path_template = "/ccnp/{{ .TEE }}/{{ if eq .TEE \"tpm\" }}{{ .ID }}{{ else }}{{ .MRConfigID }}{{ end }}"`, func(c *conf.ServerVerifier) bool {
			id := bytes.Repeat([]byte{0xab}, 48)
			tdx, err1 := c.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "x1", Quote: &conf.AgentPathQuote{MRConfigID: id}})
			tpm, err2 := c.AgentPath(conf.AgentPathData{TEE: "tpm", ID: "e1"})
			_, err3 := c.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "x1", Quote: &conf.AgentPathQuote{MRConfigID: make([]byte, 48)}})
			var fe *conf.AgentPathFieldError
			return err1 == nil && tdx == "/spire/agent/ccnp/tdx/"+strings.Repeat("ab", 48) && err2 == nil && tpm == "/spire/agent/ccnp/tpm/e1" &&
				errors.As(err3, &fe) && fe.Field == "MRConfigID"
		}},
		{"require_policy", `tdx {}
require_policy = true
policy "p" { secure_boot = true }`, func(c *conf.ServerVerifier) bool { return c.RequirePolicy && len(c.Policies) == 1 }},
		{"allow_ima_violations", "tdx {}\nallow_ima_violations = true", func(c *conf.ServerVerifier) bool { return c.AllowIMAViolations }},
		{"heredoc string", "tdx {\n  trusted_roots_file = <<EOT\n/r.pem\nEOT\n}", func(c *conf.ServerVerifier) bool {
			return c.TDX.TrustedRootsFile == "/r.pem\n"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := conf.ParseServerVerifier(tt.src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v (tdx %+v tpm %+v)", c, c.TDX, c.TPM)
			}
		})
	}
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		line  int
		parts []string
	}{
		{"no tee", `nonce_ttl = "1m"`, 0, []string{"no TEE is accepted"}},
		{"min eval zero", "tdx {\n  min_tcb_evaluation_data_number = 0\n}", 2, []string{"tdx.min_tcb_evaluation_data_number: 0 is outside 1..4294967295", "remove the key"}},
		{"min eval negative", "tdx {\n  min_tcb_evaluation_data_number = -17\n}", 2, []string{"tdx.min_tcb_evaluation_data_number: -17 is outside"}},
		{"min eval string", "tdx {\n  min_tcb_evaluation_data_number = \"17\"\n}", 2, []string{"tdx.min_tcb_evaluation_data_number: want an integer"}},
		{"checkpoint key relative", "tdx {}\ncheckpoint_key_file = \"k\"", 2, []string{"checkpoint_key_file", "not an absolute path"}},
		{"checkpoint previous alone", "tdx {}\ncheckpoint_previous_key_file = \"/k\"", 2, []string{"checkpoint_previous_key_file", "needs checkpoint_key_file"}},
		{"checkpoint ttl alone", "tdx {}\ncheckpoint_ttl = \"1h\"", 2, []string{"checkpoint_ttl", "without checkpoint_key_file"}},
		{"checkpoint ttl short", "tdx {}\ncheckpoint_key_file = \"/k\"\ncheckpoint_ttl = \"5s\"", 3, []string{"checkpoint_ttl", "outside"}},
		{"metrics_address removed", "tdx {}\nmetrics_address = \"127.0.0.1:9988\"", 2, []string{"metrics_address", "was removed", "telemetry block", "spire_server_ccnp_"}},
		{"empty config", ``, 0, []string{"no TEE is accepted"}},
		{"unknown top", "tdx {}\nnonce_tll = \"1s\"", 2, []string{`unknown key "nonce_tll" at top level`, `did you mean "nonce_ttl"`}},
		{"unknown in tdx", "tdx {\n  alow_debug = true\n}", 2, []string{`unknown key "alow_debug" in tdx`}},
		{"unknown in collateral", "tdx {\n  collateral {\n    pcs = \"x\"\n  }\n}", 3, []string{`unknown key "pcs" in tdx.collateral`}},
		{"unknown in tpm", "tpm {\n  ek_ca_files = [\"/a\"]\n  ek_hash = []\n}", 3, []string{`unknown key "ek_hash" in tpm`}},
		{"unknown in sim", "sim {\n  root = \"/a\"\n}", 2, []string{`unknown key "root" in sim`}},
		{"unknown in policy", "tdx {}\npolicy \"p\" {\n  mrdt = []\n}", 3, []string{`unknown key "mrdt" in policy "p"`, `"mrtd"`}},
		{"unknown in pcr", "tdx {}\npolicy \"p\" {\n  pcr \"7\" {\n    sha265 = []\n  }\n}", 4, []string{`unknown key "sha265" in policy "p".pcr "7"`}},
		{"unknown in runtime", "tdx {}\npolicy \"p\" {\n  runtime {\n    allowed_exe = []\n  }\n}", 4, []string{`unknown key "allowed_exe" in policy "p".runtime`}},
		{"case matters", "TDX {}", 1, []string{`unknown key "TDX"`, `did you mean "tdx"`}},
		{"duplicate key", "tdx {\n  allow_debug = true\n  allow_debug = false\n}", 3, []string{`duplicate key "allow_debug" in tdx`, "line 2"}},
		{"duplicate block", "tdx {}\ntpm { ek_ca_files = [\"/a\"] }\ntdx {}", 3, []string{`duplicate key "tdx"`, "line 1"}},
		{"duplicate policy", "tdx {}\npolicy \"a\" { secure_boot = true }\npolicy \"a\" { secure_boot = false }", 3, []string{`duplicate policy "a"`, "line 2"}},
		{"bool type", "tdx {\n  allow_debug = \"yes\"\n}", 2, []string{"tdx.allow_debug", "want true or false", `string "yes"`}},
		{"string type", "tdx {\n  trusted_roots_file = 3\n}", 2, []string{"tdx.trusted_roots_file", "want a string"}},
		{"int type", "tdx {}\nmax_payload_bytes = \"1MiB\"", 2, []string{"max_payload_bytes", "want an integer"}},
		{"list type", "tpm {\n  ek_ca_files = \"/a.pem\"\n}", 2, []string{"tpm.ek_ca_files", "want a list of strings"}},
		{"list element type", "tpm {\n  ek_ca_files = [\"/a\",\n  7]\n}", 3, []string{"tpm.ek_ca_files[1]", "want a string"}},
		{"block type", "tdx = true", 1, []string{"tdx: want a block", "bool true"}},
		{"value as block", "tdx {}\nnonce_ttl x { }", 2, []string{"nonce_ttl: is a value, not a block"}},
		{"duration unparsable", "tdx {}\nnonce_ttl = \"60\"", 2, []string{"nonce_ttl", `"60" is not a duration`}},
		{"duration number", "tdx {}\nnonce_ttl = 60", 2, []string{"nonce_ttl", "want a string"}},
		{"duration too long", "tdx {}\nnonce_ttl = \"2h\"", 2, []string{"nonce_ttl", "outside"}},
		{"duration zero", "tdx {}\nchallenge_timeout = \"0s\"", 2, []string{"challenge_timeout", "outside"}},
		{"evidence budget too small", "tdx {}\nmax_evidence_bytes_in_flight = 1000", 2, []string{"max_evidence_bytes_in_flight", "outside 1048576.."}},
		{"evidence budget below one payload", "tdx {}\nmax_evidence_bytes_in_flight = 8388608", 2, []string{"max_evidence_bytes_in_flight", "less than max_payload_bytes (16777216)"}},
		{"evidence budget not a number", "tdx {}\nmax_evidence_bytes_in_flight = \"1GiB\"", 2, []string{"max_evidence_bytes_in_flight", "want an integer"}},
		{"refresh bad", "tdx {\n  collateral {\n    refresh = \"daily\"\n  }\n}", 3, []string{"tdx.collateral.refresh", "not a duration"}},
		{"refresh too short", "tdx {\n  collateral {\n    refresh = \"1s\"\n  }\n}", 3, []string{"tdx.collateral.refresh", "outside"}},
		{"fetch_timeout too long", "tdx {\n  collateral {\n    fetch_timeout = \"1h\"\n  }\n}", 3, []string{"tdx.collateral.fetch_timeout", "outside"}},
		{"fetch_timeout bad", "tdx {\n  collateral {\n    fetch_timeout = \"soon\"\n  }\n}", 3, []string{"tdx.collateral.fetch_timeout", "not a duration"}},
		{"two collateral sources", "tdx {\n  collateral {\n    pcs_url = \"https://a\"\n    offline_dir = \"/x\"\n  }\n}", 4, []string{"tdx.collateral.offline_dir", "cannot be combined with pcs_url"}},
		{"pccs and pcs", "tdx {\n  collateral {\n    pccs_url = \"https://a\"\n    pcs_url = \"https://b\"\n  }\n}", 4, []string{"tdx.collateral.pcs_url", "cannot be combined with pccs_url"}},
		{"bad url scheme", "tdx {\n  collateral {\n    pcs_url = \"ftp://a\"\n  }\n}", 3, []string{"tdx.collateral.pcs_url", "want an http(s) base URL"}},
		{"url with credentials", "tdx {\n  collateral {\n    pccs_url = \"https://u:p@a\"\n  }\n}", 3, []string{"tdx.collateral.pccs_url", "without credentials"}},
		{"empty offline_dir", "tdx {\n  collateral {\n    offline_dir = \"\"\n  }\n}", 3, []string{"tdx.collateral.offline_dir", "empty path"}},
		{"empty cache_dir", "tdx {\n  collateral {\n    cache_dir = \"\"\n  }\n}", 3, []string{"tdx.collateral.cache_dir", "empty path"}},
		{"empty trusted_roots_file", "tdx {\n  trusted_roots_file = \"\"\n}", 2, []string{"tdx.trusted_roots_file", "empty path"}},
		{"revoked", "tdx {\n  accepted_tcb_statuses = [\"UpToDate\",\n    \"Revoked\"]\n}", 3, []string{"tdx.accepted_tcb_statuses[1]", `"Revoked" is never acceptable`}},
		{"unknown tcb status", "tdx {\n  accepted_tcb_statuses = [\"uptodate\"]\n}", 2, []string{"tdx.accepted_tcb_statuses[0]", `"uptodate" is not an Intel TCB status`}},
		{"duplicate tcb status", "tdx {\n  accepted_tcb_statuses = [\"UpToDate\", \"UpToDate\"]\n}", 2, []string{"tdx.accepted_tcb_statuses[1]", "listed twice"}},
		{"empty tcb statuses", "tdx {\n  accepted_tcb_statuses = []\n}", 2, []string{"tdx.accepted_tcb_statuses", "empty list"}},
		{"tpm without trust", "tdx {}\ntpm {\n  ak_ca_files = [\"/a\"]\n}", 2, []string{"tpm: needs ek_ca_files or ek_hash_allow_list"}},
		{"ek hash short", "tpm {\n  ek_hash_allow_list = [\"abcd\"]\n}", 2, []string{"tpm.ek_hash_allow_list[0]", "want 64 hex characters, got 4"}},
		{"ek hash not hex", "tpm {\n  ek_hash_allow_list = [\"" + strings.Repeat("g", 64) + "\"]\n}", 2, []string{"tpm.ek_hash_allow_list[0]", "not a hex digit"}},
		{"runtime_pcr resettable", "tpm {\n  ek_ca_files = [\"/a\"]\n  runtime_pcr = 23\n}", 3, []string{"tpm.runtime_pcr", "23: want a PCR in 11..15", "reset without a reboot"}},
		{"runtime_pcr firmware", "tpm {\n  ek_ca_files = [\"/a\"]\n  runtime_pcr = 10\n}", 3, []string{"tpm.runtime_pcr", "10: want a PCR in 11..15"}},
		{"runtime_pcr negative", "tpm {\n  ek_ca_files = [\"/a\"]\n  runtime_pcr = -1\n}", 3, []string{"tpm.runtime_pcr", "want a PCR in 11..15"}},
		{"ek_ca_files empty", "tpm {\n  ek_ca_files = []\n}", 2, []string{"tpm.ek_ca_files", "empty list"}},
		{"ek_ca_files empty path", "tpm {\n  ek_ca_files = [\"\"]\n}", 2, []string{"tpm.ek_ca_files[0]", "empty path"}},
		{"sim without root", "sim {}", 1, []string{"sim: needs trusted_root_file"}},
		{"max_payload_bytes small", "tdx {}\nmax_payload_bytes = 10", 2, []string{"max_payload_bytes", "outside 1024.."}},
		{"max_payload_bytes huge", "tdx {}\nmax_payload_bytes = 4294967296", 2, []string{"max_payload_bytes", "outside"}},
		{"template syntax", "tdx {}\nagent_path_template = \"/spire/agent/{{ .TEE \"", 2, []string{"agent_path_template", "unclosed action"}},
		{"template unknown field", "tdx {}\nagent_path_template = \"/spire/agent/{{ .Host }}\"", 2, []string{"agent_path_template", "Host"}},
		{"template outside agent path", "tdx {}\nagent_path_template = \"/nodes/{{ .ID }}\"", 2, []string{"agent_path_template", `"/spire/agent/nodes/0f`, "must be under /spire/agent/ccnp/"}},
		{"template bad segment", "tdx {}\nagent_path_template = \"/spire/agent//{{ .ID }}\"", 2, []string{"agent_path_template", "empty segments"}},
		{"template bad char", "tdx {}\nagent_path_template = \"/spire/agent/a b/{{ .ID }}\"", 2, []string{"agent_path_template", "path segment characters are limited"}},
		{"template not absolute", "tdx {}\nagent_path_template = \"ccnp/{{ .ID }}\"", 2, []string{"agent_path_template", `rendered "ccnp/0f`, `must start with "/"`}},
		{"template another attestor", "tdx {}\nagent_path_template = \"/x509pop/{{ .ID }}\"", 2, []string{"agent_path_template", `"/spire/agent/x509pop/0f`, "must be under /spire/agent/ccnp/"}},
		{"template prefix of ccnp", "tdx {}\nagent_path_template = \"/ccnp-{{ .TEE }}/{{ .ID }}\"", 2, []string{"agent_path_template", "must be under /spire/agent/ccnp/"}},
		{"template plugin only", "tdx {}\nagent_path_template = \"/{{ .PluginName }}\"", 2, []string{"agent_path_template", `rendered "/spire/agent/ccnp"`, "must be under /spire/agent/ccnp/"}},
		{"template dot dot", "tdx {}\nagent_path_template = \"/ccnp/../x509pop/{{ .ID }}\"", 2, []string{"agent_path_template", "dot segments"}},
		{"template double slash", "tdx {}\nagent_path_template = \"/ccnp//{{ .ID }}\"", 2, []string{"agent_path_template", "empty segments"}},
		{"template trailing slash", "tdx {}\nagent_path_template = \"/ccnp/{{ .ID }}/\"", 2, []string{"agent_path_template", "trailing slash"}},
		{"legacy template escaping", "tdx {}\nagent_path_template = \"/spire/agent/ccnp/../../server\"", 2, []string{"agent_path_template", "dot segments"}},
		{"legacy template other attestor", "tdx {}\nagent_path_template = \"/spire/agent/ccnp-nodes/{{ .ID }}\"", 2, []string{"agent_path_template", "must be under /spire/agent/ccnp/"}},
		{"require_policy without policies", "tdx {}\nrequire_policy = true", 2, []string{"require_policy", "no policy"}},
		{"quote field on tpm nodes", "tpm { ek_hash_allow_list = [\"" + strings.Repeat("ab", 32) + "\"] }\nagent_path_template = \"/spire/agent/ccnp/{{ .MRConfigID }}\"", 2,
			[]string{"agent_path_template", "for tpm nodes", ".MRConfigID is set only for tdx and sim nodes"}},
		{"sim renders a tdx agent ID", "tdx {}\nsim { trusted_root_file = \"/r\" }\nagent_path_template = \"/spire/agent/ccnp/{{ .ID }}\"", 3,
			[]string{"agent_path_template", "for sim nodes", `path segment "sim"`, "{{ .TEE }}"}},
		{"one agent ID for two kinds", "tdx {}\ntpm { ek_hash_allow_list = [\"" + strings.Repeat("ab", 32) + "\"] }\nagent_path_template = \"/ccnp/{{ .ID }}\"", 3,
			[]string{"agent_path_template", "gives tdx and tpm nodes with the same ID the same agent ID", "{{ .TEE }}"}},
		{"policy_file without reader", "tdx {}\npolicy_file = \"/p.hcl\"", 2, []string{"policy_file", "no file reader"}},
		{"syntax error", "tdx {\n  allow_debug = \n}", 3, nil},
		{"unterminated string", "tdx {\n  trusted_roots_file = \"/a\n}", 2, []string{"literal not terminated"}},
		{"json refused", `{"tdx": {}}`, 1, []string{"JSON is not supported"}},
		{"policy without label", "tdx {}\npolicy {\n  secure_boot = true\n}", 2, []string{"policy block needs a name"}},
		{"unquotable label", "tdx {}\npolicy \"\\400\" {\n}", 2, []string{"policy: malformed name"}},
		{"policy two labels", "tdx {}\npolicy \"a\" \"b\" {\n}", 2, []string{"policy block takes one name"}},
		{"policy not a block", "tdx {}\npolicy \"a\" = 5", 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conf.ParseServerVerifier(tt.src, nil)
			wantErr(t, err, "plugin_data", tt.line, tt.parts...)
		})
	}
}

func TestServerPolicyFile(t *testing.T) {
	const inline = `tdx {}
policy "golden" {
  secure_boot = true
}
policy_file = "/etc/p.hcl"
`
	t.Run("merged in order", func(t *testing.T) {
		c, err := conf.ParseServerVerifier(inline, files(map[string]string{
			"/etc/p.hcl": "policy \"a\" { tee = [\"tpm\"] }\npolicy \"b\" { tee = [\"tdx\"] }\n",
		}))
		if err != nil {
			t.Fatal(err)
		}
		var names, sources []string
		for _, p := range c.Policies {
			names = append(names, p.Name)
			sources = append(sources, p.Source)
		}
		if !slices.Equal(names, []string{"golden", "a", "b"}) || c.PolicyFile != "/etc/p.hcl" {
			t.Errorf("policies %v, file %q", names, c.PolicyFile)
		}
		if !slices.Equal(sources, []string{"plugin_data line 2", "/etc/p.hcl line 1", "/etc/p.hcl line 2"}) {
			t.Errorf("sources %q", sources)
		}
	})
	t.Run("duplicate across plugin_data and file", func(t *testing.T) {
		_, err := conf.ParseServerVerifier(inline, files(map[string]string{
			"/etc/p.hcl": "\n\npolicy \"golden\" {\n  secure_boot = false\n}\n",
		}))
		wantErr(t, err, "/etc/p.hcl", 3, `policy "golden" is defined twice`, "plugin_data line 2", "/etc/p.hcl line 3")
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := conf.ParseServerVerifier(inline, files(nil))
		wantErr(t, err, "plugin_data", 5, "policy_file", "/etc/p.hcl", "file does not exist")
	})
	t.Run("error inside file names the file", func(t *testing.T) {
		_, err := conf.ParseServerVerifier(inline, files(map[string]string{
			"/etc/p.hcl": "policy \"x\" {\n  rtmr1 = [\"" + hex48[:94] + "\"]\n}\n",
		}))
		wantErr(t, err, "/etc/p.hcl", 2, `policy "x": rtmr1[0]: want 96 hex characters, got 94`)
	})
	t.Run("unknown key inside file", func(t *testing.T) {
		_, err := conf.ParseServerVerifier(inline, files(map[string]string{"/etc/p.hcl": "\nnonce_ttl = \"1s\"\n"}))
		wantErr(t, err, "/etc/p.hcl", 2, `unknown key "nonce_ttl" at top level`)
	})
	t.Run("oversized file", func(t *testing.T) {
		_, err := conf.ParseServerVerifier(inline, files(map[string]string{"/etc/p.hcl": strings.Repeat("#", conf.MaxPolicyFileBytes+1)}))
		wantErr(t, err, "plugin_data", 5, "policy_file", "more than the limit")
	})
	t.Run("empty file is fine with require_policy and inline", func(t *testing.T) {
		c, err := conf.ParseServerVerifier(inline+"require_policy = true\n", files(map[string]string{"/etc/p.hcl": ""}))
		if err != nil || len(c.Policies) != 1 {
			t.Fatalf("%v %v", c, err)
		}
	})
	t.Run("require_policy satisfied by file alone", func(t *testing.T) {
		c, err := conf.ParseServerVerifier("tdx {}\nrequire_policy = true\npolicy_file = \"/p\"", files(map[string]string{"/p": "policy \"x\" { secure_boot = true }"}))
		if err != nil || len(c.Policies) != 1 {
			t.Fatalf("%v %v", c, err)
		}
	})
	t.Run("empty path", func(t *testing.T) {
		_, err := conf.ParseServerVerifier("tdx {}\npolicy_file = \"\"", files(nil))
		wantErr(t, err, "plugin_data", 2, "policy_file", "empty path")
	})
}

func TestAgentPathRender(t *testing.T) {
	c, err := conf.ParseServerVerifier("tdx {}\nagent_path_template = \"/spire/agent/ccnp/{{ .TEE }}/{{ .ID }}\"", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		data    conf.AgentPathData
		want    string
		wantErr string
	}{
		{conf.AgentPathData{TEE: "tdx", ID: "0a1b"}, "/spire/agent/ccnp/tdx/0a1b", ""},
		{conf.AgentPathData{TEE: "tdx", ID: "../x"}, "", "dot segments"},
		{conf.AgentPathData{TEE: "tdx", ID: "../../../server"}, "", "dot segments"},
		{conf.AgentPathData{TEE: "tdx", ID: ""}, "", "trailing slash"},
		{conf.AgentPathData{TEE: "tdx", ID: "a/b"}, "/spire/agent/ccnp/tdx/a/b", ""},
		{conf.AgentPathData{TEE: "tdx", ID: "a//b"}, "", "empty segments"},
		{conf.AgentPathData{TEE: "tdx", ID: "a?b"}, "", "path segment characters are limited"},
	} {
		got, err := c.AgentPath(tt.data)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("AgentPath(%+v) = %q, %v; want error %q", tt.data, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("AgentPath(%+v) = %q, %v; want %q", tt.data, got, err, tt.want)
		}
	}
	// A zero ServerVerifier renders the default template.
	var zero conf.ServerVerifier
	if got, err := zero.AgentPath(conf.AgentPathData{TEE: "sim", ID: "1"}); err != nil || got != "/spire/agent/ccnp/sim/1" {
		t.Errorf("zero value: %q %v", got, err)
	}
}

// TestAgentPathSimSegment: a template that renders a sim node's agent ID
// without a "sim" segment (here by branching on the cctrusted.TEE, which the
// configure-time sample cannot see) is refused at render time, so a
// simulated node with a chosen instance ID never gets a hardware node's ID.
func TestAgentPathSimSegment(t *testing.T) {
	c, err := conf.ParseServerVerifier(`tdx {}
agent_path_template = "/spire/agent/ccnp/{{ if eq .TEE \"sim\" }}{{ .ID }}{{ else }}x{{ .ID }}{{ end }}"`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "1"}); err != nil || p != "/spire/agent/ccnp/x1" {
		t.Fatalf("tdx: %q, %v", p, err)
	}
	if p, err := c.AgentPath(conf.AgentPathData{TEE: "sim", ID: "x1"}); err == nil || !strings.Contains(err.Error(), `path segment "sim"`) {
		t.Fatalf("a sim node rendered the tdx node's %q (err %v)", p, err)
	}
	def, err := conf.ParseServerVerifier("tdx {}", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := def.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "sim"}); err == nil {
		t.Fatalf("a tdx node rendered %q, with a sim segment", p)
	}
	d, err := conf.ParseServerVerifier("tdx {}\nsim { trusted_root_file = \"/dev/null\" }", nil)
	if err == nil {
		if p, err := d.AgentPath(conf.AgentPathData{TEE: "sim", ID: "ab"}); err != nil || p != "/spire/agent/ccnp/sim/ab" {
			t.Fatalf("default template for sim: %q, %v", p, err)
		}
	}
}

// azureMRTD is a paravisor MRTD in upper case, to see it lower-cased.
var azureMRTD = strings.Repeat("0A", 48)

func TestServerAzureTDX(t *testing.T) {
	c, err := conf.ParseServerVerifier("tdx {}\nazure_tdx {\n  paravisor_mrtds = [\""+azureMRTD+"\"]\n  runtime_pcr = 14\n}", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := c.AzureTDX
	if a == nil || !slices.Equal(a.ParavisorMRTDs, []string{strings.ToLower(azureMRTD)}) || a.RuntimePCR != 14 {
		t.Fatalf("azure_tdx = %+v", a)
	}
	if got := c.AnswerTimeout(cctrusted.TEEAzureTDX); got != 15*time.Second {
		t.Errorf("answer timeout azure_tdx %v", got)
	}
	p, err := c.AgentPath(conf.AgentPathData{TEE: "azure_tdx", ID: "abc"})
	if err != nil || p != "/spire/agent/ccnp/azure_tdx/abc" {
		t.Errorf("AgentPath = %q, %v", p, err)
	}

	for _, tc := range []struct {
		name, src string
		line      int
		parts     []string
	}{
		{"without a tdx block", "azure_tdx {\n  paravisor_mrtds = [\"" + azureMRTD + "\"]\n}", 1, []string{"azure_tdx: needs a tdx block", "collateral"}},
		{"without paravisor MRTDs", "tdx {}\nazure_tdx {}", 2, []string{"azure_tdx: needs paravisor_mrtds"}},
		{"empty paravisor MRTDs", "tdx {}\nazure_tdx {\n  paravisor_mrtds = []\n}", 3, []string{"azure_tdx.paravisor_mrtds", "empty allow-list"}},
		{"short MRTD", "tdx {}\nazure_tdx {\n  paravisor_mrtds = [\"0a0b\"]\n}", 3, []string{"azure_tdx.paravisor_mrtds[0]", "want 96 hex characters"}},
		{"runtime PCR resettable", "tdx {}\nazure_tdx {\n  paravisor_mrtds = [\"" + azureMRTD + "\"]\n  runtime_pcr = 23\n}", 4, []string{"azure_tdx.runtime_pcr: 23", "11..15"}},
		{"unknown key", "tdx {}\nazure_tdx {\n  mrtds = []\n}", 3, []string{`unknown key "mrtds" in azure_tdx`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := conf.ParseServerVerifier(tc.src, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
			if want := "line " + strconv.Itoa(tc.line) + ":"; tc.line > 0 && !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		})
	}
}

func TestPolicyTEEAzureTDX(t *testing.T) {
	src := "tdx {}\nazure_tdx {\n  paravisor_mrtds = [\"" + azureMRTD + "\"]\n}\npolicy \"az\" {\n  tee = [\"azure_tdx\"]\n  mrtd = [\"" + azureMRTD + "\"]\n  pcr \"7\" {\n    sha256 = [\"" + strings.Repeat("ab", 32) + "\"]\n  }\n}"
	c, err := conf.ParseServerVerifier(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Policies[0]; !slices.Equal(p.TEE, []cctrusted.TEE{cctrusted.TEEAzureTDX}) || len(p.PCRs) != 1 || len(p.MRTD) != 1 {
		t.Errorf("policy %+v", p)
	}
}
