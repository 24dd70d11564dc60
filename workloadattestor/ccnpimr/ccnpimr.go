// Package ccnpimr computes the per-container register of CCNP's server
// (cc-api/container-integrity-measurement-agent at 36d01b4,
// service/ccnp-server: measurement.rs, agent.rs, container.rs) from an
// ima-cgpath IMA list:
//
//   - a seed, measured once from the host's processes named by CCNP's policy
//     (measure.system.processes, matched against argv[0]): for each name in
//     policy order, the value is the name, or with withParameter the whole
//     command line (argv joined and ended by NULs, as /proc/<pid>/cmdline
//     reads), and the register is extended SHA-384(imr || SHA-384(value));
//   - then every ima-cgpath entry whose cg-path names the container, in list
//     order: SHA-384(imr || d), d being what IMA extended into its SHA-384
//     bank for the entry (the 48-byte template hash on CCNP's kernels).
//
// The container key is the one the workload attestor and the CCNP service
// derive from a caller's cgroup (cgroup.IdentifyPath): the pod UID on
// Kubernetes, else the container ID. CCNP found it with a regular expression
// anywhere after "kubepods.slice" or "system.slice/docker-"; here a name
// counts only where the runtime creates it, so a cgroup that merely mimics a
// container's name (in a delegated subtree) files nothing under it. For the
// layouts CCNP read (systemd-driver pods, docker scopes) both give the same
// key; other layouts (cgroupfs pods, CRI-O, podman, nerdctl), which CCNP
// ignored, are keyed the same way.
//
// The seed is a claim of whoever measured it, not a value the TEE extended:
// CCNP's was too. What the TEE vouches for is the list, which replays to
// RTMR2 (ima.Log.VerifyRTMR2).
package ccnpimr

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"

	"github.com/ccnp-spire/ccnp-spire/cgroup"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/proc"
)

// Alg is the bank of the container register: CCNP's policy default
// (hashAlgorithm: sha384) and the only one its kernels' lists extend.
const Alg = cctrusted.AlgSHA384

// Template is the IMA template whose entries carry a cgroup path.
const Template = "ima-cgpath"

// Policy is CCNP's measure.system policy: which host processes seed every
// container's register.
type Policy struct {
	// Processes are matched exactly against argv[0], in this order.
	Processes []string
	// WithParameter measures the whole command line, not only argv[0].
	WithParameter bool
}

// DefaultPolicy is the policy CCNP shipped (configs/policy.yaml).
func DefaultPolicy() Policy {
	return Policy{
		Processes:     []string{"/usr/bin/containerd", "/usr/bin/kubelet", "/usr/bin/containerd-shim-runc-v2"},
		WithParameter: true,
	}
}

// HostProcess is one seed measurement.
type HostProcess struct {
	// Name is the policy's process name (argv[0]).
	Name string
	// PID is the process measured.
	PID int
	// Value is what was measured: Name, or the command line.
	Value []byte
	// Digest is SHA-384(Value), the digest extended.
	Digest []byte
}

// maxCmdline bounds a command line read (the kernel's own limit is the
// argument space, which can be far larger; a seed line beyond this is not a
// daemon's).
const maxCmdline = 64 << 10

// MeasureHost measures the policy's processes under procRoot (the host's
// /proc). Only processes in no container and whose real user is root count:
// argv[0] is whatever a process wrote there, and CCNP, which took any process
// of that name, let a container's process stand in for the host's kubelet.
// Where several processes qualify (one containerd shim per pod), the one
// with the highest PID is measured: CCNP kept the last of its /proc listing,
// which lists PIDs in ascending order. A name no process has is left out, as
// in CCNP.
func MeasureHost(ctx context.Context, procRoot string, pol Policy) ([]HostProcess, error) {
	want := make(map[string]bool, len(pol.Processes))
	for _, n := range pol.Processes {
		want[n] = true
	}
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("ccnpimr: host processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("ccnpimr: host processes: reading %s: %w", procRoot, err)
	}
	var pids []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	found := map[string]HostProcess{}
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hp, ok, err := readHostProcess(procRoot, pid, want, pol.WithParameter)
		if err != nil {
			return nil, err
		}
		if ok {
			found[hp.Name] = hp
		}
	}
	// CCNP extended once per listed name, in the policy's order: a name
	// listed twice is measured twice.
	var out []HostProcess
	for _, n := range pol.Processes {
		if hp, ok := found[n]; ok {
			out = append(out, hp)
		}
	}
	return out, nil
}

// readHostProcess reads one process; ok is false for a process that is not
// a candidate (or is gone).
func readHostProcess(procRoot string, pid int, want map[string]bool, withParameter bool) (HostProcess, bool, error) {
	h, err := proc.Open(procRoot, pid)
	if err != nil {
		if proc.IsGone(err) {
			return HostProcess{}, false, nil
		}
		return HostProcess{}, false, fmt.Errorf("ccnpimr: host processes: %w", err)
	}
	defer h.Close()
	cmd, err := h.ReadFile("cmdline", maxCmdline)
	if err != nil {
		// Gone, or a command line too long to be a daemon's.
		return HostProcess{}, false, nil
	}
	if len(cmd) == 0 {
		return HostProcess{}, false, nil // a kernel thread or a zombie
	}
	name, _, _ := bytes.Cut(cmd, []byte{0})
	if !want[string(name)] {
		return HostProcess{}, false, nil
	}
	st, err := h.Status()
	if err != nil || st.UID[0] != 0 {
		return HostProcess{}, false, nil
	}
	raw, err := h.Cgroup()
	if err != nil {
		return HostProcess{}, false, nil
	}
	lines, err := cgroup.Parse(raw)
	if err != nil {
		return HostProcess{}, false, nil
	}
	id, err := cgroup.Identify(lines)
	if err != nil || id.ContainerID != "" || id.PodUID != "" {
		return HostProcess{}, false, nil
	}
	v := []byte(string(name))
	if withParameter {
		v = cmd
		if bytes.IndexByte(cmd, 0) < 0 {
			// A process that rewrote its title without NULs: CCNP split at
			// the first NUL and appended "\0" + the rest.
			v = append(bytes.Clone(cmd), 0)
		}
	}
	sum := sha512.Sum384(v)
	return HostProcess{Name: string(name), PID: pid, Value: bytes.Clone(v), Digest: sum[:]}, true, nil
}

// Seed is the register after the host processes: zero extended with each
// one's digest.
func Seed(hosts []HostProcess) ([]byte, error) {
	r := cctrusted.NewReplayer(nil)
	m := cctrusted.RTMR(3).IMR()
	for i, h := range hosts {
		if err := r.ExtendDigest(m, Alg, h.Digest); err != nil {
			return nil, fmt.Errorf("ccnpimr: host process %d (%s): %w", i, h.Name, err)
		}
	}
	v, ok := r.Registers().Get(m, Alg)
	if !ok {
		v = make([]byte, Alg.Size())
	}
	return bytes.Clone(v), nil
}

// Entry is one entry of the IMA list, as the container registers use it.
type Entry struct {
	// Key is the container the entry's cg-path names, "" for none (and for
	// entries of other templates).
	Key string
	// PCR is the register field the kernel wrote.
	PCR cctrusted.PCR
	// Digest is what IMA extended into its SHA-384 bank.
	Digest []byte
	// Template is the entry's template name.
	Template string
	// Fields is the entry as the ascii list shows it after the template
	// name (for ima-cgpath: "dep cg-path algo:digest name"), which is the
	// event data CCNP's server passed on from cctrusted_base.
	Fields []byte
}

// Snapshot is the list as one request sees it: read-only, consistent.
type Snapshot struct {
	// Entries are the list's entries, in order.
	Entries []Entry
	// Own are the indexes in Entries of the key's entries.
	Own []int
	// Logs are every parsed part, in order, so the whole list can be
	// checked.
	Logs []*ima.Log
	// Gen changes when the list stops continuing the one read before (a
	// reboot, another file): snapshots of one Gen extend each other.
	Gen uint64
}

// Register is the container register: start (Seed's value; nil for zero,
// the register of the container's entries alone) extended with the key's
// entries. A start of another length is refused: extending from it would
// give a value that no register ever held.
func (s *Snapshot) Register(start []byte) ([]byte, error) {
	if start == nil {
		start = make([]byte, Alg.Size())
	}
	if len(start) != Alg.Size() {
		return nil, fmt.Errorf("ccnpimr: start value of %d bytes, want %d (%v)", len(start), Alg.Size(), Alg)
	}
	r := cctrusted.NewReplayer(nil)
	m := cctrusted.RTMR(3).IMR()
	r.Registers().Set(m, Alg, start)
	for _, i := range s.Own {
		if err := r.ExtendDigest(m, Alg, s.Entries[i].Digest); err != nil {
			return nil, fmt.Errorf("ccnpimr: entry %d: %w", i, err)
		}
	}
	v, _ := r.Registers().Get(m, Alg)
	return bytes.Clone(v), nil
}

// Index follows an IMA list file. The list only grows: the bytes read last
// time are kept, and only what follows them is parsed.
type Index struct {
	path  string
	limit int

	mu      sync.Mutex
	seen    []byte
	gen     uint64
	entries []Entry
	logs    []*ima.Log
	byKey   map[string][]int
}

// NewIndex follows the list at path (ascii or binary), read up to limit
// bytes (0: ima.DefaultMaxBytes).
func NewIndex(path string, limit int) *Index {
	if limit <= 0 {
		limit = ima.DefaultMaxBytes
	}
	return &Index{path: path, limit: limit, byKey: map[string][]int{}}
}

// Path is the list's path.
func (x *Index) Path() string { return x.path }

// ErrTooLarge is wrapped when the list exceeds the index's limit.
var ErrTooLarge = errors.New("ccnpimr: IMA list too large")

// Snapshot reads the list and returns its entries and key's ("" for none).
func (x *Index) Snapshot(ctx context.Context, key string) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := readBounded(x.path, x.limit)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.update(b); err != nil {
		return nil, err
	}
	s := &Snapshot{Entries: x.entries[:len(x.entries):len(x.entries)], Logs: x.logs[:len(x.logs):len(x.logs)], Gen: x.gen}
	if key != "" {
		own := x.byKey[key]
		s.Own = own[:len(own):len(own)]
	}
	return s, nil
}

func (x *Index) update(b []byte) error {
	tail := b
	if len(x.seen) > 0 && bytes.HasPrefix(b, x.seen) {
		tail = b[len(x.seen):]
	} else if len(x.seen) > 0 || len(x.entries) > 0 {
		// A list that does not continue the last one (a reboot, another
		// file): start again. Earlier snapshots keep their own slices.
		x.entries, x.logs, x.byKey = nil, nil, map[string][]int{}
		x.gen++
	}
	if len(tail) == 0 {
		x.seen = b
		return nil
	}
	l, err := ima.Parse(tail, ima.Options{AllowUnknownTemplates: true})
	if err != nil {
		return fmt.Errorf("ccnpimr: IMA list %s (from byte %d): %w", x.path, len(b)-len(tail), err)
	}
	base := len(x.entries)
	for i := range l.Entries {
		e := &l.Entries[i]
		d := make([]byte, Alg.Size())
		if err := ima.EntryDigest(Alg, e, d); err != nil {
			return fmt.Errorf("ccnpimr: IMA list %s: entry %d: %w", x.path, base+i, err)
		}
		en := Entry{PCR: e.PCR, Digest: d, Template: e.Template, Fields: fields(e)}
		if e.Template == Template && e.CgroupPath != "" && e.CgroupPath != "-" {
			en.Key = Key(cgroup.IdentifyPath(e.CgroupPath))
		}
		x.entries = append(x.entries, en)
		if en.Key != "" {
			x.byKey[en.Key] = append(x.byKey[en.Key], base+i)
		}
	}
	x.logs = append(x.logs, l)
	x.seen = b
	return nil
}

// Key is the container key of an identity: the pod UID on Kubernetes, else
// the container ID, "" for no container.
func Key(id cgroup.Identity) string {
	if id.PodUID != "" {
		return id.PodUID
	}
	return id.ContainerID
}

// fields renders an entry's fields as the kernel's ascii list does.
func fields(e *ima.Entry) []byte {
	if e.Opaque {
		return nil
	}
	var b bytes.Buffer
	switch e.Template {
	case Template:
		b.WriteString(e.Dep)
		b.WriteByte(' ')
		b.WriteString(e.CgroupPath)
		b.WriteByte(' ')
		writeDigest(&b, e)
		b.WriteByte(' ')
		b.WriteString(e.FileName)
	case "ima-dep-cgn":
		b.WriteString(e.Dep)
		b.WriteByte(' ')
		b.WriteString(e.CgroupName)
		b.WriteByte(' ')
		writeDigest(&b, e)
		b.WriteByte(' ')
		b.WriteString(e.FileName)
	default:
		writeDigest(&b, e)
		b.WriteByte(' ')
		b.WriteString(e.FileName)
	}
	return b.Bytes()
}

func writeDigest(b *bytes.Buffer, e *ima.Entry) {
	if e.DigestAlgo != "" {
		b.WriteString(e.DigestAlgo)
		b.WriteByte(':')
	}
	b.WriteString(hex.EncodeToString(e.FileDigest.Value))
}

// readBounded reads a file that may report no size (securityfs).
func readBounded(path string, limit int) ([]byte, error) {
	b, err := smallfile.Read(path, int64(limit))
	if errors.Is(err, smallfile.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("ccnpimr: IMA list: %w", err)
	}
	return b, nil
}
