package collateral

import (
	"context"
	"testing"
	"time"
)

// slowGetter takes d per fetch and records whether it saw the context.
type slowGetter struct {
	d      time.Duration
	sawCtx bool
}

func (g *slowGetter) Get(string) (map[string][]string, []byte, error) {
	time.Sleep(g.d)
	return nil, []byte("ok"), nil
}

func (g *slowGetter) GetContext(ctx context.Context, u string) (map[string][]string, []byte, error) {
	g.sawCtx = ctx.Value(clockKey{}) != nil
	return g.Get(u)
}

// TestTimedAttributesTimeToItsAttestation: two attestations share one
// Timed getter and interleave their fetches; each Clock holds only its
// own. A clock that took the other's time would be off by a whole fetch,
// which the bounds (one fetch of slack for a loaded machine) tell apart.
func TestTimedAttributesTimeToItsAttestation(t *testing.T) {
	const d = 100 * time.Millisecond
	g := Timed{Next: &slowGetter{d: d}}
	ctx0, c0 := WithClock(context.Background())
	ctx1, c1 := WithClock(context.Background())
	for _, ctx := range []context.Context{ctx1, ctx0, ctx1} {
		if _, b, err := g.GetContext(ctx, "https://example.invalid/tcb"); err != nil || string(b) != "ok" {
			t.Fatalf("fetch: %q, %v", b, err)
		}
	}
	for i, c := range []*Clock{c0, c1} {
		got, want := c.Elapsed(), time.Duration(i+1)*d
		t.Logf("attestation %d: %d fetches of %v took %v", i, i+1, d, got)
		// Sleep never returns early; a loaded machine may make it late,
		// but not by another attestation's whole fetch.
		if got < want || got >= want+d {
			t.Errorf("attestation %d: clock %v, want [%v, %v)", i, got, want, want+d)
		}
	}
	if !g.Next.(*slowGetter).sawCtx {
		t.Error("the wrapped getter was not given the attestation's context")
	}
	// No clock in the context, and a nil Clock: nothing measured, no panic.
	if _, _, err := g.GetContext(context.Background(), "https://example.invalid/tcb"); err != nil {
		t.Fatal(err)
	}
	if (*Clock)(nil).Elapsed() != 0 {
		t.Error("a nil Clock is not zero")
	}
}
