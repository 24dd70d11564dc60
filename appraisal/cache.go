package appraisal

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash/maphash"
	"io"
	"sync"
	"time"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// DefaultCacheEntries bounds each table of a Cache. A fleet has few
// platforms (PCK chains, QE reports), few FMSPCs and few firmware images, so
// this is far more than a server needs while capping memory.
const DefaultCacheEntries = 4096

// Cache remembers the outcome of checks whose inputs are immutable bytes,
// so a server appraising many quotes from the same platforms pays for them
// once:
//
//   - a PCK chain verified to a trusted root, keyed by its exact
//     certificate bytes and the root pool, used while every certificate
//     involved is valid; with it the chain as tdxquote parsed it, which
//     tdxquote reuses for a quote carrying the byte-identical PEM chain
//     (found through the digest of the PEM bytes, checked in full). Only
//     chains that verified are kept, one parse per certificate chain, so
//     neither chains nobody trusts nor other encodings of a trusted one
//     fill the table (about 20 KiB an entry);
//   - collateral (TCB info, QE identity, CRLs) parsed and verified, keyed by
//     the digest of every fetched byte, the PCK intermediate and the root,
//     used between its latest issue date and its earliest next update;
//   - go-tdx-guest's cross-check verdict, keyed by every quote byte except
//     the TD-specific part of the body and the quote signature (which this
//     package checks on every call), plus the collateral digest;
//   - the replay of a CCEL, found by the log's length and its first and
//     last bytes and then compared in full with the log and table that were
//     replayed: the replayed registers and the facts. The comparison with
//     the quote's RTMRs runs on every call;
//   - the verdict that a QE report signature verifies with a PCK leaf key,
//     keyed by the exact bytes of the leaf's chain (its key in chains), the
//     QE report and the signature, for the chain's validity window. The
//     signature is a function of those bytes alone; the QE report's binding
//     of the attestation key, the PCK leaf's revocation (a new CRL) and the
//     QE identity (new collateral) are checked on every call;
//   - that a response body parses as a CRL, keyed by its SHA-256 (see
//     parsesAsCRL).
//
// Only successes are cached, every entry is bound to the trusted root pool
// it was established under (by identity: configure a new pool and nothing
// carries over) and to a validity window checked against the appraisal
// time, and every check that depends on the individual quote (signatures,
// revocation of the PCK leaf, TCB level, debug, REPORTDATA, RTMR comparison)
// still runs. A cache can therefore skip work but never turn a rejection into
// an acceptance. A nil *Cache caches nothing. It is safe for concurrent use.
type Cache struct {
	max int

	mu     sync.Mutex
	chains map[[32]byte]chainEntry
	// pemChains maps the SHA-256 of a PCK chain's PEM bytes to its key in
	// chains, so a quote's chain is found without decoding its PEM.
	pemChains  map[[32]byte][32]byte
	collateral map[[32]byte]collateralEntry
	library    map[[32]byte]libraryEntry
	// ccel is keyed by a keyed hash of the table, the log's length and
	// its first and last ccelSample bytes, and holds the bytes themselves: a
	// hit is an exact byte comparison, so no hash collision can stand in for
	// another log, and a CCEL (256 KiB, mostly padding) is neither run
	// through SHA-256 nor hashed whole at every attestation (the full hash
	// was 6-8% of an attestation's CPU; the comparison stops at the first
	// differing byte and costs a third of it).
	ccel     map[uint64][]*ccelEntry
	qe       map[[32]byte]libraryEntry
	crls     map[[32]byte]struct{}
	ccelSize int
	seed     maphash.Seed
}

type window struct{ from, until time.Time }

func (w window) contains(t time.Time) bool { return !t.Before(w.from) && !t.After(w.until) }

func (w window) intersect(o window) window {
	if o.from.After(w.from) {
		w.from = o.from
	}
	if o.until.Before(w.until) {
		w.until = o.until
	}
	return w
}

func certWindow(certs ...*x509.Certificate) window {
	w := window{until: time.Unix(1<<62, 0)}
	for _, c := range certs {
		w = w.intersect(window{c.NotBefore, c.NotAfter})
	}
	return w
}

// chainEntry is the verdict that a PCK chain leads to root under roots for
// the validity window of its certificates, and the chain as parsed from the
// PEM bytes it last came in.
type chainEntry struct {
	chain *tdxquote.PCKCertChain
	roots *x509.CertPool
	root  *x509.Certificate
	valid window
}

type collateralEntry struct {
	roots *x509.CertPool
	col   *collateral
	valid window
}

type libraryEntry struct {
	roots *x509.CertPool
	valid window
}

// ccelEntry is the replay of one CCEL: the registers it replays to and the
// facts extracted under those values, or the error that parsing gave.
type ccelEntry struct {
	table, log []byte // copies of what was replayed
	rtmr       [3][]byte
	facts      *eventlog.Facts
}

// NewCache returns a cache holding at most maxEntries entries per table
// (<= 0 means DefaultCacheEntries).
func NewCache(maxEntries int) *Cache {
	if maxEntries <= 0 {
		maxEntries = DefaultCacheEntries
	}
	return &Cache{
		max:        maxEntries,
		chains:     make(map[[32]byte]chainEntry),
		pemChains:  make(map[[32]byte][32]byte),
		collateral: make(map[[32]byte]collateralEntry),
		library:    make(map[[32]byte]libraryEntry),
		ccel:       make(map[uint64][]*ccelEntry),
		qe:         make(map[[32]byte]libraryEntry),
		crls:       make(map[[32]byte]struct{}),
		seed:       maphash.MakeSeed(),
	}
}

// Len returns the number of entries in each table, for tests and metrics.
func (c *Cache) Len() (chains, collateral, library, ccel int) {
	if c == nil {
		return 0, 0, 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.chains), len(c.collateral), len(c.library), c.ccelSize
}

// put stores v under k, evicting an arbitrary entry when the table is full:
// entries are cheap to recompute, so no recency bookkeeping is worth it.
func put[V any](c *Cache, m map[[32]byte]V, k [32]byte, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := m[k]; !ok && len(m) >= c.max {
		for old := range m {
			delete(m, old)
			break
		}
	}
	m[k] = v
}

func get[V any](c *Cache, m map[[32]byte]V, k [32]byte) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := m[k]
	return v, ok
}

// chainLookup is one appraisal's use of a Cache's chain tables through
// tdxquote.ParseWithOptions. It remembers what it found or was given, so
// that pckChain can look up the verdict without hashing the certificates
// when the PEM was known, and keep a fresh parse once the chain verified.
type chainLookup struct {
	c      *Cache
	pemKey [32]byte
	// chain is the parse the quote got: the cached one (with key its
	// certificates' key) or, when fresh, a new one.
	chain *tdxquote.PCKCertChain
	key   [32]byte
	fresh bool
}

// chainLookup returns a lookup for one quote; nil for a nil cache.
func (c *Cache) chainLookup() *chainLookup {
	if c == nil {
		return nil
	}
	return &chainLookup{c: c}
}

// parseOptions lets tdxquote take a parsed chain from the cache. A nil
// lookup parses everything.
func (l *chainLookup) parseOptions() tdxquote.ParseOptions {
	if l == nil {
		return tdxquote.ParseOptions{}
	}
	return tdxquote.ParseOptions{PCKChains: l}
}

// Get implements tdxquote.PCKChainCache. tdxquote uses what it returns only
// if it was parsed from exactly pem, so a digest match is enough here.
func (l *chainLookup) Get(pem []byte) (*tdxquote.PCKCertChain, bool) {
	l.pemKey = sha256.Sum256(pem)
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	k, ok := l.c.pemChains[l.pemKey]
	if !ok {
		return nil, false
	}
	e, ok := l.c.chains[k]
	if !ok || e.chain == nil {
		return nil, false
	}
	l.chain, l.key = e.chain, k
	return e.chain, true
}

// Add implements tdxquote.PCKChainCache: the chain is not stored until
// pckChain has verified it.
func (l *chainLookup) Add(pem []byte, chain *tdxquote.PCKCertChain) {
	l.pemKey, l.chain, l.fresh = sha256.Sum256(pem), chain, true
}

// pckChain returns the trusted root q's PCK chain leads to, verifying it
// unless the same certificates were verified under roots and every
// certificate is valid at now. q must have been parsed through l.
func (c *Cache) pckChain(q *tdxquote.Quote, l *chainLookup, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	if c == nil {
		return verifyPCKChain(q, roots, now)
	}
	if l == nil {
		l = &chainLookup{c: c} // not parsed through the cache: verdict only
	}
	if l.chain == nil || l.fresh {
		h := sha256.New()
		for _, cert := range q.PCKChain {
			writeBytes(h, cert.Raw)
		}
		h.Sum(l.key[:0])
	}
	e, ok := get(c, c.chains, l.key)
	if !ok || e.roots != roots || !e.valid.contains(now) {
		root, err := verifyPCKChain(q, roots, now)
		if err != nil {
			return nil, err
		}
		e = chainEntry{chain: e.chain, roots: roots, root: root, valid: certWindow(append(q.PCKChain[:2:2], root)...)}
	} else if !l.fresh {
		return e.root, nil
	}
	// A new verdict, or known certificates in PEM bytes the cache does not
	// know: the entry keeps the parse of the latest bytes, one per chain.
	if l.chain != nil {
		e.chain = l.chain
	}
	put(c, c.chains, l.key, e)
	if l.fresh {
		put(c, c.pemChains, l.pemKey, l.key)
	}
	return e.root, nil
}

// libraryBase identifies what go-tdx-guest's verification of a quote
// depends on besides the TD-specific body (offset 168 on: TD attributes,
// measurements, REPORTDATA), the quote signature over it and collateral:
// the header, the TDX module part of the body, the attestation key, the QE
// report and its signature, the QE auth data, the PCK chain and any
// trailing bytes. This package verifies the quote signature itself on every
// call, so the library's verdict on everything else carries over to any
// quote whose key is the same.
func libraryBase(raw []byte, q *tdxquote.Quote) [32]byte {
	h := sha256.New()
	writeBytes(h, raw[:q.BodyOffset+120])
	writeBytes(h, raw[q.SignedDataOffset-4:q.SignedDataOffset])
	writeBytes(h, raw[q.SignedDataOffset+tdxquote.SignatureSize:])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// libraryKey is the key of a library verdict: the quote's libraryBase and
// the collateral digest when collateral is evaluated (nil offline). The
// base is hashed once per appraisal for both verdicts.
func libraryKey(base [32]byte, collateralDigest []byte) [32]byte {
	h := sha256.New()
	writeBytes(h, base[:])
	writeBytes(h, collateralDigest)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// libraryAgreed reports whether the library already accepted a quote with
// this key under roots, for a validity window containing now.
func (c *Cache) libraryAgreed(k [32]byte, roots *x509.CertPool, now time.Time) bool {
	if c == nil {
		return false
	}
	e, ok := get(c, c.library, k)
	return ok && e.roots == roots && e.valid.contains(now)
}

func (c *Cache) libraryAccepted(k [32]byte, roots *x509.CertPool, valid window) {
	if c != nil {
		put(c, c.library, k, libraryEntry{roots: roots, valid: valid})
	}
}

// verifiedCollateral returns collateral whose documents were verified (as
// collateral.verifyDocuments does) under roots for the same fetched bytes,
// intermediate and root, if now is inside its window.
func (c *Cache) verifiedCollateral(k [32]byte, roots *x509.CertPool, now time.Time) (*collateral, bool) {
	if c == nil {
		return nil, false
	}
	e, ok := get(c, c.collateral, k)
	if !ok || e.roots != roots || !e.valid.contains(now) {
		return nil, false
	}
	return e.col, true
}

func (c *Cache) collateralVerified(k [32]byte, roots *x509.CertPool, col *collateral) {
	if c != nil {
		put(c, c.collateral, k, collateralEntry{roots: roots, col: col, valid: col.window()})
	}
}

// maxCCELEntries bounds the cached CCELs, which are kept whole (up to a few
// hundred KiB each): a fleet boots few firmware images.
const maxCCELEntries = 64

// replayCCEL returns the registers a CCEL replays to and the facts it
// yields at those values, replaying it only the first time a (table, log)
// pair is seen. Only logs that parse and replay are cached.
func (c *Cache) replayCCEL(table, log []byte) (*ccelEntry, error) {
	if c == nil {
		return replayCCEL(table, log)
	}
	k := c.ccelKey(table, log)
	c.mu.Lock()
	for _, e := range c.ccel[k] {
		if bytes.Equal(e.table, table) && bytes.Equal(e.log, log) {
			c.mu.Unlock()
			return e, nil
		}
	}
	c.mu.Unlock()
	e, err := replayCCEL(table, log)
	if err != nil {
		return nil, err
	}
	e.table, e.log = bytes.Clone(table), bytes.Clone(log)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ccelSize >= min(c.max, maxCCELEntries) {
		for old, es := range c.ccel {
			delete(c.ccel, old)
			c.ccelSize -= len(es)
			break
		}
	}
	c.ccel[k] = append(c.ccel[k], e)
	c.ccelSize++
	return e, nil
}

// ccelSample is how many bytes at each end of a CCEL its cache key
// covers. Logs of one firmware image with different events differ early
// (the first events are the firmware's own); the rest is told apart by
// the full comparison, which is bounded by maxCCELEntries.
const ccelSample = 4 << 10

func (c *Cache) ccelKey(table, log []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	writeBytes(&h, table)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(log)))
	h.Write(n[:])
	if len(log) <= 2*ccelSample {
		h.Write(log)
	} else {
		h.Write(log[:ccelSample])
		h.Write(log[len(log)-ccelSample:])
	}
	return h.Sum64()
}

// qeReportKey identifies a QE report signature check: the PCK chain's
// certificates (the key pckChain found or computed for them in l), the QE
// report and its signature. ok is false without a cache or a chain key.
func (c *Cache) qeReportKey(q *tdxquote.Quote, l *chainLookup) (k [32]byte, ok bool) {
	if c == nil || l == nil || l.key == ([32]byte{}) {
		return k, false
	}
	h := sha256.New()
	writeBytes(h, l.key[:])
	writeBytes(h, q.QEReport.Raw[:])
	writeBytes(h, q.QEReportSignature[:])
	h.Sum(k[:0])
	return k, true
}

// qeReportVerified reports whether the QE report signature with key k was
// verified under roots, for a window containing now.
func (c *Cache) qeReportVerified(k [32]byte, ok bool, roots *x509.CertPool, now time.Time) bool {
	if !ok {
		return false
	}
	e, found := get(c, c.qe, k)
	return found && e.roots == roots && e.valid.contains(now)
}

func (c *Cache) qeReportAccepted(k [32]byte, ok bool, roots *x509.CertPool, valid window) {
	if ok {
		put(c, c.qe, k, libraryEntry{roots: roots, valid: valid})
	}
}

// maxCRLEntries bounds the table of CRL bodies known to parse.
const maxCRLEntries = 64

// parsesAsCRL reports whether body parses as a CRL, parsing each exact body
// once: fetchCollateral asks it at every attestation to pick the root CA's
// distribution point, and parsing a CRL allocates its whole structure
// (13% of an attestation's allocations) while the answer depends on the
// bytes alone. Only bodies that parsed are kept, keyed by their SHA-256,
// so a hit is the answer the parse gave. A nil cache parses every time.
func (c *Cache) parsesAsCRL(body []byte) error {
	if c == nil {
		_, err := x509.ParseRevocationList(body)
		return err
	}
	k := sha256.Sum256(body)
	c.mu.Lock()
	_, ok := c.crls[k]
	c.mu.Unlock()
	if ok {
		return nil
	}
	if _, err := x509.ParseRevocationList(body); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.crls) >= min(c.max, maxCRLEntries) {
		for old := range c.crls {
			delete(c.crls, old)
			break
		}
	}
	c.crls[k] = struct{}{}
	return nil
}

// writeString is writeBytes for a string (without a copy where the hash
// takes strings).
func writeString(w io.Writer, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	w.Write(n[:])
	io.WriteString(w, s)
}

// writeBytes writes a length-prefixed field so that no two sequences of
// fields hash alike.
func writeBytes(h interface{ Write([]byte) (int, error) }, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}
