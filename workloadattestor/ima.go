package workloadattestor

import (
	"context"

	"github.com/ccnp-spire/ccnp-spire/workloadattestor/ccnpimr"
)

// imaIndex gives the selector ima:container_imr:<hex>: CCNP's per-container
// register (ccnpimr, the chain `ccnp serve` also serves) started from zero
// rather than from the host seed. The seed hashes the host daemons' command
// lines, which carry per-node flags, so a seeded value would differ on every
// node and one registration entry could not match the same image on two.
type imaIndex struct {
	idx *ccnpimr.Index
}

func newIMAIndex(path string) *imaIndex {
	return &imaIndex{idx: ccnpimr.NewIndex(path, 0)}
}

// containerIMR returns the register of the container key, or nil when the
// list has no entry for it.
func (x *imaIndex) containerIMR(ctx context.Context, key string) ([]byte, error) {
	snap, err := x.idx.Snapshot(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(snap.Own) == 0 {
		return nil, nil
	}
	return snap.Register(nil)
}
