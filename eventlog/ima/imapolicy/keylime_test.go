package imapolicy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// keylimeDoc writes a runtime policy as keylime-policy create runtime
// does, verification keys included (ImaKeyring.to_string).
func keylimeDoc(t testing.TB, digests map[string][]string, excludes []string, keys ...*signer) string {
	t.Helper()
	vk := ""
	if len(keys) > 0 {
		var ids []uint32
		var pubs []string
		for _, s := range keys {
			k, err := ParseKey([]byte(s.pem))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, k.ID)
			pubs = append(pubs, base64.StdEncoding.EncodeToString(k.DER))
		}
		b, _ := json.Marshal(map[string]any{"meta": map[string]int{"version": 1}, "keyids": ids, "pubkeys": pubs})
		vk = string(b)
	}
	doc := map[string]any{
		"meta":              map[string]any{"version": 1, "generator": 2, "timestamp": "2026-01-01 00:00:00"},
		"release":           0,
		"digests":           digests,
		"excludes":          excludes,
		"keyrings":          map[string][]string{},
		"ima":               map[string]any{"ignored_keyrings": []string{}, "log_hash_alg": "sha1", "dm_policy": nil},
		"ima-buf":           map[string][]string{},
		"verification-keys": vk,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKeylimeAndHCLAgree: a Keylime JSON policy and the HCL policy that
// says the same give the same verdict, entry by entry, on the same list.
func TestKeylimeAndHCLAgree(t *testing.T) {
	k1 := newSigner(t, "secp256k1")
	other := newSigner(t, "rsa")
	good := sum("bash")
	js := keylimeDoc(t, map[string][]string{bash: {hx(good)}, "boot_aggregate": {hx(sum("boot"))}}, []string{"/tmp/.*", "/var/cache/"}, k1)
	kp, err := ParseKeylime([]byte(js), "policy.json")
	if err != nil {
		t.Fatal(err)
	}
	hclSrc := fmt.Sprintf(`ima {
  hash_algorithms = ["%s"]
  exclude = ["/tmp/.*", "/var/cache/"]
  file "boot_aggregate" { digests = ["%s"] }
  file %q { digests = ["%s"] }
  verification_keys = [%q]
}
`, strings.Join(conf.IMAHashAlgorithms, `", "`), hx(sum("boot")), bash, hx(good), k1.pem)
	hp, err := conf.ParseIMAPolicy(hclSrc, "policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	list := parseList(t, []rec{
		{path: "boot_aggregate", digest: sum("boot")},
		{path: bash, digest: good},
		{path: bash, digest: sum("evil")},
		{path: ls, digest: sum("ls")},
		{path: "/tmp/a", digest: sum("x")},
		{path: "/var/cache/a", digest: sum("x")},
		{path: "/var/cachex", digest: sum("x")},
		{template: "ima-sig", path: "/opt/s", digest: sum("s"), sig: k1.sign(t, sum("s"))},
		{template: "ima-sig", path: "/opt/s", digest: sum("s"), sig: other.sign(t, sum("s"))},
		{template: "ima-sig", path: bash, digest: good, sig: other.sign(t, good)},
		{path: bash, digest: good, violation: true},
	})
	pk, ph := compile(t, kp), compile(t, hp)
	for i := range list {
		vk := appraise(t, pk, list[i:i+1], Options{})
		vh := appraise(t, ph, list[i:i+1], Options{})
		if vk.Counts != vh.Counts || (vk.First == nil) != (vh.First == nil) || vk.First != nil && vk.First.Reason != vh.First.Reason {
			t.Errorf("entry %d (%s): keylime %+v %v, hcl %+v %v", i, list[i].FileName, vk.Counts, vk.First, vh.Counts, vh.First)
		}
	}
	v := appraise(t, pk, list, Options{})
	// Written from Keylime's rules: entries 2, 3, 6, 8, 10 offend.
	var got []int
	for _, f := range v.Findings {
		got = append(got, f.Index)
	}
	if fmt.Sprint(got) != "[2 3 6 8 10]" {
		t.Fatalf("offending entries %v, want [2 3 6 8 10]", got)
	}
}

func TestParseKeylimeRefuses(t *testing.T) {
	valid := keylimeDoc(t, map[string][]string{bash: {hx(sum("b"))}}, []string{})
	if _, err := ParseKeylime([]byte(valid), "p.json"); err != nil {
		t.Fatalf("valid policy: %v", err)
	}
	mutate := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(valid), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := map[string]string{
		"missing excludes":  mutate(func(m map[string]any) { delete(m, "excludes") }),
		"unknown key":       mutate(func(m map[string]any) { m["allowlist"] = 1 }),
		"future version":    mutate(func(m map[string]any) { m["meta"].(map[string]any)["version"] = 2 }),
		"dm_policy":         mutate(func(m map[string]any) { m["ima"].(map[string]any)["dm_policy"] = map[string]any{} }),
		"upper-case digest": mutate(func(m map[string]any) { m["digests"] = map[string][]string{bash: {strings.ToUpper(hx(sum("b")))}} }),
		"empty digest list": mutate(func(m map[string]any) { m["digests"] = map[string][]string{bash: {}} }),
		"short digest":      mutate(func(m map[string]any) { m["digests"] = map[string][]string{bash: {"abcd"}} }),
		"python-only regex": mutate(func(m map[string]any) { m["excludes"] = []string{"(?!x)"} }),
		"bad hash alg":      mutate(func(m map[string]any) { m["ima"].(map[string]any)["log_hash_alg"] = "md5" }),
		"dsse envelope":     `{"payload":"e30=","payloadType":"x","signatures":[]}`,
		"bad keys":          mutate(func(m map[string]any) { m["verification-keys"] = `{"keyids":[],"pubkeys":["!!"]}` }),
		"trailing data":     valid + "{}",
	}
	for name, doc := range cases {
		if _, err := ParseKeylime([]byte(doc), "p.json"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestKeylimeJSONRoundTrip: what KeylimeJSON writes, ParseKeylime reads back.
func TestKeylimeJSONRoundTrip(t *testing.T) {
	s := newSigner(t, "p256")
	src := &conf.IMAPolicy{Enforce: true, Exclude: []string{"/tmp/"}, Files: map[string][]string{bash: {hx(sum("b"))}},
		VerificationKeys: []conf.IMAKey{{Data: []byte(s.pem)}}}
	b, err := KeylimeJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeylime(b, "rt.json")
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if compile(t, src).Fingerprint() == "" || len(back.VerificationKeys) != 1 || back.Files[bash][0] != hx(sum("b")) {
		t.Fatalf("round trip: %+v", back)
	}
	d := sum("signed")
	v := appraise(t, compile(t, back), parseList(t, []rec{{template: "ima-sig", path: "/o", digest: d, sig: s.sign(t, d)}}), Options{})
	if !v.OK() {
		t.Fatalf("key lost in the round trip: %v", v.First)
	}
}
