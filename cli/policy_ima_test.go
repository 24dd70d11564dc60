package cli

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// imaNGList writes a binary ima-ng list (little endian, SHA-1 template
// hashes) measuring each path with the SHA-256 of its content.
func imaNGList(t *testing.T, measured [][2]string) []byte {
	t.Helper()
	le := binary.LittleEndian
	var out []byte
	for _, m := range measured {
		d := sha256.Sum256([]byte(m[1]))
		var td []byte
		td = le.AppendUint32(td, uint32(8+len(d)))
		td = append(append(td, "sha256:\x00"...), d[:]...)
		td = le.AppendUint32(td, uint32(len(m[0])+1))
		td = append(append(td, m[0]...), 0)
		th := sha1.Sum(td)
		out = le.AppendUint32(out, 10)
		out = append(out, th[:]...)
		out = le.AppendUint32(out, 6)
		out = append(out, "ima-ng"...)
		out = le.AppendUint32(out, uint32(len(td)))
		out = append(out, td...)
	}
	return out
}

func writeFile(t *testing.T, p string, b []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyGenerateIMAFromTree: a policy generated from a tree, in both
// formats, allows a list measuring that tree's files (exit 0) and names a
// changed file (exit 2).
func TestPolicyGenerateIMAFromTree(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(root, "usr/bin/app"), []byte("app v1"), 0o755)
	writeFile(t, filepath.Join(root, "usr/bin/helper"), []byte("helper"), 0o755)
	writeFile(t, filepath.Join(root, "etc/app.conf"), []byte("conf"), 0o644)
	boot := sha256.Sum256([]byte("boot"))
	good := writeFile(t, filepath.Join(dir, "good.bin"), imaNGList(t, [][2]string{{"boot_aggregate", "boot"}, {"/usr/bin/app", "app v1"}, {"/usr/bin/helper", "helper"}, {"/tmp/x", "x"}}), 0o644)
	changed := writeFile(t, filepath.Join(dir, "changed.bin"), imaNGList(t, [][2]string{{"/usr/bin/app", "app v2"}}), 0o644)
	for _, format := range []string{"hcl", "keylime"} {
		code, out, errs := run(t, "policy", "generate", "--ima", "--ima-root", root, "--exclude", "/tmp/", "-o", format)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, errs)
		}
		if !strings.Contains(errs, "2 files hashed") {
			t.Errorf("%s: stderr %q", format, errs)
		}
		pol := writeFile(t, filepath.Join(dir, "policy."+format), []byte(out), 0o644)
		if code, out, errs := run(t, "ima", "appraise", "--policy", pol, "--boot-aggregate", hex.EncodeToString(boot[:]), good); code != 0 {
			t.Errorf("%s: golden list: exit %d\n%s%s\npolicy:\n%s", format, code, out, errs, pol)
		}
		code, out, errs = run(t, "ima", "appraise", "--policy", pol, changed)
		want := "entry 0 /usr/bin/app sha256:" + hex.EncodeToString(func() []byte { d := sha256.Sum256([]byte("app v2")); return d[:] }()) + ": digest_not_allowed"
		if code != 2 || !strings.Contains(out+errs, want) {
			t.Errorf("%s: changed file: exit %d, want 2 with %q\n%s%s", format, code, want, out, errs)
		}
	}
}

// TestPolicyGenerateIMAFromList: a policy generated from a list allows
// that list, read from a file or live under --host-root.
func TestPolicyGenerateIMAFromList(t *testing.T) {
	dir := t.TempDir()
	list := imaNGList(t, [][2]string{{"boot_aggregate", "boot"}, {"/usr/bin/bash", "bash"}, {"/usr/lib/libc.so.6", "libc"}})
	file := writeFile(t, filepath.Join(dir, "golden.bin"), list, 0o644)
	hostRoot := filepath.Join(dir, "host")
	writeFile(t, filepath.Join(hostRoot, "sys/kernel/security/ima/binary_runtime_measurements"), list, 0o444)
	other := writeFile(t, filepath.Join(dir, "other.bin"), imaNGList(t, [][2]string{{"/usr/bin/nc", "nc"}}), 0o644)
	for _, src := range [][]string{{"--ima-list", file}, {"--from-node", "--host-root", hostRoot}} {
		for _, format := range []string{"hcl", "keylime"} {
			args := append([]string{"policy", "generate", "--ima", "-o", format}, src...)
			code, out, errs := run(t, args...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errs)
			}
			pol := writeFile(t, filepath.Join(dir, "p."+format), []byte(out), 0o644)
			if code, out, errs := run(t, "ima", "appraise", "--policy", pol, file); code != 0 {
				t.Errorf("%v: exit %d %s%s", args, code, out, errs)
			}
			if code, out, errs := run(t, "ima", "appraise", "--policy", pol, other); code != 2 || !strings.Contains(out, "/usr/bin/nc") {
				t.Errorf("%v: other list: exit %d %s%s", args, code, out, errs)
			}
		}
	}
	// The repository's mixed list: what can be listed is, the violation is
	// accepted only when asked, and the md5 entry (shorter than any digest
	// a policy holds) is the one entry left to offend.
	mixed := filepath.Join("..", "testdata", "ima", "mixed.ascii")
	code, out, errs := run(t, "policy", "generate", "--ima", "--ima-list", mixed, "--ima-buf", "--allow-violations")
	if code != 0 || !strings.Contains(errs, "1 violations") || !strings.Contains(out, `hash_algorithms`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	pol := writeFile(t, filepath.Join(dir, "mixed.hcl"), []byte(out), 0o644)
	code, out, errs = run(t, "ima", "appraise", "--policy", pol, mixed)
	if code != 2 || !strings.Contains(out, " 1 offending") || !strings.Contains(out, "/usr/bin/md5_measured md5:") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}

// TestPolicyGenerateIMARefuses: bad input is refused naming what is wrong.
func TestPolicyGenerateIMARefuses(t *testing.T) {
	dir := t.TempDir()
	list := writeFile(t, filepath.Join(dir, "l.bin"), imaNGList(t, [][2]string{{"/bin/a", "a"}}), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--ima-list", list, "--exclude", "/tmp/", "--exclude", "/a(b"}, `--exclude "/a(b"`},
		{[]string{"--ima-list", list, "--exclude", "/a(?=b)"}, `--exclude "/a(?=b)"`},
		{[]string{"--ima-list", list, "-o", "json"}, "want hcl or keylime"},
		{[]string{"--ima-list", list, "-o", "keylime", "--warn-only"}, "Keylime verifier settings"},
		{[]string{}, "--ima-list FILE, --from-node or --ima-root DIR"},
		{[]string{"--ima-list", list, "--from-node"}, "exclude each other"},
		{[]string{"--ima-root", dir, "--hash", "md5"}, `--hash "md5"`},
		{[]string{"--ima-root", filepath.Join(dir, "missing")}, "--ima-root"},
		{[]string{"--from-node", "--host-root", dir}, "no IMA measurement list under"},
		{[]string{"--ima-list", writeFile(t, filepath.Join(dir, "junk"), []byte("junk\n"), 0o644)}, "junk"},
	}
	for _, tc := range cases {
		code, out, errs := run(t, append([]string{"policy", "generate", "--ima"}, tc.args...)...)
		if code != 1 || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%v: exit %d, want 1 with %q\nstdout: %s\nstderr: %s", tc.args, code, tc.want, out, errs)
		}
	}
}
