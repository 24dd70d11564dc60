package collateral_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

// TestCacheOutageIsUnavailable checks the appraisal maps a cache error to
// CodeUnavailable (gRPC Unavailable), never to an acceptance.
func TestCacheOutageIsUnavailable(t *testing.T) {
	s := newSimPCS(t, pcs.Params{})
	s.mode.Store(mode500)
	c := newCache(t, s.getter(), collateral.CacheConfig{})
	roots := s.auth.RootPEM()
	pool := mustPool(t, roots)
	_, err := appraisal.TDX(context.Background(), appraisal.TDXEvidence{Quote: s.quote(t)},
		appraisal.TDXOptions{TrustedRoots: pool, Collateral: c, CheckRevocations: true})
	ae, ok := appraisal.AsError(err)
	if !ok || ae.Code != appraisal.CodeUnavailable || !errors.Is(err, collateral.ErrUnavailable) {
		t.Fatalf("appraisal with the PCS down: %v", err)
	}
	s.mode.Store(modeOK)
	c2 := newCache(t, s.getter(), collateral.CacheConfig{})
	if _, err := appraisal.TDX(context.Background(), appraisal.TDXEvidence{Quote: s.quote(t)},
		appraisal.TDXOptions{TrustedRoots: pool, Collateral: c2, CheckRevocations: true}); err != nil {
		t.Fatalf("appraisal with the PCS up: %v", err)
	}
}
