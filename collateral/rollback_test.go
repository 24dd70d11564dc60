package collateral_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

// TestCacheRefusesCollateralBelowMinimum: a PCCS still serving TCB info or
// QE identity from before a TCB recovery is an outage, not collateral: the
// response is neither stored nor served (so the cache asks again once the
// backoff is over instead of keeping the old issue for its refresh), and
// once the PCCS serves the current issue the cache takes it. A disk entry
// below the minimum is not trusted after a restart either.
func TestCacheRefusesCollateralBelowMinimum(t *testing.T) {
	s := newSimPCS(t, pcs.Params{TCBEvaluationDataNumber: 16})
	clk := newClock()
	s.clk = clk
	dir := filepath.Join(t.TempDir(), "cache")
	cfg := collateral.CacheConfig{Refresh: 24 * time.Hour, Dir: dir, Now: clk.Now, MinTCBEvaluationDataNumber: 17}
	c := newCache(t, s.getter(), cfg)
	urls := s.urls()
	for _, u := range urls[:2] { // TCB info, QE identity
		_, _, err := c.GetContext(context.Background(), u)
		if !errors.Is(err, collateral.ErrUnavailable) || !strings.Contains(err.Error(), "tcbEvaluationDataNumber 16 is below the minimum 17") {
			t.Fatalf("%s: %v, want ErrUnavailable naming the numbers", u, err)
		}
	}
	for _, u := range urls[2:] { // CRLs carry no evaluation number
		mustGet(t, c, u)
	}
	if st := settle(t, c); st.Entries != 2 {
		t.Fatalf("%d entries kept, want only the 2 CRLs (stats %+v)", st.Entries, st)
	}

	// The PCCS catches up: after the backoff the cache asks again and
	// serves the current issue.
	if err := pcs.WriteParams(s.dir, pcs.Params{TCBStatus: "UpToDate", TCBEvaluationDataNumber: 17}); err != nil {
		t.Fatal(err)
	}
	clk.Add(collateral.DefaultTimeout + collateral.DefaultErrorBackoff)
	for _, u := range urls[:2] {
		b := mustGet(t, c, u)
		if n, ok, err := collateral.EvaluationDataNumber(b); err != nil || !ok || n != 17 {
			t.Fatalf("%s after the update: number %d, %v, %v", u, n, ok, err)
		}
	}

	// Entries a server without the minimum persisted (number 16) are not
	// served by one with it, even with the PCS down.
	if err := pcs.WriteParams(s.dir, pcs.Params{TCBStatus: "UpToDate", TCBEvaluationDataNumber: 16}); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "old")
	lax := newCache(t, s.getter(), collateral.CacheConfig{Dir: old, Now: clk.Now})
	for _, u := range urls {
		mustGet(t, lax, u)
	}
	s.mode.Store(mode500)
	strict := cfg
	strict.Dir = old
	d := newCache(t, s.getter(), strict)
	for _, u := range urls[:2] {
		if _, _, err := d.GetContext(context.Background(), u); !errors.Is(err, collateral.ErrUnavailable) {
			t.Fatalf("%s: disk entry below the minimum served: %v", u, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(old, "*")); len(left) != 2 {
		t.Fatalf("%d disk entries left, want the 2 CRLs: %v", len(left), left)
	}
}

func TestEvaluationDataNumber(t *testing.T) {
	for _, tc := range []struct {
		body string
		n    int64
		ok   bool
		err  bool
	}{
		{body: `{"tcbInfo":{"tcbEvaluationDataNumber":17},"signature":""}`, n: 17, ok: true},
		{body: ` {"enclaveIdentity":{"tcbEvaluationDataNumber":3}}`, n: 3, ok: true},
		{body: `{"tcbInfo":{}}`, err: true},
		{body: `{"tcbInfo":{"tcbEvaluationDataNumber":"17"}}`, err: true},
		{body: `{"tcbInfo":{"tcbEvaluationDataNumber":1},"enclaveIdentity":{"tcbEvaluationDataNumber":1}}`, err: true},
		{body: `{"other":1}`, err: true},
		{body: `{`, err: true},
		{body: "0\x82\x01", ok: false}, // a DER CRL
	} {
		n, ok, err := collateral.EvaluationDataNumber([]byte(tc.body))
		if n != tc.n || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%q: %d, %v, %v", tc.body, n, ok, err)
		}
	}
}
