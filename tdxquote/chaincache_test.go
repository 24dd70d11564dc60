package tdxquote

import (
	"bytes"
	"encoding/pem"
	"reflect"
	"sync"
	"testing"
)

// mapChains is a PCKChainCache keyed by the PEM bytes themselves, counting
// what Parse asks of it.
type mapChains struct {
	mu         sync.Mutex
	m          map[string]*PCKCertChain
	gets, hits int
}

func newMapChains() *mapChains { return &mapChains{m: map[string]*PCKCertChain{}} }

func (c *mapChains) Get(pem []byte) (*PCKCertChain, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	v, ok := c.m[string(pem)]
	if ok {
		c.hits++
	}
	return v, ok
}

func (c *mapChains) Add(pem []byte, chain *PCKCertChain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[string(pem)] = chain
}

func (c *mapChains) counts() (entries, gets, hits int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m), c.gets, c.hits
}

// sameChain fails unless a and b carry the same certificates (by DER) and
// the same PCK info.
func sameChain(t *testing.T, what string, a, b *Quote) {
	t.Helper()
	if len(a.PCKChain) != len(b.PCKChain) {
		t.Fatalf("%s: %d certificates, want %d", what, len(a.PCKChain), len(b.PCKChain))
	}
	for i := range a.PCKChain {
		if !bytes.Equal(a.PCKChain[i].Raw, b.PCKChain[i].Raw) {
			t.Errorf("%s: certificate %d differs", what, i)
		}
	}
	if !reflect.DeepEqual(a.PCK, b.PCK) {
		t.Errorf("%s: PCK info %+v, want %+v", what, a.PCK, b.PCK)
	}
}

// flipLeafDER returns raw with the last byte of the PCK leaf's DER (inside
// its signature) changed in one bit, re-encoded: exactly one PEM character
// of the quote differs.
func flipLeafDER(t *testing.T, raw []byte) []byte {
	t.Helper()
	begin := bytes.Index(raw, []byte("-----BEGIN CERTIFICATE-----"))
	blk, rest := pem.Decode(raw[begin:])
	if blk == nil {
		t.Fatal("no leaf PEM block")
	}
	blk.Bytes[len(blk.Bytes)-1] ^= 1
	enc := pem.EncodeToMemory(blk)
	out := bytes.Clone(raw)
	if n := copy(out[begin:], enc); begin+n != len(raw)-len(rest) {
		t.Fatalf("re-encoded leaf is %d bytes, the original %d", n, len(raw)-len(rest)-begin)
	}
	diff := 0
	for i := range raw {
		if raw[i] != out[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("%d bytes differ, want 1", diff)
	}
	return out
}

func TestParseWithPCKChainCache(t *testing.T) {
	for _, name := range realQuotes {
		t.Run(name, func(t *testing.T) {
			raw := readQuote(t, name)
			cold, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			c := newMapChains()
			opts := ParseOptions{PCKChains: c}
			first, err := ParseWithOptions(raw, opts)
			if err != nil {
				t.Fatal(err)
			}
			if n, gets, hits := c.counts(); n != 1 || gets != 1 || hits != 0 {
				t.Fatalf("after the first parse: %d entries, %d lookups, %d hits", n, gets, hits)
			}
			second, err := ParseWithOptions(raw, opts)
			if err != nil {
				t.Fatal(err)
			}
			if n, gets, hits := c.counts(); n != 1 || gets != 2 || hits != 1 {
				t.Fatalf("after the second parse: %d entries, %d lookups, %d hits", n, gets, hits)
			}
			sameChain(t, "first", first, cold)
			sameChain(t, "second", second, cold)
			if !reflect.DeepEqual(second.Inspect(), cold.Inspect()) {
				t.Error("a quote parsed with a cache hit inspects differently")
			}
			if second.PCKChain[0] != first.PCKChain[0] {
				t.Error("the hit parsed the leaf again")
			}

			// A quote changing its copy of the chain or of the PCK info
			// does not change what the cache gives the next quote.
			second.PCKChain[0] = second.PCKChain[2]
			second.PCK.FMSPC[0] ^= 0xff
			second.PCK.PPID[0] ^= 0xff
			third, err := ParseWithOptions(raw, opts)
			if err != nil {
				t.Fatal(err)
			}
			sameChain(t, "after a caller's changes", third, cold)

			// One certificate byte changed is another chain: parsed on its
			// own (the leaf still parses; only its signature is wrong,
			// which the appraisal finds).
			flipped := flipLeafDER(t, raw)
			q, err := ParseWithOptions(flipped, opts)
			if err != nil {
				t.Fatalf("leaf with a flipped signature bit: %v", err)
			}
			if n, _, hits := c.counts(); n != 2 || hits != 2 {
				t.Fatalf("leaf with a flipped signature bit: %d entries, %d hits; want a second entry and no new hit", n, hits)
			}
			if q.PCKChain[0] == first.PCKChain[0] || bytes.Equal(q.PCKChain[0].Raw, cold.PCKChain[0].Raw) {
				t.Error("leaf with a flipped signature bit got the cached leaf")
			}

			// So is one byte of whitespace changed, though the framing
			// accepts it and the certificates are the same; and a byte
			// that breaks the framing is rejected as without a cache.
			chainEnd := SignedDataOffset + int(cold.SignedDataSize) - 1
			if raw[chainEnd] != '\n' {
				t.Fatalf("chain ends in %q, the test expects a newline", raw[chainEnd])
			}
			space := bytes.Clone(raw)
			space[chainEnd] = ' '
			q, err = ParseWithOptions(space, opts)
			if err != nil {
				t.Fatalf("chain ending in a space: %v", err)
			}
			if n, _, hits := c.counts(); n != 3 || hits != 2 {
				t.Fatalf("chain ending in a space: %d entries, %d hits; want a third entry and no new hit", n, hits)
			}
			sameChain(t, "chain ending in a space", q, cold)
			junk := bytes.Clone(raw)
			junk[chainEnd] = 'x'
			_, want := Parse(junk)
			_, got := ParseWithOptions(junk, opts)
			if want == nil || got == nil || got.Error() != want.Error() {
				t.Fatalf("chain ending in junk: %v with the cache, %v without", got, want)
			}
			if n, _, hits := c.counts(); n != 3 || hits != 2 {
				t.Fatalf("chain ending in junk: %d entries, %d hits; a chain that does not parse was cached or found", n, hits)
			}
		})
	}
}

// liar is a faulty cache: it answers every lookup with its chain.
type liar struct{ chain *PCKCertChain }

func (l liar) Get([]byte) (*PCKCertChain, bool) { return l.chain, true }
func (liar) Add([]byte, *PCKCertChain)          {}

// parsedChain returns the chain Parse makes of raw for a cache.
func parsedChain(t *testing.T, raw []byte) *PCKCertChain {
	t.Helper()
	c := newMapChains()
	if _, err := ParseWithOptions(raw, ParseOptions{PCKChains: c}); err != nil {
		t.Fatal(err)
	}
	for _, v := range c.m {
		return v
	}
	t.Fatal("nothing added")
	return nil
}

// TestParseChecksCacheHits shows Parse uses a cached chain only when it
// parsed it itself from the quote's exact chain bytes, whatever the cache
// says.
func TestParseChecksCacheHits(t *testing.T) {
	raw := readQuote(t, realQuotes[0])
	cold, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	same := parsedChain(t, raw)
	for name, c := range map[string]*PCKCertChain{
		"another platform's chain":   parsedChain(t, readQuote(t, realQuotes[1])),
		"a leaf one bit off":         parsedChain(t, flipLeafDER(t, raw)),
		"the same certificates made": {certs: cold.PCKChain, info: cold.PCK},
		"nil":                        nil,
		"the same bytes (used)":      same,
	} {
		q, err := ParseWithOptions(raw, ParseOptions{PCKChains: liar{c}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameChain(t, name, q, cold)
		if used := q.PCKChain[0] == same.certs[0]; used != (c == same) {
			t.Errorf("%s: cached chain used: %v", name, used)
		}
		if c != nil && c != same && q.PCKChain[0] == c.certs[0] {
			t.Errorf("%s: the cache's leaf was used", name)
		}
	}
}
