package runtimelog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func capOpts(records, bytes, quotas int) StoreOptions {
	o := rtmrOpts()
	o.MaxRecords, o.MaxBytes, o.MaxQuotaNotices = records, bytes, quotas
	return o
}

func decodeFile(t *testing.T, path string, reg *fakeRTMR) *Log {
	t.Helper()
	b, err := ReadStoreFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Decode(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := reg.Read(context.Background())
	if err := l.Verify(v); err != nil {
		t.Fatalf("the register does not account for the log: %v", err)
	}
	return l
}

// TestStoreCapacityRecords: the store stops at its record capacity with one
// log-full notice, in the register too, and stays full after a restart.
func TestStoreCapacityRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _, err := OpenStore(ctx, path, reg, capOpts(5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_, err := s.Append(ctx, storeWorkload(i))
		if i < 4 && err != nil {
			t.Fatalf("workload %d: %v", i, err)
		}
		if i == 4 && !errors.Is(err, ErrFull) {
			t.Fatalf("workload %d of a 5-record capacity: %v, want ErrFull", i, err)
		}
	}
	extends := reg.extends
	if _, err := s.Append(ctx, storeWorkload(9)); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "since record 4") {
		t.Fatalf("after full: %v", err)
	}
	if reg.extends != extends {
		t.Fatal("a full store extended the register")
	}
	l := decodeFile(t, path, reg)
	if l.Len() != 5 || len(l.Workloads()) != 4 {
		t.Fatalf("%d records, %d workloads; want 4 workloads and the notice", l.Len(), len(l.Workloads()))
	}
	if n, ok := l.Full(); !ok || n.Record != 4 {
		t.Fatalf("full notice: %+v %v", n, ok)
	}
	s2, _, err := OpenStore(ctx, path, reg, capOpts(5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s2.Full(); !ok || n.Record != 4 {
		t.Fatalf("reopened store is not full: %+v", n)
	}
	if _, err := s2.Append(ctx, storeWorkload(7)); !errors.Is(err, ErrFull) {
		t.Fatalf("reopened full store appended: %v", err)
	}
	// A larger capacity later does not append after the notice either.
	s3, _, err := OpenStore(ctx, path, reg, capOpts(50, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Append(ctx, storeWorkload(7)); !errors.Is(err, ErrFull) {
		t.Fatalf("a store reopened with a larger capacity appended after the full notice: %v", err)
	}
	if decodeFile(t, path, reg).Len() != 5 {
		t.Fatal("records after the full notice")
	}
}

// TestStoreCapacityBytes: long fields are bounded, and the byte capacity
// holds with the notice included.
func TestStoreCapacityBytes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	capBytes := 2 * MaxStoredRecordBytes
	s, _, err := OpenStore(ctx, path, reg, capOpts(100, capBytes, 0))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range 100 {
		w := storeWorkload(i)
		w.ExePath = "/tmp/" + strings.Repeat("d", 4000) + fmt.Sprint(i)
		w.CgroupPath = "/" + strings.Repeat("c", 4000)
		if _, err := s.Append(ctx, w); errors.Is(err, ErrFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d workloads of 4 KB paths in %d bytes (capacity %d)", n, fi.Size(), capBytes)
	if fi.Size() > int64(capBytes) {
		t.Fatalf("log of %d bytes over its %d byte capacity", fi.Size(), capBytes)
	}
	if n < 2 {
		t.Fatalf("only %d bounded workloads fit %d bytes", n, capBytes)
	}
	if _, ok := decodeFile(t, path, reg).Full(); !ok {
		t.Fatal("no full notice")
	}
}

// TestStoreBoundsFields: stored strings are at most MaxStoredField bytes,
// and two long paths that differ only at the end stay distinct.
func TestStoreBoundsFields(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	long := "/tmp/" + strings.Repeat("é", 2000) + "/bin"
	for i, p := range []string{long + "1", long + "2", "/usr/bin/short"} {
		w := storeWorkload(i)
		w.ExePath = p
		if _, err := s.Append(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	ws := decodeFile(t, path, reg).Workloads()
	for i, w := range ws[:2] {
		sum := sha256.Sum256([]byte(long + fmt.Sprint(i+1)))
		if len(w.ExePath) > MaxStoredField || !strings.HasSuffix(w.ExePath, "...sha256:"+hex.EncodeToString(sum[:])) || !strings.HasPrefix(w.ExePath, "/tmp/é") {
			t.Fatalf("stored path %d (%d bytes): %q", i, len(w.ExePath), w.ExePath)
		}
	}
	if ws[0].ExePath == ws[1].ExePath {
		t.Fatal("two long paths stored alike")
	}
	if ws[2].ExePath != "/usr/bin/short" {
		t.Fatalf("short path changed: %q", ws[2].ExePath)
	}
}

// TestStoreQuotaNotices: one quota notice per subject, remembered across a
// restart; the notice after MaxQuotaNotices makes the log full.
func TestStoreQuotaNotices(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s, _, err := OpenStore(ctx, path, reg, capOpts(0, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"uid:1000", "uid:1000", "pod:" + strings.Repeat("p", 200)} {
		if err := s.NoteQuota(ctx, subj, now); err != nil {
			t.Fatal(err)
		}
	}
	l := decodeFile(t, path, reg)
	ns := l.Notices()
	if len(ns) != 2 || ns[0].Subject != "uid:1000" || ns[0].Kind != NoticeQuota || !ns[0].Time.Equal(now) || !strings.HasPrefix(ns[1].Subject, "sha256:") {
		t.Fatalf("notices %+v", ns)
	}
	if _, ok := l.Incomplete(); !ok {
		t.Fatal("a log with a quota notice is not incomplete")
	}
	if _, ok := l.Full(); ok {
		t.Fatal("two quota notices made the log full")
	}
	s2, _, err := OpenStore(ctx, path, reg, capOpts(0, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.NoteQuota(ctx, "uid:1000", now); err != nil || decodeFile(t, path, reg).Len() != 2 {
		t.Fatalf("a noted subject noted again after a restart: %v", err)
	}
	if err := s2.NoteQuota(ctx, "uid:1001", now); !errors.Is(err, ErrFull) {
		t.Fatalf("third quota notice of 2: %v, want ErrFull", err)
	}
	if n, ok := decodeFile(t, path, reg).Full(); !ok || n.Record != 2 {
		t.Fatalf("full notice %+v %v", n, ok)
	}
}

// TestStoreOverCapacityLog: a log longer than the capacity (written before
// capacities existed, or a capacity lowered) still opens; the next append
// writes the full notice.
func TestStoreOverCapacityLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	for i := range 6 {
		if _, err := s.Append(ctx, storeWorkload(i)); err != nil {
			t.Fatal(err)
		}
	}
	s2, rec, err := OpenStore(ctx, path, reg, capOpts(3, 0, 0))
	if err != nil || rec.Records != 6 {
		t.Fatalf("over-capacity log: %v %+v", err, rec)
	}
	if _, err := s2.Append(ctx, storeWorkload(8)); !errors.Is(err, ErrFull) {
		t.Fatalf("append to an over-capacity log: %v", err)
	}
	if n, ok := decodeFile(t, path, reg).Full(); !ok || n.Record != 6 {
		t.Fatalf("full notice %+v %v", n, ok)
	}
}

func TestStoreOptionsBounds(t *testing.T) {
	for _, o := range []StoreOptions{
		capOpts(1, 0, 0), capOpts(MaxCapacityRecords+1, 0, 0), capOpts(0, MaxStoredRecordBytes, 0),
		capOpts(0, MaxCapacityBytes+1, 0), capOpts(10, 0, 10), capOpts(0, 0, -1),
	} {
		if _, _, err := OpenStore(context.Background(), filepath.Join(t.TempDir(), "r.cel"), &fakeRTMR{}, o); err == nil || !strings.Contains(err.Error(), "capacity") && !strings.Contains(err.Error(), "quota") {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if MaxCapacityRecords >= DefaultMaxRecords || MaxCapacityBytes >= DefaultMaxBytes || MaxCapacityRecords*MaxStoredRecordBytes/MaxCapacityBytes > 2 {
		t.Fatal("capacity bounds are not below the reader's limits")
	}
}

// TestNoticeFormat pins the notice encoding, byte by byte, and refuses
// malformed notices.
func TestNoticeFormat(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 5, time.UTC)
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	if _, err := l.Append(workload(1)); err != nil {
		t.Fatal(err)
	}
	ev, err := l.AppendNotice(Notice{Kind: NoticeQuota, Subject: "uid:7", Time: now})
	if err != nil {
		t.Fatal(err)
	}
	want := tlv(0xCD, append(append(tlv(1, []byte{2}), tlv(2, []byte("uid:7"))...), tlv(3, binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano())))...))
	if !bytes.Equal(tlv(0xCD, ev.Data), want) || ev.Type != NoticeEventType {
		t.Fatalf("notice content %x, want %x", tlv(0xCD, ev.Data), want)
	}
	if _, err := l.AppendNotice(Notice{Kind: NoticeFull}); err != nil {
		t.Fatal(err)
	}
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 3 || len(d.Workloads()) != 1 || len(d.Notices()) != 2 {
		t.Fatalf("decoded %d records, %d workloads, %d notices", d.Len(), len(d.Workloads()), len(d.Notices()))
	}
	if w, ok := d.Workload(1); ok || w.ExeSHA256 != nil {
		t.Fatal("record 1 (a notice) returned as a workload")
	}
	if n, _ := d.Incomplete(); n.Record != 1 || n.Subject != "uid:7" || !n.Time.Equal(now) {
		t.Fatalf("first notice %+v", n)
	}
	if n, _ := d.Full(); n.Record != 2 {
		t.Fatalf("full notice %+v", n)
	}
	for _, bad := range []Notice{{Kind: 0}, {Kind: 3}, {Kind: NoticeFull, Subject: "x"}, {Kind: NoticeQuota}, {Kind: NoticeQuota, Subject: strings.Repeat("x", MaxNoticeSubject+1)}, {Kind: NoticeQuota, Subject: "\xff"}} {
		if _, err := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384).AppendNotice(bad); err == nil {
			t.Errorf("appended %+v", bad)
		}
	}
	for name, v := range map[string][]byte{
		"no kind":          tlv(2, []byte("uid:1")),
		"kind 3":           tlv(1, []byte{3}),
		"kind of 2 bytes":  tlv(1, []byte{1, 1}),
		"full with sub":    append(tlv(1, []byte{1}), tlv(2, []byte("x"))...),
		"quota no subject": tlv(1, []byte{2}),
		"field 4":          append(tlv(1, []byte{1}), tlv(4, nil)...),
		"out of order":     append(tlv(3, make([]byte, 8)), tlv(1, []byte{1})...),
		"short time":       append(tlv(1, []byte{1}), tlv(3, make([]byte, 4))...),
	} {
		if _, err := decodeNotice(v); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
