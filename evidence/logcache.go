package evidence

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// Bounds of the firmware log cache.
const (
	maxCachedLogs     = 64
	maxCachedLogBytes = 1 << 20
)

// LogCache remembers what compressed firmware logs (CCEL, TPM log)
// decompress to. A node sends the same firmware log at every attestation
// and every node booted from one image sends the same one, while inflating a
// 256 KiB CCEL costs more than verifying the quote. Decompression is a
// function of the compressed bytes, so a hit is an exact comparison of
// encoding, declared size and data with what was decompressed before, and
// the logs' contents are still replayed and checked every time. IMA and
// runtime logs grow between attestations and are not cached. It is safe
// for concurrent use.
type LogCache struct {
	seed maphash.Seed

	mu      sync.Mutex
	entries map[uint64][]*logEntry
	size    int

	// hits and misses count lookups, for the metrics and the debug log.
	hits, misses atomic.Uint64
}

// LogCacheStats are a LogCache's counters since it was made.
type LogCacheStats struct {
	// Hits and Misses count the compressed firmware logs found in the
	// cache and those decompressed (and then remembered).
	Hits, Misses uint64
	// Entries is the number of logs held now.
	Entries int
}

type logEntry struct {
	enc     evidencepb.Encoding
	rawSize uint64
	data    []byte // the compressed bytes, a copy
	raw     []byte // what they decompress to; shared, read-only
}

// NewLogCache returns an empty cache.
func NewLogCache() *LogCache {
	return &LogCache{seed: maphash.MakeSeed(), entries: make(map[uint64][]*logEntry)}
}

func (c *LogCache) key(l *evidencepb.Log) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(l.GetEncoding()))
	binary.BigEndian.PutUint64(hdr[4:], l.GetRawSize())
	h.Write(hdr[:])
	h.Write(l.GetData())
	return h.Sum64()
}

func (c *LogCache) lookup(l *evidencepb.Log) []byte {
	k := c.key(l)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries[k] {
		if e.enc == l.GetEncoding() && e.rawSize == l.GetRawSize() && bytes.Equal(e.data, l.GetData()) {
			return e.raw
		}
	}
	return nil
}

func (c *LogCache) store(l *evidencepb.Log, raw []byte) {
	k := c.key(l)
	e := &logEntry{enc: l.GetEncoding(), rawSize: l.GetRawSize(), data: bytes.Clone(l.GetData()), raw: bytes.Clone(raw)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size >= maxCachedLogs {
		for old, es := range c.entries {
			delete(c.entries, old)
			c.size -= len(es)
			break
		}
	}
	c.entries[k] = append(c.entries[k], e)
	c.size++
}

// cachedFirmwareLog is a firmware log slot of an Evidence message.
type cachedFirmwareLog struct {
	slot **evidencepb.Log
	kind evidencepb.LogKind
	orig *evidencepb.Log
}

// Stats returns the counters.
func (c *LogCache) Stats() LogCacheStats {
	c.mu.Lock()
	n := c.size
	c.mu.Unlock()
	return LogCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Entries: n}
}

// DecompressLogs is the package's DecompressLogs with the firmware logs
// seen before taken from the cache: they are put into ev uncompressed, so
// DecompressLogs still charges their full size to the payload's budget and
// checks them; the rest are inflated and the new firmware logs remembered.
func (c *LogCache) DecompressLogs(ev *evidencepb.Evidence, lim Limits) (*Logs, error) {
	var missed []cachedFirmwareLog
	for _, s := range []cachedFirmwareLog{
		{slot: &ev.Ccel, kind: evidencepb.LogKind_LOG_KIND_CCEL},
		{slot: &ev.TpmLog, kind: evidencepb.LogKind_LOG_KIND_TPM},
	} {
		l := *s.slot
		if l == nil || l.GetEncoding() == evidencepb.Encoding_ENCODING_NONE || l.GetRawSize() > maxCachedLogBytes {
			continue
		}
		raw := c.lookup(l)
		if raw == nil {
			c.misses.Add(1)
		} else {
			c.hits.Add(1)
		}
		if raw != nil {
			*s.slot = &evidencepb.Log{Kind: s.kind, Encoding: evidencepb.Encoding_ENCODING_NONE, Data: raw, RawSize: uint64(len(raw))}
			continue
		}
		s.orig = l
		missed = append(missed, s)
	}
	logs, err := DecompressLogs(ev, lim)
	if err != nil {
		return nil, err
	}
	for _, s := range missed {
		raw := logs.CCEL
		if s.kind == evidencepb.LogKind_LOG_KIND_TPM {
			raw = logs.TPM
		}
		c.store(s.orig, raw)
	}
	return logs, nil
}
