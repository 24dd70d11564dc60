// Package workloadattestor is the agent-side SPIRE WorkloadAttestor plugin
// "ccnp": it turns the PID that SPIRE hands over into selectors about the
// process (executable digests and path, user and group), its container and
// pod (from the cgroup the runtime put it in), and whether the workload was
// measured into the TEE's runtime register (RTMR3 on TDX, a PCR on a TPM)
// through the runtime log that the node attestor later sends to the server.
//
// Nothing the workload says about itself is used: every selector comes from
// /proc/<pid> (read through one directory handle, with the start time checked
// before and after, so a PID reused meanwhile fails the attestation, and the
// executable's identity checked before and after, so an exec meanwhile fails
// it too), from the executable the kernel maps, hashed through
// /proc/<pid>/exe, and from the cgroup filesystem, which must show that no
// one but root could have chosen the container's cgroup name.
package workloadattestor

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/cgroup"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/exedigest"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/proc"
)

// MaxSelectorLen is the longest selector value returned: SPIRE's SQL
// datastores store values in 255-byte columns. Longer paths are left out.
const MaxSelectorLen = 255

// Plugin is the workload attestor. The zero value is unconfigured; use New.
type Plugin struct {
	workloadattestorv1.UnsafeWorkloadAttestorServer
	configv1.UnsafeConfigServer

	mu  sync.RWMutex
	st  *state
	log hclog.Logger

	// afterCollect, in tests, runs after everything is read and before the
	// start time and the executable are checked again.
	afterCollect func(pid int)
	// fsMagic returns the filesystem type of the executable (statfs); tests
	// replace it to stand for filesystems this machine cannot mount.
	fsMagic func(*os.File) (uint32, error)
	// now stamps runtime log records.
	now func() time.Time
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{log: hclog.NewNullLogger(), now: time.Now, fsMagic: exedigest.FSMagic}
}

// SetLogger is called by the plugin framework with the agent's logger.
func (p *Plugin) SetLogger(log hclog.Logger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = log
}

func (p *Plugin) logger() hclog.Logger {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.log
}

// state is one configuration's worth of resources.
type state struct {
	cfg      *conf.WorkloadAttestor
	procRoot string
	cgroups  cgroup.Tree
	cache    *exedigest.Cache
	algs     []cctrusted.Algorithm // selectors, in order
	measure  *measurer             // nil with measure = "off"
	ima      *imaIndex             // nil without ima_log_path
}

func (s *state) close() error {
	if s == nil || s.measure == nil {
		return nil
	}
	return s.measure.close()
}

// Configure parses plugin_data (conf.ParseWorkloadAttestor), opens the TEE
// and the runtime log when measuring, and replaces the previous
// configuration. A TEE that cannot be opened fails the configuration; a
// runtime log that cannot be reconciled with the register does not (the
// plugin then attests without measuring and says why on every attestation).
func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	cfg, err := conf.ParseWorkloadAttestor(req.GetHclConfiguration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	st, err := p.build(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	old := p.st
	p.st = st
	p.mu.Unlock()
	if err := old.close(); err != nil {
		p.logger().Warn("Closing the previous TEE", "error", err)
	}
	return &configv1.ConfigureResponse{}, nil
}

// Validate checks plugin_data without applying it.
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	if _, err := conf.ParseWorkloadAttestor(req.GetHclConfiguration()); err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: []string{err.Error()}}, nil
	}
	return &configv1.ValidateResponse{Valid: true}, nil
}

func (p *Plugin) build(ctx context.Context, cfg *conf.WorkloadAttestor) (*state, error) {
	root := cfg.HostRoot
	if root == "" {
		root = "/"
	}
	st := &state{cfg: cfg, procRoot: filepath.Join(root, "proc"), cgroups: cgroup.Tree{Root: filepath.Join(root, "sys", "fs", "cgroup")}}
	// SPIRE hands over PIDs of the agent's PID namespace; in any other
	// namespace's procfs they name other processes.
	if err := proc.CheckSelf(st.procRoot); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "host_root %q: %v", root, err)
	}
	hashAlgs := cfg.DigestAlgs(cfg.TEE)
	var err error
	if cfg.Measure != conf.MeasureOff {
		if st.measure, err = openMeasurer(ctx, cfg, p.logger()); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "%v (set measure = \"off\" to attest without measuring)", err)
		}
		// The runtime log's bank needs its digest even when the selectors
		// do not show it (a SHA-384 log records the exe's SHA-384).
		hashAlgs = cfg.DigestAlgs(cctrusted.TEE(st.measure.provider.TEE()))
		if st.measure.alg == cctrusted.AlgSHA384 && !containsAlg(hashAlgs, cctrusted.AlgSHA384) {
			hashAlgs = append(hashAlgs, cctrusted.AlgSHA384)
		}
	}
	st.algs = cfg.DigestAlgs(cfg.TEE)
	if st.measure != nil {
		st.algs = cfg.DigestAlgs(cctrusted.TEE(st.measure.provider.TEE()))
		if st.measure.provider.TEE() == cctrusted.TEESim && cfg.ExeDigestAlgs == nil {
			// The simulator stands in for TDX: the same selectors.
			st.algs = cfg.DigestAlgs(cctrusted.TEETDX)
		}
	}
	for _, a := range st.algs {
		if !containsAlg(hashAlgs, a) {
			hashAlgs = append(hashAlgs, a)
		}
	}
	if st.cache, err = exedigest.NewCache(cfg.DigestCacheSize, 0, hashAlgs); err != nil {
		_ = st.close()
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if cfg.IMALogPath != "" {
		st.ima = newIMAIndex(filepath.Join(root, cfg.IMALogPath))
	}
	return st, nil
}

func containsAlg(algs []cctrusted.Algorithm, a cctrusted.Algorithm) bool {
	for _, x := range algs {
		if x == a {
			return true
		}
	}
	return false
}

func (p *Plugin) state() (*state, hclog.Logger, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.st == nil {
		return nil, p.log, status.Error(codes.FailedPrecondition, "not configured")
	}
	return p.st, p.log, nil
}

// Attest returns the selectors of the process req.Pid.
func (p *Plugin) Attest(ctx context.Context, req *workloadattestorv1.AttestRequest) (*workloadattestorv1.AttestResponse, error) {
	st, log, err := p.state()
	if err != nil {
		return nil, err
	}
	w, err := p.collect(ctx, st, int(req.GetPid()))
	if err != nil {
		log.Debug("Workload attestation failed", "pid", req.GetPid(), "error", err)
		return nil, err
	}
	if w.idRefused != nil {
		log.Warn("Container identity refused: attesting the process without container or pod selectors", "pid", w.pid, "cgroup", w.id.Path, "error", w.idRefused)
	}
	sel := w.selectors(st.algs, log)
	switch {
	case st.measure != nil && w.unverifiable != "":
		log.Warn("Workload not measured: its executable is on a filesystem whose contents the kernel does not vouch for", "pid", w.pid, "exe", w.exe.Path, "fstype", w.unverifiable)
	case st.measure != nil:
		s, err := st.measure.measure(ctx, w, p.now())
		if err != nil {
			log.Warn("Workload not measured", "pid", w.pid, "exe_sha256", hex.EncodeToString(w.digests[cctrusted.AlgSHA256]), "error", err)
		}
		sel = append(sel, s)
	}
	if st.ima != nil {
		if key := w.imaKey(); key != "" {
			imr, err := st.ima.containerIMR(ctx, key)
			switch {
			case err != nil:
				log.Warn("Per-container IMR unavailable", "pid", w.pid, "error", err)
			case imr != nil:
				sel = append(sel, "ima:container_imr:"+hex.EncodeToString(imr))
			}
		}
	}
	return &workloadattestorv1.AttestResponse{SelectorValues: sel}, nil
}

// workload is what one attestation read.
type workload struct {
	pid     int
	status  proc.Status
	exe     proc.Exe
	digests exedigest.Digests
	// unverifiable names the executable's filesystem when it is one whose
	// bytes the kernel does not vouch for (FUSE, NFS, ...): no digest then.
	unverifiable string
	id           cgroup.Identity
	// idRefused says why the cgroup's container or pod identity was dropped.
	idRefused error
}

// collect reads the process through one /proc/<pid> handle and checks that
// at the end it is still the same process (start time) running the same
// executable image: the file the exe link resolves to (device and inode),
// the link's text, and where the image's code and stack start (execve moves
// them under address space randomisation). A process that execs during the
// attestation would otherwise be attested, and recorded in the runtime log,
// as the binary it no longer runs.
func (p *Plugin) collect(ctx context.Context, st *state, pid int) (*workload, error) {
	if pid <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "pid %d is not a process ID", pid)
	}
	h, err := proc.Open(st.procRoot, pid)
	if err != nil {
		return nil, procError(pid, "opening", err)
	}
	defer h.Close()
	first, err := h.Stat()
	if err != nil {
		return nil, procError(pid, "reading stat of", err)
	}
	if first.Kernel() {
		return nil, status.Errorf(codes.InvalidArgument, "pid %d (%q) is a kernel thread: no executable to attest", pid, first.Comm)
	}
	if first.Zombie() {
		return nil, status.Errorf(codes.NotFound, "pid %d has exited (state %c)", pid, first.State)
	}
	w := &workload{pid: pid}
	if w.exe, err = h.ExeLink(); err != nil {
		return nil, procError(pid, "reading the exe link of", err)
	}
	f, err := h.OpenExe()
	if err != nil {
		return nil, procError(pid, "opening the executable of", err)
	}
	// Credentials are read after the executable is pinned, so a setuid
	// exec before this point shows in both or is caught at the end.
	if w.status, err = h.Status(); err != nil {
		f.Close()
		return nil, procError(pid, "reading status of", err)
	}
	exeID, err := p.digest(ctx, st, w, f)
	f.Close()
	if err != nil {
		return nil, err
	}
	raw, err := h.Cgroup()
	if err != nil {
		return nil, procError(pid, "reading the cgroups of", err)
	}
	lines, err := cgroup.Parse(raw)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "pid %d: %v", pid, err)
	}
	if w.id, err = cgroup.Identify(lines); err != nil {
		return nil, status.Errorf(codes.Internal, "pid %d: %v", pid, err)
	}
	if err := st.cgroups.Verify(pid, lines, w.id); err != nil {
		w.idRefused = err
		w.id = cgroup.Identity{Path: w.id.Path}
	}
	if p.afterCollect != nil {
		p.afterCollect(pid)
	}
	second, err := h.Stat()
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "pid %d exited while it was attested: %v", pid, err)
	}
	if second.StartTime != first.StartTime {
		return nil, status.Errorf(codes.Aborted, "pid %d was reused while it was attested (start time %d, now %d)", pid, first.StartTime, second.StartTime)
	}
	if second.Zombie() {
		return nil, status.Errorf(codes.Aborted, "pid %d exited while it was attested", pid)
	}
	if second.StartCode != first.StartCode || second.StartStack != first.StartStack {
		return nil, status.Errorf(codes.Aborted, "pid %d ran execve while it was attested (code start %#x, now %#x; stack start %#x, now %#x): what was read may describe the image it no longer runs",
			pid, first.StartCode, second.StartCode, first.StartStack, second.StartStack)
	}
	nowID, err := h.ExeID()
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "pid %d: its executable could not be checked again at the end of the attestation: %v", pid, err)
	}
	nowExe, err := h.ExeLink()
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "pid %d: its exe link could not be read again at the end of the attestation: %v", pid, err)
	}
	// The link's " (deleted)" mark may come and go (the file unlinked or
	// replaced by a package upgrade meanwhile): the path and the file count.
	if nowID != exeID || nowExe.Path != w.exe.Path {
		return nil, status.Errorf(codes.Aborted, "pid %d ran another executable while it was attested (%q, file %s; now %q, file %s): refusing to attest the image it no longer runs",
			pid, w.exe.Path, exeID, nowExe.Path, nowID)
	}
	return w, nil
}

// digest fills w.digests from the open executable f, or w.unverifiable when
// f is on a filesystem whose bytes prove nothing, and returns f's identity.
func (p *Plugin) digest(ctx context.Context, st *state, w *workload, f *os.File) (proc.FileID, error) {
	id, err := proc.FileIDOf(f)
	if err != nil {
		return id, status.Errorf(codes.Internal, "pid %d: %v", w.pid, err)
	}
	magic, err := p.fsMagic(f)
	if err != nil {
		return id, status.Errorf(codes.Internal, "pid %d: %v", w.pid, err)
	}
	if name, ok := exedigest.Unverifiable(magic); ok {
		w.unverifiable = name
		return id, nil
	}
	if w.digests, _, err = st.cache.Digest(ctx, f); err != nil {
		return id, status.Errorf(codes.Internal, "pid %d: %v", w.pid, err)
	}
	return id, nil
}

func procError(pid int, what string, err error) error {
	switch {
	case proc.IsGone(err):
		return status.Errorf(codes.NotFound, "pid %d: no such process (%s /proc/%d: %v)", pid, what, pid, err)
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return status.Errorf(codes.PermissionDenied, "%s /proc/%d: %v (the agent needs CAP_SYS_PTRACE or the workload's user)", what, pid, err)
	}
	return status.Errorf(codes.Internal, "%s /proc/%d: %v", what, pid, err)
}

// selectors builds the selector values (without SPIRE's "ccnp:" prefix).
func (w *workload) selectors(algs []cctrusted.Algorithm, log hclog.Logger) []string {
	out := make([]string, 0, 10)
	add := func(kind, v string) {
		s := kind + ":" + v
		if len(s) > MaxSelectorLen {
			log.Debug("Selector left out: longer than 255 bytes", "pid", w.pid, "kind", kind)
			return
		}
		out = append(out, s)
	}
	if !w.exe.Deleted && printable(w.exe.Path) {
		add("exe:path", w.exe.Path)
	}
	for _, a := range algs {
		if d, ok := w.digests[a]; ok {
			add("exe:"+a.String(), hex.EncodeToString(d))
		}
	}
	if w.unverifiable != "" {
		add("exe:digest_unverifiable", w.unverifiable)
	}
	add("uid", strconv.FormatUint(uint64(w.status.EffectiveUID()), 10))
	add("gid", strconv.FormatUint(uint64(w.status.EffectiveGID()), 10))
	if printable(w.id.Path) {
		add("cgroup", w.id.Path)
	}
	if w.id.ContainerID != "" {
		add("container:id", w.id.ContainerID)
		if w.id.Runtime != "" {
			add("container:runtime", w.id.Runtime)
		}
	}
	if w.id.PodUID != "" {
		add("pod:uid", w.id.PodUID)
	}
	if w.id.Unit != "" && printable(w.id.Unit) {
		add("systemd:unit", w.id.Unit)
	}
	return out
}

// printable rejects what would make a selector ambiguous or unreadable in
// logs and entries: invalid UTF-8 and control characters (a newline in a
// file name, say). Spaces are fine.
func printable(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// identity is what first_seen deduplicates on: the executable and the
// container it runs in.
func (w *workload) identity() string {
	return hex.EncodeToString(w.digests[cctrusted.AlgSHA256]) + "/" + w.id.ContainerID
}

// imaKey is the container key CCNP derives from cgroup paths: the pod UID on
// Kubernetes, else the container ID.
func (w *workload) imaKey() string {
	if w.id.PodUID != "" {
		return w.id.PodUID
	}
	return w.id.ContainerID
}

func (w *workload) record(now time.Time) runtimelog.Workload {
	return runtimelog.Workload{
		ExeSHA256:   w.digests[cctrusted.AlgSHA256],
		ExeSHA384:   w.digests[cctrusted.AlgSHA384],
		ExePath:     strings.ToValidUTF8(w.exe.Path, "\uFFFD"),
		ContainerID: w.id.ContainerID,
		CgroupPath:  strings.ToValidUTF8(w.id.Path, "\uFFFD"),
		PodUID:      w.id.PodUID,
		Runtime:     w.id.Runtime,
		Time:        now,
	}
}
