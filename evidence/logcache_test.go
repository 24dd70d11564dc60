package evidence

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

func compressedCCEL(t *testing.T, raw []byte) *evidencepb.Evidence {
	t.Helper()
	l, err := CompressLog(evidencepb.LogKind_LOG_KIND_CCEL, raw, evidencepb.Encoding_ENCODING_ZSTD)
	if err != nil {
		t.Fatal(err)
	}
	return &evidencepb.Evidence{Quote: []byte("q"), Ccel: l}
}

// TestLogCacheHitIsExact: a cached firmware log is reused only for the
// same compressed bytes. A log of the same encoding and declared size but
// other content (an attacker hoping to be handed a known-good log) is a
// miss and is decompressed for what it is.
func TestLogCacheHitIsExact(t *testing.T) {
	c := NewLogCache()
	good := bytes.Repeat([]byte("good firmware log "), 100)
	evil := bytes.Repeat([]byte("evil firmware log "), 100)
	for i, want := range []struct {
		raw          []byte
		hits, misses uint64
	}{{good, 0, 1}, {good, 1, 1}, {evil, 1, 2}, {evil, 2, 2}, {good, 3, 2}} {
		logs, err := c.DecompressLogs(compressedCCEL(t, want.raw), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(logs.CCEL, want.raw) {
			t.Fatalf("round %d: got %.20q..., want %.20q...", i, logs.CCEL, want.raw)
		}
		if s := c.Stats(); s.Hits != want.hits || s.Misses != want.misses || s.Entries != 2-boolInt(i < 2) {
			t.Fatalf("round %d: stats %+v, want %d hits, %d misses", i, s, want.hits, want.misses)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestLogCacheHitPaysTheBudget: a log taken from the cache still counts
// its decompressed size against the evidence's budget, so a cache hit is
// no way around MaxDecompressedBytes.
func TestLogCacheHitPaysTheBudget(t *testing.T) {
	c := NewLogCache()
	raw := bytes.Repeat([]byte{0}, 64<<10)
	if _, err := c.DecompressLogs(compressedCCEL(t, raw), Limits{}); err != nil {
		t.Fatal(err)
	}
	small := Limits{MaxDecompressedBytes: 32 << 10}
	for round := range 2 {
		_, err := c.DecompressLogs(compressedCCEL(t, raw), small)
		var te *LimitError
		if err == nil || !errors.As(err, &te) {
			t.Fatalf("round %d: a %d-byte log under a %d-byte budget: %v", round, len(raw), small.MaxDecompressedBytes, err)
		}
	}
	if s := c.Stats(); s.Hits != 2 {
		t.Fatalf("the over-budget rounds were not cache hits: %+v", s)
	}
}
