// Package exedigest hashes executables and remembers the digests, keyed by
// the file's identity and change stamps, so that a binary is read once per
// version however many workloads run it.
package exedigest

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// DefaultMaxSize is the largest executable hashed. Bigger files are refused
// rather than read for seconds while SPIRE waits.
const DefaultMaxSize = 1 << 30

// Key identifies one version of a file: the inode on its device, plus size,
// modification and status-change times. Writing to a file changes mtime and
// ctime; resetting mtime (touch -d) still changes ctime, which user space
// cannot set, so a changed file never hits an old entry.
type Key struct {
	Dev, Ino     uint64
	Size         int64
	Mtime, Ctime int64 // nanoseconds since the epoch
}

// KeyOf returns the key of an open file.
func KeyOf(f *os.File) (Key, error) {
	fi, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("exedigest: stat %s: %w", f.Name(), err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Key{}, fmt.Errorf("exedigest: stat %s: no device and inode", f.Name())
	}
	if !fi.Mode().IsRegular() {
		return Key{}, fmt.Errorf("exedigest: %s: not a regular file (%v)", f.Name(), fi.Mode().Type())
	}
	return Key{
		Dev:   uint64(st.Dev),
		Ino:   st.Ino,
		Size:  st.Size,
		Mtime: st.Mtim.Nano(),
		Ctime: st.Ctim.Nano(),
	}, nil
}

// Digests maps each computed algorithm to its digest. Treat it as read-only:
// the cache hands out the same map to every caller.
type Digests map[cctrusted.Algorithm][]byte

// Cache is a bounded LRU cache of executable digests. It is safe for
// concurrent use.
type Cache struct {
	algs    []cctrusted.Algorithm
	max     int
	maxSize int64

	mu      sync.Mutex
	entries map[Key]*list.Element
	order   *list.List // front: most recently used
	hits    uint64
	misses  uint64
}

type entry struct {
	key Key
	d   Digests
}

// NewCache returns a cache of at most entries digests sets, each holding
// every algorithm in algs. maxSize bounds the files hashed (0: DefaultMaxSize).
func NewCache(entries int, maxSize int64, algs []cctrusted.Algorithm) (*Cache, error) {
	if entries < 1 {
		return nil, fmt.Errorf("exedigest: cache size %d: want at least 1", entries)
	}
	if len(algs) == 0 {
		return nil, errors.New("exedigest: no digest algorithm")
	}
	for _, a := range algs {
		if _, err := a.Hash(); err != nil {
			return nil, fmt.Errorf("exedigest: algorithm %v: %w", a, err)
		}
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	return &Cache{
		algs:    append([]cctrusted.Algorithm(nil), algs...),
		max:     entries,
		maxSize: maxSize,
		entries: make(map[Key]*list.Element),
		order:   list.New(),
	}, nil
}

// Stats returns the hit and miss counts.
func (c *Cache) Stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

// Len is the number of cached entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *Cache) get(k Key) (Digests, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.order.MoveToFront(el)
		c.hits++
		return el.Value.(*entry).d, true
	}
	c.misses++
	return nil, false
}

func (c *Cache) put(k Key, d Digests) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.entries[k] = c.order.PushFront(&entry{key: k, d: d})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*entry).key)
	}
}

// Digest returns the digests of the open file f, from the cache when its key
// is known, else by reading f from the start. A file that changes while it
// is read (its key differs afterwards) is an error and is not cached.
func (c *Cache) Digest(ctx context.Context, f *os.File) (Digests, Key, error) {
	k, err := KeyOf(f)
	if err != nil {
		return nil, k, err
	}
	if d, ok := c.get(k); ok {
		return d, k, nil
	}
	if k.Size > c.maxSize {
		return nil, k, fmt.Errorf("exedigest: %s: %d bytes, more than the %d hashed", f.Name(), k.Size, c.maxSize)
	}
	d, err := c.hash(ctx, f, k.Size)
	if err != nil {
		return nil, k, err
	}
	after, err := KeyOf(f)
	if err != nil {
		return nil, k, err
	}
	if after != k {
		return nil, k, fmt.Errorf("exedigest: %s changed while it was hashed", f.Name())
	}
	c.put(k, d)
	return d, k, nil
}

// chunk is the read size: large enough to amortise syscalls, small enough
// to check the context often.
const chunk = 1 << 20

func (c *Cache) hash(ctx context.Context, f *os.File, size int64) (Digests, error) {
	hs := make([]hash.Hash, len(c.algs))
	for i, a := range c.algs {
		h, _ := a.Hash()
		hs[i] = h.New()
	}
	var w io.Writer = hs[0]
	if len(hs) > 1 {
		w = newParallelWriter(hs)
		defer w.(*parallelWriter).close()
	}
	buf := make([]byte, chunk)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("exedigest: hashing %s: %w", f.Name(), err)
		}
		n, err := f.ReadAt(buf, total)
		if n > 0 {
			total += int64(n)
			if total > size {
				return nil, fmt.Errorf("exedigest: %s grew while it was hashed", f.Name())
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("exedigest: reading %s: %w", f.Name(), err)
		}
	}
	if total != size {
		return nil, fmt.Errorf("exedigest: %s: read %d bytes of %d", f.Name(), total, size)
	}
	if pw, ok := w.(*parallelWriter); ok {
		pw.close()
	}
	d := make(Digests, len(hs))
	for i, a := range c.algs {
		d[a] = hs[i].Sum(nil)
	}
	return d, nil
}

// parallelWriter feeds one buffer to several hashes at once, one goroutine
// per extra hash, so a SHA-256 plus SHA-384 pass takes as long as the slower
// of the two rather than their sum (the cold-hash budget is 150 ms for a
// 50 MiB binary).
type parallelWriter struct {
	hs   []hash.Hash
	work []chan []byte
	done chan struct{}
	once sync.Once
}

func newParallelWriter(hs []hash.Hash) *parallelWriter {
	p := &parallelWriter{hs: hs, done: make(chan struct{}, len(hs))}
	for _, h := range hs[1:] {
		ch := make(chan []byte)
		p.work = append(p.work, ch)
		go func(h hash.Hash) {
			for b := range ch {
				h.Write(b)
				p.done <- struct{}{}
			}
		}(h)
	}
	return p
}

// Write hashes b with every hash and returns when all are done, so the
// caller may reuse b.
func (p *parallelWriter) Write(b []byte) (int, error) {
	for _, ch := range p.work {
		ch <- b
	}
	p.hs[0].Write(b)
	for range p.work {
		<-p.done
	}
	return len(b), nil
}

func (p *parallelWriter) close() {
	p.once.Do(func() {
		for _, ch := range p.work {
			close(ch)
		}
	})
}
