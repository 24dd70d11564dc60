package runtimelog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Register is the hardware register a Store keeps in step with its log:
// RTMR3 on TDX (and the simulator), a PCR on a TPM.
type Register interface {
	// Read returns the register's current value in the log's bank.
	Read(ctx context.Context) ([]byte, error)
	// Extend extends digest, in the log's bank, into the register.
	Extend(ctx context.Context, digest []byte) error
}

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// IMR and Alg are the log's register and bank (see New).
	IMR cctrusted.IMR
	Alg cctrusted.Algorithm
	// Limits bound reading the existing log (zero: the defaults).
	Limits Limits
	// LockTimeout bounds the wait for the log's lock (zero: 10 s).
	LockTimeout time.Duration
}

// LockSuffix names the lock file next to a log: every writer takes it
// exclusively and every reader shared (ReadStoreFile), so a reader never
// sees a record that is half written.
const LockSuffix = ".lock"

// PrevSuffix names where OpenStore moves the log of a previous boot.
const PrevSuffix = ".prev"

// Reconciliation says what OpenStore found and did.
type Reconciliation struct {
	// Records is the number of records in the log once reconciled.
	Records int
	// DroppedTail is the number of bytes cut from the end: a record written
	// but never extended (a crash between the two), or a torn write.
	DroppedTail int
	// Rotated is set when the register was at its reset value while the
	// log held records: the log belonged to a previous boot and was moved
	// to the log path plus PrevSuffix.
	Rotated bool
}

// ReconcileError says the log and the register disagree in a way that no
// interrupted append explains: the log was edited, removed or replaced, or
// the register was extended by someone else. The store refuses to extend.
type ReconcileError struct {
	Path     string
	IMR      cctrusted.IMR
	Records  int
	Register []byte
	Replayed []byte
	Err      error
}

func (e *ReconcileError) Error() string {
	msg := fmt.Sprintf("runtimelog: %s (%d records) does not account for %v = %s (the log replays to %s); refusing to extend it",
		e.Path, e.Records, e.IMR, hex.EncodeToString(e.Register), hex.EncodeToString(e.Replayed))
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ReconcileError) Unwrap() error { return e.Err }

// Store is a runtime log file kept in step with its register: each record
// is written and fsynced before its digest is extended, so the file is at
// most one record ahead of the register, and only while Append runs (or
// after a crash in that window, which OpenStore repairs).
type Store struct {
	path string
	reg  Register
	lock *flock.Flock

	mu     sync.Mutex
	log    *Log
	size   int64  // bytes of the file that are records of log
	last   []byte // the last record's encoding, to notice edits
	broken error  // set once the file and the register can no longer be trusted

	// beforeExtend, in tests, runs between the fsync and the extend; an
	// error return stands for a crash there (nothing is rolled back).
	beforeExtend func() error
}

// OpenStore opens (or creates) the log at path, locks it for the duration of
// the call, and reconciles it with the register:
//
//   - the register equals the replay of the whole log: nothing to do;
//   - it equals the replay of all records but the last: that record was
//     written but its extend never happened (a crash). The record is cut
//     from the file, not extended now, because a record nobody extended
//     might as well have been appended by someone who can write the file;
//     the workload it names is measured again when it next attests;
//   - a torn last record (a crash during the write) is cut the same way;
//   - the register is at its reset value (all zero) and the log is not
//     empty: the log is from a previous boot and is moved aside;
//   - anything else is a *ReconcileError, and no Store.
func OpenStore(ctx context.Context, path string, reg Register, opts StoreOptions) (*Store, *Reconciliation, error) {
	if reg == nil {
		return nil, nil, errors.New("runtimelog: no register")
	}
	empty := New(opts.IMR, opts.Alg)
	if err := empty.check(); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("runtimelog: creating the directory of %s: %w", path, err)
	}
	s := &Store{path: path, reg: reg, lock: flock.New(path + LockSuffix)}
	if err := s.lockExclusive(ctx, opts.LockTimeout); err != nil {
		return nil, nil, err
	}
	defer s.lock.Unlock()
	rec, err := s.reconcile(ctx, empty, opts)
	if err != nil {
		return nil, rec, err
	}
	return s, rec, nil
}

func (s *Store) lockExclusive(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := s.lock.TryLockContext(ctx, 5*time.Millisecond)
	if err != nil || !ok {
		return fmt.Errorf("runtimelog: locking %s: %v", s.path+LockSuffix, orTimeout(err))
	}
	return nil
}

func orTimeout(err error) error {
	if err == nil {
		return errors.New("timed out")
	}
	return err
}

func (s *Store) reconcile(ctx context.Context, empty *Log, opts StoreOptions) (*Reconciliation, error) {
	rec := &Reconciliation{}
	b, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("runtimelog: reading %s: %w", s.path, err)
	}
	lim := opts.Limits.withDefaults()
	if len(b) > lim.MaxBytes {
		return nil, fmt.Errorf("runtimelog: %s is %d bytes, more than %d", s.path, len(b), lim.MaxBytes)
	}
	regVal, err := s.reg.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("runtimelog: reading %v: %w", empty.IMR(), err)
	}
	if len(regVal) != empty.alg.Size() {
		return nil, fmt.Errorf("runtimelog: %v is %d bytes, want %d for %v", empty.IMR(), len(regVal), empty.alg.Size(), empty.alg)
	}

	ends := recordEnds(b)
	log := empty
	good := 0 // bytes of b that decode as whole records
	if len(ends) > 0 {
		good = ends[len(ends)-1]
		if log, err = Decode(b[:good], lim); err != nil {
			return nil, &ReconcileError{Path: s.path, IMR: empty.IMR(), Register: regVal, Err: fmt.Errorf("decoding: %w", err)}
		}
		if log.IMR() != empty.IMR() || log.Algorithm() != empty.Algorithm() {
			return nil, fmt.Errorf("runtimelog: %s is a log of %v %v, want %v %v", s.path, log.IMR(), log.Algorithm(), empty.IMR(), empty.Algorithm())
		}
	}
	if torn := len(b) - good; torn > 0 {
		// Bytes after the last whole record: a write cut short. If the
		// records before them do not match the register, the check below
		// refuses anyway.
		if torn >= recordOverhead+empty.alg.Size()+lim.MaxFieldSize*int(numFields) {
			return nil, &ReconcileError{Path: s.path, IMR: empty.IMR(), Records: log.Len(), Register: regVal,
				Err: fmt.Errorf("%d bytes after the last record are no record", torn)}
		}
		rec.DroppedTail = torn
	}

	full, err := log.replayValue(log.Len())
	if err != nil {
		return nil, err
	}
	zero := make([]byte, len(regVal))
	switch {
	case bytes.Equal(regVal, full):
	case bytes.Equal(regVal, zero) && log.Len() > 0:
		if err := os.Rename(s.path, s.path+PrevSuffix); err != nil {
			return nil, fmt.Errorf("runtimelog: moving the previous boot's log aside: %w", err)
		}
		rec.Rotated, rec.DroppedTail = true, 0
		log, good = empty, 0
		b = nil
	case rec.DroppedTail > 0:
		// A torn write and a whole record not extended would be two
		// records ahead, which Append never leaves behind.
		return nil, &ReconcileError{Path: s.path, IMR: empty.IMR(), Records: log.Len(), Register: regVal, Replayed: full,
			Err: fmt.Errorf("%d bytes of a torn record follow records the register lacks", rec.DroppedTail)}
	case log.Len() > 0 && bytes.Equal(regVal, mustReplay(log, log.Len()-1)):
		good = 0
		if n := log.Len(); n > 1 {
			good = ends[n-2]
		}
		rec.DroppedTail = len(b) - good
		log.recs = log.recs[:log.Len()-1]
	default:
		return nil, &ReconcileError{Path: s.path, IMR: empty.IMR(), Records: log.Len(), Register: regVal, Replayed: full}
	}

	f, created, err := openLog(s.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if good != len(b) || rec.Rotated {
		if err := f.Truncate(int64(good)); err != nil {
			return nil, fmt.Errorf("runtimelog: truncating %s to %d bytes: %w", s.path, good, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("runtimelog: syncing %s: %w", s.path, err)
		}
	}
	if created || rec.Rotated {
		if err := syncDir(s.path); err != nil {
			return nil, err
		}
	}
	s.log, s.size = log, int64(good)
	if log.Len() > 0 {
		start := 0
		if len(ends) > 1 && log.Len() > 1 {
			start = ends[log.Len()-2]
		}
		s.last = bytes.Clone(b[start:good])
	}
	rec.Records = log.Len()
	return rec, nil
}

func mustReplay(l *Log, n int) []byte {
	v, err := l.replayValue(n)
	if err != nil {
		return nil
	}
	return v
}

// replayValue is the register after the first n records.
func (l *Log) replayValue(n int) ([]byte, error) {
	r, err := l.replay(n)
	if err != nil {
		return nil, err
	}
	v, ok := r.Registers().Get(l.imr, l.alg)
	if !ok {
		return make([]byte, l.alg.Size()), nil
	}
	return v, nil
}

// recordEnds walks the TLV framing (four TLVs per record) and returns the
// end offset of every complete record. It reads only headers, so it never
// allocates what a header claims.
func recordEnds(b []byte) []int {
	var ends []int
	off := 0
	for {
		end := off
		for range 4 {
			if len(b)-end < tlvHeader {
				return ends
			}
			n := int64(binary.BigEndian.Uint32(b[end+1:]))
			if n > int64(len(b)-end-tlvHeader) {
				return ends
			}
			end += tlvHeader + int(n)
		}
		ends = append(ends, end)
		off = end
	}
}

func openLog(path string) (*os.File, bool, error) {
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("runtimelog: opening %s: %w", path, err)
	}
	return f, created, nil
}

// syncDir makes a created or renamed entry durable.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("runtimelog: opening the directory of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("runtimelog: syncing the directory of %s: %w", path, err)
	}
	return nil
}

// Path is the log file.
func (s *Store) Path() string { return s.path }

// Len is the number of records.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Len()
}

// Workloads returns the recorded workloads in order.
func (s *Store) Workloads() []Workload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Workloads()
}

// Err is the reason the store stopped extending, or nil.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// Append records w: it writes and fsyncs the record, then extends the
// register with its digest. On a failed write or extend the record is taken
// out of the file again, so the file and the register stay equal; if that is
// impossible (the register state is unknown, the file cannot be restored)
// the store stops and every later Append fails with the reason.
func (s *Store) Append(ctx context.Context, w Workload) (cctrusted.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return cctrusted.Event{}, s.broken
	}
	if err := s.lockExclusive(ctx, 0); err != nil {
		return cctrusted.Event{}, err
	}
	defer s.lock.Unlock()

	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return cctrusted.Event{}, s.fail(fmt.Errorf("runtimelog: opening %s: %w", s.path, err))
	}
	defer f.Close()
	if err := s.checkUnchanged(f); err != nil {
		return cctrusted.Event{}, s.fail(err)
	}
	before, err := s.log.replayValue(s.log.Len())
	if err != nil {
		return cctrusted.Event{}, err
	}
	tail, ev, err := s.log.AppendEncoded(nil, w)
	if err != nil {
		return cctrusted.Event{}, err
	}
	undo := func(cause error) error {
		s.log.recs = s.log.recs[:s.log.Len()-1]
		if terr := f.Truncate(s.size); terr != nil {
			return s.fail(fmt.Errorf("%w; restoring %s failed too: %v", cause, s.path, terr))
		}
		if serr := f.Sync(); serr != nil {
			return s.fail(fmt.Errorf("%w; syncing %s failed too: %v", cause, s.path, serr))
		}
		return cause
	}
	if _, err := f.WriteAt(tail, s.size); err != nil {
		return cctrusted.Event{}, undo(fmt.Errorf("runtimelog: writing record %d to %s: %w", s.log.Len()-1, s.path, err))
	}
	if err := f.Sync(); err != nil {
		return cctrusted.Event{}, undo(fmt.Errorf("runtimelog: syncing %s: %w", s.path, err))
	}
	if s.beforeExtend != nil {
		if err := s.beforeExtend(); err != nil {
			s.broken = err
			return cctrusted.Event{}, err
		}
	}
	if err := s.reg.Extend(ctx, ev.Digests[0].Value); err != nil {
		cause := fmt.Errorf("runtimelog: extending %v with record %d: %w", s.log.IMR(), s.log.Len()-1, err)
		// The extend may have happened before the error surfaced: read
		// the register to know which side is right.
		now, rerr := s.reg.Read(ctx)
		switch {
		case rerr == nil && bytes.Equal(now, before):
			return cctrusted.Event{}, undo(cause)
		case rerr == nil && bytes.Equal(now, mustReplay(s.log, s.log.Len())):
			// It was extended after all.
		default:
			return cctrusted.Event{}, s.fail(fmt.Errorf("%w; the register's state is unknown", cause))
		}
	}
	s.size += int64(len(tail))
	s.last = tail
	return ev, nil
}

// checkUnchanged notices an edit of the file since the last append: its
// size and its last record must be what this store wrote.
func (s *Store) checkUnchanged(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("runtimelog: stat %s: %w", s.path, err)
	}
	if fi.Size() != s.size {
		return fmt.Errorf("runtimelog: %s is %d bytes, this store wrote %d: changed by someone else", s.path, fi.Size(), s.size)
	}
	if len(s.last) > 0 {
		got := make([]byte, len(s.last))
		if _, err := f.ReadAt(got, s.size-int64(len(s.last))); err != nil && err != io.EOF {
			return fmt.Errorf("runtimelog: reading %s: %w", s.path, err)
		}
		if !bytes.Equal(got, s.last) {
			return fmt.Errorf("runtimelog: the last record of %s changed on disk", s.path)
		}
	}
	return nil
}

func (s *Store) fail(err error) error {
	s.broken = err
	return err
}

// ReadStoreFile returns the log file's contents under a shared lock, so
// that it never includes a record being written. A missing log is empty.
func ReadStoreFile(ctx context.Context, path string) ([]byte, error) {
	// A node that never measured a workload has no log, and maybe not even
	// its directory: do not create a lock file there just to say so.
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	l := flock.New(path + LockSuffix)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok, err := l.TryRLockContext(ctx, 5*time.Millisecond)
	if err != nil || !ok {
		return nil, fmt.Errorf("runtimelog: locking %s: %v", path+LockSuffix, orTimeout(err))
	}
	defer l.Unlock()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtimelog: reading %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, DefaultMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("runtimelog: reading %s: %w", path, err)
	}
	if len(b) > DefaultMaxBytes {
		return nil, fmt.Errorf("runtimelog: %s is larger than the %d-byte limit", path, DefaultMaxBytes)
	}
	return b, nil
}
