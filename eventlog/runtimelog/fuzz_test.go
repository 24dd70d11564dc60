package runtimelog

import (
	"bytes"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func FuzzDecode(f *testing.F) {
	log, spans := encodedLog(f)
	f.Add(log)
	f.Add(log[spans[1][0]:spans[1][1]])
	tpm := New(cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256)
	one, _, err := tpm.AppendEncoded(nil, Workload{ExeSHA256: make([]byte, 32)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(one)
	f.Add(mustRead(f, "../../testdata/ccel/cos-113-intel-tdx.bin")[:512])
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Decode(b, Limits{})
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes: one encoding per log.
		enc, err := l.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, b)
		}
		regs, err := l.Replay()
		if err != nil {
			t.Fatal(err)
		}
		v, _ := regs.Get(l.IMR(), l.Algorithm())
		if err := l.Verify(v); err != nil {
			t.Fatal(err)
		}
	})
}
