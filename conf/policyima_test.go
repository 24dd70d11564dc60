package conf_test

import (
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

const imaDigestA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestPolicyIMABlock(t *testing.T) {
	src := `policy "ima-only" {
  ima {
    mode = "warn"
    file "/usr/bin/bash" { digests = ["` + imaDigestA + `"] }
  }
}
`
	ps, err := conf.ParsePolicies(src, "p.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	if p.IMA == nil || p.IMA.Enforce || len(p.IMA.Files["/usr/bin/bash"]) != 1 {
		t.Fatalf("ima block not read: %+v", p.IMA)
	}
	if p.Empty() {
		t.Fatal("a policy with only an ima block is not empty")
	}
	// The rendering reads back to the same policy and digest.
	back, err := conf.ParsePolicies(p.HCL(), "rendered")
	if err != nil {
		t.Fatalf("%v\n%s", err, p.HCL())
	}
	if back[0].Digest() != p.Digest() {
		t.Fatalf("digest changed through HCL: %s != %s", back[0].Digest(), p.Digest())
	}
	// The digest covers the ima block.
	other := strings.Replace(src, `mode = "warn"`, `mode = "enforce"`, 1)
	ps2, err := conf.ParsePolicies(other, "p.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if ps2[0].Digest() == p.Digest() {
		t.Fatal("the digest does not cover the ima block")
	}
	// A compiled fingerprint, once set, is what the digest covers.
	q := p
	q.IMAFingerprint = "00ff"
	if q.Digest() == p.Digest() {
		t.Fatal("the digest does not cover IMAFingerprint")
	}
}

func TestPolicyIMAFile(t *testing.T) {
	ps, err := conf.ParsePolicies(`policy "f" {
  ima_policy_file = "/etc/ccnp/ima.json"
}
`, "p.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].IMAPolicyFile != "/etc/ccnp/ima.json" || ps[0].Empty() {
		t.Fatalf("ima_policy_file not read: %+v", ps[0])
	}
	if !strings.Contains(ps[0].HCL(), `ima_policy_file = "/etc/ccnp/ima.json"`) {
		t.Fatalf("not rendered:\n%s", ps[0].HCL())
	}
}

func TestPolicyIMAErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		parts     []string
	}{
		{"both", `policy "p" {
  ima { digests = ["` + imaDigestA + `"] }
  ima_policy_file = "/x"
}
`, 3, []string{`policy "p": ima_policy_file`, "not both"}},
		{"empty file", `policy "p" {
  ima_policy_file = ""
}
`, 2, []string{"ima_policy_file", "empty path"}},
		{"bad mode", `policy "p" {
  ima {
    mode = "audit"
    digests = ["` + imaDigestA + `"]
  }
}
`, 3, []string{"ima.mode", `"audit"`}},
		{"unknown key", `policy "p" {
  ima {
    digest = ["` + imaDigestA + `"]
  }
}
`, 3, []string{`unknown key "digest"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := conf.ParsePolicies(tc.src, "p.hcl")
			wantErr(t, err, "p.hcl", tc.line, tc.parts...)
		})
	}
}
