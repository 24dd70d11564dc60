package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIMAAppraiseExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const systemd = "622df33f94acab162399b6291277bb8d931d2ec77af350927ecbd8e3ec0226e4"
	// Everything but systemd excluded: every entry allowed.
	hclOK := write("ok.hcl", `ima {
  exclude = ["/usr/lib/x86_64", "/usr/bin/", "/opt/", "/tmp/", "/var/", "/etc/", "/home/", "boot_aggregate", "/usr/sbin/", "/lib", "/bin/", "/app/", "[^/]"]
  violations = "allow"
  hash_algorithms = ["sha1", "sha256"]
  file "/usr/lib/systemd/systemd" { digests = ["`+systemd+`"] }
}
`)
	// Keylime JSON: systemd listed with another digest, nothing excluded.
	jsonBad := write("bad.json", `{"meta":{"version":1,"generator":2},"release":0,
"digests":{"/usr/lib/systemd/systemd":["`+strings.Repeat("ab", 32)+`"]},"excludes":[],"keyrings":{},
"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`)
	list := filepath.Join("..", "testdata", "ima", "mixed.ascii")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ima", "appraise", "--policy", hclOK, list}, 0, "0 offending"},
		{[]string{"ima", "appraise", "--policy", hclOK, filepath.Join("..", "testdata", "ima", "mixed.bin")}, 0, "0 offending"},
		{[]string{"ima", "appraise", "--policy", jsonBad, list}, 2, "entry 1 /usr/lib/systemd/systemd sha256:" + systemd + ": digest_not_allowed"},
		{[]string{"ima", "appraise", "--policy", jsonBad, list, "-o", "json"}, 2, `"reason": "digest_not_allowed"`},
		{[]string{"ima", "appraise", "--policy", filepath.Join(dir, "missing.hcl"), list}, 1, "ima policy"},
		{[]string{"ima", "appraise", "--policy", write("typo.hcl", "ima { exclud = [\"/\"] }"), list}, 1, `unknown key "exclud"`},
		{[]string{"ima", "appraise", "--policy", hclOK, write("garbage", "not a list\n")}, 1, "ima"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := Main(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.args, code, tc.code, tc.want, out.String(), errb.String())
		}
	}
}
