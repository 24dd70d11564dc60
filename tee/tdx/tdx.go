// Package tdx is the cctrusted.Provider of Intel TDX guests.
//
// Every piece of hardware sits behind a small interface (configfsi.Client for
// quotes, Device for TDREPORTs, RTMRExtender for RTMR extends) so tests and
// the simulated TEE run this production code with fakes, and every host path
// is relative to Options.HostRoot so the plugin works from a container that
// mounts the host's /sys and /dev elsewhere.
//
// Quotes come only from configfs-tsm (Linux >= 6.7). Mainline Linux's
// /dev/tdx_guest uapi has a single ioctl, TDX_CMD_GET_REPORT0, which returns
// an unsigned TDREPORT; the TDX_CMD_GET_QUOTE ioctl of Intel's out-of-tree
// kernels (a QGS message exchanged through a shared buffer) is not supported.
// Without configfs-tsm the device still yields measurements, but Report fails
// with an error naming the configfs path it looked for.
package tdx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
)

// Host paths, relative to Options.HostRoot.
const (
	DefaultDevicePath    = "dev/tdx_guest"
	DefaultCCELPath      = "sys/firmware/acpi/tables/data/CCEL"
	DefaultCCELTablePath = "sys/firmware/acpi/tables/CCEL"
	DefaultIMAPath       = "sys/kernel/security/ima/binary_runtime_measurements"
	// AltIMAPath is where some kernels put the IMA log instead.
	AltIMAPath = "sys/kernel/security/integrity/ima/binary_runtime_measurements"
	// TSMReportPath is the configfs-tsm report subsystem (configfsi.TsmPrefix + "/report").
	TSMReportPath = "sys/kernel/config/tsm/report"
	// TSMRTMRPath is the configfs-tsm RTMR subsystem.
	TSMRTMRPath = "sys/kernel/config/tsm/rtmrs"
	// SysfsMeasurementsPath holds rtmr<N>:sha384 files (Linux tsm-mr, 6.16+).
	SysfsMeasurementsPath = "sys/class/misc/tdx_guest/measurements"
)

// DigestSize is the size of every TDX measurement register (SHA-384).
const DigestSize = 48

// Device produces TDREPORTs (ioctl TDX_CMD_GET_REPORT0 on /dev/tdx_guest).
// The returned report must carry reportData at its REPORTDATA field, as the
// TDX module's does.
type Device interface {
	Report(ctx context.Context, reportData [64]byte) ([1024]byte, error)
}

// RTMRExtender extends RTMR2 or RTMR3 with a SHA-384 digest.
type RTMRExtender interface {
	ExtendRTMR(ctx context.Context, index int, digest [48]byte) error
}

// Options select the host interfaces. Zero values probe the host.
type Options struct {
	// HostRoot prefixes every host path ("/" when empty).
	HostRoot string
	// TSM is the configfs-tsm client for quotes. nil: when
	// HostRoot/sys/kernel/config/tsm/report exists, linuxtsm's client for
	// HostRoot "/" and otherwise one that maps configfs paths under HostRoot.
	TSM configfsi.Client
	// Device produces TDREPORTs. nil: HostRoot/dev/tdx_guest when it exists.
	Device Device
	// Extender extends RTMRs. nil: the sysfs measurements directory or
	// configfs tsm/rtmrs under HostRoot, whichever exists (sysfs, the
	// mainline ABI, first).
	Extender RTMRExtender
	// CCELPath, CCELTablePath and IMAPath are relative to HostRoot; empty
	// means the Default* paths (for IMA, also AltIMAPath).
	CCELPath, CCELTablePath, IMAPath string
}

// Provider is a TDX guest as the CC Trusted API sees it. It is safe for
// concurrent use when its Device, TSM client and Extender are.
type Provider struct {
	tsm           configfsi.Client
	tsmPath       string // for errors when tsm is nil
	device        Device
	devicePath    string // for errors when device is nil
	extender      RTMRExtender
	extendMissing []string // probed paths, for errors when extender is nil
	ccelPath      string
	ccelTablePath string
	imaPaths      []string
}

var _ cctrusted.Provider = (*Provider)(nil)

// Open probes the host (or takes the interfaces opts supplies) and returns a
// Provider. It fails when there is neither a quote interface nor a TDREPORT
// device, i.e. when this does not look like a TDX guest.
func Open(ctx context.Context, opts Options) (*Provider, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root := opts.HostRoot
	if root == "" {
		root = "/"
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("tdx: host root: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("tdx: host root %s is not a directory", root)
	}
	at := func(rel, def string) string {
		if rel == "" {
			rel = def
		}
		return filepath.Join(root, rel)
	}
	p := &Provider{
		tsm:           opts.TSM,
		tsmPath:       at(TSMReportPath, ""),
		device:        opts.Device,
		devicePath:    at(DefaultDevicePath, ""),
		extender:      opts.Extender,
		ccelPath:      at(opts.CCELPath, DefaultCCELPath),
		ccelTablePath: at(opts.CCELTablePath, DefaultCCELTablePath),
	}
	if opts.IMAPath != "" {
		p.imaPaths = []string{at(opts.IMAPath, "")}
	} else {
		p.imaPaths = []string{at(DefaultIMAPath, ""), at(AltIMAPath, "")}
	}

	var probeErrs []error
	if p.tsm == nil {
		if err := isDir(p.tsmPath); err != nil {
			probeErrs = append(probeErrs, fmt.Errorf("configfs-tsm: %w", err))
		} else if root == "/" {
			c, err := linuxtsm.MakeClient()
			if err != nil {
				return nil, fmt.Errorf("tdx: configfs-tsm client: %w", err)
			}
			p.tsm = c
		} else {
			p.tsm = &rootedClient{root: root}
		}
	}
	if p.device == nil {
		if _, err := os.Stat(p.devicePath); err != nil {
			probeErrs = append(probeErrs, fmt.Errorf("TDREPORT device: %w", err))
		} else {
			p.device = &hostDevice{path: p.devicePath}
		}
	}
	if p.tsm == nil && p.device == nil {
		return nil, fmt.Errorf("tdx: not a TDX guest: %w", errors.Join(probeErrs...))
	}
	if p.extender == nil {
		p.extender, p.extendMissing = probeExtender(root)
	}
	return p, nil
}

func isDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "stat", Path: path, Err: errors.New("not a directory")}
	}
	return nil
}

// TEE returns cctrusted.TEETDX.
func (p *Provider) TEE() cctrusted.TEE { return cctrusted.TEETDX }

// DefaultAlgorithm returns SHA-384, the only bank TDX registers have.
func (p *Provider) DefaultAlgorithm(context.Context) (cctrusted.Algorithm, error) {
	return cctrusted.AlgSHA384, nil
}

// MeasurementCount returns 4: RTMR0..3. The MRTD is read separately.
func (p *Provider) MeasurementCount(context.Context) (int, error) { return cctrusted.NumRTMRs, nil }
