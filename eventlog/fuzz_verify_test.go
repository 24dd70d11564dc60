package eventlog

import (
	"bytes"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// FuzzVerifyCCEL feeds mutated CCEL tables and logs to VerifyCCEL against
// the RTMRs the real cos-113 quote signed (read from the quote's bytes, not
// from the parser). Whatever it accepts must replay to exactly those
// registers: the same log against any one of them flipped is refused.
func FuzzVerifyCCEL(f *testing.F) {
	table := readFile(f, ccelDir, "cos-113-intel-tdx.table.bin")
	raw := readFile(f, ccelDir, "cos-113-intel-tdx.bin")
	sp := spans(f, raw)
	f.Add(table, raw[:sp[len(sp)-1].end])
	f.Add([]byte(nil), raw[:sp[len(sp)-1].end])
	f.Add(table, raw[:sp[5].end])
	rtmr := quoteRTMRs(f)
	f.Fuzz(func(t *testing.T, table, log []byte) {
		if len(table) == 0 {
			table = nil
		}
		facts, err := VerifyCCEL(table, log, rtmr)
		if err != nil {
			return
		}
		if facts == nil || len(facts.VerifiedRegisters) != 3 {
			t.Fatalf("accepted with facts %+v", facts)
		}
		for i := range rtmr {
			var other [3][]byte
			copy(other[:], rtmr[:])
			other[i] = bytes.Clone(rtmr[i])
			other[i][0] ^= 1
			if _, err := VerifyCCEL(table, log, other); err == nil {
				t.Fatalf("the log also verifies against rtmr%d = %x", i, other[i])
			}
		}
	})
}

// FuzzVerifyTPM feeds mutated TPM firmware logs to VerifyTPM against the
// PCRs go-eventlog's tests recorded for the real machine. Whatever it
// accepts must replay to those PCRs: the same log against a flipped PCR0 is
// refused.
func FuzzVerifyTPM(f *testing.F) {
	const name = "rhel8-uefi.bin"
	raw := readFile(f, tpmDir, name)
	f.Add(raw)
	f.Add(raw[:spans(f, raw)[6].end])
	pcrs := tpmExpected(f)[name]
	pcr0 := cctrusted.PCR(0).IMR()
	if _, ok := pcrs.Get(pcr0, cctrusted.AlgSHA256); !ok {
		f.Fatal("no signed SHA-256 PCR0 for the seed")
	}
	flipped := make(cctrusted.Registers)
	for m, banks := range pcrs {
		for alg, v := range banks {
			flipped.Set(m, alg, bytes.Clone(v))
		}
	}
	v, _ := flipped.Get(pcr0, cctrusted.AlgSHA256)
	v[0] ^= 1
	f.Fuzz(func(t *testing.T, log []byte) {
		if _, err := VerifyTPM(log, pcrs); err != nil {
			return
		}
		if _, err := VerifyTPM(log, flipped); err == nil {
			t.Fatal("the log also verifies against a flipped PCR0")
		}
	})
}
