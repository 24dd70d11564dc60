package eventlog

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// TestVerifyCCELLibraryPanic is the regression test of the crash
// FuzzVerifyCCEL found (seed testdata/fuzz/FuzzVerifyCCEL/c70f70eb52047399):
// an RTMR2 event whose type go-eventlog cannot map made the library panic.
// The type is not covered by the event's digest, so the edited log still
// replays to the signed RTMRs; it must be refused with an error.
func TestVerifyCCELLibraryPanic(t *testing.T) {
	raw := readFile(t, ccelDir, "cos-113-intel-tdx.bin")
	rtmr := quoteRTMRs(t)
	if _, err := VerifyCCEL(nil, raw, rtmr); err != nil {
		t.Fatalf("unedited log: %v", err)
	}
	edited := 0
	for _, s := range spans(t, raw) {
		if s.index != 3 || s.typ == 3 { // CC MR 3 is RTMR2; 3 is EV_NO_ACTION
			continue
		}
		log := bytes.Clone(raw)
		binary.LittleEndian.PutUint32(log[s.start+4:], 0x8100000d)
		_, err := VerifyCCEL(nil, log, rtmr)
		if err == nil {
			continue // an event the extraction does not look at
		}
		edited++
		if !strings.Contains(err.Error(), "go-eventlog") {
			t.Errorf("event at %d: error %q does not name the library", s.start, err)
		}
	}
	if edited == 0 {
		t.Fatal("no edited event was refused")
	}
}
