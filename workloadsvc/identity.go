package workloadsvc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/cgroup"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/proc"
)

// Caller is the container a request comes from, derived from the PID the
// kernel reported for the connection, never from the request.
type Caller struct {
	PID int
	// Key is what CCNP keyed containers by: the pod UID on Kubernetes,
	// else the container ID. Requests must name it (or nothing).
	Key string
	// Identity is what the cgroup file said.
	Identity cgroup.Identity
	// Host is set for a process in no container, which only the opt-in
	// node view (Options.NodeView) answers; Key is then "uid:<uid>", the
	// key the connection limits count such processes by.
	Host bool
}

// key is the container key of an identity, "" when it names no container.
func key(id cgroup.Identity) string {
	if id.PodUID != "" {
		return id.PodUID
	}
	return id.ContainerID
}

// checkProcRoot refuses a procfs of another PID namespace than the
// server's: SO_PEERCRED reports PIDs in the server's namespace, which name
// other processes (or none) there.
func checkProcRoot(procRoot string) error {
	if err := proc.CheckSelf(procRoot); err != nil {
		return fmt.Errorf("workloadsvc: --host-root: %w", err)
	}
	return nil
}

// identify maps the peer's PID to its container through procRoot/<pid>,
// read through one directory handle with the start time checked before and
// after, and the peer's pidfd checked last: if the process that connected
// still exists, the PID was not reused and everything read describes it.
// The container or pod the cgroup path names is then checked against the
// cgroup filesystem (cgroup.Tree.Verify): a name that someone other than
// root could have chosen identifies no one.
func identify(procRoot string, cgroups cgroup.Tree, p *Peer, nodeView bool) (*Caller, error) {
	if p.PID <= 0 {
		// A peer in another PID namespace than ours is reported as 0.
		return nil, status.Errorf(codes.PermissionDenied, "caller has no PID in this server's PID namespace (SO_PEERCRED pid %d): run the server with the host's PID namespace", p.PID)
	}
	if p.startErr != nil {
		return nil, procStatus(p.PID, "reading at connection time", p.startErr)
	}
	h, err := proc.Open(procRoot, p.PID)
	if err != nil {
		return nil, procStatus(p.PID, "opening", err)
	}
	defer h.Close()
	first, err := h.Stat()
	if err != nil {
		return nil, procStatus(p.PID, "reading stat of", err)
	}
	if first.StartTime != p.startTime {
		return nil, status.Errorf(codes.PermissionDenied, "caller pid %d is not the process that connected (start time %d, at connection %d)", p.PID, first.StartTime, p.startTime)
	}
	if first.Zombie() {
		return nil, status.Errorf(codes.PermissionDenied, "caller pid %d has exited", p.PID)
	}
	raw, err := h.Cgroup()
	if err != nil {
		return nil, procStatus(p.PID, "reading the cgroups of", err)
	}
	lines, err := cgroup.Parse(raw)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "caller pid %d: %v", p.PID, err)
	}
	id, err := cgroup.Identify(lines)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "caller pid %d: %v", p.PID, err)
	}
	if err := cgroups.Verify(p.PID, lines, id); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "caller pid %d: its cgroup %q names a container or pod, but %v", p.PID, id.Path, err)
	}
	second, err := h.Stat()
	if err != nil || second.StartTime != first.StartTime || second.Zombie() || !p.alive() {
		return nil, status.Errorf(codes.PermissionDenied, "caller pid %d exited or was replaced while it was identified", p.PID)
	}
	k := key(id)
	if k == "" {
		if nodeView {
			return &Caller{PID: p.PID, Key: hostKey(p.UID), Identity: id, Host: true}, nil
		}
		// CCNP's container-isolated mode answered only containers; a host
		// process gets the node's view only where the operator asked.
		return nil, status.Errorf(codes.PermissionDenied, "caller pid %d is in no container (cgroup %q): this service answers containers only (ccnp serve --node-view gives host processes the node's registers and event log)", p.PID, id.Path)
	}
	return &Caller{PID: p.PID, Key: k, Identity: id}, nil
}

// checkContainerID compares the container_id of a request with the
// caller's key. Empty means the caller's own. Pod UIDs compare with
// underscores as dashes: CCNP took them from systemd slice names, where
// the kubelet writes them with underscores.
func (c *Caller) checkContainerID(requested string) error {
	if requested == "" {
		return nil
	}
	if c.Host {
		return status.Errorf(codes.PermissionDenied, "container_id %q: pid %d is in no container (cgroup %q) and gets the node view, which names no container; send an empty container_id",
			truncate(requested, 128), c.PID, c.Identity.Path)
	}
	norm := requested
	if c.Identity.PodUID != "" {
		norm = strings.ReplaceAll(requested, "_", "-")
	}
	if norm != c.Key {
		return status.Errorf(codes.PermissionDenied, "container_id %q is not the caller's: pid %d runs in %s (from its cgroup %q)",
			truncate(requested, 128), c.PID, c.describe(), c.Identity.Path)
	}
	return nil
}

// hostKey is the limits' key of a process in no container.
func hostKey(uid uint32) string { return "uid:" + strconv.FormatUint(uint64(uid), 10) }

func (c *Caller) describe() string {
	if c.Identity.PodUID != "" {
		return "pod " + c.Identity.PodUID
	}
	return "container " + c.Identity.ContainerID
}

func procStatus(pid int, what string, err error) error {
	switch {
	case proc.IsGone(err):
		return status.Errorf(codes.PermissionDenied, "caller pid %d has exited (%s its /proc entry: %v)", pid, what, err)
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return status.Errorf(codes.Internal, "%s /proc/%d: %v (the server needs CAP_SYS_PTRACE or the caller's user)", what, pid, err)
	}
	return status.Errorf(codes.Internal, "%s /proc/%d: %v", what, pid, err)
}

// truncate keeps error messages bounded when a request carries a huge field.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
