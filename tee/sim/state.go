package sim

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
)

// Files of a sim directory (besides pki/, pcs.json and the host-root tree).
const (
	// StateFile holds the TD's registers and attributes (State, as JSON).
	StateFile = "state.json"
	// LockFile is flock(2)ed around every access to StateFile.
	LockFile = "state.lock"
	// RootFile is the simulated root certificate, for a verifier's trusted roots.
	RootFile = "root.pem"
)

// SimulatedMarker is the value of State.Simulated. Open refuses a state file without
// it, and anyone reading the file learns what it is.
const SimulatedMarker = "ccnp-spire simulated TDX: not a real TD, never trust it by default"

// stateVersion is the only state layout this package reads.
const stateVersion = 1

// maxStateFile bounds state.json; a real one is about 1 KiB.
const maxStateFile = 64 << 10

// lockRetry is how often a blocked lock attempt is retried while its context lives.
const lockRetry = 2 * time.Millisecond

// State is the simulated TD as the TDX module would report it. Fields that belong to
// the (simulated) TDX module and quoting enclave, such as TEE TCB SVNs and the FMSPC,
// live in the PKI's platform.json because the PCK certificate encodes them.
type State struct {
	// Simulated must equal SimulatedMarker.
	Simulated string `json:"simulated"`
	// Version is the layout version (1).
	Version int `json:"version"`
	// MRTD is the build-time measurement (48 bytes).
	MRTD pki.Hex `json:"mrtd"`
	// RTMR holds RTMR0..3 (48 bytes each).
	RTMR [4]pki.Hex `json:"rtmr"`
	// TDAttributes (8 bytes); bit 0 of byte 0 is DEBUG.
	TDAttributes pki.Hex `json:"td_attributes"`
	// XFAM (8 bytes).
	XFAM pki.Hex `json:"xfam"`
	// MRConfigID, MROwner and MROwnerConfig (48 bytes each).
	MRConfigID    pki.Hex `json:"mrconfigid"`
	MROwner       pki.Hex `json:"mrowner"`
	MROwnerConfig pki.Hex `json:"mrownerconfig"`
}

// Validate checks the marker, the version and every field's size.
func (s *State) Validate() error {
	if s.Simulated != SimulatedMarker {
		return fmt.Errorf("sim state: field simulated is %q, want %q", s.Simulated, SimulatedMarker)
	}
	if s.Version != stateVersion {
		return fmt.Errorf("sim state: version %d, want %d", s.Version, stateVersion)
	}
	fields := []struct {
		name string
		v    pki.Hex
		size int
	}{
		{"mrtd", s.MRTD, pki.MRSize},
		{"td_attributes", s.TDAttributes, 8},
		{"xfam", s.XFAM, 8},
		{"mrconfigid", s.MRConfigID, pki.MRSize},
		{"mrowner", s.MROwner, pki.MRSize},
		{"mrownerconfig", s.MROwnerConfig, pki.MRSize},
	}
	for i := range s.RTMR {
		fields = append(fields, struct {
			name string
			v    pki.Hex
			size int
		}{fmt.Sprintf("rtmr[%d]", i), s.RTMR[i], pki.MRSize})
	}
	for _, f := range fields {
		if len(f.v) != f.size {
			return fmt.Errorf("sim state: field %s is %d bytes, want %d", f.name, len(f.v), f.size)
		}
	}
	return nil
}

// Debug reports whether the TD's DEBUG attribute (td_attributes bit 0) is set.
func (s *State) Debug() bool { return len(s.TDAttributes) > 0 && s.TDAttributes[0]&1 != 0 }

// ParseState decodes and validates a state file.
func ParseState(b []byte) (*State, error) {
	if len(b) > maxStateFile {
		return nil, fmt.Errorf("sim state: %d bytes, limit %d", len(b), maxStateFile)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("sim state: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *State) quoteBody() pki.TDQuoteBody {
	var b pki.TDQuoteBody
	copy(b.TDAttributes[:], s.TDAttributes)
	copy(b.XFAM[:], s.XFAM)
	copy(b.MRTD[:], s.MRTD)
	copy(b.MRConfigID[:], s.MRConfigID)
	copy(b.MROwner[:], s.MROwner)
	copy(b.MROwnerConfig[:], s.MROwnerConfig)
	for i := range s.RTMR {
		copy(b.RTMR[i][:], s.RTMR[i])
	}
	return b
}

// store is the state file of one sim directory, shared with other processes through
// flock(2) on LockFile.
type store struct{ dir string }

func (st store) path() string { return filepath.Join(st.dir, StateFile) }

// lock takes the directory's lock, shared for reads and exclusive for
// read-modify-write, giving up when ctx ends.
func (st store) lock(ctx context.Context, exclusive bool) (*flock.Flock, error) {
	fl := flock.New(filepath.Join(st.dir, LockFile), flock.SetPermissions(0o600))
	var ok bool
	var err error
	if exclusive {
		ok, err = fl.TryLockContext(ctx, lockRetry)
	} else {
		ok, err = fl.TryRLockContext(ctx, lockRetry)
	}
	if err != nil || !ok {
		fl.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("sim: lock %s: %w", fl.Path(), err)
	}
	return fl, nil
}

// read returns the current state under a shared lock.
func (st store) read(ctx context.Context) (*State, error) {
	fl, err := st.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	return st.readLocked()
}

func (st store) readLocked() (*State, error) {
	b, err := smallfile.Read(st.path(), maxStateFile)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	s, err := ParseState(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st.path(), err)
	}
	return s, nil
}

// update applies fn to the state under the exclusive lock and stores the result
// atomically. fn must not keep s.
func (st store) update(ctx context.Context, fn func(s *State) error) error {
	fl, err := st.lock(ctx, true)
	if err != nil {
		return err
	}
	defer fl.Close()
	s, err := st.readLocked()
	if err != nil {
		return err
	}
	if err := fn(s); err != nil {
		return err
	}
	return st.writeLocked(s)
}

func (st store) writeLocked(s *State) error {
	if err := s.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("sim: encode state: %w", err)
	}
	return writeAtomic(st.path(), append(b, '\n'), 0o644)
}

// extend folds digest into RTMR index (2 or 3): new = SHA-384(old || digest), the
// TDX module's TDG.MR.RTMR.EXTEND.
func (st store) extend(ctx context.Context, index int, digest [48]byte) error {
	if index != 2 && index != 3 {
		return fmt.Errorf("sim: RTMR%d cannot be extended at run time (only RTMR2 and RTMR3)", index)
	}
	return st.update(ctx, func(s *State) error {
		h := sha512.New384()
		h.Write(s.RTMR[index])
		h.Write(digest[:])
		s.RTMR[index] = h.Sum(nil)
		return nil
	})
}

// writeAtomic replaces path with b: readers see the old or the new file, never a
// torn one, and the rename survives a crash.
func writeAtomic(path string, b []byte, mode os.FileMode) error {
	if err := smallfile.Write(path, b, mode); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}
