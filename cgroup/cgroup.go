// Package cgroup parses /proc/<pid>/cgroup and derives the container
// identity (container ID, Kubernetes pod UID, runtime) or the systemd unit
// from the cgroup path that the container runtime or systemd gave the
// process. The workload never chooses these names: a runtime or systemd,
// running as root, creates the cgroup and moves the process into it.
//
// Two kinds of cgroup name are not trusted, because someone other than root
// chooses them:
//
//   - everything below a delegated systemd user manager (user@<uid>.service),
//     where the user may create cgroups of any name: no container identity is
//     derived there (rootless podman and docker included), only the unit;
//   - everything below the first container cgroup, which a container with a
//     writable cgroupfs may fill with names mimicking another container's:
//     the outermost container is the one reported.
//
// Recognised layouts, cgroup v1 and v2 (see the tests for real examples):
//
//	docker         /docker/<id>, .../docker-<id>.scope
//	containerd     .../cri-containerd-<id>.scope, <slice>:cri-containerd:<id>, nerdctl-<id>.scope,
//	               /kubepods/<qos>/pod<uid>/<id> (cgroupfs driver: runtime unknown)
//	cri-o          .../crio-<id>.scope, /kubepods/<qos>/pod<uid>/crio-<id>
//	podman         .../libpod-<id>.scope, /libpod_parent/libpod-<id>
//	pod UID        pod<uid> (cgroupfs) or kubepods[-<qos>]-pod<uid>.slice (systemd),
//	               only below a kubepods cgroup
//	systemd unit   the deepest *.service or *.scope outside any container
//
// A container ID is 64 lower-case hex digits. The monitors that runtimes put
// next to containers (crio-conmon-<id>.scope, libpod-conmon-<id>.scope) are
// not the container and yield no container identity.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxSize bounds the cgroup file; MaxLines the number of hierarchies.
const (
	MaxSize  = 64 << 10
	MaxLines = 256
)

// Runtime names as reported in Identity.Runtime.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed cgroup file")

// Line is one hierarchy of /proc/<pid>/cgroup: "id:controllers:path".
type Line struct {
	// ID is the hierarchy ID; 0 with no controllers is the cgroup v2 tree.
	ID int
	// Controllers are the v1 controllers bound to the hierarchy, e.g.
	// "cpu,cpuacct" or "name=systemd"; empty for v2.
	Controllers string
	Path        string
}

// Unified reports whether the line is the cgroup v2 hierarchy.
func (l Line) Unified() bool { return l.ID == 0 && l.Controllers == "" }

// Parse parses a cgroup file. Each hierarchy appears once, paths are
// absolute. Since Linux 5.x mkdir refuses cgroup names with a newline, but a
// duplicated hierarchy (what a forged line would look like) is refused too.
func Parse(b []byte) ([]Line, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("cgroup: %d bytes, more than %d: %w", len(b), MaxSize, ErrMalformed)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("cgroup: empty: %w", ErrMalformed)
	}
	if b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("cgroup: no final newline (truncated?): %w", ErrMalformed)
	}
	var out []Line
	seen := make(map[int]bool)
	n := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b[:i]
		b = b[i+1:]
		n++
		if n > MaxLines {
			return nil, fmt.Errorf("cgroup: more than %d lines: %w", MaxLines, ErrMalformed)
		}
		id, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return nil, fmt.Errorf("cgroup: line %d: no ':': %w", n, ErrMalformed)
		}
		ctrl, path, ok := bytes.Cut(rest, []byte(":"))
		if !ok {
			return nil, fmt.Errorf("cgroup: line %d: one ':', want two: %w", n, ErrMalformed)
		}
		h, err := strconv.Atoi(string(id))
		if err != nil || h < 0 || len(id) > 10 {
			return nil, fmt.Errorf("cgroup: line %d: hierarchy ID %q: %w", n, id, ErrMalformed)
		}
		if seen[h] {
			return nil, fmt.Errorf("cgroup: line %d: hierarchy %d listed twice: %w", n, h, ErrMalformed)
		}
		seen[h] = true
		if len(path) == 0 || path[0] != '/' {
			return nil, fmt.Errorf("cgroup: line %d: path %q is not absolute: %w", n, path, ErrMalformed)
		}
		if bytes.IndexByte(path, 0) >= 0 {
			return nil, fmt.Errorf("cgroup: line %d: NUL in path: %w", n, ErrMalformed)
		}
		out = append(out, Line{ID: h, Controllers: string(ctrl), Path: string(path)})
	}
	return out, nil
}

// Identity is what the cgroup file says about a process.
type Identity struct {
	// Path is the cgroup path the identity was derived from: the first of
	// the v2 hierarchy, the name=systemd hierarchy and the other v1
	// hierarchies (in file order) that names a container, else the first of
	// them that is not the root.
	Path        string
	ContainerID string
	PodUID      string
	// Runtime is one of the Runtime constants, or empty when the layout does
	// not say (the kubelet's cgroupfs driver under any CRI runtime).
	Runtime string
	// Unit is the systemd unit the process runs in, when it is in no
	// container.
	Unit string
}

// Identify derives the identity from parsed lines. Hierarchies that name
// different containers are an error: a process is in one container.
func Identify(lines []Line) (Identity, error) {
	order := preference(lines)
	var found Identity
	for _, l := range order {
		id, _ := identifyPath(l.Path)
		if id.ContainerID == "" {
			continue
		}
		if found.ContainerID == "" {
			found = id
			continue
		}
		if found.ContainerID != id.ContainerID || found.PodUID != id.PodUID {
			return Identity{}, fmt.Errorf("cgroup: hierarchies disagree: %q names container %s (pod %q), %q names %s (pod %q)",
				found.Path, found.ContainerID, found.PodUID, l.Path, id.ContainerID, id.PodUID)
		}
	}
	if found.ContainerID != "" {
		return found, nil
	}
	for _, l := range order {
		if l.Path != "/" {
			return IdentifyPath(l.Path), nil
		}
	}
	if len(order) > 0 {
		return Identity{Path: order[0].Path}, nil
	}
	return Identity{}, nil
}

// preference orders the lines: v2 first, then name=systemd, then the rest.
func preference(lines []Line) []Line {
	out := make([]Line, 0, len(lines))
	for _, l := range lines {
		if l.Unified() {
			out = append(out, l)
		}
	}
	for _, l := range lines {
		if l.Controllers == "name=systemd" {
			out = append(out, l)
		}
	}
	for _, l := range lines {
		if !l.Unified() && l.Controllers != "name=systemd" {
			out = append(out, l)
		}
	}
	return out
}

// IdentifyPath derives the identity from one cgroup path (for example the
// cg-path field of an ima-cgpath IMA entry).
func IdentifyPath(p string) Identity {
	id, _ := identifyPath(p)
	return id
}

// identifyPath reads one cgroup path from the root down. match is the index,
// among the path's components without leading "..", of the component the
// container (else the pod) identity comes from; -1 when there is none.
//
// Each runtime's name is recognised only where that runtime puts it, so a
// name copied into some other place of the tree (by whoever may create
// cgroups there) means nothing:
//
//   - a Kubernetes pod cgroup sits directly in the kubepods cgroup or in its
//     burstable/besteffort child, which is /kubepods (cgroupfs driver) or a
//     chain of systemd slices from the root ending in kubepods.slice (or
//     <prefix>-kubepods.slice, as kind's kubelet-kubepods.slice);
//   - containers of a pod (any CRI runtime) are direct children of the pod;
//   - docker's and nerdctl's scopes are direct children of /system.slice,
//     docker's cgroupfs containers of /docker, podman's scopes of a slice
//     chain starting at /machine.slice, its cgroupfs ones of /libpod_parent.
//
// Paths seen from another cgroup namespace start with "..": the rest is
// read as if it started at the root, and Tree.Verify, which finds where it
// really is, reads it again from there.
func identifyPath(p string) (Identity, int) {
	id := Identity{Path: p}
	var comps []string
	relative := false
	for _, c := range strings.Split(p, "/") {
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			if len(comps) > 0 {
				return id, -1 // the kernel never writes this
			}
			relative = true
			continue
		}
		comps = append(comps, c)
	}
	chain := true // comps[:i] are a systemd slice chain from the root
	pod := -1     // index of the pod cgroup
	for i, c := range comps {
		if isUserManager(c) {
			// Delegated to the user: below here names are the user's choice.
			if id.Unit == "" {
				id.Unit = c
			}
			return id, -1
		}
		if i == pod+1 && pod >= 0 {
			if cid, rt, ok := podContainer(c); ok {
				id.ContainerID, id.Runtime, id.Unit = cid, rt, ""
				return id, i
			}
		}
		if cid, rt, podUID, ok := topContainer(comps[:i], c, chain); ok {
			id.ContainerID, id.Runtime, id.Unit = cid, rt, ""
			if podUID != "" {
				id.PodUID = podUID
			}
			return id, i
		}
		if pod < 0 {
			if uid, ok := podCgroup(comps[:i], c, chain, relative); ok {
				id.PodUID, pod = uid, i
			}
		}
		if chain && id.Unit == "" && (strings.HasSuffix(c, ".service") || strings.HasSuffix(c, ".scope")) {
			// systemd puts units only in slices: a unit below another unit
			// was named by whoever the outer one delegated to.
			id.Unit = c
		}
		chain = chain && isSlice(comps[:i], c, relative)
	}
	if pod >= 0 {
		return id, pod
	}
	return id, -1
}

// isSlice reports whether c continues the slice chain above it: systemd
// names a slice after its whole path (a-b.slice lives in a.slice), so the
// name alone says where the slice must be. A relative path's first slice
// may be anywhere.
func isSlice(above []string, c string, relative bool) bool {
	base, ok := strings.CutSuffix(c, ".slice")
	if !ok || base == "" {
		return false
	}
	if len(above) == 0 {
		return relative || !strings.Contains(base, "-")
	}
	return strings.HasPrefix(base, strings.TrimSuffix(above[len(above)-1], ".slice")+"-")
}

// kubepodsBase reports whether a slice base (name without ".slice") or a
// cgroupfs name is the kubelet's pods cgroup or one of its QoS children.
func kubepodsBase(base string) bool {
	for _, q := range []string{"", "-burstable", "-besteffort"} {
		k, ok := strings.CutSuffix(base, q)
		if ok && (k == "kubepods" || strings.HasSuffix(k, "-kubepods")) {
			return true
		}
	}
	return false
}

// podCgroup recognises a pod cgroup where the kubelet creates it.
func podCgroup(above []string, c string, chain, relative bool) (string, bool) {
	if len(above) == 0 {
		return "", false
	}
	parent := above[len(above)-1]
	if chain && isSlice(above, c, relative) {
		pbase := strings.TrimSuffix(parent, ".slice")
		rest, ok := strings.CutPrefix(strings.TrimSuffix(c, ".slice"), pbase+"-pod")
		if !ok || !kubepodsBase(pbase) {
			return "", false
		}
		return validUID(strings.ReplaceAll(rest, "_", "-"))
	}
	cgroupfs := len(above) == 1 && above[0] == "kubepods" ||
		len(above) == 2 && above[0] == "kubepods" && (above[1] == "burstable" || above[1] == "besteffort")
	if !cgroupfs {
		return "", false
	}
	if s, ok := strings.CutPrefix(c, "pod"); ok {
		return validUID(s)
	}
	return "", false
}

// podContainer recognises a container cgroup directly in a pod cgroup: a
// CRI runtime's scope (systemd driver) or a bare ID (cgroupfs driver; CRI-O
// prefixes it).
func podContainer(c string) (id, runtime string, ok bool) {
	if scope, found := strings.CutSuffix(c, ".scope"); found {
		for _, p := range []struct{ prefix, runtime string }{
			{"cri-containerd-", RuntimeContainerd},
			{"crio-", RuntimeCRIO},
			{"docker-", RuntimeDocker},
		} {
			if rest, found := strings.CutPrefix(scope, p.prefix); found && isID(rest) {
				return rest, p.runtime, true
			}
		}
		return "", "", false
	}
	switch {
	case isID(c):
		return c, "", true
	case strings.HasPrefix(c, "crio-") && isID(c[len("crio-"):]):
		return c[len("crio-"):], RuntimeCRIO, true
	}
	return "", "", false
}

// topContainer recognises the containers that live outside Kubernetes
// pods, each at the one place its runtime creates it, and containerd's
// cgroup v1 "slice:prefix:id" form (runc's cgroupsPath left unconverted by
// the systemd driver), which sits at the root of a v1 hierarchy.
func topContainer(above []string, c string, chain bool) (id, runtime, podUID string, ok bool) {
	parent := ""
	if len(above) == 1 {
		parent = above[0]
	}
	if scope, found := strings.CutSuffix(c, ".scope"); found {
		for _, p := range []struct{ prefix, runtime, parent string }{
			{"docker-", RuntimeDocker, "system.slice"},
			{"nerdctl-", RuntimeContainerd, "system.slice"},
			{"libpod-", RuntimePodman, "machine.slice"},
		} {
			rest, found := strings.CutPrefix(scope, p.prefix)
			if !found || !isID(rest) {
				continue
			}
			if parent == p.parent || p.runtime == RuntimePodman && chain && len(above) > 0 && above[0] == p.parent {
				return rest, p.runtime, "", true
			}
		}
		return "", "", "", false
	}
	if parts := strings.Split(c, ":"); len(parts) == 3 && len(above) == 0 && isID(parts[2]) {
		base, ok := strings.CutSuffix(parts[0], ".slice")
		i := strings.LastIndex(base, "-pod")
		if !ok || i < 0 || !kubepodsBase(base[:i]) {
			return "", "", "", false
		}
		uid, ok := validUID(strings.ReplaceAll(base[i+len("-pod"):], "_", "-"))
		if !ok {
			return "", "", "", false
		}
		switch parts[1] {
		case "cri-containerd":
			return parts[2], RuntimeContainerd, uid, true
		case "crio":
			return parts[2], RuntimeCRIO, uid, true
		case "docker":
			return parts[2], RuntimeDocker, uid, true
		}
		return "", "", "", false
	}
	switch {
	case parent == "docker" && isID(c):
		return c, RuntimeDocker, "", true
	case parent == "libpod_parent" && strings.HasPrefix(c, "libpod-") && isID(c[len("libpod-"):]):
		return c[len("libpod-"):], RuntimePodman, "", true
	}
	return "", "", "", false
}

func isUserManager(c string) bool {
	rest, ok := strings.CutPrefix(c, "user@")
	if !ok {
		return false
	}
	num, ok := strings.CutSuffix(rest, ".service")
	return ok && isDigits(num)
}

// validUID accepts a UUID (36 characters) or the 32 hex digits of a static
// pod's config hash, in lower case.
func validUID(s string) (string, bool) {
	switch len(s) {
	case 32:
		return s, isHex(s)
	case 36:
		for i := range len(s) {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return "", false
				}
			} else if !isHexByte(s[i]) {
				return "", false
			}
		}
		return s, true
	}
	return "", false
}

func isID(s string) bool { return len(s) == 64 && isHex(s) }

func isHex(s string) bool {
	for i := range len(s) {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isHexByte(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
