package tdx

import (
	"context"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tdxCmdGetReport0 is TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req).
var tdxCmdGetReport0 = iowr(tdxIoctlType, 1, unsafe.Sizeof(getReportReq{}))

// Report asks the TDX module, through the guest driver, for a TDREPORT over
// reportData.
func (d *hostDevice) Report(ctx context.Context, reportData [64]byte) ([TDReportSize]byte, error) {
	if err := ctx.Err(); err != nil {
		return [TDReportSize]byte{}, err
	}
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if err != nil {
		return [TDReportSize]byte{}, err
	}
	defer f.Close()
	req := getReportReq{reportData: reportData}
	conn, err := f.SyscallConn()
	if err != nil {
		return [TDReportSize]byte{}, fmt.Errorf("%s: %w", d.path, err)
	}
	var errno unix.Errno
	if err := conn.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, tdxCmdGetReport0, uintptr(unsafe.Pointer(&req)))
	}); err != nil {
		return [TDReportSize]byte{}, fmt.Errorf("%s: %w", d.path, err)
	}
	if errno != 0 {
		return [TDReportSize]byte{}, fmt.Errorf("ioctl TDX_CMD_GET_REPORT0 on %s: %w", d.path, errno)
	}
	return req.tdReport, nil
}
