package nodeattestor

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestInstanceIDCreatedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "instance_id")
	id, err := InstanceID(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseInstanceID([]byte(id)); err != nil {
		t.Fatalf("created id %q: %v", id, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != id+"\n" {
		t.Errorf("file holds %q, id %q", b, id)
	}
	again, err := InstanceID(path)
	if err != nil || again != id {
		t.Errorf("second call = %q, %v; want %q", again, err, id)
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the id", len(entries))
	}
}

// TestInstanceIDConcurrent: agents racing to create the ID all end up with
// the one that won.
func TestInstanceIDConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "instance_id")
	const n = 16
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i], errs[i] = InstanceID(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("caller %d: %q, %v; caller 0: %q", i, ids[i], errs[i], ids[0])
		}
	}
}

func TestInstanceIDErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := InstanceID(filepath.Join(notDir, "instance_id")); err == nil || !strings.Contains(err.Error(), notDir) {
		t.Errorf("id under a file: %v", err)
	}
	if _, err := InstanceID(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("id path is a directory: %v", err)
	}
}

func TestParseInstanceID(t *testing.T) {
	const good = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"plain", good, true},
		{"newline", good + "\n", true},
		{"empty", "", false},
		{"two newlines", good + "\n\n", false},
		{"upper case", strings.ToUpper(good), false},
		{"short", good[:31], false},
		{"long", good + "0", false},
		{"non hex", "g" + good[1:], false},
		{"crlf", good + "\r\n", false},
		{"space", " " + good, false},
		{"huge", strings.Repeat("a", 1<<20), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := parseInstanceID([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("parseInstanceID(%q) = %q, %v", tt.in, id, err)
			}
			if tt.ok && id != good {
				t.Errorf("id %q", id)
			}
		})
	}
}

// FuzzParseInstanceID: whatever the file holds, parsing never panics and
// accepts only what the hello's instance_id rule and the agent path allow.
func FuzzParseInstanceID(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte("0123456789abcdef0123456789abcdef"))
	f.Add([]byte("not-an-id\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseInstanceID(b)
		if err != nil {
			return
		}
		if len(id) != 32 {
			t.Fatalf("accepted %q", id)
		}
		for _, c := range id {
			if !strings.ContainsRune("0123456789abcdef", c) {
				t.Fatalf("accepted %q", id)
			}
		}
	})
}
