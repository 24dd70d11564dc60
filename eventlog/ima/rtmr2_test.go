package ima

import (
	"crypto/sha512"
	"errors"
	"slices"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// TestRTMR2Field: the convention comes from the list, and a list that
// follows neither is refused with every field seen and its first entry.
func TestRTMR2Field(t *testing.T) {
	for _, c := range []struct {
		name   string
		want   cctrusted.PCR
		fields []cctrusted.PCR
		first  []int
	}{
		{"rtmr2-sha384.bin", FieldRTMR2, nil, nil},
		{"rtmr2-sha384-be.ascii", FieldRTMR2, nil, nil},
		{"cgpath.bin", FieldPCR10, nil, nil},
		{"mixed.bin", 0, []cctrusted.PCR{9, 10, 11}, []int{14, 0, 13}},
	} {
		l, err := Parse(readFixture(t, c.name), Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.RTMR2Field()
		var fe *FieldError
		if c.fields == nil {
			if err != nil || got != c.want {
				t.Errorf("%s: field %d, %v; want %d", c.name, got, err, c.want)
			}
			continue
		}
		if !errors.As(err, &fe) || !slices.Equal(fe.Fields, c.fields) || !slices.Equal(fe.First, c.first) {
			t.Errorf("%s: %v (%+v), want fields %v first at %v", c.name, err, fe, c.fields, c.first)
		}
	}
}

// TestVerifyRTMR2 replays a field-2 list from a non-zero start, every
// entry counted, against a value computed here from the template data.
func TestVerifyRTMR2(t *testing.T) {
	l, err := Parse(readFixture(t, "rtmr2-sha384.bin"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := make([]byte, 48)
	start[0] = 0x5a
	cur := start
	for i := range l.Entries {
		d := sha512.Sum384(l.Entries[i].TemplateData)
		if l.Entries[i].Violation {
			d = [48]byte{}
			for j := range d {
				d[j] = 0xff
			}
		}
		s := sha512.Sum384(append(append([]byte(nil), cur...), d[:]...))
		cur = s[:]
	}
	if f, err := l.VerifyRTMR2(cur, start); err != nil || f != FieldRTMR2 {
		t.Fatalf("VerifyRTMR2 = %d, %v", f, err)
	}
	_, err = l.VerifyRTMR2(cur, make([]byte, 48))
	var me *cctrusted.MismatchError
	if !errors.As(err, &me) || me.LastEvent != len(l.Entries)-1 || me.Events != len(l.Entries) {
		t.Fatalf("from zero: %v", err)
	}
}
