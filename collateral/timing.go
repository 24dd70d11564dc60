package collateral

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/google/go-tdx-guest/verify/trust"
)

// Clock accumulates the time one attestation spends fetching collateral.
// It travels in the context the verifier hands the getter (WithClock), so
// concurrent attestations sharing one getter each see only their own time.
type Clock struct{ ns atomic.Int64 }

type clockKey struct{}

// WithClock returns ctx carrying a new Clock, and the Clock.
func WithClock(ctx context.Context) (context.Context, *Clock) {
	c := &Clock{}
	return context.WithValue(ctx, clockKey{}, c), c
}

// Elapsed is the time added so far; zero on a nil Clock, so a caller that
// measures only sometimes needs no branch.
func (c *Clock) Elapsed() time.Duration {
	if c == nil {
		return 0
	}
	return time.Duration(c.ns.Load())
}

// Timed is a getter that adds the time of every fetch to the Clock of the
// context it is called with (none: not measured). The server uses it to
// report the collateral fetch apart from the quote's own verification.
type Timed struct{ Next trust.HTTPSGetter }

var _ trust.ContextHTTPSGetter = Timed{}

// Get is the context-free form; its time is not attributed.
func (g Timed) Get(url string) (map[string][]string, []byte, error) {
	return g.Next.Get(url)
}

// GetContext fetches through Next (with ctx when it takes one) and adds
// the time to ctx's Clock.
func (g Timed) GetContext(ctx context.Context, url string) (map[string][]string, []byte, error) {
	start := time.Now()
	defer func() {
		if c, ok := ctx.Value(clockKey{}).(*Clock); ok {
			c.ns.Add(int64(time.Since(start)))
		}
	}()
	if cg, ok := g.Next.(trust.ContextHTTPSGetter); ok {
		return cg.GetContext(ctx, url)
	}
	return g.Next.Get(url)
}
