package tdx

// The /dev/tdx_guest TDREPORT ioctl (Linux include/uapi/linux/tdx-guest.h).
const (
	iocWrite = 1
	iocRead  = 2
	// tdxIoctlType is the driver's ioctl type letter.
	tdxIoctlType = 'T'
)

// getReportReq is struct tdx_report_req: the caller's REPORTDATA in, the
// TDREPORT out. Both are byte arrays, so the Go layout has no padding.
type getReportReq struct {
	reportData [64]byte
	tdReport   [TDReportSize]byte
}

// iowr encodes _IOWR(typ, nr, size) as Linux's asm-generic ioctl.h does.
func iowr(typ, nr, size uintptr) uintptr {
	return (iocRead|iocWrite)<<30 | size<<16 | typ<<8 | nr
}

// hostDevice is the TDREPORT device at a host path, opened per request so
// the Provider holds no file descriptor between calls.
type hostDevice struct{ path string }
