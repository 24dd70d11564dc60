package serververifier

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// TestAttackForgedQEReportSignatureWarmCache attacks the server's verdict
// cache of QE report signatures over the plugin transport: once the
// platform's QE report was verified, a quote carrying that QE report with
// another signature must be refused by the signature check itself, while
// the same QE report and signature bytes in a new quote are accepted from
// the cache.
func TestAttackForgedQEReportSignatureWarmCache(t *testing.T) {
	_, h, a := simSetup(t, sim.InitOptions{}, "", "")
	var first []byte
	a.Mutate = func(e *evidencepb.Evidence) { first = bytes.Clone(e.Quote) }
	if _, err := h.attest(a); err != nil {
		t.Fatal(err)
	}
	q, err := tdxquote.Parse(first)
	if err != nil {
		t.Fatal(err)
	}
	sigOff := bytes.Index(first, q.QEReportSignature[:])
	if sigOff < 0 || bytes.Count(first, q.QEReportSignature[:]) != 1 {
		t.Fatal("QE report signature not found once in the quote")
	}
	cachedSig := bytes.Clone(first[sigOff : sigOff+tdxquote.SignatureSize])

	// The simulator signs its QE report anew for every quote (a random
	// ECDSA nonce); a hardware QE sends the same bytes every time.
	withSig := func(sig []byte) func(*evidencepb.Evidence) {
		return func(e *evidencepb.Evidence) {
			if !bytes.Equal(e.Quote[sigOff-384:sigOff], first[sigOff-384:sigOff]) {
				t.Fatal("the simulator's QE report changed between quotes")
			}
			copy(e.Quote[sigOff:], sig)
		}
	}
	a.Mutate = withSig(cachedSig)
	if _, err := h.attest(a); err != nil {
		t.Fatalf("a new quote with the verified QE report and signature: %v", err)
	}

	forged := bytes.Clone(cachedSig)
	forged[5] ^= 1
	a.Mutate = withSig(forged)
	_, err = h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckQuoteSignature, "QE report signature does not verify")
}
