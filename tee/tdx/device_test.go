package tdx

import (
	"testing"
	"unsafe"
)

// struct tdx_report_req from Linux include/uapi/linux/tdx-guest.h:
// __u8 reportdata[64]; __u8 tdreport[1024].
func TestGetReportReqLayout(t *testing.T) {
	var r getReportReq
	if got := unsafe.Sizeof(r); got != 1088 {
		t.Errorf("sizeof(tdx_report_req) = %d, want 1088", got)
	}
	if got := unsafe.Offsetof(r.tdReport); got != 64 {
		t.Errorf("offsetof(tdreport) = %d, want 64", got)
	}
	// TDX_CMD_GET_REPORT0 as the kernel header expands it (FACTS.md).
	if got := iowr(tdxIoctlType, 1, unsafe.Sizeof(r)); got != 0xC4405401 {
		t.Errorf("_IOWR('T', 1, 1088) = %#x, want 0xc4405401", got)
	}
}
