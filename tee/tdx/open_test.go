package tdx

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenProbes(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T, root string)
		wantTSM    bool
		wantDevice bool
		wantExt    string // "", "sysfs", "configfs"
		wantErr    []string
	}{
		{
			name:    "nothing",
			setup:   func(*testing.T, string) {},
			wantErr: []string{"not a TDX guest", "sys/kernel/config/tsm/report", "dev/tdx_guest"},
		},
		{
			name: "tsm report is a file",
			setup: func(t *testing.T, root string) {
				writeFile(t, root, "sys/kernel/config/tsm/report", nil)
			},
			wantErr: []string{"not a directory"},
		},
		{
			name: "configfs-tsm only",
			setup: func(t *testing.T, root string) {
				mkdir(t, root, "sys/kernel/config/tsm/report")
				mkdir(t, root, "sys/kernel/config/tsm/rtmrs")
			},
			wantTSM: true, wantExt: "configfs",
		},
		{
			name: "device only",
			setup: func(t *testing.T, root string) {
				writeFile(t, root, "dev/tdx_guest", nil)
				mkdir(t, root, "sys/class/misc/tdx_guest/measurements")
			},
			wantDevice: true, wantExt: "sysfs",
		},
		{
			name: "both, sysfs extend preferred",
			setup: func(t *testing.T, root string) {
				writeFile(t, root, "dev/tdx_guest", nil)
				mkdir(t, root, "sys/kernel/config/tsm/report")
				mkdir(t, root, "sys/kernel/config/tsm/rtmrs")
				mkdir(t, root, "sys/class/misc/tdx_guest/measurements")
			},
			wantTSM: true, wantDevice: true, wantExt: "sysfs",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(t, root)
			p, err := Open(context.Background(), Options{HostRoot: root})
			if tc.wantErr != nil {
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("Open error = %v, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p.tsm != nil) != tc.wantTSM || (p.device != nil) != tc.wantDevice {
				t.Errorf("tsm %v device %v, want %v %v", p.tsm != nil, p.device != nil, tc.wantTSM, tc.wantDevice)
			}
			if c, ok := p.tsm.(*rootedClient); tc.wantTSM && (!ok || c.root != root) {
				t.Errorf("tsm client = %#v, want one rooted at %s", p.tsm, root)
			}
			if d, ok := p.device.(*hostDevice); tc.wantDevice && (!ok || d.path != filepath.Join(root, "dev/tdx_guest")) {
				t.Errorf("device = %#v", p.device)
			}
			var ext string
			switch p.extender.(type) {
			case *sysfsExtender:
				ext = "sysfs"
			case *configfsExtender:
				ext = "configfs"
			}
			if ext != tc.wantExt {
				t.Errorf("extender %q, want %q", ext, tc.wantExt)
			}
		})
	}
}

func TestOpenBadRoot(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "nope")
	if _, err := Open(context.Background(), Options{HostRoot: missing, Device: &fakeDevice{}}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Open error = %v, want not-exist naming %s", err, missing)
	}
	file := writeFile(t, root, "file", nil)
	if _, err := Open(context.Background(), Options{HostRoot: file, Device: &fakeDevice{}}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Open error = %v, want not a directory", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, Options{HostRoot: root, Device: &fakeDevice{}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open error = %v, want context.Canceled", err)
	}
}
