package runtimelog

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// encodeWorkloads is the encoding of a TDX log of workload(i) for each i.
func encodeWorkloads(t testing.TB, is ...int) []byte {
	t.Helper()
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	for _, i := range is {
		if _, err := l.Append(workload(i)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newFollower(t testing.TB, path string, lim Limits) *Follower {
	t.Helper()
	f, err := NewFollower(path, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384, lim)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// writeInPlace writes b over the file at path and cuts it to len(b),
// keeping its inode, as an editor of the file (not the Store) would.
func writeInPlace(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// read reads and checks that the Update's log is exactly the file.
func read(t *testing.T, f *Follower, path string) Update {
	t.Helper()
	u, err := f.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Log.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if !bytes.Equal(got, want) {
		t.Fatalf("follower has %d records (%d bytes), the file %d bytes", u.Log.Len(), len(got), len(want))
	}
	return u
}

func wantUpdate(t *testing.T, u Update, records, since int, reset bool) {
	t.Helper()
	if u.Log.Len() != records || u.Since != since || u.Reset != reset {
		t.Fatalf("update: %d records, since %d, reset %v; want %d, %d, %v", u.Log.Len(), u.Since, u.Reset, records, since, reset)
	}
}

// TestFollowerReadsOnlyTheTail: appends are decoded alone. A record in the
// middle of the file made undecodable together with an append goes
// unnoticed (it is not read again), which only a reader that skips the
// prefix can do; the caller's register check is what stands behind it.
func TestFollowerReadsOnlyTheTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	f := newFollower(t, path, Limits{})
	wantUpdate(t, read(t, f, path), 0, 0, true) // no file yet
	all := encodeWorkloads(t, 0, 1, 2, 3, 4, 5)
	ends := recordEnds(all)

	writeInPlace(t, path, all[:ends[1]])
	wantUpdate(t, read(t, f, path), 2, 0, true)
	appendBytes(t, path, all[ends[1]:ends[4]])
	wantUpdate(t, read(t, f, path), 5, 2, false)
	wantUpdate(t, read(t, f, path), 5, 5, false) // unchanged

	// Flip a byte of record 1 and append record 5.
	b := readAll(t, path)
	b[ends[0]+ends[0]/2] ^= 0xff
	writeInPlace(t, path, append(b, all[ends[4]:]...))
	if _, err := Decode(readAll(t, path), Limits{}); err == nil {
		t.Fatal("the edited file still decodes: the test proves nothing")
	}
	u, err := f.Read(context.Background())
	if err != nil {
		t.Fatalf("the prefix was decoded again: %v", err)
	}
	wantUpdate(t, u, 6, 5, false)
	got, _ := u.Log.Encode()
	if !bytes.Equal(got, all) {
		t.Fatal("the follower's log is not the records it decoded")
	}
}

// TestFollowerRereads: a file that shrank, was replaced, or whose last
// record changed (with or without growing, with its mtime put back) is
// read whole again.
func TestFollowerRereads(t *testing.T) {
	x := encodeWorkloads(t, 0, 1, 2)
	y := encodeWorkloads(t, 0, 3, 4) // same sizes as x, other records 1 and 2
	if len(x) != len(y) || bytes.Equal(x, y) {
		t.Fatal("fixtures: want two logs of equal size")
	}
	xe := recordEnds(x)
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, path string)
		n      int
	}{
		{"shrunk", func(t *testing.T, path string) { writeInPlace(t, path, x[:xe[0]]) }, 1},
		{"replaced", func(t *testing.T, path string) {
			tmp := path + ".new"
			writeInPlace(t, tmp, y[:xe[1]])
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}, 2},
		{"last record rewritten and grown", func(t *testing.T, path string) { writeInPlace(t, path, y) }, 3},
		{"last record rewritten, same size and mtime", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			writeInPlace(t, path, y[:xe[1]])
			if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, 2},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "runtime.cel")
			writeInPlace(t, path, x[:xe[1]])
			f := newFollower(t, path, Limits{})
			wantUpdate(t, read(t, f, path), 2, 0, true)
			tt.change(t, path)
			wantUpdate(t, read(t, f, path), tt.n, 0, true)
		})
	}
}

// TestFollowerBadTail: a tail that is not whole, valid records continuing
// the log is an error naming the file and offset, and the Follower keeps
// what it had, so a repaired file is read again.
func TestFollowerBadTail(t *testing.T) {
	all := encodeWorkloads(t, 0, 1, 2)
	ends := recordEnds(all)
	other := encodeWorkloads(t, 7, 8)
	for _, tt := range []struct {
		name, tail, want string
	}{
		{"torn record", string(all[ends[1] : ends[2]-3]), "runs past the end"},
		{"record number repeated", string(other[recordEnds(other)[0]:]), "carries record number 1"},
		{"register changed", string(encodeWorkloads(t, 2)), "record number 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "runtime.cel")
			writeInPlace(t, path, all[:ends[1]])
			f := newFollower(t, path, Limits{})
			read(t, f, path)
			appendBytes(t, path, []byte(tt.tail))
			_, err := f.Read(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and %q", err, path, tt.want)
			}
			writeInPlace(t, path, all)
			wantUpdate(t, read(t, f, path), 3, 2, false)
		})
	}
}

// TestFollowerLimits: the record and byte bounds hold across reads, not
// per tail.
func TestFollowerLimits(t *testing.T) {
	all := encodeWorkloads(t, 0, 1, 2, 3)
	ends := recordEnds(all)
	path := filepath.Join(t.TempDir(), "runtime.cel")
	writeInPlace(t, path, all[:ends[1]])
	f := newFollower(t, path, Limits{MaxRecords: 3})
	read(t, f, path)
	appendBytes(t, path, all[ends[1]:])
	if _, err := f.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "more than 3 records") {
		t.Fatalf("4 records under a limit of 3: %v", err)
	}
	g := newFollower(t, path, Limits{MaxBytes: len(all) - 1})
	if _, err := g.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "byte limit") {
		t.Fatalf("%d bytes under a limit of %d: %v", len(all), len(all)-1, err)
	}
}

// TestFollowerConcurrent: readers share one Follower while a Store
// appends; every log they get is a prefix of the final one, and a reader
// appending to its copy does not disturb the others.
func TestFollowerConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	f := newFollower(t, path, Limits{})
	var wg sync.WaitGroup
	done := make(chan struct{})
	var mu sync.Mutex
	var seen [][]byte
	errs := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				u, err := f.Read(context.Background())
				if err != nil {
					errs <- err
					return
				}
				b, err := u.Log.Encode()
				if err != nil {
					errs <- err
					return
				}
				if _, err := u.Log.Append(storeWorkload(99)); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seen = append(seen, b)
				mu.Unlock()
			}
		})
	}
	for i := range 20 {
		if _, err := s.Append(context.Background(), storeWorkload(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	final := readAll(t, path)
	for _, b := range seen {
		if !bytes.HasPrefix(final, b) {
			t.Fatal("a reader saw records that are not a prefix of the log")
		}
	}
	u := read(t, f, path)
	if err := u.Log.Verify(reg.v[:]); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads during 20 appends", len(seen))
}
