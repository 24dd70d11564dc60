package workloadsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/ccnp-spire/ccnp-spire/workloadattestor/proc"
)

// soPeerPIDFD is SO_PEERPIDFD (Linux >= 6.5, asm-generic/socket.h): a pidfd of
// the process that connected. golang.org/x/sys/unix at the pinned version does
// not name it. The value is the same on amd64 and arm64.
const soPeerPIDFD = 77

// Peer is who is at the other end of a connection, as the kernel says
// (SO_PEERCRED), captured when the connection was accepted.
type Peer struct {
	PID int
	UID uint32
	GID uint32

	// pidfd refers to the very process that connected (nil on kernels
	// without SO_PEERPIDFD). While it can be signalled, the PID has not
	// been given to another process.
	pidfd *os.File
	// startTime is the process's start time when the connection was
	// accepted (0 if it could not be read): on kernels without a pidfd it
	// tells a reused PID apart.
	startTime uint64
	startErr  error
}

// AuthType names the mechanism for gRPC.
func (*Peer) AuthType() string { return "peercred" }

// alive reports whether the process that connected still exists: false once
// it has been reaped, and so once its PID may name another process. Without
// a pidfd it cannot tell and says true; the start time check is then the
// only guard.
func (p *Peer) alive() bool {
	if p.pidfd == nil {
		return true
	}
	return unix.PidfdSendSignal(int(p.pidfd.Fd()), 0, nil, 0) == nil
}

// peerFromContext returns the Peer the transport credentials captured.
func peerFromContext(ctx context.Context) (*Peer, bool) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	p, ok := pr.AuthInfo.(*Peer)
	return p, ok
}

// peerCreds are server-side transport credentials for a Unix socket: the
// handshake exchanges nothing and only reads the peer's credentials from the
// kernel, so the client uses insecure credentials.
type peerCreds struct{ procRoot string }

// PeerCredentials returns the transport credentials that attach a *Peer to
// every connection accepted on a Unix socket, reading the peer's start time
// from procRoot (usually /proc). Connections of any other kind fail the
// handshake.
func PeerCredentials(procRoot string) credentials.TransportCredentials {
	return peerCreds{procRoot: procRoot}
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workloadsvc: peer credentials are for servers only")
}

func (pc peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("workloadsvc: connection from %v is not on a Unix socket", c.RemoteAddr())
	}
	p, err := readPeer(uc)
	if err != nil {
		return nil, nil, err
	}
	// A failure here is not the handshake's: the request that needs the
	// identity reports it, with a status the client can read.
	p.startTime, p.startErr = startTime(pc.procRoot, p.PID)
	return &peerConn{UnixConn: uc, pidfd: p.pidfd}, p, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (pc peerCreds) Clone() credentials.TransportCredentials { return pc }

// OverrideServerName is part of the interface and meaningless here.
func (peerCreds) OverrideServerName(string) error { return nil }

// readPeer reads SO_PEERCRED and, where the kernel has it, SO_PEERPIDFD.
func readPeer(c *net.UnixConn) (*Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("workloadsvc: peer credentials: %w", err)
	}
	var (
		cred    *unix.Ucred
		credErr error
		pidfd   = -1
	)
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil {
			return
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, soPeerPIDFD); err == nil {
			pidfd = v
		}
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return nil, fmt.Errorf("workloadsvc: reading SO_PEERCRED: %w", err)
	}
	p := &Peer{PID: int(cred.Pid), UID: cred.Uid, GID: cred.Gid}
	if pidfd >= 0 {
		p.pidfd = os.NewFile(uintptr(pidfd), fmt.Sprintf("pidfd:%d", cred.Pid))
	}
	return p, nil
}

func startTime(procRoot string, pid int) (uint64, error) {
	if pid <= 0 {
		return 0, nil
	}
	h, err := proc.Open(procRoot, pid)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		return 0, err
	}
	return st.StartTime, nil
}

// peerConn closes the peer's pidfd with the connection.
type peerConn struct {
	*net.UnixConn
	once  sync.Once
	pidfd *os.File
}

func (c *peerConn) Close() error {
	err := c.UnixConn.Close()
	c.once.Do(func() {
		if c.pidfd != nil {
			c.pidfd.Close()
		}
	})
	return err
}
