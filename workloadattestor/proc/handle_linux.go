//go:build linux

package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deletedSuffix is what the kernel appends to the exe link of a file that
// was unlinked after the process mapped it (fs/d_path.c).
const deletedSuffix = " (deleted)"

// maxLink bounds the exe link target (PATH_MAX plus the deleted suffix).
const maxLink = 4096 + len(deletedSuffix)

// Handle is an open /proc/<pid> directory. Files are opened relative to it,
// so once the process is gone every read fails rather than reaching a new
// process that was given the same PID.
type Handle struct {
	fd  int
	pid int
	dir string
}

// Open opens procRoot/<pid> (procRoot is usually "/proc", or the host's
// /proc mounted elsewhere).
func Open(procRoot string, pid int) (*Handle, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("proc: pid %d: not a process ID", pid)
	}
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("proc: opening %s: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	return &Handle{fd: fd, pid: pid, dir: dir}, nil
}

// PID is the process ID the handle was opened for.
func (h *Handle) PID() int { return h.pid }

// Close releases the directory handle.
func (h *Handle) Close() error {
	if h.fd < 0 {
		return nil
	}
	err := syscall.Close(h.fd)
	h.fd = -1
	return err
}

func (h *Handle) pathErr(op, name string, err error) error {
	return &os.PathError{Op: op, Path: filepath.Join(h.dir, name), Err: err}
}

// ReadFile reads name in the process directory, failing if it holds more than
// limit bytes. procfs reports no sizes, so the file is read until EOF.
func (h *Handle) ReadFile(name string, limit int) ([]byte, error) {
	fd, err := openat(h.fd, name, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW)
	if err != nil {
		return nil, h.pathErr("open", name, err)
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, min(limit+1, 4096))
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return nil, fmt.Errorf("proc: %s: more than %d bytes", filepath.Join(h.dir, name), limit)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, h.pathErr("read", name, err)
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	if len(buf) > limit {
		return nil, fmt.Errorf("proc: %s: more than %d bytes", filepath.Join(h.dir, name), limit)
	}
	return buf, nil
}

// Stat reads and parses stat.
func (h *Handle) Stat() (Stat, error) {
	b, err := h.ReadFile("stat", MaxStatSize)
	if err != nil {
		return Stat{}, err
	}
	s, err := ParseStat(b)
	if err != nil {
		return s, fmt.Errorf("%s/stat: %w", h.dir, err)
	}
	if s.PID != h.pid {
		return s, fmt.Errorf("%s/stat: names pid %d: %w", h.dir, s.PID, ErrMalformed)
	}
	return s, nil
}

// Status reads and parses status.
func (h *Handle) Status() (Status, error) {
	b, err := h.ReadFile("status", MaxStatusSize)
	if err != nil {
		return Status{}, err
	}
	s, err := ParseStatus(b)
	if err != nil {
		return s, fmt.Errorf("%s/status: %w", h.dir, err)
	}
	return s, nil
}

// Cgroup reads the raw cgroup file (parse it with package cgroup).
func (h *Handle) Cgroup() ([]byte, error) {
	return h.ReadFile("cgroup", MaxCgroupSize)
}

// Exe is the executable a process runs, as its exe link shows it.
type Exe struct {
	// Path is the link target without the " (deleted)" suffix.
	Path string
	// Deleted is set when the file was unlinked (or replaced by a rename)
	// after the process started: Path then no longer names this file.
	Deleted bool
}

// ExeLink reads the exe link. Kernel threads have none (ENOENT), neither do
// zombies.
func (h *Handle) ExeLink() (Exe, error) {
	buf := make([]byte, maxLink+1)
	n, err := readlinkat(h.fd, "exe", buf)
	if err != nil {
		return Exe{}, h.pathErr("readlink", "exe", err)
	}
	if n > maxLink {
		return Exe{}, fmt.Errorf("proc: %s/exe: link longer than %d bytes", h.dir, maxLink)
	}
	p := string(buf[:n])
	e := Exe{Path: p}
	if s, ok := strings.CutSuffix(p, deletedSuffix); ok {
		e.Path, e.Deleted = s, true
	}
	return e, nil
}

// OpenExe opens the executable through the exe link: the kernel resolves it
// to the very file the process runs, even if it was deleted or its path now
// names another file.
func (h *Handle) OpenExe() (*os.File, error) {
	fd, err := openat(h.fd, "exe", syscall.O_RDONLY|syscall.O_CLOEXEC)
	if err != nil {
		return nil, h.pathErr("open", "exe", err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(h.dir, "exe")), nil
}

// FileID names one file on the machine: its device and inode. Two exec'd
// images with the same FileID ran the same file.
type FileID struct {
	Dev, Ino uint64
}

// String is "dev:ino" in hex, for error messages.
func (id FileID) String() string { return fmt.Sprintf("%x:%d", id.Dev, id.Ino) }

// ExeID stats the file the exe link resolves to, which the kernel keeps
// pointing at the mapped executable of the process's current image.
func (h *Handle) ExeID() (FileID, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(h.fd, "exe", &st, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return FileID{}, h.pathErr("stat", "exe", err)
		}
		return FileID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
	}
}

// FileIDOf returns the FileID of an open file (the one OpenExe returned).
func FileIDOf(f *os.File) (FileID, error) {
	fi, err := f.Stat()
	if err != nil {
		return FileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileID{}, fmt.Errorf("proc: stat %s: no device and inode", f.Name())
	}
	return FileID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// CheckSelf checks that procRoot is a procfs of this process's own PID
// namespace: its "self" link must name os.Getpid(). A PID that the caller
// (SPIRE, or a socket's SO_PEERCRED) got in this namespace names another
// process, or none, in any other namespace's procfs.
func CheckSelf(procRoot string) error {
	self := filepath.Join(procRoot, "self")
	buf := make([]byte, 64)
	n, err := unix.Readlink(self, buf)
	if err != nil {
		return fmt.Errorf("reading %s: %w (is a procfs mounted there?)", self, &os.PathError{Op: "readlink", Path: self, Err: err})
	}
	got := string(buf[:n])
	if want := strconv.Itoa(os.Getpid()); got != want {
		return fmt.Errorf("%s names pid %q, but this process is pid %s: that procfs belongs to another PID namespace, where the PIDs handed to this process name other processes (share the host's PID namespace, e.g. hostPID: true, and mount its /proc there)", self, got, want)
	}
	return nil
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := syscall.Openat(dirfd, name, flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

func readlinkat(dirfd int, name string, buf []byte) (int, error) {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	n, _, errno := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// IsGone reports whether err says the process no longer exists: its
// directory vanished (ENOENT) or the handle now refers to a reaped task
// (ESRCH).
func IsGone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH)
}
