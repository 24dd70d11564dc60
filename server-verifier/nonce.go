package serververifier

import (
	"errors"
	"fmt"
	"time"

	"github.com/ccnp-spire/ccnp-spire/evidence"
)

// errNonceExpired is the freshness failure of a round's nonce.
var errNonceExpired = errors.New("nonce expired")

// roundNonce is the nonce of one challenge round. It lives in the round
// that issued it and nowhere else: evidence is checked against this copy
// (the binding), so evidence made for any other round, on this stream or
// another, fails there, and nothing about it outlives the round. There is
// no server-wide store of nonces for clients to fill. Uniqueness comes from
// 32 bytes of crypto/rand (which, since Go 1.24, never returns an error or a
// short read: it crashes the process rather than fail).
type roundNonce struct {
	value  []byte
	issued time.Time
	ttl    time.Duration
}

// newRoundNonce draws a nonce from source at now, valid for ttl. A source
// that returns anything but evidence.NonceSize bytes is refused: a short
// nonce would weaken every binding made with it.
func newRoundNonce(source func() ([]byte, error), now time.Time, ttl time.Duration) (roundNonce, error) {
	v, err := source()
	if err != nil {
		return roundNonce{}, err
	}
	if len(v) != evidence.NonceSize {
		return roundNonce{}, fmt.Errorf("the nonce source returned %d bytes, want %d", len(v), evidence.NonceSize)
	}
	return roundNonce{value: v, issued: now, ttl: ttl}, nil
}

// fresh fails when at (the time the answer arrived) is past issued+ttl.
func (n roundNonce) fresh(at time.Time) error {
	expires := n.issued.Add(n.ttl)
	if at.After(expires) {
		return fmt.Errorf("%w at %s (nonce_ttl %s; evidence arrived %s later)", errNonceExpired,
			expires.UTC().Format(time.RFC3339), n.ttl, at.Sub(expires).Round(time.Millisecond))
	}
	return nil
}
