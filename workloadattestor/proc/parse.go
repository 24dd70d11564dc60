// Package proc reads what the workload attestor needs about one process from
// /proc/<pid>: stat (state, flags, start time), status (credentials), cgroup
// and the executable behind the exe link. Every read goes through one open
// directory handle, so all of it describes the same process even if its PID
// is reused meanwhile (a stale handle fails instead of reading the new one).
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Size bounds for the files read. A stat line is well under 1 KiB; status
// carries the supplementary groups, up to NGROUPS_MAX (65536) of them.
const (
	MaxStatSize   = 4 << 10
	MaxStatusSize = 1 << 20
	MaxCgroupSize = 64 << 10
)

// PFKthread is the task flag (include/linux/sched.h) marking a kernel thread,
// field 9 of /proc/<pid>/stat.
const PFKthread = 0x00200000

// Stat is what the attestor uses from /proc/<pid>/stat.
type Stat struct {
	PID int
	// Comm is the command name between the parentheses; it may hold any byte
	// but NUL, including spaces, parentheses and newlines.
	Comm  string
	State byte
	Flags uint64
	// StartTime is field 22, the start time in clock ticks after boot. With
	// the PID it names one process for the lifetime of the boot.
	StartTime uint64
	// StartCode and StartStack are fields 26 and 28: where the program text
	// and the stack of the current image begin. execve builds a new address
	// space and, with address space randomisation, moves both, so a change
	// between two reads says the process ran execve meanwhile even when it
	// ran the same file again. The kernel shows 0 (or 1) to readers without
	// ptrace access, and a short line leaves them 0: equal values prove
	// nothing, different ones prove an exec.
	StartCode, StartStack uint64
}

// Kernel reports whether the task is a kernel thread.
func (s Stat) Kernel() bool { return s.Flags&PFKthread != 0 }

// Zombie reports whether the task has exited and awaits its parent (Z), or
// is being torn down (X).
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed")

// ParseStat parses /proc/<pid>/stat. The command name is found by the last
// ')' because the name itself may contain ')'.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	if len(b) > MaxStatSize {
		return s, fmt.Errorf("proc stat: %d bytes, more than %d: %w", len(b), MaxStatSize, ErrMalformed)
	}
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return s, fmt.Errorf("proc stat: no (comm): %w", ErrMalformed)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return s, fmt.Errorf("proc stat: pid %q: %w", b[:open], ErrMalformed)
	}
	s.PID = pid
	s.Comm = string(b[open+1 : closing])
	rest := bytes.Fields(b[closing+1:])
	// rest[0] is field 3 (state); field n is rest[n-3].
	const flagsField, startField = 9, 22
	if len(rest) < startField-2 {
		return s, fmt.Errorf("proc stat: %d fields after comm, want at least %d: %w", len(rest), startField-2, ErrMalformed)
	}
	if len(rest[0]) != 1 {
		return s, fmt.Errorf("proc stat: state %q: %w", rest[0], ErrMalformed)
	}
	s.State = rest[0][0]
	if s.Flags, err = strconv.ParseUint(string(rest[flagsField-3]), 10, 64); err != nil {
		return s, fmt.Errorf("proc stat: flags (field 9) %q: %w", rest[flagsField-3], ErrMalformed)
	}
	if s.StartTime, err = strconv.ParseUint(string(rest[startField-3]), 10, 64); err != nil {
		return s, fmt.Errorf("proc stat: start time (field 22) %q: %w", rest[startField-3], ErrMalformed)
	}
	const codeField, stackField = 26, 28
	if len(rest) > stackField-3 {
		if s.StartCode, err = strconv.ParseUint(string(rest[codeField-3]), 10, 64); err != nil {
			return s, fmt.Errorf("proc stat: start code (field 26) %q: %w", rest[codeField-3], ErrMalformed)
		}
		if s.StartStack, err = strconv.ParseUint(string(rest[stackField-3]), 10, 64); err != nil {
			return s, fmt.Errorf("proc stat: start stack (field 28) %q: %w", rest[stackField-3], ErrMalformed)
		}
	}
	return s, nil
}

// Status holds the credentials from /proc/<pid>/status: real, effective,
// saved and filesystem IDs, in that order, as the kernel prints them.
type Status struct {
	UID [4]uint32
	GID [4]uint32
	// Groups are the supplementary group IDs.
	Groups []uint32
}

// EffectiveUID is the ID the kernel checks permissions with, the one SPIRE's
// unix attestor reports too.
func (s Status) EffectiveUID() uint32 { return s.UID[1] }

// EffectiveGID is the effective group ID.
func (s Status) EffectiveGID() uint32 { return s.GID[1] }

// maxGroups is NGROUPS_MAX.
const maxGroups = 65536

// ParseStatus parses the Uid, Gid and Groups lines of /proc/<pid>/status.
// Both Uid and Gid must be present exactly once.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	if len(b) > MaxStatusSize {
		return s, fmt.Errorf("proc status: %d bytes, more than %d: %w", len(b), MaxStatusSize, ErrMalformed)
	}
	var seenUID, seenGID, seenGroups bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var err error
		switch string(key) {
		case "Uid":
			if seenUID {
				return s, fmt.Errorf("proc status: Uid twice: %w", ErrMalformed)
			}
			seenUID = true
			err = parseIDs("Uid", val, &s.UID)
		case "Gid":
			if seenGID {
				return s, fmt.Errorf("proc status: Gid twice: %w", ErrMalformed)
			}
			seenGID = true
			err = parseIDs("Gid", val, &s.GID)
		case "Groups":
			if seenGroups {
				return s, fmt.Errorf("proc status: Groups twice: %w", ErrMalformed)
			}
			seenGroups = true
			s.Groups, err = parseGroups(val)
		}
		if err != nil {
			return s, err
		}
	}
	if !seenUID || !seenGID {
		return s, fmt.Errorf("proc status: no Uid or Gid line: %w", ErrMalformed)
	}
	return s, nil
}

func parseIDs(name string, val []byte, dst *[4]uint32) error {
	f := bytes.Fields(val)
	if len(f) != len(dst) {
		return fmt.Errorf("proc status: %s has %d fields, want %d: %w", name, len(f), len(dst), ErrMalformed)
	}
	for i, v := range f {
		n, err := strconv.ParseUint(string(v), 10, 32)
		if err != nil {
			return fmt.Errorf("proc status: %s field %d %q: %w", name, i, v, ErrMalformed)
		}
		dst[i] = uint32(n)
	}
	return nil
}

func parseGroups(val []byte) ([]uint32, error) {
	f := bytes.Fields(val)
	if len(f) > maxGroups {
		return nil, fmt.Errorf("proc status: %d groups, more than %d: %w", len(f), maxGroups, ErrMalformed)
	}
	out := make([]uint32, 0, len(f))
	for i, v := range f {
		n, err := strconv.ParseUint(string(v), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("proc status: group %d %q: %w", i, v, ErrMalformed)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}
