package tdx

import (
	"context"
	"errors"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// EventLog returns CCEL events [start, start+count).
func (p *Provider) EventLog(ctx context.Context, start, count int) ([]cctrusted.Event, error) {
	return nil, errors.New("tdx: event log parsing is not wired yet; use RawCCEL")
}
