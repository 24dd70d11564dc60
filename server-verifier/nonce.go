package serververifier

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ccnp-spire/ccnp-spire/evidence"
)

// maxOutstandingNonces bounds the nonces the server remembers at once. Each
// attestation stream holds one until it ends, so this is the number of
// attestations that can be in flight; past it new streams are refused rather
// than letting unauthenticated peers grow the map without bound.
const maxOutstandingNonces = 1 << 16

// Errors of the nonce store.
var (
	errNonceUsed    = errors.New("nonce already used: evidence is accepted once per challenge")
	errNonceExpired = errors.New("nonce expired")
	errNonceUnknown = errors.New("nonce was not issued by this server or has been forgotten")
	errNonceFull    = errors.New("too many attestations in flight")
)

// nonceStore remembers issued nonces until they are used or expire, so a
// nonce is honoured at most once and only within its TTL, whatever the
// stream it arrives on.
type nonceStore struct {
	mu      sync.Mutex
	entries map[[evidence.NonceSize]byte]nonceEntry
	// swept is when expired entries were last dropped: sweeping is O(n),
	// so it runs at most once a second, or when the store is full.
	swept time.Time
}

type nonceEntry struct {
	expires time.Time
	used    bool
}

func newNonceStore() *nonceStore {
	return &nonceStore{entries: make(map[[evidence.NonceSize]byte]nonceEntry)}
}

func evidenceNonce() ([]byte, error) { return evidence.NewNonce() }

// issue records nonce as valid until now+ttl. Re-issuing a nonce the store
// still remembers is refused: a nonce source that repeats itself must not
// reopen a used nonce.
func (s *nonceStore) issue(nonce []byte, now time.Time, ttl time.Duration) error {
	k, err := nonceKey(nonce)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if e, ok := s.entries[k]; ok {
		if e.used {
			return errNonceUsed
		}
		return errors.New("nonce issued twice")
	}
	if len(s.entries) >= maxOutstandingNonces {
		return errNonceFull
	}
	s.entries[k] = nonceEntry{expires: now.Add(ttl)}
	return nil
}

// consume marks nonce used. It fails when the nonce was already used, has
// expired or is unknown. A used nonce is kept until its expiry so a replay
// inside the TTL is recognised as such.
func (s *nonceStore) consume(nonce []byte, now time.Time) error {
	k, err := nonceKey(nonce)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	switch {
	case !ok:
		return errNonceUnknown
	case e.used:
		return errNonceUsed
	case now.After(e.expires):
		delete(s.entries, k)
		return fmt.Errorf("%w at %s (evidence arrived %s later)", errNonceExpired, e.expires.UTC().Format(time.RFC3339), now.Sub(e.expires).Round(time.Millisecond))
	}
	e.used = true
	s.entries[k] = e
	return nil
}

// forget drops a nonce whose stream ended before evidence arrived.
func (s *nonceStore) forget(nonce []byte) {
	if k, err := nonceKey(nonce); err == nil {
		s.mu.Lock()
		if e, ok := s.entries[k]; ok && !e.used {
			delete(s.entries, k)
		}
		s.mu.Unlock()
	}
}

func (s *nonceStore) sweepLocked(now time.Time) {
	if now.Sub(s.swept) < time.Second && len(s.entries) < maxOutstandingNonces {
		return
	}
	s.swept = now
	for k, e := range s.entries {
		if now.After(e.expires) {
			delete(s.entries, k)
		}
	}
}

func (s *nonceStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

func nonceKey(nonce []byte) ([evidence.NonceSize]byte, error) {
	var k [evidence.NonceSize]byte
	if len(nonce) != evidence.NonceSize {
		return k, fmt.Errorf("nonce of %d bytes, want %d", len(nonce), evidence.NonceSize)
	}
	copy(k[:], nonce)
	return k, nil
}
