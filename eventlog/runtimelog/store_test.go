package runtimelog

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// fakeRTMR is an RTMR the way the TDX module extends it: SHA-384(old ||
// digest), written here with crypto/sha512 only, independently of the
// package's replay code.
type fakeRTMR struct {
	mu        sync.Mutex
	v         [48]byte
	failNext  error // Extend fails with it, without extending
	failAfter error // Extend extends, then fails with it
	extends   int
}

func (r *fakeRTMR) Read(context.Context) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.v[:]), nil
}

func (r *fakeRTMR) Extend(_ context.Context, d []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failNext; err != nil {
		r.failNext = nil
		return err
	}
	r.v = sha512.Sum384(append(r.v[:], d...))
	r.extends++
	if err := r.failAfter; err != nil {
		r.failAfter = nil
		return err
	}
	return nil
}

func rtmrOpts() StoreOptions {
	return StoreOptions{IMR: cctrusted.RTMR(3).IMR(), Alg: cctrusted.AlgSHA384}
}

func storeWorkload(i int) Workload {
	return Workload{
		ExeSHA256:   bytes.Repeat([]byte{byte(i)}, 32),
		ExeSHA384:   bytes.Repeat([]byte{byte(i)}, 48),
		ExePath:     "/usr/bin/w" + string(rune('a'+i)),
		ContainerID: strings.Repeat("ab", 32),
	}
}

func openStore(t *testing.T, path string, reg Register) (*Store, *Reconciliation) {
	t.Helper()
	s, rec, err := OpenStore(context.Background(), path, reg, rtmrOpts())
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

// checkFile decodes the file and verifies it against the register.
func checkFile(t *testing.T, path string, reg *fakeRTMR, records int) {
	t.Helper()
	b, err := ReadStoreFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if records == 0 {
		if len(b) != 0 {
			t.Fatalf("%d bytes, want an empty log", len(b))
		}
		return
	}
	l, err := Decode(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != records {
		t.Fatalf("%d records, want %d", l.Len(), records)
	}
	v, _ := reg.Read(context.Background())
	if err := l.Verify(v); err != nil {
		t.Fatal(err)
	}
}

func TestStoreAppendReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "runtime.cel")
	reg := &fakeRTMR{}
	s, rec := openStore(t, path, reg)
	if rec.Records != 0 || rec.DroppedTail != 0 || rec.Rotated {
		t.Fatalf("fresh: %+v", rec)
	}
	for i := range 3 {
		if _, err := s.Append(context.Background(), storeWorkload(i)); err != nil {
			t.Fatal(err)
		}
	}
	checkFile(t, path, reg, 3)
	s2, rec := openStore(t, path, reg)
	if rec.Records != 3 || rec.DroppedTail != 0 || s2.Len() != 3 {
		t.Fatalf("reopen: %+v", rec)
	}
	if got := s2.Workloads()[2].ExePath; got != "/usr/bin/wc" {
		t.Fatalf("workload 2 path %q", got)
	}
	if _, err := s2.Append(context.Background(), storeWorkload(3)); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, reg, 4)
}

func TestStoreCrashBetweenAppendAndExtend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	for i := range 2 {
		if _, err := s.Append(context.Background(), storeWorkload(i)); err != nil {
			t.Fatal(err)
		}
	}
	sizeBefore := fileSize(t, path)
	crash := errors.New("simulated crash")
	s.beforeExtend = func() error { return crash }
	if _, err := s.Append(context.Background(), storeWorkload(2)); !errors.Is(err, crash) {
		t.Fatalf("got %v", err)
	}
	if fileSize(t, path) <= sizeBefore || reg.extends != 2 {
		t.Fatal("the simulated crash should leave the record written and not extended")
	}
	// The "restarted" agent: the record the register lacks is cut.
	s2, rec := openStore(t, path, reg)
	if rec.Records != 2 {
		t.Fatalf("recovery: %+v", rec)
	}
	if fileSize(t, path) != sizeBefore || rec.DroppedTail == 0 {
		t.Fatalf("file %d bytes after recovery, want %d; %+v", fileSize(t, path), sizeBefore, rec)
	}
	checkFile(t, path, reg, 2)
	if _, err := s2.Append(context.Background(), storeWorkload(2)); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, reg, 3)
}

func TestStoreCrashOnFirstRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	s.beforeExtend = func() error { return errors.New("crash") }
	_, _ = s.Append(context.Background(), storeWorkload(0))
	// Register still zero, one record in the log: the zero register reads as
	// a new boot, so the log is rotated rather than trimmed; either way the
	// new log is empty and in step.
	_, rec := openStore(t, path, reg)
	if rec.Records != 0 {
		t.Fatalf("%+v", rec)
	}
	checkFile(t, path, reg, 0)
}

func TestStoreTornWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	if _, err := s.Append(context.Background(), storeWorkload(0)); err != nil {
		t.Fatal(err)
	}
	whole := fileSize(t, path)
	// Half of a second record, as a crash mid-write leaves it.
	b, _ := os.ReadFile(path)
	appendBytes(t, path, b[:len(b)/2])
	_, rec := openStore(t, path, reg)
	if rec.Records != 1 || rec.DroppedTail != len(b)/2 || fileSize(t, path) != whole {
		t.Fatalf("%+v, %d bytes", rec, fileSize(t, path))
	}
	checkFile(t, path, reg, 1)
}

func TestStoreDetectsEdits(t *testing.T) {
	setup := func(t *testing.T) (string, *fakeRTMR, *Store) {
		path := filepath.Join(t.TempDir(), "runtime.cel")
		reg := &fakeRTMR{}
		s, _ := openStore(t, path, reg)
		for i := range 3 {
			if _, err := s.Append(context.Background(), storeWorkload(i)); err != nil {
				t.Fatal(err)
			}
		}
		return path, reg, s
	}
	t.Run("byte flipped", func(t *testing.T) {
		path, reg, _ := setup(t)
		b, _ := os.ReadFile(path)
		i := bytes.Index(b, []byte("/usr/bin/wb"))
		b[i+len("/usr/bin/w")] = 'z'
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		var re *ReconcileError
		if _, _, err := OpenStore(context.Background(), path, reg, rtmrOpts()); !errors.As(err, &re) {
			t.Fatalf("got %v, want a ReconcileError", err)
		}
	})
	t.Run("record removed", func(t *testing.T) {
		path, reg, _ := setup(t)
		b, _ := os.ReadFile(path)
		ends := recordEnds(b)
		edited := append(bytes.Clone(b[:ends[0]]), b[ends[1]:]...)
		// Renumbering is needed for Decode to accept it; without it the
		// decode fails, with it the replay does. Either way: refused.
		_ = os.WriteFile(path, edited, 0o600)
		_, _, err := OpenStore(context.Background(), path, reg, rtmrOpts())
		var re *ReconcileError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "refusing to extend") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("record appended by someone else", func(t *testing.T) {
		path, reg, _ := setup(t)
		// Two foreign records: more than one interrupted append explains.
		l, _ := Decode(readAll(t, path), Limits{})
		tail, _, _ := l.AppendEncoded(nil, storeWorkload(7))
		tail, _, _ = l.AppendEncoded(tail, storeWorkload(8))
		appendBytes(t, path, tail)
		if _, _, err := OpenStore(context.Background(), path, reg, rtmrOpts()); err == nil {
			t.Fatal("two unextended records accepted")
		}
	})
	t.Run("register extended outside the log", func(t *testing.T) {
		path, reg, _ := setup(t)
		_ = reg.Extend(context.Background(), bytes.Repeat([]byte{1}, 48))
		_, _, err := OpenStore(context.Background(), path, reg, rtmrOpts())
		var re *ReconcileError
		if !errors.As(err, &re) || re.Records != 3 {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("edited while open", func(t *testing.T) {
		path, _, s := setup(t)
		b, _ := os.ReadFile(path)
		b[len(b)-1] ^= 1
		_ = os.WriteFile(path, b, 0o600)
		if _, err := s.Append(context.Background(), storeWorkload(5)); err == nil || !strings.Contains(err.Error(), "changed on disk") {
			t.Fatalf("got %v", err)
		}
		if s.Err() == nil {
			t.Fatal("store keeps extending after an edit")
		}
	})
	t.Run("truncated while open", func(t *testing.T) {
		path, _, s := setup(t)
		_ = os.Truncate(path, 10)
		if _, err := s.Append(context.Background(), storeWorkload(5)); err == nil || !strings.Contains(err.Error(), "someone else") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("garbage after the records", func(t *testing.T) {
		path, reg, _ := setup(t)
		appendBytes(t, path, bytes.Repeat([]byte{0xff}, 3*DefaultMaxFieldSize*int(numFields)))
		if _, _, err := OpenStore(context.Background(), path, reg, rtmrOpts()); err == nil {
			t.Fatal("a large tail that is no record was accepted")
		}
	})
}

func TestStoreRotatesPreviousBoot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	for i := range 2 {
		if _, err := s.Append(context.Background(), storeWorkload(i)); err != nil {
			t.Fatal(err)
		}
	}
	old := readAll(t, path)
	reboot := &fakeRTMR{}
	_, rec := openStore(t, path, reboot)
	if !rec.Rotated || rec.Records != 0 {
		t.Fatalf("%+v", rec)
	}
	if !bytes.Equal(readAll(t, path+PrevSuffix), old) {
		t.Fatal("previous boot's log not kept")
	}
	checkFile(t, path, reboot, 0)
}

func TestStoreExtendFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	if _, err := s.Append(context.Background(), storeWorkload(0)); err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, path)
	reg.failNext = errors.New("device busy")
	if _, err := s.Append(context.Background(), storeWorkload(1)); err == nil {
		t.Fatal("extend failure not reported")
	}
	if fileSize(t, path) != size || s.Len() != 1 {
		t.Fatal("the unextended record was not taken back")
	}
	// Extended, then an error (a lost reply): the record stays.
	reg.failAfter = errors.New("lost reply")
	if _, err := s.Append(context.Background(), storeWorkload(1)); err != nil {
		t.Fatalf("extend that happened reported as failed: %v", err)
	}
	if _, err := s.Append(context.Background(), storeWorkload(2)); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, reg, 3)
}

func TestStoreWrongRegisterLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	pcr := New(cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256)
	b, _, err := pcr.AppendEncoded(nil, Workload{ExeSHA256: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(path, b, 0o600)
	if _, _, err := OpenStore(context.Background(), path, &fakeRTMR{}, rtmrOpts()); err == nil || !strings.Contains(err.Error(), "pcr23") {
		t.Fatalf("got %v", err)
	}
	if _, _, err := OpenStore(context.Background(), path, nil, rtmrOpts()); err == nil {
		t.Fatal("nil register accepted")
	}
	if _, _, err := OpenStore(context.Background(), path, &fakeRTMR{}, StoreOptions{IMR: cctrusted.RTMR(3).IMR(), Alg: cctrusted.AlgSHA256}); err == nil {
		t.Fatal("RTMR3 in SHA-256 accepted")
	}
}

// TestStoreConcurrentReaders: readers under the shared lock always see whole
// records that replay to a prefix of the register's history.
func TestStoreConcurrentReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.cel")
	reg := &fakeRTMR{}
	s, _ := openStore(t, path, reg)
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				b, err := ReadStoreFile(context.Background(), path)
				if err != nil {
					errs <- err
					return
				}
				if len(b) == 0 {
					continue
				}
				if _, err := Decode(b, Limits{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 20 {
		if _, err := s.Append(context.Background(), storeWorkload(i)); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkFile(t, path, reg, 20)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func FuzzRecordEnds(f *testing.F) {
	l := New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	b, _, _ := l.AppendEncoded(nil, storeWorkload(0))
	b, _, _ = l.AppendEncoded(b, storeWorkload(1))
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		prev := 0
		for _, e := range recordEnds(b) {
			if e <= prev || e > len(b) {
				t.Fatalf("end %d after %d in %d bytes", e, prev, len(b))
			}
			prev = e
		}
	})
}

func TestReadStoreFileBounds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// No log, not even its directory: empty, and no lock file created.
	missing := filepath.Join(dir, "nodir", "runtime.cel")
	if b, err := ReadStoreFile(ctx, missing); err != nil || b != nil {
		t.Fatalf("missing log: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reading created %s", filepath.Dir(missing))
	}
	big := filepath.Join(dir, "big.cel")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(DefaultMaxBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := ReadStoreFile(ctx, big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized log: %v", err)
	}
}
