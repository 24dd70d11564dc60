package conf_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// Hex fixtures of the sizes registers and banks use.
var (
	hex20 = strings.Repeat("1a", 20)
	hex32 = strings.Repeat("2b", 32)
	hex48 = strings.Repeat("3c", 48)
	hex64 = strings.Repeat("4d", 64)
)

// wantErr asserts that err has a line "<source>: line <line>: " (line 0:
// no line part) containing every part. The key a message must name is
// passed as one of the parts.
func wantErr(t *testing.T, err error, source string, line int, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s line %d %q", source, line, parts)
	}
	prefix := source + ": "
	if line > 0 {
		prefix = fmt.Sprintf("%s: line %d: ", source, line)
	}
	for _, l := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		if line == 0 && strings.HasPrefix(l, source+": line ") {
			continue
		}
		ok := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				ok = false
			}
		}
		if ok {
			var ce *conf.Error
			if !errors.As(err, &ce) {
				t.Errorf("error is not a *conf.Error: %T", err)
			}
			return
		}
	}
	t.Fatalf("error %q\nhas no line starting %q containing %q", err, prefix, parts)
}

// files serves policy files from memory.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := m[name]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
}
