package collateral_test

import (
	"context"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

// BenchmarkCacheHit is the warm path every attestation takes: a TCB info
// answered from memory (copy of the body, clone of the headers).
func BenchmarkCacheHit(b *testing.B) {
	s := newSimPCS(b, pcs.Params{})
	c, err := collateral.NewCache(s.getter(), collateral.CacheConfig{})
	if err != nil {
		b.Fatal(err)
	}
	u := s.urls()[0]
	ctx := context.Background()
	if _, _, err := c.GetContext(ctx, u); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.GetContext(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
	if s.requests() != 1 {
		b.Fatalf("%d upstream requests", s.requests())
	}
}

// BenchmarkCacheHitParallel is the same from every core at once.
func BenchmarkCacheHitParallel(b *testing.B) {
	s := newSimPCS(b, pcs.Params{})
	c, err := collateral.NewCache(s.getter(), collateral.CacheConfig{})
	if err != nil {
		b.Fatal(err)
	}
	u := s.urls()[0]
	if _, _, err := c.Get(u); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.GetContext(context.Background(), u); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
