package tdx

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestGetReport0Command(t *testing.T) {
	if tdxCmdGetReport0 != 0xC4405401 {
		t.Fatalf("TDX_CMD_GET_REPORT0 = %#x, want 0xc4405401", tdxCmdGetReport0)
	}
}

// No TDX here: the ioctl on a regular file must fail with ENOTTY and name the
// path, and a missing device must say which path is missing.
func TestHostDeviceErrors(t *testing.T) {
	root := t.TempDir()
	file := writeFile(t, root, "dev/tdx_guest", nil)
	_, err := (&hostDevice{path: file}).Report(context.Background(), [64]byte{})
	if !errors.Is(err, unix.ENOTTY) || !strings.Contains(err.Error(), file) {
		t.Fatalf("ioctl on a regular file: %v, want ENOTTY naming %s", err, file)
	}
	missing := filepath.Join(root, "dev/none")
	if _, err := (&hostDevice{path: missing}).Report(context.Background(), [64]byte{}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing device: %v, want it to name %s", err, missing)
	}
	p := mustOpen(t, Options{HostRoot: root})
	if _, _, err := p.Measurements(context.Background()); !errors.Is(err, unix.ENOTTY) {
		t.Fatalf("Measurements through the host device: %v, want ENOTTY", err)
	}
}
