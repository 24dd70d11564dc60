package conf

import (
	"strings"
	"testing"
)

func TestParseIMAPolicyErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"ima {\n  mode = \"audit\"\n  digests = [\"" + strings.Repeat("ab", 32) + "\"]\n}", `ima.hcl: line 2: ima.mode: "audit" is not "enforce" or "warn"`},
		{"ima {\n  exclude = [\"(?=x)\"]\n}", "ima.hcl: line 2: ima.exclude[0]:"},
		{"ima {\n  file \"/bin/sh\" {\n    digests = [\"abc\"]\n  }\n}", `ima.hcl: line 3: ima.file "/bin/sh".digests[0]: want an even number`},
		{"ima {\n  pod_uid = \"x\"\n  container_id = \"" + strings.Repeat("ab", 32) + "\"\n  digests = [\"" + strings.Repeat("ab", 32) + "\"]\n}", "ima.pod_uid:"},
		{"ima {\n  hash_algorithms = [\"crc32\"]\n  digests = [\"" + strings.Repeat("ab", 32) + "\"]\n}", `ima.hash_algorithms[0]: "crc32" is not one of`},
		{"ima {\n  verification_keys = [\"not pem\"]\n}", "ima.verification_keys[0]: no PEM block"},
		{"ima {\n  mode = \"warn\"\n}", "allows nothing"},
		{"ima {\n  exclud = [\"/\"]\n}", `unknown key "exclud" in ima (did you mean "exclude"?)`},
		{"{\"ima\": {}}", "JSON is not supported"},
		{"policy \"x\" {}", `unknown key "policy"`},
	} {
		_, err := ParseIMAPolicy(tc.src, "ima.hcl")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want %q, got %v", tc.src, tc.want, err)
		}
	}
}

func TestIMAPolicyHCLRoundTrip(t *testing.T) {
	src := `ima {
  mode = "warn"
  container_id = "` + strings.Repeat("ab", 32) + `"
  hash_algorithms = ["sha256", "sha1"]
  violations = "allow"
  exclude = ["/tmp/", ".*\\.pyc$"]
  digests = ["` + strings.Repeat("CD", 32) + `"]
  ignored_keyrings = [".builtin_trusted_keys"]
  verification_key_files = ["/etc/ima.pem"]
  file "/usr/bin/bash" { digests = ["` + strings.Repeat("ef", 32) + `"] }
  keyring ".ima" { digests = ["` + strings.Repeat("01", 32) + `"] }
  buffer "kernel_version" { digests = ["` + strings.Repeat("02", 20) + `"] }
}
`
	p, err := ParseIMAPolicy(src, "ima.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if p.Enforce || !p.AllowViolations || p.Digests[0] != strings.Repeat("cd", 32) || p.VerificationKeys[0].File != "/etc/ima.pem" {
		t.Fatalf("parsed %+v", p)
	}
	back, err := ParseIMAPolicy(p.HCL(), "rendered.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, p.HCL())
	}
	if back.HCL() != p.HCL() {
		t.Fatalf("round trip differs:\n%s\n%s", p.HCL(), back.HCL())
	}
}
