package exedigest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

var bothAlgs = []cctrusted.Algorithm{cctrusted.AlgSHA256, cctrusted.AlgSHA384}

// coreutils computes the expected digest independently of Go's crypto.
func coreutils(t *testing.T, tool, path string) string {
	t.Helper()
	out, err := exec.Command(tool, path).Output()
	if err != nil {
		t.Skipf("%s: %v", tool, err)
	}
	return strings.Fields(string(out))[0]
}

func open(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestDigestMatchesCoreutils(t *testing.T) {
	c, err := NewCache(4, 0, bothAlgs)
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := c.Digest(context.Background(), open(t, "/bin/sleep"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(d[cctrusted.AlgSHA256]), coreutils(t, "sha256sum", "/bin/sleep"); got != want {
		t.Errorf("sha256 %s, sha256sum says %s", got, want)
	}
	if got, want := hex.EncodeToString(d[cctrusted.AlgSHA384]), coreutils(t, "sha384sum", "/bin/sleep"); got != want {
		t.Errorf("sha384 %s, sha384sum says %s", got, want)
	}
	// Second time from the cache.
	if _, _, err := c.Digest(context.Background(), open(t, "/bin/sleep")); err != nil {
		t.Fatal(err)
	}
	if h, m := c.Stats(); h != 1 || m != 1 {
		t.Fatalf("hits %d misses %d, want 1 1", h, m)
	}
}

func TestChangedFileMisses(t *testing.T) {
	c, _ := NewCache(4, 0, bothAlgs[:1])
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte("version one"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	d1, k1, err := c.Digest(context.Background(), open(t, p))
	if err != nil {
		t.Fatal(err)
	}
	// Same size, and mtime put back: ctime still moves, the key changes.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, []byte("version two"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	d2, k2, err := c.Digest(context.Background(), open(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if k1 == k2 || hex.EncodeToString(d1[cctrusted.AlgSHA256]) == hex.EncodeToString(d2[cctrusted.AlgSHA256]) {
		t.Fatalf("rewritten file served from the cache: %+v %+v", k1, k2)
	}
	if want := coreutils(t, "sha256sum", p); hex.EncodeToString(d2[cctrusted.AlgSHA256]) != want {
		t.Fatal("wrong digest after rewrite")
	}
}

func TestLRUBound(t *testing.T) {
	c, _ := NewCache(2, 0, bothAlgs[:1])
	dir := t.TempDir()
	var files []string
	for _, n := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	ctx := context.Background()
	for _, p := range []string{files[0], files[1], files[0], files[2]} { // c evicts b (a was used last)
		if _, _, err := c.Digest(ctx, open(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 2 {
		t.Fatalf("len %d, want 2", c.Len())
	}
	h0, m0 := c.Stats()
	_, _, _ = c.Digest(ctx, open(t, files[0]))
	_, _, _ = c.Digest(ctx, open(t, files[1]))
	h1, m1 := c.Stats()
	if h1-h0 != 1 || m1-m0 != 1 {
		t.Fatalf("a should hit and b miss: hits +%d misses +%d", h1-h0, m1-m0)
	}
}

func TestRefusals(t *testing.T) {
	if _, err := NewCache(0, 0, bothAlgs); err == nil {
		t.Error("size 0 accepted")
	}
	if _, err := NewCache(1, 0, nil); err == nil {
		t.Error("no algorithm accepted")
	}
	if _, err := NewCache(1, 0, []cctrusted.Algorithm{0x99}); err == nil {
		t.Error("unknown algorithm accepted")
	}
	c, _ := NewCache(1, 8, bothAlgs)
	p := filepath.Join(t.TempDir(), "big")
	_ = os.WriteFile(p, []byte("123456789"), 0o644)
	if _, _, err := c.Digest(context.Background(), open(t, p)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized file: %v", err)
	}
	if _, _, err := c.Digest(context.Background(), open(t, t.TempDir())); err == nil {
		t.Error("directory hashed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c2, _ := NewCache(1, 0, bothAlgs)
	if _, _, err := c2.Digest(ctx, open(t, "/bin/sleep")); err == nil {
		t.Error("cancelled context ignored")
	}
}

// BenchmarkColdDigest50MiB hashes a fresh 50 MiB file (SHA-256 and SHA-384,
// as on TDX) without the cache; the budget is 150 ms.
func BenchmarkColdDigest50MiB(b *testing.B) {
	p := filepath.Join(b.TempDir(), "big")
	buf := make([]byte, 50<<20)
	_, _ = rand.Read(buf)
	if err := os.WriteFile(p, buf, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, algs := range [][]cctrusted.Algorithm{bothAlgs[:1], bothAlgs} {
		b.Run(algsName(algs), func(b *testing.B) {
			for b.Loop() {
				c, _ := NewCache(1, 0, algs)
				f, _ := os.Open(p)
				if _, _, err := c.Digest(context.Background(), f); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}

func algsName(algs []cctrusted.Algorithm) string {
	var s []string
	for _, a := range algs {
		s = append(s, a.String())
	}
	return strings.Join(s, "+")
}
