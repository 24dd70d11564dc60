package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// maxProcsSize bounds a cgroup.procs file read (about 140,000 PIDs).
const maxProcsSize = 1 << 20

// ErrUntrusted is wrapped by Verify's refusals (as opposed to failures to
// read the tree).
var ErrUntrusted = errors.New("container identity not trusted")

// Tree is a mounted cgroup filesystem seen as the host sees it: cgroup v2
// at Root (or Root/unified on a hybrid system), each v1 hierarchy at
// Root/<controllers> (Root/<name> for name=<name>). Usually
// <host_root>/sys/fs/cgroup.
type Tree struct {
	Root string
}

// Verify checks the container or pod identity that Identify derived from
// lines, for the process pid, against the cgroup filesystem:
//
//  1. the directory the identity came from is found (from the root for
//     paths seen from another cgroup namespace: as written, or where systemd
//     puts the slice the path starts with) and its cgroup.procs lists pid,
//     so it is the process's own cgroup and not a namesake;
//  2. read from the root, the path names the same container and pod
//     (runtimes' names anchored where runtimes put them);
//  3. every directory above the container's (or pod's) cgroup, from the
//     root down, is owned by root and writable by no one else. Whoever owns
//     a directory there (a systemd Delegate=yes service with User=, any
//     chowned subtree) can create cgroups of any name below it and move
//     their own processes into them.
//
// An identity that names neither container nor pod needs no check (nil).
func (t Tree) Verify(pid int, lines []Line, id Identity) error {
	if id.ContainerID == "" && id.PodUID == "" {
		return nil
	}
	var line *Line
	for _, l := range preference(lines) {
		if l.Path == id.Path {
			line = &l
			break
		}
	}
	if line == nil {
		return fmt.Errorf("cgroup: %q is in none of the process's hierarchies", id.Path)
	}
	mount, err := t.mount(*line)
	if err != nil {
		return err
	}
	comps, err := locate(mount, line.Path, pid)
	if err != nil {
		return err
	}
	abs := "/" + strings.Join(comps, "/")
	got, match := identifyPath(abs)
	if match < 0 || got.ContainerID != id.ContainerID || got.PodUID != id.PodUID {
		return fmt.Errorf("cgroup: %s is not where the runtime puts that container or pod (read from the root it names container %q, pod %q): %w",
			abs, got.ContainerID, got.PodUID, ErrUntrusted)
	}
	dir := mount
	for k := 0; k <= match; k++ {
		if err := rootOwned(dir); err != nil {
			return fmt.Errorf("cgroup: %w; whoever owns or may write it can create cgroups of any name below it, so %s does not prove container %q, pod %q: %w",
				err, abs, id.ContainerID, id.PodUID, ErrUntrusted)
		}
		dir = filepath.Join(dir, comps[k])
	}
	return nil
}

// mount is the directory of the hierarchy l belongs to.
func (t Tree) mount(l Line) (string, error) {
	if l.Unified() {
		for _, d := range []string{t.Root, filepath.Join(t.Root, "unified")} {
			if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err == nil {
				return d, nil
			}
		}
		return "", fmt.Errorf("cgroup: no cgroup v2 filesystem at %s or %s/unified (with host_root, mount the host's /sys/fs/cgroup under it)", t.Root, t.Root)
	}
	name := l.Controllers
	if n, ok := strings.CutPrefix(name, "name="); ok {
		name = n
	}
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("cgroup: hierarchy %d has controllers %q: no directory for it", l.ID, l.Controllers)
	}
	d := filepath.Join(t.Root, name)
	if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
		return "", fmt.Errorf("cgroup: hierarchy %d (%s) is not mounted at %s: %w", l.ID, l.Controllers, d, err)
	}
	return d, nil
}

// locate finds the directory of path (as /proc/<pid>/cgroup wrote it) under
// mount and returns its components from the root. A path seen from another
// cgroup namespace ("/../../x") is tried as written from the root, and with
// a leading slice put where systemd puts it (a-b-c.slice in a.slice/a-b.slice).
func locate(mount, path string, pid int) ([]string, error) {
	var comps []string
	up := 0
	for _, c := range strings.Split(path, "/") {
		switch {
		case c == "" || c == ".":
		case c == "..":
			if len(comps) > 0 {
				return nil, fmt.Errorf("cgroup: %q: \"..\" inside the path", path)
			}
			up++
		default:
			comps = append(comps, c)
		}
	}
	cands := [][]string{comps}
	if up > 0 && len(comps) > 0 {
		if base, ok := strings.CutSuffix(comps[0], ".slice"); ok && strings.Contains(base, "-") {
			parts := strings.Split(base, "-")
			var chain []string
			for i := 1; i < len(parts); i++ {
				chain = append(chain, strings.Join(parts[:i], "-")+".slice")
			}
			cands = append(cands, append(chain, comps...))
		}
	}
	var errs []string
	for _, c := range cands {
		dir := filepath.Join(append([]string{mount}, c...)...)
		ok, err := listsPID(filepath.Join(dir, "cgroup.procs"), pid)
		if ok {
			return c, nil
		}
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			errs = append(errs, fmt.Sprintf("%s/cgroup.procs does not list pid %d", dir, pid))
		}
	}
	return nil, fmt.Errorf("cgroup: cannot find the cgroup %q of pid %d under %s (%s); with host_root, mount the host's /sys/fs/cgroup under it", path, pid, mount, strings.Join(errs, "; "))
}

func listsPID(file string, pid int) (bool, error) {
	b, err := smallfile.Read(file, maxProcsSize)
	if err != nil {
		return false, err
	}
	want := []byte(strconv.Itoa(pid))
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Equal(l, want) {
			return true, nil
		}
	}
	return false, nil
}

// rootOwned checks that dir is a real directory owned by root that only
// root may write to (create cgroups in).
func rootOwned(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory (%v)", dir, fi.Mode().Type())
	case !ok:
		return fmt.Errorf("%s: no owner", dir)
	case st.Uid != 0:
		return fmt.Errorf("cgroup directory %s is owned by uid %d, not root", dir, st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("cgroup directory %s has mode %v: group or others may create cgroups in it", dir, fi.Mode().Perm())
	}
	return nil
}
