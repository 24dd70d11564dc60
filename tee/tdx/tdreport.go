package tdx

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// TDREPORT layout (TDX module ABI: REPORTMACSTRUCT, TEE_TCB_INFO, TDINFO).
const (
	TDReportSize         = 1024
	tdReportDataOffset   = 0x80
	tdReportMRTDOffset   = 0x210
	tdReportRTMR0Offset  = 0x2D0
	tdReportRTMRDistance = DigestSize
)

// tdReport reads a TDREPORT for a fresh random REPORTDATA and checks that the
// device echoed it, so a stale or foreign buffer is never taken for this
// TD's registers.
func (p *Provider) tdReport(ctx context.Context) ([TDReportSize]byte, error) {
	if p.device == nil {
		return [TDReportSize]byte{}, fmt.Errorf("tdx: no TDREPORT device: %s is not present", p.devicePath)
	}
	if err := ctx.Err(); err != nil {
		return [TDReportSize]byte{}, err
	}
	var rd [64]byte
	if _, err := rand.Read(rd[:]); err != nil {
		return [TDReportSize]byte{}, fmt.Errorf("tdx: random REPORTDATA: %w", err)
	}
	rep, err := p.device.Report(ctx, rd)
	if err != nil {
		return rep, fmt.Errorf("tdx: TDREPORT: %w", err)
	}
	if got := rep[tdReportDataOffset : tdReportDataOffset+64]; !bytes.Equal(got, rd[:]) {
		return [TDReportSize]byte{}, errors.New("tdx: TDREPORT does not carry the REPORTDATA just requested (stale or foreign report)")
	}
	return rep, nil
}

// Measurements returns the MRTD and RTMR0..3 from a fresh TDREPORT. It needs
// the TDREPORT device but no quote service.
func (p *Provider) Measurements(ctx context.Context) (mrtd [48]byte, rtmr [4][48]byte, err error) {
	rep, err := p.tdReport(ctx)
	if err != nil {
		return mrtd, rtmr, err
	}
	copy(mrtd[:], rep[tdReportMRTDOffset:])
	for i := range rtmr {
		copy(rtmr[i][:], rep[tdReportRTMR0Offset+i*tdReportRTMRDistance:])
	}
	return mrtd, rtmr, nil
}

// Measurement reads one register. imr may be in any space that maps to a
// TDX register (RTMR, MRTD, CCMR, or a PCR with a TDX counterpart); alg must
// be SHA-384.
func (p *Provider) Measurement(ctx context.Context, imr cctrusted.IMR, alg cctrusted.Algorithm) (cctrusted.Digest, error) {
	if alg != cctrusted.AlgSHA384 {
		return cctrusted.Digest{}, fmt.Errorf("tdx: %v has no %v bank: TDX registers are sha384 only", imr, alg)
	}
	reg, err := imr.TDX()
	if err != nil {
		return cctrusted.Digest{}, fmt.Errorf("tdx: measurement: %w", err)
	}
	mrtd, rtmr, err := p.Measurements(ctx)
	if err != nil {
		return cctrusted.Digest{}, err
	}
	v := mrtd
	if reg.Space == cctrusted.SpaceRTMR {
		v = rtmr[reg.Index]
	}
	return cctrusted.Digest{Alg: cctrusted.AlgSHA384, Value: v[:]}, nil
}
