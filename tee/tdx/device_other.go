//go:build !linux

package tdx

import (
	"context"
	"fmt"
)

// Report fails: /dev/tdx_guest exists only on Linux guests.
func (d *hostDevice) Report(context.Context, [64]byte) ([TDReportSize]byte, error) {
	return [TDReportSize]byte{}, fmt.Errorf("%s: TDREPORT ioctl is only implemented on Linux", d.path)
}
