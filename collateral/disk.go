package collateral

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// diskRecord is one cached response on disk. Only what came from the
// upstream and when is stored: freshness is recomputed from the body and
// the configuration when it is read, so no stored date is trusted.
type diskRecord struct {
	URL     string              `json:"url"`
	Fetched time.Time           `json:"fetched"`
	Header  map[string][]string `json:"header"`
	Body    []byte              `json:"body"`
}

// errDiskExpired marks a sound record past its nextUpdate: not worth a warning.
var errDiskExpired = errors.New("expired")

// diskFile names the file of a URL: its SHA-256, so that no URL can name a
// path.
func (c *Cache) diskFile(rawURL string) string {
	sum := sha256.Sum256([]byte(rawURL))
	return filepath.Join(c.cfg.Dir, hex.EncodeToString(sum[:])+".json")
}

// loadDisk returns the disk entry of rawURL when it is sound and before its
// nextUpdate. Anything else is removed (with a warning when it was not
// merely missing or expired) and nil returned: the upstream is asked.
func (c *Cache) loadDisk(rawURL string, now time.Time) *entry {
	path := c.diskFile(rawURL)
	// base64 makes the body 4/3 larger; JSON framing and escaping of the
	// headers add a little.
	limit := int64(c.cfg.MaxBytes)*2 + 64<<10
	b, err := readBounded(path, limit)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.warn("collateral cache: ignoring an unreadable disk entry", "path", path, "error", err)
			_ = os.Remove(path)
		}
		return nil
	}
	e, err := c.decodeRecord(b, rawURL, now)
	if errors.Is(err, errDiskExpired) {
		_ = os.Remove(path)
		return nil
	}
	if err != nil {
		c.warn("collateral cache: ignoring a disk entry", "path", path, "url", rawURL, "error", err)
		_ = os.Remove(path)
		return nil
	}
	return e
}

func (c *Cache) decodeRecord(b []byte, rawURL string, now time.Time) (*entry, error) {
	var r diskRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("not a cache record: %w", err)
	}
	if r.URL != rawURL {
		return nil, fmt.Errorf("record is for %q", r.URL)
	}
	if r.Fetched.IsZero() || r.Fetched.After(now) {
		return nil, fmt.Errorf("fetched %v is not in the past", r.Fetched)
	}
	if n := responseSize(r.Header, r.Body); n > c.cfg.MaxBytes {
		return nil, fmt.Errorf("response of %d bytes, limit %d", n, c.cfg.MaxBytes)
	}
	next, err := NextUpdate(r.Body)
	if err != nil {
		return nil, err
	}
	if !now.Before(next) {
		return nil, fmt.Errorf("%w at its nextUpdate %v", errDiskExpired, next)
	}
	if err := c.belowMinimum(r.Body); err != nil {
		return nil, err
	}
	h := http.Header{}
	for k, vs := range r.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return newEntry(h, r.Body, r.Fetched, next, c.cfg.Refresh), nil
}

// saveDisk replaces the file of rawURL atomically (temporary file, fsync,
// rename, directory fsync) with mode 0600.
func (c *Cache) saveDisk(rawURL string, e *entry) error {
	b, err := json.Marshal(diskRecord{URL: rawURL, Fetched: e.fetched, Header: e.header, Body: e.body})
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return smallfile.Write(c.diskFile(rawURL), b, 0o600)
}
