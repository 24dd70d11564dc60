package cctrusted

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"
)

func TestAlgorithm(t *testing.T) {
	tests := []struct {
		in   string
		want Algorithm
		size int
	}{
		{"sha1", AlgSHA1, 20}, {"SHA-256", AlgSHA256, 32}, {"sha384", AlgSHA384, 48},
		{"0xc", AlgSHA384, 48}, {"13", AlgSHA512, 64}, {"sm3_256", AlgSM3256, 32}, {"SM3", AlgSM3256, 32},
	}
	for _, tt := range tests {
		got, err := ParseAlgorithm(tt.in)
		if err != nil || got != tt.want || got.Size() != tt.size {
			t.Errorf("ParseAlgorithm(%q) = %v (%d), %v; want %v (%d)", tt.in, got, got.Size(), err, tt.want, tt.size)
		}
	}
	for _, bad := range []string{"", "md5", "0x99", "65536"} {
		if _, err := ParseAlgorithm(bad); err == nil {
			t.Errorf("ParseAlgorithm(%q) accepted", bad)
		}
	}
	if _, err := AlgSM3256.Hash(); err == nil {
		t.Error("SM3 has no Go hash and must be refused")
	}
	if Algorithm(0x99).String() != "alg(0x0099)" {
		t.Errorf("unknown alg string %q", Algorithm(0x99).String())
	}
}

func TestTDXMapping(t *testing.T) {
	want := map[uint32]IMR{0: MRTD, 1: RTMR(0).IMR(), 7: RTMR(0).IMR(), 2: RTMR(1).IMR(), 6: RTMR(1).IMR(),
		8: RTMR(2).IMR(), 10: RTMR(2).IMR(), 15: RTMR(2).IMR()}
	for p, w := range want {
		got, err := PCR(p).IMR().TDX()
		if err != nil || got != w {
			t.Errorf("pcr%d -> %v, %v; want %v", p, got, err, w)
		}
	}
	for _, p := range []uint32{16, 23, 24} {
		if _, err := PCR(p).IMR().TDX(); err == nil {
			t.Errorf("pcr%d mapped to TDX", p)
		}
	}
	for c := range uint32(NumCCMRs) {
		got, err := CCMR(c).IMR().TDX()
		if err != nil {
			t.Fatal(err)
		}
		back, err := got.CCMR()
		if err != nil || uint32(back) != c {
			t.Errorf("ccmr%d -> %v -> ccmr%d", c, got, back)
		}
	}
	if got, _ := CCMR(1).IMR().TDX(); got != RTMR(0).IMR() {
		t.Errorf("ccmr1 = %v, want rtmr0 (the off-by-one CCNP's SDKs disagree on)", got)
	}
	if _, err := CCMR(5).IMR().TDX(); err == nil {
		t.Error("ccmr5 accepted")
	}
}

func TestParseIMR(t *testing.T) {
	for _, s := range []string{"pcr0", "pcr23", "ccmr4", "rtmr3", "mrtd"} {
		m, err := ParseIMR(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseIMR(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"pcr24", "rtmr4", "ccmr5", "tpm1", "pcr", "pcr-1", ""} {
		if _, err := ParseIMR(s); err == nil {
			t.Errorf("ParseIMR(%q) accepted", s)
		}
	}
}

func TestReportData(t *testing.T) {
	nonce, ud := []byte("nonce"), []byte("user")
	want := sha512.Sum512([]byte("nonceuser"))
	got := ReportData(nonce, ud)
	if got != want {
		t.Fatal("ReportData is not SHA-512(nonce||userData)")
	}
	if err := CheckReportData(got[:], nonce, ud); err != nil {
		t.Fatal(err)
	}
	if err := CheckReportData(got[:], []byte("other"), ud); err == nil {
		t.Fatal("report data of another nonce accepted")
	}
	if err := CheckReportData(got[:63], nonce, ud); err == nil {
		t.Fatal("short report data accepted")
	}
}

func ext(old, v []byte) []byte {
	h := sha256.Sum256(append(append([]byte(nil), old...), v...))
	return h[:]
}

func TestReplay(t *testing.T) {
	d1 := bytes.Repeat([]byte{1}, 32)
	d2 := bytes.Repeat([]byte{2}, 32)
	events := []Event{
		{IMR: PCR(7).IMR(), Type: 1, Digests: []Digest{{AlgSHA256, d1}}},
		{IMR: PCR(7).IMR(), Type: EventNoAction, Digests: []Digest{{AlgSHA256, d2}}},
		{IMR: PCR(7).IMR(), Type: 1, Digests: []Digest{{AlgSHA256, d2}}},
		{IMR: PCR(8).IMR(), Type: 1, Digests: []Digest{{AlgSHA256, d2}}},
	}
	regs, err := Replay(events)
	if err != nil {
		t.Fatal(err)
	}
	want := ext(ext(make([]byte, 32), d1), d2)
	if got, _ := regs.Get(PCR(7).IMR(), AlgSHA256); !bytes.Equal(got, want) {
		t.Fatalf("pcr7 = %x, want %x", got, want)
	}

	r := NewReplayer(nil)
	for i := range events {
		if err := r.Extend(i, &events[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Check(PCR(7).IMR(), AlgSHA256, want); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), want...)
	bad[0] ^= 1
	err = r.Check(PCR(7).IMR(), AlgSHA256, bad)
	var me *MismatchError
	if !errors.As(err, &me) || me.LastEvent != 2 || me.Events != 2 {
		t.Fatalf("mismatch = %#v", err)
	}
	for _, s := range []string{"pcr7", "sha256", "event 2"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("mismatch message %q lacks %q", err, s)
		}
	}
	if err := r.Check(PCR(9).IMR(), AlgSHA256, make([]byte, 32)); err != nil {
		t.Errorf("untouched register must replay to zeros: %v", err)
	}

	for name, e := range map[string]Event{
		"short digest": {IMR: PCR(1).IMR(), Type: 1, Digests: []Digest{{AlgSHA256, d1[:31]}}},
		"bad register": {IMR: PCR(24).IMR(), Type: 1, Digests: []Digest{{AlgSHA256, d1}}},
		"sm3":          {IMR: PCR(1).IMR(), Type: 1, Digests: []Digest{{AlgSM3256, d1}}},
	} {
		if _, err := Replay([]Event{e}); err == nil {
			t.Errorf("%s: replay accepted", name)
		}
	}
}

func TestPage(t *testing.T) {
	ev := make([]Event, 5)
	for _, tt := range []struct{ start, count, want int }{{0, 0, 5}, {0, 2, 2}, {3, 10, 2}, {5, 0, 0}, {4, -1, 1}} {
		got, err := Page(ev, tt.start, tt.count)
		if err != nil || len(got) != tt.want {
			t.Errorf("Page(%d,%d) = %d, %v; want %d", tt.start, tt.count, len(got), err, tt.want)
		}
	}
	for _, s := range []int{6, -1} {
		if _, err := Page(ev, s, 0); err == nil {
			t.Errorf("Page start %d accepted", s)
		}
	}
}
