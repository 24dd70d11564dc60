package workloadsvc

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// DefaultSocket is where CCNP's clients look for the service.
const DefaultSocket = "/run/ccnp/uds/ccnp-server.sock"

// DefaultSocketMode lets any local user connect, as CCNP's server did: a
// container's processes rarely share the server's user or group, and a
// client that cannot connect waits out its timeout (60 s in CCNP's Python
// SDK) before failing. Who a caller is comes from the kernel (SO_PEERCRED)
// for every request, so the mode grants nothing beyond the caller's own
// view.
const DefaultSocketMode fs.FileMode = 0o666

// Listen creates the service's Unix socket at path with the given mode and,
// when gid >= 0, group. A stale socket left by a previous server is replaced;
// any other file at path is an error rather than something to delete.
//
// The socket's mode decides who may connect at all; what each caller gets
// is decided per request from its peer credentials (DefaultSocketMode lets
// everyone connect; 0660 with a group narrows it).
func Listen(path string, mode fs.FileMode, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("workloadsvc: socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("workloadsvc: %s exists and is not a socket (%v): not replacing it", path, fi.Mode().Type())
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("workloadsvc: %s: another server is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("workloadsvc: removing the stale socket: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("workloadsvc: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("workloadsvc: %w", err)
	}
	// Until the chmod below the socket has the umask's mode; connecting
	// needs write permission, which a 022 umask gives no one but the owner.
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("workloadsvc: socket group %d: %w", gid, err)
		}
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		l.Close()
		return nil, fmt.Errorf("workloadsvc: socket mode %v: %w", mode.Perm(), err)
	}
	return l, nil
}
