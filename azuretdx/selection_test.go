package azuretdx_test

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// attestQuoting is a TPMS_ATTEST of a quote selecting PCRs 1 and 2 in the
// SHA-384 bank, then PCR 0 in the SHA-256 bank: the order a TPM digests
// them in, whatever the numeric order of the algorithms.
func attestQuoting(t *testing.T) []byte {
	t.Helper()
	att := tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue,
		Type:  tpm2.TPMSTAttestQuote,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
				{Hash: tpm2.TPMAlgSHA384, PCRSelect: []byte{0x06, 0, 0}},
				{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0x01, 0, 0}},
			}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: make([]byte, 32)},
		}),
	}
	return tpm2.Marshal(att)
}

func TestSelectionOrderFollowsTheQuote(t *testing.T) {
	regs := cctrusted.Registers{}
	v := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	regs.Set(cctrusted.PCR(0).IMR(), cctrusted.AlgSHA256, v(0xa0, 32))
	regs.Set(cctrusted.PCR(1).IMR(), cctrusted.AlgSHA384, v(0xb1, 48))
	regs.Set(cctrusted.PCR(2).IMR(), cctrusted.AlgSHA384, v(0xb2, 48))
	got := azuretdx.SelectionOrder(attestQuoting(t), regs)
	want := [][]byte{v(0xb1, 48), v(0xb2, 48), v(0xa0, 32)}
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("value %d is %x..., want %x...", i, got[i][:1], want[i][:1])
		}
	}

	// A value the quote does not select is kept (last), so the count
	// check refuses it rather than it being dropped unseen.
	regs.Set(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256, v(0xc7, 32))
	if got := azuretdx.SelectionOrder(attestQuoting(t), regs); len(got) != 4 || !bytes.Equal(got[3], v(0xc7, 32)) {
		t.Errorf("an unquoted value was not kept last: %d values", len(got))
	}
	if got := azuretdx.SelectionOrder([]byte("not a quote"), regs); got != nil {
		t.Errorf("a message that is no quote gave %d values", len(got))
	}
}
