package evidence

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// RecordingMagic opens a recording file (`ccnp evidence collect`), so that
// `ccnp verify --evidence` can tell one from a quote or a log at once.
const RecordingMagic = "CCNPREC1"

// Recording is what an agent sends in one attestation, as it sent it: the
// encoded hello and the encoded evidence answering a nonce challenge. The
// bytes are kept exactly because the binding hashes the hello's bytes, not
// its meaning. The nonce is not part of it: whoever verifies a recording
// supplies the nonce they asked for.
//
// The file framing is RecordingMagic, then for the hello and then the
// evidence a big-endian uint32 length and that many bytes, and nothing after.
// Each part is a Payload of this package's wire format.
type Recording struct {
	Hello    []byte
	Evidence []byte
}

// Marshal frames r for a file.
func (r *Recording) Marshal() ([]byte, error) {
	if len(r.Hello) == 0 || len(r.Evidence) == 0 {
		return nil, fmt.Errorf("%w: a recording needs both the hello and the evidence", ErrMalformed)
	}
	var b bytes.Buffer
	b.WriteString(RecordingMagic)
	for _, part := range [][]byte{r.Hello, r.Evidence} {
		if uint64(len(part)) > uint64(^uint32(0)) {
			return nil, &LimitError{What: "recorded payload", Size: uint64(len(part)), Limit: uint64(^uint32(0))}
		}
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(part))))
		b.Write(part)
	}
	return b.Bytes(), nil
}

// UnmarshalRecording parses a recording's framing, each part within
// lim.MaxPayloadBytes. It does not decode the parts: they go, as recorded,
// to the server plugin, whose own decoding and checks judge them.
func UnmarshalRecording(b []byte, lim Limits) (*Recording, error) {
	lim = lim.withDefaults()
	rest, ok := bytes.CutPrefix(b, []byte(RecordingMagic))
	if !ok {
		return nil, fmt.Errorf("%w: not a ccnp evidence recording (it does not start with %q; make one with `ccnp evidence collect`)", ErrMalformed, RecordingMagic)
	}
	var parts [2][]byte
	for i, name := range []string{"hello", "evidence"} {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: recording truncated before the %s's length", ErrMalformed, name)
		}
		n := uint64(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if n > uint64(lim.MaxPayloadBytes) {
			return nil, &LimitError{What: "recorded " + name, Size: n, Limit: uint64(lim.MaxPayloadBytes)}
		}
		if n == 0 || uint64(len(rest)) < n {
			return nil, fmt.Errorf("%w: recording's %s claims %d bytes, %d are there", ErrMalformed, name, n, len(rest))
		}
		parts[i], rest = rest[:n], rest[n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the recording's evidence", ErrMalformed, len(rest))
	}
	return &Recording{Hello: parts[0], Evidence: parts[1]}, nil
}
