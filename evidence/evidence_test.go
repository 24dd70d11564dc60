package evidence

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func sampleHello() *evidencepb.Hello {
	return &evidencepb.Hello{
		Tee:          "tdx",
		InstanceId:   "3f2a9c1e-4b7d-4e0a-9f61-0c2d8e5b7a10",
		Caps:         []string{CapZstd, CapGzip, CapLogCCEL, CapLogIMA, CapLogRuntime},
		AgentVersion: "ccnp-spire 0.1.0 (go1.26)",
	}
}

func sampleChallenge() *evidencepb.Challenge {
	return &evidencepb.Challenge{
		Nonce:           seq(NonceSize, 0),
		Want:            []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_CCEL, evidencepb.LogKind_LOG_KIND_IMA},
		MaxPayloadBytes: DefaultMaxPayloadBytes,
	}
}

func sampleActivation() *evidencepb.Challenge {
	return &evidencepb.Challenge{CredentialBlob: seq(68, 1), EncryptedSecret: seq(256, 2)}
}

// sampleTDXEvidence carries the real cos-113 quote and CCEL (zstd), plus a
// gzip IMA list and an uncompressed runtime log.
func sampleTDXEvidence(t testing.TB) *evidencepb.Evidence {
	t.Helper()
	ccel, err := CompressLog(evidencepb.LogKind_LOG_KIND_CCEL, readTestdata(t, "cos-113-intel-tdx.bin"), evidencepb.Encoding_ENCODING_ZSTD)
	if err != nil {
		t.Fatal(err)
	}
	ima, err := CompressLog(evidencepb.LogKind_LOG_KIND_IMA, []byte("10 "+strings.Repeat("ab", 20)+" ima-ng sha256:00 boot_aggregate\n"), evidencepb.Encoding_ENCODING_GZIP)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := CompressLog(evidencepb.LogKind_LOG_KIND_RUNTIME, seq(100, 7), evidencepb.Encoding_ENCODING_NONE)
	if err != nil {
		t.Fatal(err)
	}
	bind := Binding(seq(NonceSize, 0), []byte("hello"))
	return &evidencepb.Evidence{
		Tee:        "tdx",
		Binding:    bind[:],
		Quote:      readTestdata(t, "cos-113-tdx-quote.dat"),
		CcelTable:  readTestdata(t, "cos-113-intel-tdx.table.bin"),
		Ccel:       ccel,
		ImaLog:     ima,
		RuntimeLog: rt,
	}
}

func sampleTPMEvidence() *evidencepb.Evidence {
	return &evidencepb.Evidence{
		Tee:     "tpm",
		Binding: seq(64, 9),
		Tpm: &evidencepb.TPMEvidence{
			AkPublic:           seq(90, 1),
			EkPublic:           seq(280, 2),
			EkCertificate:      seq(900, 3),
			Quote:              seq(145, 4),
			Signature:          seq(72, 5),
			AkCertificateChain: [][]byte{seq(700, 6)},
			EkIntermediates:    [][]byte{seq(800, 7), seq(801, 8)},
			Pcrs: []*evidencepb.PCRBank{
				{Alg: 0x000B, Values: map[uint32][]byte{0: seq(32, 0), 7: seq(32, 7), 23: seq(32, 23)}},
				{Alg: 0x000C, Values: map[uint32][]byte{0: seq(48, 0)}},
			},
		},
		TpmLog: &evidencepb.Log{Kind: evidencepb.LogKind_LOG_KIND_TPM, Data: seq(50, 0), RawSize: 50},
	}
}

func mustEncode(t testing.TB, p *evidencepb.Payload) []byte {
	t.Helper()
	b, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    *evidencepb.Payload
		kind Kind
	}{
		{"hello", NewHello(sampleHello()), KindHello},
		{"hello tpm minimal", NewHello(&evidencepb.Hello{Tee: "tpm"}), KindHello},
		{"challenge nonce", NewChallenge(sampleChallenge()), KindChallenge},
		{"challenge with checkpoint offsets", NewChallenge(&evidencepb.Challenge{
			Nonce: seq(NonceSize, 1),
			Want:  []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_IMA},
			Checkpoint: &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{
				{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 10, Bytes: 4096},
			}},
		}), KindChallenge},
		{"checkpoint issuance", NewCheckpointChallenge([]byte("signed"), []*evidencepb.LogOffset{
			{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Events: 2, Bytes: 300},
		}), KindChallenge},
		{"ack", NewAck(), KindAck},
		{"challenge activation", NewChallenge(sampleActivation()), KindChallenge},
		{"evidence tdx", NewEvidence(sampleTDXEvidence(t)), KindEvidence},
		{"evidence tpm", NewEvidence(sampleTPMEvidence()), KindEvidence},
		{"activated secret", NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: seq(32, 3)}), KindActivatedSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustEncode(t, tt.p)
			got, err := Decode(b, DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.p) {
				t.Fatalf("round trip changed the payload:\n got %v\nwant %v", got, tt.p)
			}
			if k := KindOf(got); k != tt.kind {
				t.Fatalf("KindOf = %v, want %v", k, tt.kind)
			}
			// Deterministic encoding: the same message, the same bytes
			// (the binding hashes them).
			if again := mustEncode(t, got); !bytes.Equal(again, b) {
				t.Fatal("re-encoding the decoded payload gave other bytes")
			}
			// The typed helper of this kind accepts it, every other refuses.
			decoders := map[Kind]func([]byte, Limits) (proto.Message, error){
				KindHello:           func(b []byte, l Limits) (proto.Message, error) { return DecodeHello(b, l) },
				KindChallenge:       func(b []byte, l Limits) (proto.Message, error) { return DecodeChallenge(b, l) },
				KindEvidence:        func(b []byte, l Limits) (proto.Message, error) { return DecodeEvidence(b, l) },
				KindActivatedSecret: func(b []byte, l Limits) (proto.Message, error) { return DecodeActivatedSecret(b, l) },
			}
			for k, dec := range decoders {
				m, err := dec(b, Limits{})
				if k == tt.kind {
					if err != nil {
						t.Fatalf("Decode %v: %v", k, err)
					}
					inner := map[Kind]proto.Message{
						KindHello: got.GetHello(), KindChallenge: got.GetChallenge(),
						KindEvidence: got.GetEvidence(), KindActivatedSecret: got.GetActivatedSecret(),
					}[k]
					if !proto.Equal(m, inner) {
						t.Fatalf("Decode %v returned another message", k)
					}
					continue
				}
				var ke *KindError
				if !errors.As(err, &ke) || !errors.Is(err, ErrWrongKind) || ke.Want != k || ke.Got != tt.kind {
					t.Fatalf("Decode %v of a %v: err = %v, want a KindError", k, tt.kind, err)
				}
			}
		})
	}
}

// TestWireFormat pins field numbers against bytes written by hand (and
// checked with python3): Payload{version=1 (field 1, varint),
// hello (field 2) = Hello{tee="tdx" (1), instance_id="vm-1" (2)}}.
func TestWireFormat(t *testing.T) {
	want, _ := hex.DecodeString("0801120b0a037464781204766d2d31")
	got := mustEncode(t, NewHello(&evidencepb.Hello{Tee: "tdx", InstanceId: "vm-1"}))
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded hello = %x, want %x", got, want)
	}
	h, err := DecodeHello(want, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if h.GetTee() != "tdx" || h.GetInstanceId() != "vm-1" {
		t.Fatalf("decoded %v", h)
	}
}

func TestWrongKindMessage(t *testing.T) {
	b := mustEncode(t, NewEvidence(sampleTPMEvidence()))
	_, err := DecodeHello(b, DefaultLimits())
	if err == nil || err.Error() != "evidence: expected hello, got evidence" {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeTooLarge(t *testing.T) {
	b := mustEncode(t, NewEvidence(sampleTDXEvidence(t)))
	// Exactly at the limit passes; one byte less is refused.
	if _, err := Decode(b, Limits{MaxPayloadBytes: int64(len(b))}); err != nil {
		t.Fatalf("payload at the limit: %v", err)
	}
	_, err := Decode(b, Limits{MaxPayloadBytes: int64(len(b) - 1)})
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want a LimitError", err)
	}
	if le.Size != uint64(len(b)) || le.Limit != uint64(len(b)-1) || le.What != "payload" {
		t.Fatalf("LimitError = %+v", le)
	}
	// The size is checked before parsing: 16 MiB + 1 of garbage is "too
	// large", not "malformed".
	big := bytes.Repeat([]byte{0xff}, DefaultMaxPayloadBytes+1)
	if _, err := Decode(big, DefaultLimits()); !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMalformed) {
		t.Fatalf("16 MiB + 1: err = %v, want ErrTooLarge", err)
	}
}

func TestDecodeRawSizeOverBudget(t *testing.T) {
	ev := sampleTDXEvidence(t)
	b := mustEncode(t, NewEvidence(ev))
	// The payload is small, but its CCEL inflates to 256 KiB.
	lim := Limits{MaxDecompressedBytes: 200 << 10}
	if _, err := Decode(b, lim); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge from the declared raw sizes", err)
	}
	// A raw_size near 2^64 must not wrap the sum around.
	ev.ImaLog.RawSize = ^uint64(0)
	b = mustEncode(t, NewEvidence(ev))
	if _, err := Decode(b, DefaultLimits()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestDecodeVersion(t *testing.T) {
	for _, v := range []uint32{0, 2, 1 << 31} {
		p := NewHello(sampleHello())
		p.Version = v
		b, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Decode(b, DefaultLimits())
		var ve *VersionError
		if !errors.As(err, &ve) || !errors.Is(err, ErrVersion) || ve.Got != v || ve.Supported != Version {
			t.Fatalf("version %d: err = %v", v, err)
		}
		if v != 0 && !strings.Contains(err.Error(), "version "+strconv.FormatUint(uint64(v), 10)) {
			t.Fatalf("error does not name the version: %v", err)
		}
		if _, err := Encode(p); !errors.Is(err, ErrVersion) {
			t.Fatalf("Encode of version %d: err = %v", v, err)
		}
	}
}

// raw builds payload bytes field by field, bypassing Encode's checks.
func raw(fields ...[]byte) []byte {
	return bytes.Join(fields, nil)
}

func varintField(num protowire.Number, v uint64) []byte {
	b := protowire.AppendTag(nil, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func bytesField(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func TestDecodeMalformed(t *testing.T) {
	v1 := varintField(1, Version)
	// Unknown fields escape UnmarshalOptions.RecursionLimit (it counts known
	// messages, and the schema is 5 deep); protowire bounds their group
	// nesting at 10000. 20000 nested groups must be an error, not a crash.
	var deep []byte
	for i := 0; i < 20000; i++ {
		deep = protowire.AppendTag(deep, 15, protowire.StartGroupType)
	}
	for i := 0; i < 20000; i++ {
		deep = protowire.AppendTag(deep, 15, protowire.EndGroupType)
	}
	tests := []struct {
		name  string
		b     []byte
		field string // expected in the message
	}{
		{"nil", nil, "no bytes"},
		{"garbage", []byte("this is not protobuf at all, just text"), "payload"},
		{"truncated varint", []byte{0x08, 0xff}, "payload"},
		{"wrong wire type for hello", raw(v1, varintField(2, 1)), "does not know"},
		{"only a version", v1, "carries no message"},
		{"unknown kind", raw(v1, bytesField(7, []byte{0x0a, 0x01, 'x'})), "does not know"},
		{"hello not a message", raw(v1, bytesField(2, []byte{0xff, 0xff})), "payload"},
		{"deep unknown groups", raw(v1, bytesField(2, raw([]byte{0x0a, 0x03, 't', 'd', 'x'}, deep))), "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.b, DefaultLimits())
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.field)
			}
		})
	}
}

// TestFieldRules: every rule of validate has a payload that breaks it. Each
// is refused by Decode (on bytes marshalled without Encode's checks) and by
// Encode, naming the field.
func TestFieldRules(t *testing.T) {
	type mod func(p *evidencepb.Payload)
	hello := func(f func(h *evidencepb.Hello)) (*evidencepb.Payload, mod) {
		return NewHello(sampleHello()), func(p *evidencepb.Payload) { f(p.GetHello()) }
	}
	chal := func(f func(c *evidencepb.Challenge)) (*evidencepb.Payload, mod) {
		return NewChallenge(sampleChallenge()), func(p *evidencepb.Payload) { f(p.GetChallenge()) }
	}
	act := func(f func(c *evidencepb.Challenge)) (*evidencepb.Payload, mod) {
		return NewChallenge(sampleActivation()), func(p *evidencepb.Payload) { f(p.GetChallenge()) }
	}
	tdx := func(f func(e *evidencepb.Evidence)) (*evidencepb.Payload, mod) {
		return NewEvidence(sampleTDXEvidence(t)), func(p *evidencepb.Payload) { f(p.GetEvidence()) }
	}
	tpm := func(f func(e *evidencepb.Evidence)) (*evidencepb.Payload, mod) {
		return NewEvidence(sampleTPMEvidence()), func(p *evidencepb.Payload) { f(p.GetEvidence()) }
	}
	tests := []struct {
		name  string
		make  func() (*evidencepb.Payload, mod)
		field string
	}{
		{"hello tee unknown", func() (*evidencepb.Payload, mod) { return hello(func(h *evidencepb.Hello) { h.Tee = "sgx" }) }, "hello.tee"},
		{"hello tee empty", func() (*evidencepb.Payload, mod) { return hello(func(h *evidencepb.Hello) { h.Tee = "" }) }, "hello.tee"},
		{"hello instance id path", func() (*evidencepb.Payload, mod) {
			return hello(func(h *evidencepb.Hello) { h.InstanceId = "../../server" })
		}, "hello.instance_id"},
		{"hello instance id dotdot", func() (*evidencepb.Payload, mod) { return hello(func(h *evidencepb.Hello) { h.InstanceId = ".." }) }, "hello.instance_id"},
		{"hello instance id long", func() (*evidencepb.Payload, mod) {
			return hello(func(h *evidencepb.Hello) { h.InstanceId = strings.Repeat("a", 129) })
		}, "hello.instance_id"},
		{"hello too many caps", func() (*evidencepb.Payload, mod) {
			return hello(func(h *evidencepb.Hello) { h.Caps = make([]string, 33) })
		}, "hello.caps"},
		{"hello empty cap", func() (*evidencepb.Payload, mod) {
			return hello(func(h *evidencepb.Hello) { h.Caps = []string{"zstd", ""} })
		}, "hello.caps[1]"},
		{"hello cap newline", func() (*evidencepb.Payload, mod) {
			return hello(func(h *evidencepb.Hello) { h.Caps = []string{"zstd\nFAKE LOG LINE"} })
		}, "hello.caps[0]"},
		{"hello agent version control", func() (*evidencepb.Payload, mod) {
			return hello(func(h *evidencepb.Hello) { h.AgentVersion = "1.0\x1b[31m" })
		}, "hello.agent_version"},
		{"challenge short nonce", func() (*evidencepb.Payload, mod) {
			return chal(func(c *evidencepb.Challenge) { c.Nonce = c.Nonce[:16] })
		}, "challenge.nonce"},
		{"challenge no nonce", func() (*evidencepb.Payload, mod) { return chal(func(c *evidencepb.Challenge) { c.Nonce = nil }) }, "challenge.nonce"},
		{"challenge unknown log", func() (*evidencepb.Payload, mod) {
			return chal(func(c *evidencepb.Challenge) { c.Want = append(c.Want, 9) })
		}, "challenge.want[2]"},
		{"activation half", func() (*evidencepb.Payload, mod) {
			return act(func(c *evidencepb.Challenge) { c.EncryptedSecret = nil })
		}, "both credential_blob"},
		{"activation with nonce", func() (*evidencepb.Payload, mod) {
			return act(func(c *evidencepb.Challenge) { c.Nonce = seq(NonceSize, 0) })
		}, "carries no nonce"},
		{"evidence tee", func() (*evidencepb.Payload, mod) { return tdx(func(e *evidencepb.Evidence) { e.Tee = "snp" }) }, "evidence.tee"},
		{"evidence short binding", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) { e.Binding = e.Binding[:63] })
		}, "evidence.binding"},
		{"tdx without quote", func() (*evidencepb.Payload, mod) { return tdx(func(e *evidencepb.Evidence) { e.Quote = nil }) }, "evidence.quote"},
		{"tdx with tpm", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) { e.Tpm = sampleTPMEvidence().Tpm })
		}, "evidence.tpm"},
		{"tpm without tpm", func() (*evidencepb.Payload, mod) { return tpm(func(e *evidencepb.Evidence) { e.Tpm = nil }) }, "evidence.tpm"},
		{"tpm with tdx quote", func() (*evidencepb.Payload, mod) { return tpm(func(e *evidencepb.Evidence) { e.Quote = []byte{1} }) }, "evidence.quote"},
		{"sim with nothing", func() (*evidencepb.Payload, mod) {
			return tpm(func(e *evidencepb.Evidence) { e.Tee = "sim"; e.Tpm = nil })
		}, "a sim node"},
		{"tpm no ak", func() (*evidencepb.Payload, mod) { return tpm(func(e *evidencepb.Evidence) { e.Tpm.AkPublic = nil }) }, "evidence.tpm.ak_public"},
		{"tpm no signature", func() (*evidencepb.Payload, mod) { return tpm(func(e *evidencepb.Evidence) { e.Tpm.Signature = nil }) }, "evidence.tpm.signature"},
		{"tpm no quote", func() (*evidencepb.Payload, mod) { return tpm(func(e *evidencepb.Evidence) { e.Tpm.Quote = nil }) }, "evidence.tpm.quote"},
		{"tpm no ek", func() (*evidencepb.Payload, mod) {
			return tpm(func(e *evidencepb.Evidence) { e.Tpm.EkPublic = nil; e.Tpm.EkCertificate = nil })
		}, "ek_public or ek_certificate"},
		{"tpm no pcrs", func() (*evidencepb.Payload, mod) { return tpm(func(e *evidencepb.Evidence) { e.Tpm.Pcrs = nil }) }, "evidence.tpm.pcrs"},
		{"tpm pcr 24", func() (*evidencepb.Payload, mod) {
			return tpm(func(e *evidencepb.Evidence) { e.Tpm.Pcrs[0].Values[24] = seq(32, 0) })
		}, "pcr index 24"},
		{"tpm pcr value long", func() (*evidencepb.Payload, mod) {
			return tpm(func(e *evidencepb.Evidence) { e.Tpm.Pcrs[1].Values[3] = seq(65, 0) })
		}, "evidence.tpm.pcrs[1].values[3]"},
		{"tpm duplicate bank", func() (*evidencepb.Payload, mod) {
			return tpm(func(e *evidencepb.Evidence) { e.Tpm.Pcrs[1].Alg = e.Tpm.Pcrs[0].Alg })
		}, "appears twice"},
		{"tpm too many certs", func() (*evidencepb.Payload, mod) {
			return tpm(func(e *evidencepb.Evidence) { e.Tpm.EkIntermediates = make([][]byte, 9) })
		}, "evidence.tpm.ek_intermediates"},
		{"log in wrong slot", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) { e.ImaLog.Kind = evidencepb.LogKind_LOG_KIND_CCEL })
		}, "evidence.ima_log.kind"},
		{"log unknown encoding", func() (*evidencepb.Payload, mod) { return tdx(func(e *evidencepb.Evidence) { e.Ccel.Encoding = 7 }) }, "evidence.ccel.encoding"},
		{"log none raw size", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) { e.RuntimeLog.RawSize++ })
		}, "evidence.runtime_log.raw_size"},
		{"evidence checkpoint with token", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) { e.Checkpoint = &evidencepb.Checkpoint{Token: []byte{1}} })
		}, "evidence.checkpoint.token"},
		{"evidence checkpoint ccel offset", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) {
				e.Checkpoint = &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_CCEL, Bytes: 1}}}
			})
		}, "evidence.checkpoint.offsets[0].kind"},
		{"evidence checkpoint twice", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) {
				o := &evidencepb.LogOffset{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 1, Bytes: 10}
				e.Checkpoint = &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{o, o}}
			})
		}, "appears twice"},
		{"evidence checkpoint events past bytes", func() (*evidencepb.Payload, mod) {
			return tdx(func(e *evidencepb.Evidence) {
				e.Checkpoint = &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 11, Bytes: 10}}}
			})
		}, "every event takes bytes"},
		{"secret empty", func() (*evidencepb.Payload, mod) {
			return NewActivatedSecret(&evidencepb.ActivatedSecret{}), func(*evidencepb.Payload) {}
		}, "activated_secret.secret"},
		{"secret long", func() (*evidencepb.Payload, mod) {
			return NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: seq(65, 0)}), func(*evidencepb.Payload) {}
		}, "activated_secret.secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, m := tt.make()
			m(p)
			b, err := proto.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(b, DefaultLimits())
			var me *MalformedError
			if !errors.As(err, &me) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode: err = %v, want a MalformedError", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Decode: err = %v, want it to name %q", err, tt.field)
			}
			if _, err := Encode(p); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Encode: err = %v, want ErrMalformed naming %q", err, tt.field)
			}
		})
	}
}

func TestEncodeNil(t *testing.T) {
	if _, err := Encode(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Encode(&evidencepb.Payload{Version: Version}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty payload: err = %v", err)
	}
}

// TestTruncated cuts a real encoded evidence payload at every position:
// every prefix must be refused with an error, never a panic.
func TestTruncated(t *testing.T) {
	b := mustEncode(t, NewEvidence(sampleTDXEvidence(t)))
	for n := 0; n < len(b); n++ {
		if _, err := Decode(b[:n], DefaultLimits()); err == nil {
			t.Fatalf("prefix of %d of %d bytes decoded without error", n, len(b))
		}
	}
}

// TestBinding checks Binding against a value computed by python3:
//
//	hashlib.sha512(bytes(range(32)) + hashlib.sha256(b'ccnp hello v1').digest()).hexdigest()
//
// and against crypto/sha512 + crypto/sha256 inline.
func TestBinding(t *testing.T) {
	nonce, hello := seq(32, 0), []byte("ccnp hello v1")
	const fromPython = "b2ae0375fd23bc29e49608b0f5a47b1030647f39123da11e6644190338e1bcb4" +
		"98d0242c934183f60b35b23a8feee5f1d40926f1989429bea15c1f0bf50d4134"
	got := Binding(nonce, hello)
	if hex.EncodeToString(got[:]) != fromPython {
		t.Fatalf("Binding = %x, want %s", got, fromPython)
	}
	hh := sha256.Sum256(hello)
	if want := sha512.Sum512(append(append([]byte(nil), nonce...), hh[:]...)); got != want {
		t.Fatalf("Binding = %x, inline = %x", got, want)
	}
	if err := CheckBinding(got[:], nonce, hello); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ b, n, h []byte }{
		"other nonce":   {got[:], seq(32, 1), hello},
		"other hello":   {got[:], nonce, []byte("ccnp hello v2")},
		"short binding": {got[:63], nonce, hello},
		"no binding":    {nil, nonce, hello},
	} {
		if err := CheckBinding(c.b, c.n, c.h); !errors.Is(err, ErrBinding) {
			t.Errorf("%s: err = %v, want ErrBinding", name, err)
		}
	}
}

func TestNewNonce(t *testing.T) {
	a, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != NonceSize || len(b) != NonceSize || bytes.Equal(a, b) {
		t.Fatalf("nonces %x, %x", a, b)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindEmpty: "empty payload", KindHello: "hello", KindChallenge: "challenge",
		KindEvidence: "evidence", KindActivatedSecret: "activated secret", KindAck: "ack", Kind(99): "unknown kind",
	} {
		if k.String() != want {
			t.Errorf("Kind(%d) = %q, want %q", int(k), k.String(), want)
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	if got := (Limits{}).withDefaults(); got != DefaultLimits() {
		t.Fatalf("zero Limits = %+v, want defaults", got)
	}
	if got := (Limits{MaxPayloadBytes: -1, MaxDecompressedBytes: 5}).withDefaults(); got.MaxPayloadBytes != 16<<20 || got.MaxDecompressedBytes != 5 {
		t.Fatalf("got %+v", got)
	}
	if d := DefaultLimits(); d.MaxPayloadBytes != 16<<20 || d.MaxDecompressedBytes != 16<<20 {
		t.Fatalf("DefaultLimits = %+v", d)
	}
}

func TestErrorMessages(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&VersionError{Got: 2, Supported: 1}, "payload version 2 is not supported (this build supports version 1 only)"},
		{&VersionError{Got: 0, Supported: 1}, "payload carries no version"},
		{&LimitError{What: "ima log", Size: 20, Limit: 10}, "ima log is 20 bytes, above the limit of 10 bytes"},
		{&MalformedError{Field: "evidence.ccel", Reason: "zstd", Err: errors.New("bad magic")}, "malformed payload: evidence.ccel: zstd: bad magic"},
	} {
		if !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%q does not contain %q", c.err.Error(), c.want)
		}
	}
	cause := errors.New("cause")
	if !errors.Is(&MalformedError{Err: cause}, cause) {
		t.Error("MalformedError does not unwrap")
	}
}
