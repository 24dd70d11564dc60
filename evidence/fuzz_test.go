package evidence

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// FuzzDecode: no input panics; whatever Decode accepts, Encode accepts and
// reproduces; the logs of accepted evidence decompress within the budget.
// Seeds: every message kind, and evidence with the real cos-113 TDX quote
// and its CCEL compressed with zstd.
func FuzzDecode(f *testing.F) {
	ev := sampleTDXEvidence(f)
	for _, p := range []*evidencepb.Payload{
		NewHello(sampleHello()),
		NewChallenge(sampleChallenge()),
		NewChallenge(sampleActivation()),
		NewEvidence(ev),
		NewEvidence(sampleTPMEvidence()),
		NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: seq(32, 0)}),
	} {
		f.Add(mustEncode(f, p))
	}
	// Small limits, so the fuzzer reaches the budget checks cheaply.
	lim := Limits{MaxPayloadBytes: 1 << 20, MaxDecompressedBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b, lim)
		if err != nil {
			if p != nil {
				t.Fatal("payload returned with an error")
			}
			return
		}
		again, err := Encode(p)
		if err != nil {
			t.Fatalf("Decode accepted what Encode refuses: %v", err)
		}
		p2, err := Decode(again, lim)
		if err != nil || !proto.Equal(p, p2) {
			t.Fatalf("re-encoded payload does not decode to itself: %v", err)
		}
		if e := p.GetEvidence(); e != nil {
			logs, err := DecompressLogs(e, lim)
			if err != nil {
				return
			}
			total := len(logs.CCEL) + len(logs.TPM) + len(logs.IMA) + len(logs.Runtime)
			if int64(total) > lim.MaxDecompressedBytes {
				t.Fatalf("%d bytes of logs decompressed under a %d budget", total, lim.MaxDecompressedBytes)
			}
		}
	})
}

// FuzzDecompressLog: no input panics, the output is exactly raw_size bytes
// and never exceeds the budget. Seeds: the real CCEL under each encoding.
func FuzzDecompressLog(f *testing.F) {
	ccel := readTestdata(f, "cos-113-intel-tdx.bin")
	for _, enc := range encodings {
		for _, in := range [][]byte{ccel[:4096], {}, []byte("short")} {
			l, err := CompressLog(evidencepb.LogKind_LOG_KIND_CCEL, in, enc)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(enc), l.GetData(), l.GetRawSize())
		}
	}
	const budget = 64 << 10
	f.Fuzz(func(t *testing.T, enc uint8, data []byte, raw uint64) {
		l := &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_CCEL, Encoding: evidencepb.Encoding(enc), Data: data, RawSize: raw}
		b := NewBudget(budget)
		out, err := DecompressLog(l, b)
		if err != nil {
			if out != nil {
				t.Fatal("output returned with an error")
			}
			return
		}
		if uint64(len(out)) != raw || len(out) > budget || b.Remaining() != budget-uint64(len(out)) {
			t.Fatalf("output %d bytes, raw_size %d, budget left %d", len(out), raw, b.Remaining())
		}
		// Accepted data re-compresses to something that decompresses to
		// the same bytes.
		if enc <= uint8(evidencepb.Encoding_ENCODING_GZIP) {
			l2, err := CompressLog(evidencepb.LogKind_LOG_KIND_CCEL, out, evidencepb.Encoding(enc))
			if err != nil {
				t.Fatal(err)
			}
			out2, err := DecompressLog(l2, nil)
			if err != nil || !bytes.Equal(out, out2) {
				t.Fatalf("re-compressed output does not round trip: %v", err)
			}
		}
	})
}
