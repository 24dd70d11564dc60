package serververifier

import (
	"context"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"runtime"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What an attestation may hold of the server, and when.
//
// Waiting for an agent costs no CPU slot and no share of the evidence
// budget: a stream that has sent a hello holds its goroutines, its hello
// (at most maxHelloBytes) and its round's nonce, for at most the answer
// deadline (conf.ServerVerifier.AnswerTimeout). Only once its evidence has
// arrived does it reserve the evidence's bytes (evidenceBudget: refused at
// once with ResourceExhausted when they do not fit) and then wait for a slot
// (verifySlots) to decode and verify. The slot is given back before the TPM
// credential activation round trip (waiting costs no CPU); the bytes only
// when the attestation ends, because what was verified (the decoded logs'
// workloads, for the policies evaluated after activation) is still held
// while the agent answers, and a client that never answers must not hold
// memory the budget does not count. A client that never sends evidence
// therefore delays no one, and clients that do send junk hold the server for
// as long as it takes to reject it.

// verifySlots bounds the attestations decoding and verifying evidence at
// once. Verification is CPU-bound, so many more of them than cores gain
// nothing, while each holds its evidence, a decoded copy and its parsed logs
// (a few times max_payload_bytes at worst): the bound keeps that memory
// proportional to the cores rather than to the fleet. There are two per CPU
// because a verification may also wait on collateral I/O (bounded by
// fetch_timeout, and the collateral cache answers later ones at once): a
// second slot keeps the core busy meanwhile.
type verifySlots chan struct{}

// newVerifySlots makes n slots; n <= 0 means two per CPU the process may
// use.
func newVerifySlots(n int) verifySlots {
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	return make(verifySlots, n)
}

// acquire waits for a slot (or ctx) and returns its release function,
// which may be called more than once.
func (s verifySlots) acquire(ctx context.Context) (func(), error) {
	select {
	case s <- struct{}{}:
	case <-ctx.Done():
		return func() {}, ctx.Err()
	}
	var once sync.Once
	return func() { once.Do(func() { <-s }) }, nil
}

// evidenceBudget counts the bytes of evidence the plugin holds between its
// arrival and the end of its verification. Evidence arrives whole (the
// transport hands over complete messages), so it is counted by the bytes an
// agent actually sent; a reservation that does not fit is refused rather
// than queued, so that a burst of evidence (junk or not) costs the server at
// most the configured bytes plus what the slots are verifying. It outlives
// reconfiguration: reservations made under one limit are counted under the
// next.
type evidenceBudget struct {
	held atomic.Int64
}

// reserve takes n bytes if held+n stays within limit, and returns the
// function that gives them back (safe to call more than once).
func (b *evidenceBudget) reserve(n, limit int64) (func(), bool) {
	for {
		cur := b.held.Load()
		if cur+n > limit {
			return nil, false
		}
		if b.held.CompareAndSwap(cur, cur+n) {
			var once sync.Once
			return func() { once.Do(func() { b.held.Add(-n) }) }, true
		}
	}
}

// admit reserves n bytes of evidence in the budget of the current
// configuration and then waits for a verification slot. It returns the
// slot's release and the release of both; each may be called more than
// once. The budget is taken first so that evidence waiting for a slot is
// counted, and a refusal is immediate: ResourceExhausted, which SPIRE
// agents retry.
func (a *attestation) admit(ctx context.Context, n int64) (slot, all func(), err error) {
	limit := a.st.cfg.MaxEvidenceBytesInFlight
	give, ok := a.p.budget.reserve(n, limit)
	if !ok {
		return nil, nil, rejectf(codes.ResourceExhausted, appraisal.CheckCapacity,
			"the server already holds its max_evidence_bytes_in_flight (%d) of evidence waiting for or under verification; this evidence of %d bytes does not fit: retry, or raise max_evidence_bytes_in_flight",
			limit, n)
	}
	release, err := a.p.slots.acquire(ctx)
	if err != nil {
		give()
		return nil, nil, rejectf(status.FromContextError(err).Code(), appraisal.CheckProtocol, "waiting to verify: %v", err)
	}
	return release, func() { release(); give() }, nil
}
