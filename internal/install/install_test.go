package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCopy(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	content := map[string]string{"a": "plugin a", "b": "plugin b"}
	for n, c := range content {
		if err := os.WriteFile(filepath.Join(src, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A stale copy from an earlier pod is replaced whole.
	if err := os.WriteFile(filepath.Join(dst, "a"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Copy(context.Background(), src, dst, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("copied %v", got)
	}
	for _, c := range got {
		b, err := os.ReadFile(filepath.Join(dst, c.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content[c.Name]))
		if string(b) != content[c.Name] || c.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: content %q sha256 %s", c.Name, b, c.SHA256)
		}
		st, _ := os.Stat(filepath.Join(dst, c.Name))
		if st.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755 (SPIRE executes it)", c.Name, st.Mode())
		}
	}
	left, _ := os.ReadDir(dst)
	if len(left) != 2 {
		t.Errorf("destination holds %d entries, want 2 (no temporary files left)", len(left))
	}
}

func TestCopyRefuses(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		names []string
		dst   string
		want  string
	}{
		{"nothing", nil, dst, "no files"},
		{"path escape", []string{"../etc/passwd"}, dst, "not a plain file name"},
		{"dot dot", []string{".."}, dst, "not a plain file name"},
		{"missing", []string{"absent"}, dst, "absent"},
		{"directory", []string{"dir"}, dst, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Copy(context.Background(), src, tc.dst, tc.names)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Copy(%v): %v, want an error with %q", tc.names, err, tc.want)
			}
		})
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(context.Background(), src, filepath.Join(dst, "absent"), []string{"f"}); err == nil || !strings.Contains(err.Error(), "destination") {
		t.Fatalf("Copy into a missing directory: %v", err)
	}
}
