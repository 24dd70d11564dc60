package simtest

import (
	"sync"
	"time"
)

// Clock is the wall clock moved by an offset, for tests that move a server
// across certificate, collateral or checkpoint expiry while time still
// flows (timeouts and backoffs keep elapsing). The zero value reads the
// wall clock.
type Clock struct {
	mu  sync.Mutex
	off time.Duration
}

// Now is the wall clock plus every Advance so far.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

// Advance moves the clock d ahead (behind, when negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}
