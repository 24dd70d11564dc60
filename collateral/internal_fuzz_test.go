package collateral

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzUnhexCRL(f *testing.F) {
	der, err := os.ReadFile(filepath.Join("testdata", "rootcrl.der"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add([]byte(hex.EncodeToString(der)))
	f.Add([]byte("30\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := unhexCRL(b)
		if bytes.Equal(out, b) {
			return
		}
		if len(out) == 0 || out[0] != 0x30 || hex.EncodeToString(out) != string(bytes.ToLower(bytes.TrimSpace(b))) {
			t.Fatalf("unhexCRL(%q) = %x", b, out)
		}
	})
}

// FuzzDecodeRecord feeds disk cache files to the reader: it must never
// panic, and whatever it accepts must be before its nextUpdate, within the
// size bound, fetched in the past and fresh no longer than Refresh.
func FuzzDecodeRecord(f *testing.F) {
	const url = "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000"
	now := time.Date(2023, 7, 1, 0, 0, 0, 0, time.UTC) // before every testdata nextUpdate
	for _, file := range []string{"tcbinfo.json", "qe-identity.json", "pckcrl.der", "rootcrl.der"} {
		body, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		rec, err := json.Marshal(diskRecord{URL: url, Fetched: now.Add(-time.Hour), Header: map[string][]string{"Tcb-Info-Issuer-Chain": {"x"}}, Body: body})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	c := &Cache{cfg: CacheConfig{Refresh: DefaultRefresh, MaxBytes: DefaultMaxCachedBytes}}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := c.decodeRecord(b, url, now)
		if err != nil {
			return
		}
		if !now.Before(e.nextUpdate) || e.fetched.After(now) || responseSize(e.header, e.body) > c.cfg.MaxBytes ||
			e.freshUntil.After(e.nextUpdate) || e.freshUntil.After(e.fetched.Add(c.cfg.Refresh)) {
			t.Fatalf("accepted entry %+v", e)
		}
	})
}
