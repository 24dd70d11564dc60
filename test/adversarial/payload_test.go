package adversarial

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// bomb compresses n zero bytes with enc: a few hundred KiB that inflate to
// n.
func bomb(t testing.TB, enc evidencepb.Encoding, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case evidencepb.Encoding_ENCODING_ZSTD:
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	case evidencepb.Encoding_ENCODING_GZIP:
		w, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	}
	if _, err := io.Copy(w, io.LimitReader(zeros{}, n)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// payload encodes p without the sender's checks, as a hostile agent can.
func payload(t testing.TB, p *evidencepb.Payload) []byte {
	t.Helper()
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// helloEdit sends an edited hello.
func helloEdit(edit func(*evidencepb.Hello)) func(t *testing.T, n *simNode, a *agent) {
	return func(t *testing.T, n *simNode, a *agent) {
		a.Hello = func(h []byte) []byte {
			var p evidencepb.Payload
			if err := proto.Unmarshal(h, &p); err != nil {
				t.Fatal(err)
			}
			edit(p.GetHello())
			return payload(t, &p)
		}
	}
}

func mutate(f func(t *testing.T, e *evidencepb.Evidence)) func(t *testing.T, n *simNode, a *agent) {
	return func(t *testing.T, n *simNode, a *agent) { a.Mutate = func(e *evidencepb.Evidence) { f(t, e) } }
}

// TestHostilePayloads: decompression bombs, sizes that lie, deeply
// nested or huge protobuf fields and malformed framing.
func TestHostilePayloads(t *testing.T) {
	const GiB = 1 << 30
	zbomb := bomb(t, evidencepb.Encoding_ENCODING_ZSTD, GiB)
	gbomb := bomb(t, evidencepb.Encoding_ENCODING_GZIP, 256<<20)
	t.Logf("zstd bomb %d bytes for 1 GiB, gzip bomb %d bytes for 256 MiB", len(zbomb), len(gbomb))
	runSimCases(t, []simCase{
		{
			name: "zstd bomb declaring a small raw size",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.RuntimeLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Encoding: evidencepb.Encoding_ENCODING_ZSTD, RawSize: 4096, Data: zbomb}
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "gzip bomb declaring a small raw size",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.ImaLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_IMA, Encoding: evidencepb.Encoding_ENCODING_GZIP, RawSize: 4096, Data: gbomb}
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "zstd bomb declaring its true size of 1 GiB",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.RuntimeLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Encoding: evidencepb.Encoding_ENCODING_ZSTD, RawSize: GiB, Data: zbomb}
			}),
			want: reject(codes.InvalidArgument, "payload", "above the limit"),
		},
		{
			// Each log is under the budget; together they are over it.
			name: "four logs of 5 MiB each",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				five := bomb(t, evidencepb.Encoding_ENCODING_ZSTD, 5<<20)
				l := func(k evidencepb.LogKind) *evidencepb.Log {
					return &evidencepb.Log{Kind: k, Encoding: evidencepb.Encoding_ENCODING_ZSTD, RawSize: 5 << 20, Data: five}
				}
				e.Ccel, e.ImaLog, e.RuntimeLog = l(evidencepb.LogKind_LOG_KIND_CCEL), l(evidencepb.LogKind_LOG_KIND_IMA), l(evidencepb.LogKind_LOG_KIND_RUNTIME)
				e.TpmLog = l(evidencepb.LogKind_LOG_KIND_TPM)
			}),
			want: reject(codes.InvalidArgument, "payload", "above the limit"),
		},
		{
			name: "raw size larger than what the stream inflates to",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.RuntimeLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Encoding: evidencepb.Encoding_ENCODING_ZSTD, RawSize: 8192, Data: bomb(t, evidencepb.Encoding_ENCODING_ZSTD, 100)}
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "garbage after the compressed stream",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.RuntimeLog = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Encoding: evidencepb.Encoding_ENCODING_GZIP, RawSize: 100,
					Data: append(bomb(t, evidencepb.Encoding_ENCODING_GZIP, 100), "trailing"...)}
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "unknown log encoding",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.Ccel.Encoding = 7
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "log of one kind in the slot of another",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.RuntimeLog = e.Ccel
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name:   "payload over max_payload_bytes",
			config: "max_payload_bytes = 65536",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.Ccel = &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_CCEL, RawSize: 70000, Data: make([]byte, 70000)}
			}),
			want: reject(codes.InvalidArgument, "payload", "above the limit"),
		},
		{
			// 100,000 nested groups of an unknown field after the evidence:
			// a recursive decoder would exhaust the stack.
			name: "deeply nested unknown groups",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Raw = func(b []byte) []byte {
					const depth = 100000
					var nest []byte
					for range depth {
						nest = protowire.AppendTag(nest, 99, protowire.StartGroupType)
					}
					for range depth {
						nest = protowire.AppendTag(nest, 99, protowire.EndGroupType)
					}
					return append(b, nest...)
				}
			},
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			// Under the plugin transport's 4 MiB message limit, over the
			// configured payload limit.
			name:   "unknown field of 2 MiB",
			config: "max_payload_bytes = 1048576",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Raw = func(b []byte) []byte {
					return protowire.AppendBytes(protowire.AppendTag(b, 99, protowire.BytesType), make([]byte, 2<<20))
				}
			},
			want: reject(codes.InvalidArgument, "payload", "above the limit"),
		},
		{
			name:  "instance ID of 1 MiB",
			setup: helloEdit(func(h *evidencepb.Hello) { h.InstanceId = strings.Repeat("a", 1<<20) }),
			want:  reject(codes.InvalidArgument, "payload", "above the limit of 65536", "hello"), // the hello bound (64 KiB) comes first
		},
		{
			name: "hello with 10,000 capabilities",
			setup: helloEdit(func(h *evidencepb.Hello) {
				for range 10000 {
					h.Caps = append(h.Caps, "log:ccel")
				}
			}),
			want: reject(codes.InvalidArgument, "payload", "above the limit of 65536", "hello"), // the hello bound (64 KiB) comes first
		},
		{
			name: "evidence with 1,000 PCR banks",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				tpm := &evidencepb.TPMEvidence{AkPublic: []byte{1}, EkPublic: []byte{1}, Quote: []byte{1}, Signature: []byte{1}}
				for i := range 1000 {
					tpm.Pcrs = append(tpm.Pcrs, &evidencepb.PCRBank{Alg: uint32(i), Values: map[uint32][]byte{0: make([]byte, 32)}})
				}
				e.Tpm = tpm
			}),
			want: reject(codes.InvalidArgument, "payload", "pcrs"),
		},
		{
			name: "evidence with 1,000 certificates in the AK chain",
			setup: mutate(func(t *testing.T, e *evidencepb.Evidence) {
				e.Tpm = &evidencepb.TPMEvidence{AkCertificateChain: make([][]byte, 1000)}
			}),
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "payload of a future version",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Raw = func(b []byte) []byte {
					var p evidencepb.Payload
					if err := proto.Unmarshal(b, &p); err != nil {
						t.Fatal(err)
					}
					p.Version = evidence.Version + 1
					return payload(t, &p)
				}
			},
			want: reject(codes.FailedPrecondition, "payload"),
		},
		{
			name: "hello where the evidence is due",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Raw = func([]byte) []byte {
					return payload(t, evidence.NewHello(&evidencepb.Hello{Tee: "sim", InstanceId: "x"}))
				}
			},
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "evidence truncated",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Raw = func(b []byte) []byte { return b[:len(b)-3] }
			},
			want: reject(codes.InvalidArgument, "payload"),
		},
	})
}
