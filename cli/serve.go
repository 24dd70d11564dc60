package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/tdx"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/ccnpimr"
	"github.com/ccnp-spire/ccnp-spire/workloadsvc"
)

func init() { commands = append(commands, newServeCmd) }

type serveFlags struct {
	socket     string
	mode       string
	group      string
	runtimeLog string
	runtimePCR uint32
	nodeView   bool
	limits     workloadsvc.Limits
	// CCNP's container register (issue 17.1).
	containerRegister string
	imaLog            string
	hostProcesses     []string
	hostCmdline       bool
}

func newServeCmd(g *globals) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the CCNP workload API (ccnp_server_pb.ccnp) to containers on a Unix socket",
		Long: `Serve CCNP's unified server API on a Unix socket. Each caller is identified by
the PID the kernel reports for its connection and answered for its own container
only: the platform's boot events, its own runtime-log records, its own register
(index 3 on TDX, the runtime PCR on a TPM) and quotes whose REPORTDATA is
SHA-512(container register || nonce || user_data) (SHA-512(user_data) without a
nonce, as CCNP). Processes in no container are refused unless --node-view is
given. Runs until SIGINT or SIGTERM, then removes its socket.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.serve(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.socket, "socket", workloadsvc.DefaultSocket, "Unix socket to listen on")
	fl.StringVar(&f.mode, "socket-mode", fmt.Sprintf("%04o", workloadsvc.DefaultSocketMode), "permissions of the socket (octal); callers are identified by the kernel, whatever the mode")
	fl.StringVar(&f.group, "socket-group", "", "group owning the socket (name or GID; default: the server's)")
	fl.StringVar(&f.runtimeLog, "runtime-log", conf.DefaultRuntimeLogPath, "the workload attestor's runtime log (its runtime_log_path)")
	fl.Uint32Var(&f.runtimePCR, "runtime-pcr", 23, "PCR the runtime log extends (TPM only)")
	fl.BoolVar(&f.nodeView, "node-view", false, "answer processes in no container with the node's registers, whole event log and quotes (CCNP's isolated: false)")
	pol := ccnpimr.DefaultPolicy()
	fl.StringVar(&f.containerRegister, "container-register", "auto", "register 3 of a container: ima-cgpath (CCNP's: host seed, then the container's IMA entries), runtime-log (its runtime-log records), or auto (ima-cgpath when the node's IMA list has ima-cgpath entries, on TDX)")
	fl.StringVar(&f.imaLog, "ima-log", "", "the IMA list for ima-cgpath (default: the kernel's binary list under --host-root)")
	fl.StringSliceVar(&f.hostProcesses, "host-processes", pol.Processes, "host processes (argv[0], in order) whose measurement seeds every container's ima-cgpath register (CCNP's measure.system.processes)")
	fl.BoolVar(&f.hostCmdline, "host-processes-with-cmdline", pol.WithParameter, "measure the host processes' whole command lines, not only argv[0] (CCNP's withParameter)")
	d := workloadsvc.DefaultLimits()
	fl.IntVar(&f.limits.MaxConnections, "max-connections", d.MaxConnections, "open connections to the socket; more are closed at once")
	fl.IntVar(&f.limits.MaxCallerConnections, "max-caller-connections", d.MaxCallerConnections, "open connections of one container (or, outside containers, one UID)")
	fl.Uint32Var(&f.limits.MaxStreams, "max-streams", d.MaxStreams, "concurrent requests on one connection")
	fl.IntVar(&f.limits.MaxRequests, "max-requests", d.MaxRequests, "requests reading the runtime log or the TEE in flight server-wide; more fail with ResourceExhausted")
	fl.IntVar(&f.limits.MaxCallerRequests, "max-caller-requests", d.MaxCallerRequests, "requests of one container in flight; more fail with ResourceExhausted")
	fl.Float64Var(&f.limits.QuoteRate, "quote-rate", d.QuoteRate, "quotes per second one container gets, sustained")
	fl.IntVar(&f.limits.QuoteBurst, "quote-burst", d.QuoteBurst, "quotes one container may ask for at once after being idle")
	return cmd
}

func (g *globals) serve(cmd *cobra.Command, f serveFlags) error {
	mode, err := strconv.ParseUint(f.mode, 8, 32)
	if err != nil || mode > 0o777 {
		return fmt.Errorf("--socket-mode %q: want octal permissions such as 0660", f.mode)
	}
	gid, err := lookupGroup(f.group)
	if err != nil {
		return err
	}
	if err := checkLimits(f.limits); err != nil {
		return err
	}
	if !filepath.IsAbs(f.runtimeLog) {
		return fmt.Errorf("--runtime-log %q: not an absolute path", f.runtimeLog)
	}
	// SIGTERM is how Kubernetes and systemd stop the server; both signals
	// end it cleanly, with its socket removed.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := g.open(ctx)
	if err != nil {
		return err
	}
	defer p.Close()
	opts := workloadsvc.Options{
		Provider:       p,
		RuntimeLogPath: f.runtimeLog,
		ProcRoot:       filepath.Join(g.hostRoot, "proc"),
		CgroupRoot:     filepath.Join(g.hostRoot, "sys", "fs", "cgroup"),
		Logger:         slog.New(slog.NewTextHandler(g.stderr, nil)),
		Limits:         f.limits,
		NodeView:       f.nodeView,
	}
	if p.TEE() == cctrusted.TEETPM {
		opts.RuntimeIMR = cctrusted.PCR(f.runtimePCR).IMR()
		if !opts.RuntimeIMR.Valid() {
			return fmt.Errorf("--runtime-pcr %d: not a PCR", f.runtimePCR)
		}
	}
	if opts.IMALogPath, err = g.imaLogFor(ctx, p.TEE(), f); err != nil {
		return err
	}
	opts.HostPolicy = &ccnpimr.Policy{Processes: f.hostProcesses, WithParameter: f.hostCmdline}
	svc, err := workloadsvc.New(ctx, opts)
	if err != nil {
		return err
	}
	l, err := workloadsvc.Listen(f.socket, fs.FileMode(mode), gid)
	if err != nil {
		return err
	}
	// Whatever ends the server, the socket goes with it, so clients see
	// no server rather than a dead socket (grpc closes the listener, which
	// unlinks it; this covers a listener closed some other way).
	defer removeSocket(f.socket)
	srv := svc.NewServer()
	l = svc.Limit(l)
	logger := opts.Logger
	logger.Info("Serving", "service", workloadsvc.ServiceName, "socket", f.socket, "socket_mode", fmt.Sprintf("%04o", mode),
		"tee", string(p.TEE()), "container_register", svc.ContainerIndex(), "container_register_kind", svc.ContainerRegister(), "node_view", f.nodeView)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		logger.Info("Stopping: signal received; finishing requests in flight", "socket", f.socket)
		// Requests finish within their own deadlines; a client holding a
		// connection open must not keep the server alive.
		t := time.AfterFunc(stopGrace, srv.Stop)
		srv.GracefulStop()
		t.Stop()
		<-done
		logger.Info("Stopped", "socket", f.socket)
		return nil
	case err := <-done:
		return fmt.Errorf("serving on %s: %w", f.socket, err)
	}
}

// imaLogFor decides where the container register comes from: the IMA list
// to read for CCNP's register, or "" for the runtime-log register. auto
// takes the IMA list only where it exists and records cgroup paths; an
// explicit ima-cgpath fails rather than serve another register than asked.
func (g *globals) imaLogFor(ctx context.Context, tee cctrusted.TEE, f serveFlags) (string, error) {
	paths := []string{f.imaLog}
	if f.imaLog == "" {
		paths = []string{filepath.Join(g.hostRoot, tdx.DefaultIMAPath), filepath.Join(g.hostRoot, tdx.AltIMAPath)}
	} else if !filepath.IsAbs(f.imaLog) {
		return "", fmt.Errorf("--ima-log %q: not an absolute path", f.imaLog)
	}
	switch f.containerRegister {
	case workloadsvc.RegisterRuntimeLog:
		return "", nil
	case workloadsvc.RegisterIMA:
		if tee == cctrusted.TEETPM {
			return "", fmt.Errorf("--container-register %s: CCNP's register is a TDX one; this node's TEE is a TPM", workloadsvc.RegisterIMA)
		}
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf("--container-register %s: no IMA list at %s", workloadsvc.RegisterIMA, strings.Join(paths, " or "))
	case "auto":
		if tee == cctrusted.TEETPM {
			return "", nil
		}
		for _, p := range paths {
			if ok, err := workloadsvc.HasCgpathEntries(ctx, p); err == nil && ok {
				return p, nil
			}
		}
		return "", nil
	}
	return "", fmt.Errorf("--container-register %q: want auto, %s or %s", f.containerRegister, workloadsvc.RegisterIMA, workloadsvc.RegisterRuntimeLog)
}

// stopGrace bounds how long a stopping server waits for requests in flight.
const stopGrace = 5 * time.Second

// removeSocket removes the server's socket if it is still a socket.
func removeSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
		_ = os.Remove(path)
	}
}

// checkLimits refuses limits that are not positive: zero would silently
// mean the default, and there is no "unlimited".
func checkLimits(l workloadsvc.Limits) error {
	for _, c := range []struct {
		flag string
		ok   bool
	}{
		{"--max-connections", l.MaxConnections > 0}, {"--max-caller-connections", l.MaxCallerConnections > 0},
		{"--max-streams", l.MaxStreams > 0}, {"--max-requests", l.MaxRequests > 0},
		{"--max-caller-requests", l.MaxCallerRequests > 0}, {"--quote-rate", l.QuoteRate > 0 && !math.IsInf(l.QuoteRate, 0)},
		{"--quote-burst", l.QuoteBurst > 0},
	} {
		if !c.ok {
			return fmt.Errorf("%s: want a positive number", c.flag)
		}
	}
	if l.MaxCallerConnections > l.MaxConnections || l.MaxCallerRequests > l.MaxRequests {
		return fmt.Errorf("--max-caller-connections and --max-caller-requests may be at most --max-connections and --max-requests: one container must not be able to take every slot")
	}
	return nil
}

// lookupGroup resolves a group name or number; "" means -1 (keep the
// server's group).
func lookupGroup(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	if n, err := strconv.ParseUint(s, 10, 31); err == nil {
		return int(n), nil
	}
	grp, err := user.LookupGroup(s)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("--socket-group %q: no such group", s)
		}
		return 0, fmt.Errorf("--socket-group %q: %w", s, err)
	}
	n, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return 0, fmt.Errorf("--socket-group %q: GID %q is not a number", s, grp.Gid)
	}
	return n, nil
}
