package evidence_test

import (
	"errors"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/evidence"
)

func TestRecordingRoundTripAndFraming(t *testing.T) {
	r := &evidence.Recording{Hello: []byte("hello bytes"), Evidence: []byte("evidence bytes")}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := evidence.UnmarshalRecording(b, evidence.DefaultLimits())
	if err != nil || string(got.Hello) != "hello bytes" || string(got.Evidence) != "evidence bytes" {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	small := evidence.Limits{MaxPayloadBytes: 12, MaxDecompressedBytes: 12}
	for _, tt := range []struct {
		name string
		b    []byte
		lim  evidence.Limits
		want error
	}{
		{"not a recording", []byte("\x00\x01quote"), evidence.DefaultLimits(), evidence.ErrMalformed},
		{"truncated", b[:len(b)-1], evidence.DefaultLimits(), evidence.ErrMalformed},
		{"trailing bytes", append(append([]byte{}, b...), 0), evidence.DefaultLimits(), evidence.ErrMalformed},
		{"part over the limit", b, small, evidence.ErrTooLarge},
		{"empty part", []byte(evidence.RecordingMagic + "\x00\x00\x00\x00"), evidence.DefaultLimits(), evidence.ErrMalformed},
	} {
		if _, err := evidence.UnmarshalRecording(tt.b, tt.lim); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := (&evidence.Recording{Hello: []byte("h")}).Marshal(); err == nil {
		t.Error("a recording without evidence was marshalled")
	}
}
