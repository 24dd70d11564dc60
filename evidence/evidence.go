// Package evidence is the wire format between the ccnp agent and server
// plugins (DESIGN.md §3): versioned protobuf payloads (package evidencepb),
// size limits enforced before anything is parsed or inflated, optional
// zstd/gzip compression of event logs, and the nonce binding rule. Both
// sides use it, so the format and its checks live in one place.
package evidence

import (
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// Version is the protocol version this build speaks. Decode rejects any
// other, so a future change of meaning cannot be misread silently.
const Version = 1

// Default limits. A TDX quote is ~8 KiB and a CCEL 256 KiB; IMA lists of busy
// nodes reach a few MiB, so 16 MiB leaves room while bounding the memory a
// single (unauthenticated) agent can make the server spend.
const (
	DefaultMaxPayloadBytes      = 16 << 20
	DefaultMaxDecompressedBytes = 16 << 20
)

// maxDepth bounds message nesting while unmarshalling. The deepest path of
// the schema is Payload > Evidence > TPMEvidence > PCRBank > map entry (5),
// so anything deeper is hostile; protobuf's default of 10000 is far too lax.
const maxDepth = 16

// Limits bounds what Decode and the log decompression accept. A zero (or
// negative) field takes its default, so a zero Limits is never "no limit".
type Limits struct {
	// MaxPayloadBytes bounds the encoded payload; checked before unmarshalling.
	MaxPayloadBytes int64
	// MaxDecompressedBytes bounds the whole evidence after its logs are
	// decompressed: every log's raw size plus the rest of the message.
	MaxDecompressedBytes int64
}

// DefaultLimits returns 16 MiB for the payload and 16 MiB after decompression.
func DefaultLimits() Limits {
	return Limits{MaxPayloadBytes: DefaultMaxPayloadBytes, MaxDecompressedBytes: DefaultMaxDecompressedBytes}
}

func (l Limits) withDefaults() Limits {
	if l.MaxPayloadBytes <= 0 {
		l.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if l.MaxDecompressedBytes <= 0 {
		l.MaxDecompressedBytes = DefaultMaxDecompressedBytes
	}
	return l
}

// Kind is the kind of message a Payload carries.
type Kind int

// The kinds of Payload.
const (
	KindEmpty Kind = iota
	KindHello
	KindChallenge
	KindEvidence
	KindActivatedSecret
	KindAck
)

// String returns the kind's name as error messages use it.
func (k Kind) String() string {
	switch k {
	case KindEmpty:
		return "empty payload"
	case KindHello:
		return "hello"
	case KindChallenge:
		return "challenge"
	case KindEvidence:
		return "evidence"
	case KindActivatedSecret:
		return "activated secret"
	case KindAck:
		return "ack"
	}
	return "unknown kind"
}

// KindOf returns the kind of message p carries.
func KindOf(p *evidencepb.Payload) Kind {
	switch p.GetBody().(type) {
	case *evidencepb.Payload_Hello:
		return KindHello
	case *evidencepb.Payload_Challenge:
		return KindChallenge
	case *evidencepb.Payload_Evidence:
		return KindEvidence
	case *evidencepb.Payload_ActivatedSecret:
		return KindActivatedSecret
	case *evidencepb.Payload_Ack:
		return KindAck
	}
	return KindEmpty
}

// NewHello wraps h in a payload of the current version.
func NewHello(h *evidencepb.Hello) *evidencepb.Payload {
	return &evidencepb.Payload{Version: Version, Body: &evidencepb.Payload_Hello{Hello: h}}
}

// NewChallenge wraps c in a payload of the current version.
func NewChallenge(c *evidencepb.Challenge) *evidencepb.Payload {
	return &evidencepb.Payload{Version: Version, Body: &evidencepb.Payload_Challenge{Challenge: c}}
}

// NewEvidence wraps e in a payload of the current version.
func NewEvidence(e *evidencepb.Evidence) *evidencepb.Payload {
	return &evidencepb.Payload{Version: Version, Body: &evidencepb.Payload_Evidence{Evidence: e}}
}

// NewActivatedSecret wraps s in a payload of the current version.
func NewActivatedSecret(s *evidencepb.ActivatedSecret) *evidencepb.Payload {
	return &evidencepb.Payload{Version: Version, Body: &evidencepb.Payload_ActivatedSecret{ActivatedSecret: s}}
}

// NewAck returns the answer to a checkpoint challenge.
func NewAck() *evidencepb.Payload {
	return &evidencepb.Payload{Version: Version, Body: &evidencepb.Payload_Ack{Ack: &evidencepb.Ack{}}}
}

// Encode checks p as Decode would (version, exactly one message, field
// rules) and marshals it. The sender fails here, with the field named,
// rather than the peer later. Encoding is deterministic, so the same hello
// always hashes to the same binding.
func Encode(p *evidencepb.Payload) ([]byte, error) {
	if p == nil {
		return nil, malformed("payload", "nil payload")
	}
	if p.GetVersion() != Version {
		return nil, &VersionError{Got: p.GetVersion(), Supported: Version}
	}
	if err := validate(p); err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return nil, &MalformedError{Field: "payload", Reason: "cannot marshal", Err: err}
	}
	return b, nil
}

// Decode parses a payload received from the peer. In order, it refuses:
// more than lim.MaxPayloadBytes (before parsing anything), bytes that are
// not a payload (nesting bounded), a version other than Version, a payload
// with no message or one this version does not know, fields that break the
// rules of their message, and logs whose declared raw sizes together exceed
// lim.MaxDecompressedBytes. Logs stay compressed: see DecompressLogs.
func Decode(b []byte, lim Limits) (*evidencepb.Payload, error) {
	lim = lim.withDefaults()
	if int64(len(b)) > lim.MaxPayloadBytes {
		return nil, &LimitError{What: "payload", Size: uint64(len(b)), Limit: uint64(lim.MaxPayloadBytes)}
	}
	if len(b) == 0 {
		return nil, malformed("payload", "no bytes")
	}
	p := new(evidencepb.Payload)
	if err := (proto.UnmarshalOptions{RecursionLimit: maxDepth}).Unmarshal(b, p); err != nil {
		return nil, &MalformedError{Field: "payload", Reason: "not a ccnp.evidence.v1.Payload", Err: err}
	}
	if p.GetVersion() != Version {
		return nil, &VersionError{Got: p.GetVersion(), Supported: Version}
	}
	if p.GetBody() == nil && len(p.ProtoReflect().GetUnknown()) > 0 {
		return nil, malformed("payload", "carries a message kind this version does not know (sent by a newer peer?)")
	}
	if err := validate(p); err != nil {
		return nil, err
	}
	if ev := p.GetEvidence(); ev != nil {
		if err := checkRawSizes(ev, lim); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func decodeKind(b []byte, lim Limits, want Kind) (*evidencepb.Payload, error) {
	p, err := Decode(b, lim)
	if err != nil {
		return nil, err
	}
	if got := KindOf(p); got != want {
		return nil, &KindError{Want: want, Got: got}
	}
	return p, nil
}

// DecodeHello decodes a payload that must carry a Hello.
func DecodeHello(b []byte, lim Limits) (*evidencepb.Hello, error) {
	p, err := decodeKind(b, lim, KindHello)
	if err != nil {
		return nil, err
	}
	return p.GetHello(), nil
}

// DecodeChallenge decodes a payload that must carry a Challenge.
func DecodeChallenge(b []byte, lim Limits) (*evidencepb.Challenge, error) {
	p, err := decodeKind(b, lim, KindChallenge)
	if err != nil {
		return nil, err
	}
	return p.GetChallenge(), nil
}

// DecodeEvidence decodes a payload that must carry Evidence. Its logs are
// still compressed: pass it to DecompressLogs with the same Limits.
func DecodeEvidence(b []byte, lim Limits) (*evidencepb.Evidence, error) {
	p, err := decodeKind(b, lim, KindEvidence)
	if err != nil {
		return nil, err
	}
	return p.GetEvidence(), nil
}

// DecodeAck decodes a payload that must carry an Ack.
func DecodeAck(b []byte, lim Limits) error {
	_, err := decodeKind(b, lim, KindAck)
	return err
}

// DecodeActivatedSecret decodes a payload that must carry an ActivatedSecret.
func DecodeActivatedSecret(b []byte, lim Limits) (*evidencepb.ActivatedSecret, error) {
	p, err := decodeKind(b, lim, KindActivatedSecret)
	if err != nil {
		return nil, err
	}
	return p.GetActivatedSecret(), nil
}
