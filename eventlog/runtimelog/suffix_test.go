package runtimelog

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// suffixOf returns a log of n records, its encoding, and where record 1
// starts in it.
func suffixOf(t *testing.T, n int) (*Log, []byte, int) {
	t.Helper()
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	for i := range n {
		if _, err := l.Append(workload(i)); err != nil {
			t.Fatal(err)
		}
	}
	full, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return l, full, recordEnds(full)[0]
}

// TestDecodeFrom: a suffix decodes with the node's record numbers and
// replays from the register value before its first record to the value
// of the whole log; one that does not start at the record asked for, or
// whose numbers skip, is refused (record numbers are not measured, so this
// is what ties a suffix to its place).
func TestDecodeFrom(t *testing.T) {
	l, full, cut := suffixOf(t, 3)
	tail := bytes.Clone(full[cut:])
	s, err := DecodeFrom(tail, 1, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if s.First() != 1 || s.Len() != 2 || len(s.Workloads()) != 2 {
		t.Fatalf("suffix: first %d, %d records, %d workloads", s.First(), s.Len(), len(s.Workloads()))
	}
	if !bytes.Equal(full[cut:], tail) {
		t.Fatal("DecodeFrom changed its input")
	}
	whole, _ := l.replayValue(3)
	before, _ := l.replayValue(1)
	if err := s.VerifyFrom(before, whole); err != nil {
		t.Fatalf("suffix from the value before record 1: %v", err)
	}
	// From zero (a whole log's start) the suffix does not replay, and the
	// error names the node's record numbers.
	err = s.VerifyFrom(nil, whole)
	var me *cctrusted.MismatchError
	if !errors.As(err, &me) || me.LastEvent != 2 {
		t.Fatalf("suffix from zero: %v", err)
	}
	if err := s.VerifyFrom(before[:10], whole); err == nil || !strings.Contains(err.Error(), "starting rtmr3 value is 10 bytes") {
		t.Fatalf("short start value: %v", err)
	}
	for _, tt := range []struct {
		name  string
		b     []byte
		first int
		want  string
	}{
		{"wrong start", tail, 2, "carries record number 1, want 2"},
		{"whole log as a suffix", full, 1, "carries record number 0, want 1"},
		{"suffix as a whole log", tail, 0, "record 0 carries record number 1"},
		{"negative start", tail, -1, "first record number -1"},
		{"truncated", tail[:len(tail)-1], 1, "runs past the end"},
		{"short header", tail[:3], 1, "not a runtime log"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeFrom(tt.b, tt.first, DefaultLimits()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDecodeFromGap: a suffix that leaves a record out is refused even
// when it starts at the record asked for.
func TestDecodeFromGap(t *testing.T) {
	_, full, _ := suffixOf(t, 4)
	ends := recordEnds(full)
	gap := append(bytes.Clone(full[ends[0]:ends[1]]), full[ends[2]:]...)
	if _, err := DecodeFrom(gap, 1, DefaultLimits()); err == nil || !strings.Contains(err.Error(), "record 2 carries record number 3") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzDecodeFrom: never panics, and what it accepts starts at first with
// consecutive numbers.
func FuzzDecodeFrom(f *testing.F) {
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	_, _ = l.Append(workload(1))
	_, _ = l.Append(workload(2))
	b, _ := l.Encode()
	f.Add(b, 0)
	f.Add(b[recordEnds(b)[0]:], 1)
	f.Add(b[:20], 3)
	f.Fuzz(func(t *testing.T, b []byte, first int) {
		s, err := DecodeFrom(b, first, DefaultLimits())
		if err != nil {
			return
		}
		if s.First() != first || s.Len() == 0 {
			t.Fatalf("accepted first %d with %d records, asked %d", s.First(), s.Len(), first)
		}
	})
}
