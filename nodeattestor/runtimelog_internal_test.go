package nodeattestor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
)

// TestRuntimeLogOverLimitNotSent: a runtime log over the server's byte
// limit (only a log from before store capacities can be one) is reported as
// absent, so the node attests without it instead of failing.
func TestRuntimeLogOverLimitNotSent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(runtimelog.DefaultMaxBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = readRuntimeLog(context.Background(), path)
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, runtimelog.ErrTooLarge) {
		t.Fatalf("over-limit runtime log: %v, want it treated as absent", err)
	}
}
