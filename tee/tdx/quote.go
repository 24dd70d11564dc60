package tdx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-configfs-tsm/report"
)

// reportAttempts bounds the retries after a configfs-tsm generation race.
// Each attempt uses a fresh report entry, so a race means another writer
// touched our entry; a few retries ride out a transient one, and a
// persistent one is reported rather than looped on.
const reportAttempts = 3

// Quote layout (Intel TDX DCAP quote v4 and v5).
const (
	quoteHeaderSize    = 48
	quoteTEETypeTDX    = 0x81
	quoteV4ReportData  = 568 // header 48 + REPORTDATA at 520 in the TD report body
	quoteV5BodyOffset  = 54  // header 48 + body type u16 + body size u32
	tdReportBodyV10    = 584 // TD 1.0 report body size
	tdBodyReportDataAt = 520
)

// Report returns a quote whose REPORTDATA is SHA-512(nonce || userData).
func (p *Provider) Report(ctx context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	if p.tsm == nil {
		return nil, fmt.Errorf("tdx: no quote interface: configfs-tsm (%s) is not present, and /dev/tdx_guest does not produce quotes on mainline Linux", p.tsmPath)
	}
	rd := cctrusted.ReportData(nonce, userData)
	q, err := p.quote(ctx, rd)
	if err != nil {
		return nil, err
	}
	return &cctrusted.Report{TEE: cctrusted.TEETDX, Quote: q, ReportData: rd[:]}, nil
}

// quote asks configfs-tsm for a quote over rd. report.Get checks the entry's
// generation counter after every read, so a concurrent writer to the same
// entry surfaces as a *report.GenerationErr; we retry on a fresh entry. The
// quote's own REPORTDATA is then compared with rd, which catches a swapped
// outblob even from a client that keeps no generation.
func (p *Provider) quote(ctx context.Context, rd [64]byte) ([]byte, error) {
	var lastErr error
	for range reportAttempts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		in := rd // report.Request keeps the slice; give each attempt its own
		resp, err := report.Get(p.tsm, &report.Request{InBlob: in[:], GetAuxBlob: false})
		if err != nil {
			if report.GetGenerationErr(err) != nil {
				lastErr = err
				continue
			}
			return nil, fmt.Errorf("tdx: configfs-tsm report: %w", err)
		}
		got, err := quoteReportData(resp.OutBlob)
		if err != nil {
			return nil, fmt.Errorf("tdx: configfs-tsm outblob: %w", err)
		}
		if !bytes.Equal(got, rd[:]) {
			return nil, fmt.Errorf("tdx: quote REPORTDATA %x does not match the requested %x", got, rd)
		}
		return resp.OutBlob, nil
	}
	return nil, fmt.Errorf("tdx: configfs-tsm report entry changed under us on each of %d attempts (another writer?): %w", reportAttempts, lastErr)
}

// quoteReportData returns the REPORTDATA field of a TDX quote (v4, or v5
// with a TD 1.0 or 1.5 body). It checks only the framing around the field;
// signatures are the verifier's business.
func quoteReportData(quote []byte) ([]byte, error) {
	if len(quote) < quoteHeaderSize {
		return nil, fmt.Errorf("quote is %d bytes, shorter than its %d-byte header", len(quote), quoteHeaderSize)
	}
	version := binary.LittleEndian.Uint16(quote[0:])
	if tee := binary.LittleEndian.Uint32(quote[4:]); tee != quoteTEETypeTDX {
		return nil, fmt.Errorf("quote TEE type is 0x%x, want 0x%x (TDX)", tee, quoteTEETypeTDX)
	}
	var off int
	switch version {
	case 4:
		off = quoteV4ReportData
	case 5:
		if len(quote) < quoteV5BodyOffset {
			return nil, errors.New("quote v5 is truncated before its body descriptor")
		}
		bodyType := binary.LittleEndian.Uint16(quote[48:])
		bodySize := binary.LittleEndian.Uint32(quote[50:])
		if bodyType != 2 && bodyType != 3 {
			return nil, fmt.Errorf("quote v5 body type %d is not a TD report (2 or 3)", bodyType)
		}
		if bodySize < tdReportBodyV10 || uint64(bodySize) > uint64(len(quote)-quoteV5BodyOffset) {
			return nil, fmt.Errorf("quote v5 body size %d does not fit a %d-byte quote", bodySize, len(quote))
		}
		off = quoteV5BodyOffset + tdBodyReportDataAt
	default:
		return nil, fmt.Errorf("quote version %d is not supported (want 4 or 5)", version)
	}
	if len(quote) < off+cctrusted.ReportDataSize {
		return nil, fmt.Errorf("quote v%d is %d bytes, truncated before REPORTDATA ends at %d", version, len(quote), off+cctrusted.ReportDataSize)
	}
	return quote[off : off+cctrusted.ReportDataSize : off+cctrusted.ReportDataSize], nil
}
