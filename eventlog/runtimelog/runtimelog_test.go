package runtimelog

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func workload(i int) Workload {
	exe := fmt.Appendf(nil, "/usr/bin/app-%d", i)
	s256 := sha256.Sum256(exe)
	s384 := sha512.Sum384(exe)
	return Workload{
		ExeSHA256:   s256[:],
		ExeSHA384:   s384[:],
		ExePath:     string(exe),
		ContainerID: fmt.Sprintf("%064x", i),
		CgroupPath:  fmt.Sprintf("/kubepods.slice/kubepods-pod%d.slice/cri-containerd-%064x.scope", i, i),
		PodUID:      fmt.Sprintf("0000000%d-aaaa-bbbb-cccc-dddddddddddd", i%10),
		Runtime:     "containerd",
		Time:        time.Date(2026, 11, 27, 12, 0, i%60, 1234, time.UTC),
	}
}

// tlv and contentBytes write the documented layout by hand, independently of
// encodeContent, so the tests pin the format rather than echo the code.
func tlv(typ byte, v []byte) []byte {
	out := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(v)))
	return append(out, v...)
}

func contentBytes(w Workload) []byte {
	var v []byte
	v = append(v, tlv(1, w.ExeSHA256)...)
	if w.ExeSHA384 != nil {
		v = append(v, tlv(2, w.ExeSHA384)...)
	}
	for i, s := range []string{w.ExePath, w.ContainerID, w.CgroupPath, w.PodUID, w.Runtime} {
		if s != "" {
			v = append(v, tlv(byte(3+i), []byte(s))...)
		}
	}
	if !w.Time.IsZero() {
		v = append(v, tlv(8, binary.BigEndian.AppendUint64(nil, uint64(w.Time.UnixNano())))...)
	}
	return tlv(0xCC, v)
}

func TestHashChainIndependent(t *testing.T) {
	for _, tt := range []struct {
		name     string
		imr      cctrusted.IMR
		alg      cctrusted.Algorithm
		idxType  byte
		idx      byte
		algID    byte
		hash     func([]byte) []byte
		register cctrusted.IMR
	}{
		{"tdx rtmr3", cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384, 108, 4, 0x0c,
			func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }, cctrusted.RTMR(3).IMR()},
		{"tdx ccmr4 is rtmr3", cctrusted.CCMR(4).IMR(), cctrusted.AlgSHA384, 108, 4, 0x0c,
			func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }, cctrusted.RTMR(3).IMR()},
		{"tpm pcr23", cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256, 1, 23, 0x0b,
			func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }, cctrusted.PCR(23).IMR()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.imr, tt.alg)
			var wantLog []byte
			reg := make([]byte, tt.alg.Size())
			for i := range 5 {
				w := workload(i)
				if tt.alg == cctrusted.AlgSHA256 && i%2 == 0 {
					w.ExeSHA384 = nil // optional on a SHA-256 log
				}
				ev, err := l.Append(w)
				if err != nil {
					t.Fatal(err)
				}
				content := contentBytes(w)
				d := tt.hash(content)
				if got, _ := ev.Digest(tt.alg); !bytes.Equal(got, d) || ev.IMR != tt.register {
					t.Fatalf("record %d: event %v %x, want %v %x", i, ev.IMR, got, tt.register, d)
				}
				reg = tt.hash(append(reg, d...))
				wantLog = append(wantLog, tlv(0, binary.BigEndian.AppendUint64(nil, uint64(i)))...)
				wantLog = append(wantLog, tlv(tt.idxType, []byte{tt.idx})...)
				wantLog = append(wantLog, tlv(3, tlv(tt.algID, d))...)
				wantLog = append(wantLog, content...)
			}
			regs, err := l.Replay()
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := regs.Get(tt.register, tt.alg); !bytes.Equal(got, reg) {
				t.Fatalf("replay %x, hand-computed chain %x", got, reg)
			}
			if err := l.Verify(reg); err != nil {
				t.Fatal(err)
			}
			enc, err := l.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, wantLog) {
				t.Fatalf("encoding differs from the documented layout")
			}
		})
	}
}

func TestRoundTripAndIncremental(t *testing.T) {
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	var file []byte
	for i := range 20 {
		w := workload(i)
		if i == 3 {
			w = Workload{ExeSHA256: w.ExeSHA256, ExeSHA384: w.ExeSHA384} // minimal record
		}
		var err error
		before := len(file)
		file, _, err = l.AppendEncoded(file, w)
		if err != nil {
			t.Fatal(err)
		}
		if !Sniff(file[before:]) {
			t.Fatalf("record %d alone does not sniff as a runtime log", i)
		}
	}
	whole, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole, file) {
		t.Fatal("incremental encoding differs from Encode")
	}
	back, err := Decode(file, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if back.IMR() != l.IMR() || back.Algorithm() != l.Algorithm() || back.Len() != l.Len() {
		t.Fatalf("decoded %v/%v/%d", back.IMR(), back.Algorithm(), back.Len())
	}
	for i, w := range back.Workloads() {
		o := l.Workloads()[i]
		if !bytes.Equal(w.ExeSHA256, o.ExeSHA256) || !bytes.Equal(w.ExeSHA384, o.ExeSHA384) || w.ExePath != o.ExePath ||
			w.ContainerID != o.ContainerID || w.CgroupPath != o.CgroupPath || w.PodUID != o.PodUID ||
			w.Runtime != o.Runtime || !w.Time.Equal(o.Time) {
			t.Fatalf("record %d: %+v, want %+v", i, w, o)
		}
	}
	a, _ := l.Replay()
	b, _ := back.Replay()
	x, _ := a.Get(l.IMR(), l.Algorithm())
	y, _ := b.Get(l.IMR(), l.Algorithm())
	if !bytes.Equal(x, y) {
		t.Fatal("decoded log replays differently")
	}
	// Appending to a decoded log continues the record numbers.
	more, _, err := back.AppendEncoded(nil, workload(99))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(append(bytes.Clone(file), more...), Limits{}); err != nil {
		t.Fatalf("log + appended record: %v", err)
	}
	ev := back.Events()
	if len(ev) != 21 || ev[0].Type != EventType || !bytes.Equal(ev[0].Data, contentBytes(l.Workloads()[0])[5:]) {
		t.Fatalf("events: %d, type %d", len(ev), ev[0].Type)
	}
}

func TestVerifyNamesRecord(t *testing.T) {
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	var chain [][]byte
	reg := make([]byte, 48)
	for i := range 4 {
		ev, err := l.Append(workload(i))
		if err != nil {
			t.Fatal(err)
		}
		d, _ := ev.Digest(cctrusted.AlgSHA384)
		h := sha512.Sum384(append(bytes.Clone(reg), d...))
		reg = h[:]
		chain = append(chain, reg)
	}
	// The register saw only the first two records: record 2 was logged but
	// never extended.
	err := l.Verify(chain[1])
	var me *cctrusted.MismatchError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "record 2 is the first not extended") || !strings.Contains(err.Error(), "rtmr3") {
		t.Fatalf("err = %v", err)
	}
	if err := l.Verify(make([]byte, 48)); err == nil || !strings.Contains(err.Error(), "first 0 of 4") {
		t.Fatalf("zero register: %v", err)
	}
	other := bytes.Clone(chain[3])
	other[0] ^= 1
	if err := l.Verify(other); !errors.As(err, &me) || !strings.Contains(err.Error(), "matches no prefix") || me.LastEvent != 3 {
		t.Fatalf("foreign value: %v", err)
	}
	if err := l.Verify(chain[3][:47]); err == nil {
		t.Fatal("short signed value accepted")
	}
}

func TestAppendRejects(t *testing.T) {
	w := workload(1)
	for _, tt := range []struct {
		name string
		imr  cctrusted.IMR
		alg  cctrusted.Algorithm
		w    Workload
		want string
	}{
		{"rtmr0", cctrusted.RTMR(0).IMR(), cctrusted.AlgSHA384, w, "rtmr0 belongs to firmware"},
		{"rtmr3 sha256", cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA256, w, "SHA-384 register"},
		{"pcr sha1", cctrusted.PCR(23).IMR(), cctrusted.AlgSHA1, w, "not supported"},
		{"mrtd", cctrusted.MRTD, cctrusted.AlgSHA384, w, "cannot hold"},
		{"short sha256", cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256, Workload{ExeSHA256: w.ExeSHA256[:31]}, "want 32"},
		{"tdx without sha384", cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384, Workload{ExeSHA256: w.ExeSHA256}, "needs the exe SHA-384"},
		{"not utf-8", cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256, Workload{ExeSHA256: w.ExeSHA256, ExePath: "\xff\xfe"}, "not UTF-8"},
		{"long path", cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256, Workload{ExeSHA256: w.ExeSHA256, ExePath: strings.Repeat("a", DefaultMaxFieldSize+1)}, "limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.imr, tt.alg)
			if _, err := l.Append(tt.w); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if l.Len() != 0 {
				t.Fatal("failed append changed the log")
			}
		})
	}
}

// encodedLog returns a 3-record TDX log and each record's byte span.
func encodedLog(t testing.TB) ([]byte, [][2]int) {
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	var out []byte
	var spans [][2]int
	for i := range 3 {
		start := len(out)
		var err error
		if out, _, err = l.AppendEncoded(out, workload(i)); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, [2]int{start, len(out)})
	}
	return out, spans
}

// withRecord re-encodes one record by hand with the given content TLV and a
// digest that matches it, to reach checks behind the digest check.
func withRecord(content []byte) []byte {
	d := sha512.Sum384(content)
	var out []byte
	out = append(out, tlv(0, make([]byte, 8))...)
	out = append(out, tlv(108, []byte{4})...)
	out = append(out, tlv(3, tlv(0x0c, d[:]))...)
	return append(out, content...)
}

func TestDecodeRejects(t *testing.T) {
	log, spans := encodedLog(t)
	w := workload(0)
	edited := bytes.Clone(log)
	i := bytes.Index(edited, []byte("/usr/bin/app-1"))
	edited[i+1] = 'U'
	digestFlip := bytes.Clone(log)
	digestFlip[spans[1][0]+13+5+5+5+3] ^= 1 // a byte inside record 1's digest
	swapped := append(append(bytes.Clone(log[spans[1][0]:spans[1][1]]), log[spans[0][0]:spans[0][1]]...), log[spans[2][0]:]...)
	removed := append(bytes.Clone(log[:spans[1][0]]), log[spans[2][0]:]...)
	unknownField := withRecord(tlv(0xCC, append(append(tlv(1, w.ExeSHA256), tlv(2, w.ExeSHA384)...), tlv(9, []byte("x"))...)))
	unordered := withRecord(tlv(0xCC, append(append(tlv(1, w.ExeSHA256), tlv(3, []byte("/a"))...), tlv(2, w.ExeSHA384)...)))
	foreignType := withRecord(tlv(0x80, tlv(1, w.ExeSHA256)))
	twoDigests := bytes.Clone(withRecord(contentBytes(w)))
	pcrRecord := append(bytes.Clone(log[:spans[1][0]]), log[spans[1][0]:spans[1][1]]...)
	pcrRecord[spans[1][0]+13] = 1 // index type PCR in record 1
	_ = twoDigests

	for _, tt := range []struct {
		name string
		in   []byte
		lim  Limits
		want string
	}{
		{"empty", nil, Limits{}, "empty"},
		{"garbage", []byte(strings.Repeat("garbage ", 64)), Limits{}, "not a runtime log"},
		{"tcg log", mustRead(t, "../../testdata/ccel/cos-113-intel-tdx.bin"), Limits{}, "not a runtime log"},
		{"truncated mid-record", log[:spans[1][1]-7], Limits{}, "runs past the end"},
		{"truncated header", log[:spans[2][0]+3], Limits{}, "truncated"},
		{"edited content", edited, Limits{}, "does not match its content"},
		{"edited digest", digestFlip, Limits{}, "does not match its content"},
		{"reordered", swapped, Limits{}, "record number"},
		{"removed", removed, Limits{}, "record number"},
		{"unknown field", unknownField, Limits{}, "unknown field type 9"},
		{"fields out of order", unordered, Limits{}, "out of order"},
		{"foreign content type", foreignType, Limits{}, "content type 0x80"},
		{"mixed registers", pcrRecord, Limits{}, "record 1"},
		{"oversized", log, Limits{MaxBytes: len(log) - 1}, "byte limit"},
		{"too many records", log, Limits{MaxRecords: 2}, "more than 2 records"},
		{"field too large", log, Limits{MaxFieldSize: 20}, "limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Decode(tt.in, tt.lim)
			if err == nil {
				t.Fatalf("accepted %d records", l.Len())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// A huge length claim must be refused before anything is allocated.
	huge := bytes.Clone(log[:spans[0][0]+13+5+5+5+48])
	copy(huge[spans[0][0]+13+5+53:], []byte{0xCC, 0x7f, 0xff, 0xff, 0xff})
	if _, err := Decode(huge, Limits{}); err == nil {
		t.Fatal("huge content length accepted")
	}
}

func mustRead(t testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSniff(t *testing.T) {
	log, _ := encodedLog(t)
	if !Sniff(log) {
		t.Fatal("own log not sniffed")
	}
	for _, b := range [][]byte{nil, log[:10], mustRead(t, "../../testdata/tpmlog/rhel8-uefi.bin"), []byte("10 abcd ima-ng sha256:00 boot_aggregate\n")} {
		if Sniff(b) {
			t.Errorf("Sniff(%.20q) = true", b)
		}
	}
}
