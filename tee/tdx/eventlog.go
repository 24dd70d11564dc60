package tdx

import (
	"context"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// EventLog returns CCEL events [start, start+count), the Spec ID event
// first, with registers in the CCMR space (see cctrusted.IMR.TDX).
//
// IMA events are not included: whether a kernel extends them into RTMR2
// (CCNP's patched kernels) or not at all (mainline) is not visible from here,
// and mixing them in would break the replay of RTMR2 on the latter. Callers
// that want them read RawIMA and parse it with eventlog/ima.
func (p *Provider) EventLog(ctx context.Context, start, count int) ([]cctrusted.Event, error) {
	_, raw, err := p.RawCCEL(ctx)
	if err != nil {
		return nil, err
	}
	log, err := eventlog.ParseCCEL(raw)
	if err != nil {
		return nil, fmt.Errorf("tdx: CCEL log %s: %w", p.ccelPath, err)
	}
	events, err := cctrusted.Page(log.Events, start, count)
	if err != nil {
		return nil, fmt.Errorf("tdx: %w", err)
	}
	return events, nil
}
