package imapolicy

import (
	"context"
	"crypto/sha512"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// viaHCL and viaKeylime load a generated policy through each front end, as
// an operator would: render, parse, compile.
func viaHCL(t *testing.T, p *conf.IMAPolicy) *Policy {
	t.Helper()
	src, err := conf.ParseIMAPolicy(p.HCL(), "generated.hcl")
	if err != nil {
		t.Fatalf("generated HCL does not load: %v\n%s", err, p.HCL())
	}
	return compile(t, src)
}

func viaKeylime(t *testing.T, p *conf.IMAPolicy) *Policy {
	t.Helper()
	js, err := KeylimeJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ParseKeylime(js, "generated.json")
	if err != nil {
		t.Fatalf("generated Keylime JSON does not load: %v\n%s", err, js)
	}
	return compile(t, src)
}

func TestGenerateFromListAllowsThatList(t *testing.T) {
	s := newSigner(t, "p256")
	keyDER, _ := pem.Decode([]byte(s.pem))
	golden := []rec{
		{path: "boot_aggregate", digest: sum("boot")},
		{path: "/usr/bin/bash", digest: sum("bash")},
		{path: "/usr/bin/bash", digest: sum("bash v2")}, // updated in place: both listed
		{template: "ima-sig", path: "/usr/bin/signed", digest: sum("signed"), sig: s.sign(t, sum("signed"))},
		{template: "ima-buf", path: ".ima", digest: sum(string(keyDER.Bytes)), buf: keyDER.Bytes},
		{template: "ima-buf", path: "kernel_version", digest: sum("6.8"), buf: []byte("6.8")},
		{path: "/tmp/scratch", digest: sum("tmp")},
		{path: "/var/log/journal", digest: make([]byte, 32), violation: true},
	}
	entries := parseList(t, golden)
	g, err := NewGenerator([]string{"/tmp/"})
	if err != nil {
		t.Fatal(err)
	}
	st := g.AddList(entries, ListOptions{Keyrings: true, Buffers: true})
	want := ListStats{Files: 4, Excluded: 1, Keys: 1, Buffers: 1, Violations: 1}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	p := g.Policy()
	// As Keylime's generator: boot_aggregate is a path like any other, and
	// the excluded path is not listed.
	if !slices.Equal(p.Files["boot_aggregate"], []string{hx(sum("boot"))}) || len(p.Files["/usr/bin/bash"]) != 2 || p.Files["/tmp/scratch"] != nil {
		t.Fatalf("files %v", p.Files)
	}
	if _, ok := p.Files["/var/log/journal"]; ok {
		t.Fatal("a violation entry's zero digest was listed")
	}
	for name, c := range map[string]*Policy{"hcl": viaHCL(t, p), "keylime": viaKeylime(t, p)} {
		v := appraise(t, c, entries, Options{})
		// Only the violation offends: accepting it is the policy's setting.
		if v.Counts.Failed != 1 || v.First.Reason != ReasonViolation || v.First.Index != 7 {
			t.Errorf("%s: %+v first %v", name, v.Counts, v.First)
		}
		if v.Counts.Digest != 4 || v.Counts.Keyring != 1 || v.Counts.Buffer != 1 || v.Counts.Excluded != 1 {
			t.Errorf("%s: counts %+v", name, v.Counts)
		}
	}
	p.AllowViolations = true
	if v := appraise(t, viaHCL(t, p), entries, Options{}); !v.OK() {
		t.Errorf("with violations allowed: %v", v.First)
	}
	// Without --keyrings and --ima-buf (Keylime's defaults) the buffers
	// are not listed, and appraisal names them.
	g2, _ := NewGenerator(nil)
	if st := g2.AddList(entries, ListOptions{}); st.Skipped != 2 || st.Keys != 0 {
		t.Fatalf("stats %+v", st)
	}
	p2 := g2.Policy()
	p2.AllowViolations = true
	v := appraise(t, viaHCL(t, p2), entries, Options{})
	if v.Counts.Failed != 2 || v.Findings[0].Reason != ReasonKeyring || v.Findings[1].Reason != ReasonBuffer {
		t.Fatalf("%+v %v", v.Counts, v.Findings)
	}
}

// TestGenerateRefusesBadExclude: an exclusion the loader would refuse is
// refused when generating, naming the pattern.
func TestGenerateRefusesBadExclude(t *testing.T) {
	for _, bad := range []string{"(", "", "/a(?=b)", "\xff"} {
		_, err := NewGenerator([]string{"/tmp/", bad})
		if err == nil || !strings.Contains(err.Error(), "--exclude") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func writeTree(t *testing.T, files map[string]string, modes map[string]os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		m, ok := modes[name]
		if !ok {
			m = 0o755
		}
		if err := os.WriteFile(p, []byte(content), m); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGenerateFromTree(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "evil"), []byte("outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := writeTree(t, map[string]string{
		"usr/bin/bash":        "bash",
		"usr/bin/my tool":     "tool",
		"usr/lib/libc.so.6":   "libc",
		"tmp/build/x":         "tmp",
		"usr/share/doc/a.txt": "doc",
	}, map[string]os.FileMode{"usr/lib/libc.so.6": 0o644, "usr/share/doc/a.txt": 0o644})
	// Links out of the tree, to a file and to a directory, and one inside.
	for link, target := range map[string]string{
		"usr/bin/evil": filepath.Join(outside, "evil"), "usr/out": outside, "usr/bin/sh": "bash",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	g, err := NewGenerator([]string{"/tmp/"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.AddTree(context.Background(), dir, TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 2 || st.Excluded != 1 || st.Symlinks != 3 || st.Skipped != 2 || st.Bytes != 8 {
		t.Fatalf("stats %+v", st)
	}
	p := g.Policy()
	want := map[string][]string{"/usr/bin/bash": {hx(sum("bash"))}, "/usr/bin/my_tool": {hx(sum("tool"))}}
	if len(p.Files) != len(want) {
		t.Fatalf("files %v, want %v", p.Files, want)
	}
	for k, v := range want {
		if !slices.Equal(p.Files[k], v) {
			t.Fatalf("files %v, want %v", p.Files, want)
		}
	}

	// --all-files and --hash sha512.
	g, _ = NewGenerator(nil)
	if st, err = g.AddTree(context.Background(), dir, TreeOptions{AllFiles: true, Hash: "sha512"}); err != nil || st.Files != 5 {
		t.Fatalf("%+v %v", st, err)
	}
	h := sha512.Sum512([]byte("libc"))
	if got := g.Policy().Files["/usr/lib/libc.so.6"]; !slices.Equal(got, []string{hx(h[:])}) {
		t.Fatalf("libc %v", got)
	}
	if _, err := g.AddTree(context.Background(), dir, TreeOptions{Hash: "md5"}); err == nil || !strings.Contains(err.Error(), "--hash") {
		t.Fatalf("md5: %v", err)
	}
}

// TestGenerateTreeBounds: a tree deeper than MaxTreeDepth is an error, not
// a partial policy.
func TestGenerateTreeBounds(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, strings.Repeat("d/", MaxTreeDepth+1))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	g, _ := NewGenerator(nil)
	if _, err := g.AddTree(context.Background(), dir, TreeOptions{}); err == nil || !strings.Contains(err.Error(), "deeper than") {
		t.Fatalf("got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.AddTree(ctx, dir, TreeOptions{}); err == nil {
		t.Fatal("a cancelled walk succeeded")
	}
}

// TestGenerateTreeRoundTrip: a policy generated from a tree gives the same
// verdicts as HCL, as Keylime JSON, and as HCL read back from the Keylime
// JSON, on the list of that tree, a changed file, an unknown file and an
// excluded one.
func TestGenerateTreeRoundTrip(t *testing.T) {
	dir := writeTree(t, map[string]string{"bin/a": "a", "bin/b": "b", "opt/app/run": "run"}, nil)
	g, _ := NewGenerator([]string{"/var/", `/opt/app/[^/]+\.log$`})
	if _, err := g.AddTree(context.Background(), dir, TreeOptions{}); err != nil {
		t.Fatal(err)
	}
	p := g.Policy()
	hclPolicy := viaHCL(t, p)
	kl := viaKeylime(t, p)
	js, _ := KeylimeJSON(p)
	back, err := ParseKeylime(js, "back.json")
	if err != nil {
		t.Fatal(err)
	}
	back.HashAlgorithms = nil
	backHCL := viaHCL(t, back)
	lists := map[string]struct {
		recs []rec
		ok   bool
	}{
		"golden":   {[]rec{{path: "/bin/a", digest: sum("a")}, {path: "/bin/b", digest: sum("b")}, {path: "/opt/app/run", digest: sum("run")}}, true},
		"changed":  {[]rec{{path: "/bin/a", digest: sum("a")}, {path: "/bin/b", digest: sum("b!")}}, false},
		"unknown":  {[]rec{{path: "/bin/c", digest: sum("c")}}, false},
		"excluded": {[]rec{{path: "/var/x", digest: sum("x")}, {path: "/opt/app/x.log", digest: sum("y")}}, true},
		"moved":    {[]rec{{path: "/bin/b", digest: sum("a")}}, false},
	}
	for name, l := range lists {
		entries := parseList(t, l.recs)
		var verdicts []Verdict
		for _, c := range []*Policy{hclPolicy, kl, backHCL} {
			verdicts = append(verdicts, appraise(t, c, entries, Options{}))
		}
		for i, v := range verdicts {
			if v.OK() != l.ok || v.Counts != verdicts[0].Counts || !slices.Equal(v.Findings, verdicts[0].Findings) {
				t.Errorf("%s: front end %d: %+v %v, want ok=%v and %+v %v", name, i, v.Counts, v.Findings, l.ok, verdicts[0].Counts, verdicts[0].Findings)
			}
		}
	}
}
