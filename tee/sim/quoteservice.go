package sim

import (
	"context"
	"errors"
	"fmt"
)

// ErrForeignTDReport is QuoteTDReport's refusal of a TD report this TD's
// simulated TDX module did not make.
var ErrForeignTDReport = errors.New("sim: not a TD report of this TD (a real quoting enclave would fail its MAC)")

// TDReport returns the TDREPORT the simulated TDX module gives this TD now
// for reportData, as TDG.MR.REPORT (a paravisor) or /dev/tdx_guest would.
func (p *Provider) TDReport(ctx context.Context, reportData [64]byte) ([tdReportSize]byte, error) {
	s, err := p.st.read(ctx)
	if err != nil {
		return [tdReportSize]byte{}, err
	}
	return tdReport(s, &p.auth.Platform, reportData), nil
}

// QuoteTDReport is the simulated quoting enclave asked by the host for the
// quote of a TD report (Azure's metadata service does this for the
// paravisor's): the quote of exactly that report, signed by the simulated
// PCK chain. A real quoting enclave checks the report's MAC, which only the
// CPU can make; the simulator leaves the MAC zero, so instead it accepts a
// report only if it is byte for byte the one the simulated module makes
// for the same REPORTDATA from the TD's current state, and refuses any
// other with ErrForeignTDReport.
func (p *Provider) QuoteTDReport(ctx context.Context, report []byte) ([]byte, error) {
	if len(report) != tdReportSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrForeignTDReport, len(report), tdReportSize)
	}
	var rd [64]byte
	copy(rd[:], report[offReportData:])
	s, err := p.st.read(ctx)
	if err != nil {
		return nil, err
	}
	want := tdReport(s, &p.auth.Platform, rd)
	if string(want[:]) != string(report) {
		return nil, ErrForeignTDReport
	}
	q, err := p.auth.SignQuote(s.quoteBody(), rd)
	if err != nil {
		return nil, fmt.Errorf("sim: quote: %w", err)
	}
	return q, nil
}
