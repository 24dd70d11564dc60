package runtimelog

import (
	"bytes"
	"context"
	"crypto/sha256"
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
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
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
	// MaxRecords and MaxBytes are the log's capacity, notices included
	// (zero: DefaultCapacityRecords and DefaultCapacityBytes). The last
	// record the capacity allows is kept for the log-full notice.
	MaxRecords int
	MaxBytes   int
	// MaxQuotaNotices bounds the quota notices (zero:
	// DefaultMaxQuotaNotices); the one after them makes the log full.
	MaxQuotaNotices int
}

// Capacity defaults and bounds. The server reads up to DefaultMaxRecords
// records and DefaultMaxBytes bytes, and refuses a node with more than 4,096
// selectors (serververifier.MaxSelectors), one per distinct executable in
// the log. A store never writes more than its capacity, which is bounded
// well below all three, so nothing a workload does makes the log one the
// server refuses.
const (
	DefaultCapacityRecords = 2048
	// MaxCapacityRecords leaves 512 selectors for everything else a node
	// has (TEE, registers, boot facts, policies).
	MaxCapacityRecords     = 3584
	DefaultCapacityBytes   = 4 << 20
	MaxCapacityBytes       = 8 << 20
	DefaultMaxQuotaNotices = 64
	// minCapacityRecords: one workload and the full notice.
	minCapacityRecords = 2
)

// ErrFull is returned (wrapped) by Append and NoteQuota once the log is
// full: nothing more is recorded until the register is reset (reboot).
var ErrFull = errors.New("runtimelog: the log is full")

func (o StoreOptions) withDefaults() (StoreOptions, error) {
	if o.MaxRecords == 0 {
		o.MaxRecords = DefaultCapacityRecords
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultCapacityBytes
	}
	if o.MaxQuotaNotices == 0 {
		// Quota notices take at most a quarter of a small log.
		o.MaxQuotaNotices = min(DefaultMaxQuotaNotices, max(1, o.MaxRecords/4))
	}
	if o.MaxRecords < minCapacityRecords || o.MaxRecords > MaxCapacityRecords {
		return o, fmt.Errorf("runtimelog: capacity of %d records is outside %d..%d", o.MaxRecords, minCapacityRecords, MaxCapacityRecords)
	}
	if o.MaxBytes < minCapacityRecords*MaxStoredRecordBytes || o.MaxBytes > MaxCapacityBytes {
		return o, fmt.Errorf("runtimelog: capacity of %d bytes is outside %d..%d", o.MaxBytes, minCapacityRecords*MaxStoredRecordBytes, MaxCapacityBytes)
	}
	if o.MaxQuotaNotices < 0 || o.MaxQuotaNotices >= o.MaxRecords {
		return o, fmt.Errorf("runtimelog: %d quota notices do not fit a capacity of %d records", o.MaxQuotaNotices, o.MaxRecords)
	}
	return o, nil
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
	value  []byte // the register as the log replays, kept so appends need no replay
	broken error  // set once the file and the register can no longer be trusted

	opts   StoreOptions // with defaults
	full   *Notice      // the log-full notice, once written
	quotas map[string]bool

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
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("runtimelog: creating the directory of %s: %w", path, err)
	}
	s := &Store{path: path, reg: reg, lock: flock.New(path + LockSuffix), opts: opts, quotas: map[string]bool{}}
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
	if s.value, err = log.replayValue(log.Len()); err != nil {
		return nil, err
	}
	if log.Len() > 0 {
		start := 0
		if len(ends) > 1 && log.Len() > 1 {
			start = ends[log.Len()-2]
		}
		s.last = bytes.Clone(b[start:good])
	}
	rec.Records = log.Len()
	for _, n := range log.Notices() {
		switch n.Kind {
		case NoticeFull:
			if s.full == nil {
				s.full = &n
			}
		case NoticeQuota:
			s.quotas[n.Subject] = true
		}
	}
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
	r, err := l.replay(nil, n)
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

// Append records w, its string fields bounded (Workload.Bounded): it
// writes and fsyncs the record, then extends the register with its digest.
// On a failed write or extend the record is taken out of the file again, so
// the file and the register stay equal; if that is impossible (the register
// state is unknown, the file cannot be restored) the store stops and every
// later Append fails with the reason.
//
// When w would leave no room for the log-full notice (capacity in records
// or bytes), the notice is appended instead and Append returns ErrFull, as
// it does from then on.
func (s *Store) Append(ctx context.Context, w Workload) (cctrusted.Event, error) {
	w = w.Bounded()
	return s.append(ctx, func(l *Log, dst []byte) ([]byte, cctrusted.Event, error) { return l.AppendEncoded(dst, w) }, w.Time, nil)
}

// NoteQuota appends a quota notice naming subject (a caller whose quota of
// new records is used up), once per subject: a subject already noted is
// not noted again. When the notice would leave no room for the log-full
// notice, or MaxQuotaNotices are already written, the log-full notice is
// appended instead and NoteQuota returns ErrFull.
func (s *Store) NoteQuota(ctx context.Context, subject string, now time.Time) error {
	if len(subject) > MaxNoticeSubject {
		sum := sha256.Sum256([]byte(subject))
		subject = "sha256:" + hex.EncodeToString(sum[:])
	}
	n := Notice{Kind: NoticeQuota, Subject: subject, Time: now}
	_, err := s.append(ctx, func(l *Log, dst []byte) ([]byte, cctrusted.Event, error) { return l.appendNoticeEncoded(dst, n) }, now, &n)
	return err
}

// Full returns the log-full notice, false while the log is not full.
func (s *Store) Full() (Notice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full == nil {
		return Notice{}, false
	}
	return *s.full, true
}

// Capacity is the log's capacity in records, the log-full notice included.
func (s *Store) Capacity() int { return s.opts.MaxRecords }

// Notices returns the notice records in order.
func (s *Store) Notices() []Notice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Notices()
}

func (s *Store) errFull() error {
	if s.full.Record < 0 {
		return fmt.Errorf("%w (%s holds %d records, at or over its capacity, and no room is left for the log-full notice)", ErrFull, s.path, s.log.Len())
	}
	return fmt.Errorf("%w since record %d (capacity %d records, %d bytes)", ErrFull, s.full.Record, s.opts.MaxRecords, s.opts.MaxBytes)
}

// fits reports whether the record just added to the log, size bytes,
// leaves room for the log-full notice within the capacity.
func (s *Store) fits(size int) bool {
	noticeBytes := int64(recordOverhead + s.log.alg.Size() + maxNoticeContent)
	return s.log.Len()+1 <= s.opts.MaxRecords && s.size+int64(size)+noticeBytes <= int64(s.opts.MaxBytes)
}

// append adds the record add builds (quota, when set, is the quota notice
// it stands for), or the log-full notice, stamped now, when that record
// does not fit.
func (s *Store) append(ctx context.Context, add func(*Log, []byte) ([]byte, cctrusted.Event, error), now time.Time, quota *Notice) (cctrusted.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return cctrusted.Event{}, s.broken
	}
	if s.full != nil {
		return cctrusted.Event{}, s.errFull()
	}
	if quota != nil && s.quotas[quota.Subject] {
		return cctrusted.Event{}, nil
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
	tail, ev, err := add(s.log, nil)
	if err != nil {
		return cctrusted.Event{}, err
	}
	full := !s.fits(len(tail)) || quota != nil && len(s.quotas) >= s.opts.MaxQuotaNotices
	if full {
		s.log.recs = s.log.recs[:s.log.Len()-1]
		if s.log.Len()+1 > DefaultMaxRecords || s.size+int64(recordOverhead+s.log.alg.Size()+maxNoticeContent) > DefaultMaxBytes {
			// A log written before capacities existed: a notice would
			// make it one the server refuses. Stop without one.
			s.full = &Notice{Record: -1, Kind: NoticeFull}
			return cctrusted.Event{}, s.errFull()
		}
		n := Notice{Kind: NoticeFull, Time: now}
		if tail, ev, err = s.log.appendNoticeEncoded(nil, n); err != nil {
			return cctrusted.Event{}, err
		}
	}
	if err := s.commit(ctx, f, tail, ev); err != nil {
		return cctrusted.Event{}, err
	}
	switch {
	case full:
		n := *s.log.recs[s.log.Len()-1].notice
		s.full = &n
		return cctrusted.Event{}, s.errFull()
	case quota != nil:
		s.quotas[quota.Subject] = true
	}
	return ev, nil
}

// commit writes tail, the encoding of the log's last record (ev), fsyncs
// it and extends the register.
func (s *Store) commit(ctx context.Context, f *os.File, tail []byte, ev cctrusted.Event) error {
	before := s.value
	h, err := s.log.alg.Hash()
	if err != nil {
		s.log.recs = s.log.recs[:s.log.Len()-1]
		return err
	}
	hh := h.New()
	hh.Write(before)
	hh.Write(ev.Digests[0].Value)
	after := hh.Sum(nil)
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
		return undo(fmt.Errorf("runtimelog: writing record %d to %s: %w", s.log.Len()-1, s.path, err))
	}
	if err := f.Sync(); err != nil {
		return undo(fmt.Errorf("runtimelog: syncing %s: %w", s.path, err))
	}
	if s.beforeExtend != nil {
		if err := s.beforeExtend(); err != nil {
			s.broken = err
			return err
		}
	}
	if err := s.reg.Extend(ctx, ev.Digests[0].Value); err != nil {
		cause := fmt.Errorf("runtimelog: extending %v with record %d: %w", s.log.IMR(), s.log.Len()-1, err)
		// The extend may have happened before the error surfaced: read
		// the register to know which side is right.
		now, rerr := s.reg.Read(ctx)
		switch {
		case rerr == nil && bytes.Equal(now, before):
			return undo(cause)
		case rerr == nil && bytes.Equal(now, after):
			// It was extended after all.
		default:
			return s.fail(fmt.Errorf("%w; the register's state is unknown", cause))
		}
	}
	s.size += int64(len(tail))
	s.last = tail
	s.value = after
	return nil
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
	b, err := smallfile.Read(path, DefaultMaxBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.Is(err, smallfile.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	case err != nil:
		return nil, fmt.Errorf("runtimelog: reading %s: %w", path, err)
	}
	return b, nil
}

// ErrTooLarge is returned (wrapped) by ReadStoreFile for a log over the
// verifier's byte limit, which a Store never writes (only a log from before
// capacities existed can be one).
var ErrTooLarge = errors.New("runtimelog: log over the verifier's limit")
