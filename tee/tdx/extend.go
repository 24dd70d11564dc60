package tdx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/rtmr"
)

// ExtendRTMR extends RTMR2 or RTMR3 with digest. RTMR0 and RTMR1 belong to
// firmware and the boot loader and are refused here, whatever the kernel
// would allow.
func (p *Provider) ExtendRTMR(ctx context.Context, index int, digest [48]byte) error {
	if index != 2 && index != 3 {
		return fmt.Errorf("tdx: extend of RTMR%d refused: only RTMR2 and RTMR3 are extendable at runtime", index)
	}
	if p.extender == nil {
		return fmt.Errorf("tdx: no RTMR extend interface: none of %s exists", strings.Join(p.extendMissing, ", "))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.extender.ExtendRTMR(ctx, index, digest); err != nil {
		return fmt.Errorf("tdx: extend RTMR%d: %w", index, err)
	}
	return nil
}

// probeExtender picks the sysfs measurements directory (Linux tsm-mr, the
// mainline ABI) or else configfs tsm/rtmrs under root. With neither it
// returns the paths it probed.
func probeExtender(root string) (RTMRExtender, []string) {
	sysfs := filepath.Join(root, SysfsMeasurementsPath)
	if isDir(sysfs) == nil {
		return &sysfsExtender{dir: sysfs}, nil
	}
	configfs := filepath.Join(root, TSMRTMRPath)
	if isDir(configfs) == nil {
		var c configfsi.Client = &rootedClient{root: root}
		return &configfsExtender{client: c}, nil
	}
	return nil, []string{sysfs, configfs}
}

// sysfsExtender writes the raw digest to measurements/rtmr<N>:sha384, which
// the kernel extends into the register.
type sysfsExtender struct{ dir string }

func (e *sysfsExtender) ExtendRTMR(_ context.Context, index int, digest [48]byte) error {
	path := filepath.Join(e.dir, fmt.Sprintf("rtmr%d:sha384", index))
	// No O_CREATE: a missing attribute means the kernel lacks this register,
	// and creating a regular file would silently measure nothing.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	n, err := f.Write(digest[:])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if n != len(digest) {
		return fmt.Errorf("write %s: short write of %d bytes", path, n)
	}
	return nil
}

// configfsExtender extends through configfs tsm/rtmrs (go-configfs-tsm's
// rtmr package finds or creates the entry for the index).
type configfsExtender struct{ client configfsi.Client }

func (e *configfsExtender) ExtendRTMR(_ context.Context, index int, digest [48]byte) error {
	return rtmr.ExtendDigest(e.client, index, digest[:])
}

// rootedClient is a configfsi.Client for a configfs-tsm mounted under root.
// go-configfs-tsm names files by their absolute /sys/kernel/config/tsm
// paths; this maps them under root and back. It behaves as linuxtsm's
// client does (RemoveAll is rmdir, as configfs requires); WriteFile creates
// missing files only so a plain directory tree can stand in for configfs.
type rootedClient struct{ root string }

func (c *rootedClient) host(name string) string { return filepath.Join(c.root, name) }

func (c *rootedClient) MkdirTemp(dir, pattern string) (string, error) {
	d, err := os.MkdirTemp(c.host(dir), pattern)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(d)), nil
}

func (c *rootedClient) ReadFile(name string) ([]byte, error) { return os.ReadFile(c.host(name)) }

func (c *rootedClient) ReadDir(dir string) ([]os.DirEntry, error) { return os.ReadDir(c.host(dir)) }

func (c *rootedClient) WriteFile(name string, contents []byte) error {
	return os.WriteFile(c.host(name), contents, 0o600)
}

func (c *rootedClient) RemoveAll(name string) error { return os.Remove(c.host(name)) }
