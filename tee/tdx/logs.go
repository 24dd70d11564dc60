package tdx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// Read bounds. sysfs and securityfs report a size of 0, so the bound is
// enforced while reading, not from Stat.
const (
	// MaxCCELTableSize bounds the ACPI CCEL table (56 bytes in ACPI 6.5).
	MaxCCELTableSize = 4 << 10
	// MaxCCELSize bounds the CCEL event log (LAML is typically 64 KiB-1 MiB).
	MaxCCELSize = 16 << 20
	// MaxIMASize bounds the IMA binary log, which grows with every file
	// measured; the evidence layer applies its own, smaller payload limit.
	MaxIMASize = 64 << 20
)

// RawCCEL returns the ACPI CCEL table and the CCEL event log as the host
// exposes them. The table is checked (signature, length, checksum, TDX CC
// type); the log is returned as is, 0xFF-padded to LAML, for the verifier to
// parse.
func (p *Provider) RawCCEL(ctx context.Context) (table, log []byte, err error) {
	table, err = readBounded(ctx, p.ccelTablePath, MaxCCELTableSize)
	if err != nil {
		return nil, nil, fmt.Errorf("tdx: CCEL table: %w", err)
	}
	t, err := eventlog.ParseCCELTable(table)
	if err != nil {
		return nil, nil, fmt.Errorf("tdx: CCEL table %s: %w", p.ccelTablePath, err)
	}
	if t.CCType != eventlog.CCTypeTDX {
		return nil, nil, fmt.Errorf("tdx: CCEL table %s is for CC type %d, not TDX (%d)", p.ccelTablePath, t.CCType, eventlog.CCTypeTDX)
	}
	log, err = readBounded(ctx, p.ccelPath, MaxCCELSize)
	if err != nil {
		return nil, nil, fmt.Errorf("tdx: CCEL log: %w", err)
	}
	return table, log, nil
}

// RawIMA returns the IMA binary runtime measurement log from the first path
// that exists. The error names every path tried when none does.
func (p *Provider) RawIMA(ctx context.Context) ([]byte, error) {
	var errs []error
	for _, path := range p.imaPaths {
		b, err := readBounded(ctx, path, MaxIMASize)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("tdx: IMA log: %w", err)
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("tdx: IMA log: %w", errors.Join(errs...))
}

// readBounded reads at most limit bytes of path and fails, naming the path,
// when there are more.
func readBounded(ctx context.Context, path string, limit int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return smallfile.Read(path, limit)
}
