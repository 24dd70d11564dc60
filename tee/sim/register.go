package sim

import (
	"context"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
)

// Linking this package is what lets tee.Open open a simulated TEE: binaries
// that must never run a simulation (the production agent plugins) simply do
// not import it.
func init() {
	tee.RegisterSim(func(ctx context.Context, dir string) (cctrusted.Provider, error) {
		return Open(ctx, dir)
	})
}
