package runtimelog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/go-eventlog/cel"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Follower reads a log file that a Store appends to, decoding only what was
// appended since its previous read. A service that answers every request
// from the runtime log would otherwise read and decode the whole file per
// request: with a 6.4 MiB log, 32 concurrent requests held 750 MiB.
//
// Each Read takes the shared lock of the file (as ReadStoreFile does, so no
// half-written record is seen) and compares the file with what it last
// decoded:
//
//   - same device, inode, size, mtime and ctime: nothing to read;
//   - the same file, grown: the bytes from the start of the last decoded
//     record to the end are read in one go; the last record must be there
//     unchanged, and only what follows it is decoded;
//   - anything else (shrunk, replaced, rewritten in place, the last record
//     changed, or the file gone): the whole file is read and decoded again.
//
// A Follower only mirrors the file. What it returns is trustworthy only once
// the caller has compared its replay with the register the TEE reports (as
// Log.Verify does); that comparison, not the checks above, is what an edit
// of the file cannot get past.
type Follower struct {
	path string
	lim  Limits
	// empty is the log a missing or empty file stands for.
	empty *Log

	mu  sync.Mutex
	log *Log // what the file held at the last successful Read
	at  fileState
	// last is the encoding of log's last record, which ends the file.
	last []byte
}

// FormatError says the file holds what is no runtime log, or no valid
// continuation of the records read before: an edit, a writer that does not
// follow the Store's protocol, or a crash the Store has not repaired yet.
// Reading again does not help until the file changes.
type FormatError struct {
	Path string
	// Offset is where the bytes that failed start (0: the whole file).
	Offset int64
	Err    error
}

func (e *FormatError) Error() string {
	if e.Offset == 0 {
		return fmt.Sprintf("runtimelog: %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("runtimelog: %s after offset %d: %v", e.Path, e.Offset, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

// fileState is what a stat tells about the file; the zero value means "no
// file".
type fileState struct {
	dev, ino     uint64
	size         int64
	mtime, ctime time.Time
}

// Update is the result of Follower.Read.
type Update struct {
	// Log is the whole log the file holds. Its records are shared with the
	// Follower and with other Updates: read it, do not Append to it.
	Log *Log
	// Since is the first record that was not in the previous Update's Log:
	// Since == Log.Len() when nothing changed.
	Since int
	// Reset is set when the file was read whole (the first Read, or a file
	// that was replaced, shrunk or rewritten): then Since is 0 and the
	// records need not be the previous Log's.
	Reset bool
}

// NewFollower returns a Follower of the log file at path, a log of imr and
// alg (see New) read within lim. A missing or empty file is an empty log.
func NewFollower(path string, imr cctrusted.IMR, alg cctrusted.Algorithm, lim Limits) (*Follower, error) {
	empty := New(imr, alg)
	if err := empty.check(); err != nil {
		return nil, err
	}
	return &Follower{path: path, lim: lim.withDefaults(), empty: empty}, nil
}

// Read brings the Follower up to date with the file and returns the log.
// On error the Follower keeps its previous state, so the next Read tries
// again from there.
func (f *Follower) Read(ctx context.Context) (Update, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
		// As ReadStoreFile: no lock file is created just to say "empty".
		return f.gone(), nil
	}
	lock := flock.New(f.path + LockSuffix)
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok, err := lock.TryRLockContext(lctx, 5*time.Millisecond)
	if err != nil || !ok {
		return Update{}, fmt.Errorf("runtimelog: locking %s: %v", f.path+LockSuffix, orTimeout(err))
	}
	defer lock.Unlock()
	file, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return f.gone(), nil
	}
	if err != nil {
		return Update{}, fmt.Errorf("runtimelog: reading %s: %w", f.path, err)
	}
	defer file.Close()
	// Stat the open file, not the path: what is read below is this file.
	fi, err := file.Stat()
	if err != nil {
		return Update{}, fmt.Errorf("runtimelog: stat %s: %w", f.path, err)
	}
	now := stateOf(fi)
	if now.size > int64(f.lim.MaxBytes) {
		return Update{}, fmt.Errorf("runtimelog: %s is %d bytes, over the %d byte limit", f.path, now.size, f.lim.MaxBytes)
	}
	if f.log != nil && f.log.Len() > 0 && now.dev == f.at.dev && now.ino == f.at.ino &&
		(now.size > f.at.size || now == f.at) {
		u, ok, err := f.readTail(file, now)
		if ok || err != nil {
			return u, err
		}
		// The last record is not where it was: the file was rewritten.
	}
	if f.log != nil && f.log.Len() == 0 && now == f.at {
		return Update{Log: f.clipped()}, nil
	}
	return f.readWhole(file, now)
}

// readTail reads from the start of the last decoded record to now.size and
// decodes what follows that record. ok is false when the record is no
// longer there. The record is compared even when the stat says nothing
// changed: file times tick coarsely, and it costs one small read.
func (f *Follower) readTail(file *os.File, now fileState) (Update, bool, error) {
	from := f.at.size - int64(len(f.last))
	b := make([]byte, now.size-from)
	if _, err := file.ReadAt(b, from); err != nil {
		return Update{}, false, fmt.Errorf("runtimelog: reading %s from offset %d: %w", f.path, from, err)
	}
	if !bytes.Equal(b[:len(f.last)], f.last) {
		return Update{}, false, nil
	}
	tail := b[len(f.last):]
	if len(tail) == 0 {
		return Update{Log: f.clipped(), Since: f.log.Len()}, true, nil
	}
	log, err := f.log.decodeAfter(tail, f.lim)
	if err != nil {
		return Update{}, true, &FormatError{Path: f.path, Offset: f.at.size, Err: err}
	}
	return f.set(log, now, tail, f.log.Len(), false), true, nil
}

func (f *Follower) readWhole(file *os.File, now fileState) (Update, error) {
	b, err := io.ReadAll(io.LimitReader(file, int64(f.lim.MaxBytes)+1))
	if err != nil {
		return Update{}, fmt.Errorf("runtimelog: reading %s: %w", f.path, err)
	}
	if int64(len(b)) != now.size {
		// The lock keeps writers out; a size that moved anyway is a
		// writer that does not take it.
		return Update{}, fmt.Errorf("runtimelog: %s changed size while read under its lock (%d bytes, stat said %d)", f.path, len(b), now.size)
	}
	log := f.empty
	if len(b) > 0 {
		if log, err = Decode(b, f.lim); err != nil {
			return Update{}, &FormatError{Path: f.path, Err: err}
		}
		if log.IMR() != f.empty.IMR() || log.Algorithm() != f.empty.Algorithm() {
			return Update{}, &FormatError{Path: f.path, Err: fmt.Errorf("the log extends %v (%v), want %v (%v)", log.IMR(), log.Algorithm(), f.empty.IMR(), f.empty.Algorithm())}
		}
	}
	return f.set(log, now, b, 0, true), nil
}

// gone is the Update for a missing file: an empty log.
func (f *Follower) gone() Update {
	if f.log != nil && f.log.Len() == 0 {
		return f.set(f.empty, fileState{}, nil, 0, false)
	}
	return f.set(f.empty, fileState{}, nil, 0, true)
}

// set records log as the file's content, b holding (at least) its last
// record at its end, and returns the Update that says so.
func (f *Follower) set(log *Log, at fileState, b []byte, since int, reset bool) Update {
	f.log, f.at = log, at
	f.last = nil
	if ends := recordEnds(b); len(ends) > 0 {
		start := 0
		if len(ends) > 1 {
			start = ends[len(ends)-2]
		}
		f.last = bytes.Clone(b[start:ends[len(ends)-1]])
	}
	return Update{Log: f.clipped(), Since: since, Reset: reset}
}

// clipped is the current log with its capacity cut to its length, so that
// an Append by a reader cannot write into the records the Follower shares.
func (f *Follower) clipped() *Log {
	return &Log{imr: f.log.imr, alg: f.log.alg, recs: f.log.recs[:len(f.log.recs):len(f.log.recs)]}
}

func stateOf(fi fs.FileInfo) fileState {
	s := fileState{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
		s.ctime = time.Unix(st.Ctim.Unix())
	}
	return s
}

// decodeAfter decodes b, whole records that follow l's in its file, with
// the checks Decode makes, and returns the longer log. l is unchanged; the
// new log's records share l's backing array, which only ever grows past
// l's length (a Follower derives each log from the latest one only).
func (l *Log) decodeAfter(b []byte, lim Limits) (*Log, error) {
	lim = lim.withDefaults()
	if len(b) == 0 {
		return l, nil
	}
	n, err := scan(b, lim)
	if err != nil {
		return nil, err
	}
	if l.Len()+n > lim.MaxRecords {
		return nil, fmt.Errorf("runtimelog: more than %d records", lim.MaxRecords)
	}
	c, err := cel.DecodeToCEL(bytes.NewBuffer(b))
	if err != nil {
		return nil, fmt.Errorf("runtimelog: %w", err)
	}
	recs := c.Records()
	if len(recs) != n {
		return nil, fmt.Errorf("runtimelog: cel decoded %d records, the bounds check saw %d", len(recs), n)
	}
	out := &Log{imr: l.imr, alg: l.alg, first: l.first, recs: l.recs}
	for i, rec := range recs {
		if err := out.addDecoded(l.first+l.Len()+i, rec, lim); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Record returns record i as Events and Workloads would, without building
// the whole lists.
func (l *Log) Record(i int) (cctrusted.Event, Workload) {
	return l.event(i), l.recs[i].w
}
