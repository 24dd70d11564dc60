package sim

import (
	"context"
	"crypto/sha512"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"

	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

// TDREPORT layout (Intel TDX module ABI: REPORTMACSTRUCT at 0, TEE_TCB_INFO at
// 0x100, TDINFO at 0x200).
const (
	tdReportSize        = 1024
	offReportType       = 0x00
	offCPUSVN           = 0x10
	offTeeTCBInfoHash   = 0x20
	offTeeInfoHash      = 0x50
	offReportData       = 0x80
	offTeeTCBInfo       = 0x100
	teeTCBInfoSize      = 239
	offTDInfo           = 0x200
	tdInfoSize          = 512
	offTDAttributes     = 0x200
	offXFAM             = 0x208
	offMRTD             = 0x210
	offMRConfigID       = 0x240
	offMROwner          = 0x270
	offMROwnerConfig    = 0x2A0
	offRTMR0            = 0x2D0
	tcbInfoValidAllBits = 0xff
)

// tdReport lays out the TDREPORT the TDX module would return for s on platform p.
// The MAC field stays zero: it is keyed by the CPU and no verifier can check it
// outside the TD, so simulating it would only pretend.
func tdReport(s *State, p *pki.Platform, reportData [64]byte) [tdReportSize]byte {
	var r [tdReportSize]byte
	r[offReportType] = pki.TEETypeTDX
	copy(r[offCPUSVN:], p.CPUSVN)
	copy(r[offReportData:], reportData[:])

	tcb := r[offTeeTCBInfo : offTeeTCBInfo+teeTCBInfoSize]
	for i := range 8 {
		tcb[i] = tcbInfoValidAllBits
	}
	copy(tcb[0x08:], p.TeeTCBSVN)
	copy(tcb[0x18:], p.MRSEAM)
	copy(tcb[0x48:], p.MRSignerSeam)
	copy(tcb[0x78:], p.SeamAttributes)

	copy(r[offTDAttributes:], s.TDAttributes)
	copy(r[offXFAM:], s.XFAM)
	copy(r[offMRTD:], s.MRTD)
	copy(r[offMRConfigID:], s.MRConfigID)
	copy(r[offMROwner:], s.MROwner)
	copy(r[offMROwnerConfig:], s.MROwnerConfig)
	for i := range s.RTMR {
		copy(r[offRTMR0+48*i:], s.RTMR[i])
	}

	tcbHash := sha512.Sum384(tcb)
	copy(r[offTeeTCBInfoHash:], tcbHash[:])
	infoHash := sha512.Sum384(r[offTDInfo : offTDInfo+tdInfoSize])
	copy(r[offTeeInfoHash:], infoHash[:])
	return r
}

// device is the simulated /dev/tdx_guest: TDREPORTs of the current state.
type device struct {
	st       store
	platform pki.Platform
}

// Report implements tdx.Device.
func (d *device) Report(ctx context.Context, reportData [64]byte) ([1024]byte, error) {
	s, err := d.st.read(ctx)
	if err != nil {
		return [1024]byte{}, err
	}
	return tdReport(s, &d.platform, reportData), nil
}

// extender is the simulated RTMR extend interface.
type extender struct{ st store }

// ExtendRTMR implements tdx.RTMRExtender.
func (e *extender) ExtendRTMR(ctx context.Context, index int, digest [48]byte) error {
	return e.st.extend(ctx, index, digest)
}

// quoteTimeout bounds how long a quote request waits for the state lock: configfs
// reads carry no context.
const quoteTimeout = 30 * time.Second

// newTSM returns a configfs-tsm client whose report subsystem behaves like the
// kernel's (faketsm: entries, generations, privlevel) and whose outblob is a quote
// the simulated QE signs over the current state and the written inblob.
func newTSM(st store, auth *pki.Authority) configfsi.Client {
	rs := faketsm.ReportV7(0)
	fallback := rs.ReadAttr
	rs.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte("tdx_guest\n"), nil
		case "outblob":
			in, ok := e.InAttrs["inblob"]
			if !ok || len(in.Value) != 64 {
				// The kernel requires exactly 64 bytes of inblob for TDX.
				return nil, syscall.EINVAL
			}
			var rd [64]byte
			copy(rd[:], in.Value)
			ctx, cancel := context.WithTimeout(context.Background(), quoteTimeout)
			defer cancel()
			s, err := st.read(ctx)
			if err != nil {
				return nil, err
			}
			q, err := auth.SignQuote(s.quoteBody(), rd)
			if err != nil {
				return nil, fmt.Errorf("sim: quote: %w", err)
			}
			return q, nil
		case "auxblob":
			return nil, os.ErrNotExist
		}
		return fallback(e, attr)
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": rs}}
}
