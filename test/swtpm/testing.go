package swtpm

import (
	"context"
	"testing"
	"time"
)

// StartT starts a fresh swtpm for a test, in the test's temporary
// directory, stopped when the test ends. The test is skipped, saying why,
// only when swtpm is not installed; any other failure fails it.
func StartT(t testing.TB) *TPM {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("swtpm not installed, skipping: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sw, err := Start(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return sw
}
