package tpm

import (
	"context"
	"sync"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// BenchmarkQuoteVerify is one agent quote on swtpm (ECC AK, SHA-256 PCRs
// 0..23, with the read-back check) plus the server's VerifyQuote.
func BenchmarkQuoteVerify(b *testing.B) {
	p := open(b, swtpm.StartT(b), Options{})
	akPub, _ := p.AttestationKeyPublic()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := p.Report(ctx, []byte("nonce"), nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentUse shares one provider between goroutines, as the agent's
// node and workload attestors do; run with -race.
func TestConcurrentUse(t *testing.T) {
	p := open(t, swtpm.StartT(t), Options{})
	akPub, _ := p.AttestationKeyPublic()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 4 {
		wg.Go(func() {
			for range 3 {
				d := make([]byte, 32)
				d[0] = byte(i)
				if err := p.Extend(ctx, 23, cctrusted.AlgSHA256, d); err != nil {
					errs <- err
					return
				}
				r, err := p.Report(ctx, []byte{byte(i)}, nil)
				if err != nil {
					errs <- err
					return
				}
				if err := tpmquote.VerifyQuote(akPub, r.Quote, r.Signature, r.ReportData, r.Registers); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
