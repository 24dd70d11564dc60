// Package swtpm runs Debian's swtpm as a real software TPM 2.0 for tests and
// the demo: it starts the emulator on free loopback ports, provisions an
// endorsement key with a certificate from a simulated EK CA, and replays
// real TCG event logs into the PCRs so that logs and PCRs agree.
//
// Nothing here is trusted by production code: the EK CA is a throw-away key
// written next to the TPM state.
package swtpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binary is the emulator's executable name, looked up in PATH unless
// Options.Binary says otherwise.
const Binary = "swtpm"

// Available reports whether the swtpm binary can be found. Tests skip only
// when this returns an error.
func Available() error {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Errorf("swtpm: %q not found in PATH (Debian/Ubuntu: apt-get install swtpm swtpm-tools): %w", Binary, err)
	}
	return nil
}

// Options tunes Start. The zero value is fine for tests.
type Options struct {
	// Binary is the swtpm executable (default "swtpm" from PATH).
	Binary string
	// StartTimeout bounds how long Start waits for the TPM to answer
	// (default 10 s; ctx may cut it shorter).
	StartTimeout time.Duration
	// Attempts is how many times Start retries when another process takes a
	// port between choosing it and swtpm binding it (default 5).
	Attempts int
}

// TPM is a running swtpm process.
type TPM struct {
	dir      string
	addr     string // host:port of the TPM command channel
	ctrlAddr string
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error

	closeOnce sync.Once
	closeErr  error
}

// Start launches `swtpm socket --tpm2` with its state in dir (created if
// missing) on two free loopback ports and waits until the TPM answers a
// command. The TPM starts already initialised (TPM2_Startup(CLEAR) done by
// swtpm itself), with all PCRs zero and no event log.
//
// ctx bounds the start-up only: the process keeps running after Start
// returns until Close.
func Start(ctx context.Context, dir string, opts Options) (*TPM, error) {
	if opts.Binary == "" {
		opts.Binary = Binary
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("swtpm: cannot find %q: %w", opts.Binary, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("swtpm: state dir %s: %w", dir, err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	var errs []error
	for attempt := 1; attempt <= opts.Attempts; attempt++ {
		t, err := startOnce(ctx, bin, dir)
		if err == nil {
			return t, nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("swtpm: could not start in %s: %w", dir, errors.Join(errs...))
}

// freePorts asks the kernel for n distinct free loopback ports. Another
// process can still grab one before swtpm binds it; Start retries then.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func startOnce(ctx context.Context, bin, dir string) (*TPM, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "swtpm.log")
	// Not exec.CommandContext: the emulator must outlive the start-up context.
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", "type=tcp,port="+strconv.Itoa(ports[0])+",bindaddr=127.0.0.1",
		"--ctrl", "type=tcp,port="+strconv.Itoa(ports[1])+",bindaddr=127.0.0.1",
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+logPath+",level=1",
	)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	// If the test binary dies without calling Close, the kernel stops the
	// emulator too instead of leaving it bound to a port on a shared machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	t := &TPM{
		dir:      dir,
		addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		ctrlAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		cmd:      cmd,
		exited:   make(chan struct{}),
	}
	go func() {
		t.waitErr = cmd.Wait()
		close(t.exited)
	}()

	for {
		err := t.ping(ctx)
		if err == nil {
			return t, nil
		}
		select {
		case <-t.exited:
			return nil, fmt.Errorf("swtpm exited (%v) before answering: %s %s", t.waitErr,
				strings.TrimSpace(stderr.String()), tail(logPath))
		case <-ctx.Done():
			t.Close()
			return nil, fmt.Errorf("swtpm on %s did not answer: %v (last: %v)", t.addr, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tail returns the end of the emulator's log for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 512 {
		b = b[len(b)-512:]
	}
	return "log: " + strings.TrimSpace(string(b))
}

// getRandom8 is TPM2_GetRandom(8): a harmless command that proves the TPM is
// initialised and answering.
var getRandom8 = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}

func (t *TPM) ping(ctx context.Context) error {
	c, err := t.Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(getRandom8); err != nil {
		return err
	}
	rsp := make([]byte, 64)
	n, err := c.Read(rsp)
	if err != nil {
		return err
	}
	if n < 10 || binary.BigEndian.Uint32(rsp[6:10]) != 0 {
		return fmt.Errorf("TPM2_GetRandom answered % x", rsp[:n])
	}
	return nil
}

// Addr is the TPM command channel as a device string for tee/tpm:
// "tcp://127.0.0.1:PORT".
func (t *TPM) Addr() string { return "tcp://" + t.addr }

// HostPort is the command channel's "127.0.0.1:PORT".
func (t *TPM) HostPort() string { return t.addr }

// Dir is the TPM state directory.
func (t *TPM) Dir() string { return t.dir }

// PID is the emulator's process id.
func (t *TPM) PID() int { return t.cmd.Process.Pid }

// Close stops the emulator (SIGTERM, then SIGKILL after 5 s) and waits for
// it. It is safe to call more than once.
func (t *TPM) Close() error {
	t.closeOnce.Do(func() {
		select {
		case <-t.exited:
			return
		default:
		}
		if err := t.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.closeErr = fmt.Errorf("swtpm: signal pid %d: %w", t.cmd.Process.Pid, err)
		}
		select {
		case <-t.exited:
		case <-time.After(5 * time.Second):
			_ = t.cmd.Process.Kill()
			<-t.exited
		}
	})
	return t.closeErr
}

// Dial opens a connection to the TPM command channel. swtpm serves one
// connection at a time: close it before another client dials. The returned
// connection hands a whole TPM response to each Read, which is what go-tpm's
// io.ReadWriter transport expects.
func (t *TPM) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("swtpm: dial %s: %w", t.addr, err)
	}
	return &framedConn{Conn: c}, nil
}

// maxResponse bounds one TPM response; TPM 2.0 responses are at most a few
// KiB, so anything larger is a broken stream.
const maxResponse = 64 << 10

// framedConn reads TPM responses whole: a TCP Read may return part of one,
// and go-tpm's RunCommandRaw does exactly one Read per command.
type framedConn struct {
	net.Conn
	pending []byte
}

func (c *framedConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		var hdr [10]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, fmt.Errorf("swtpm: reading response header: %w", err)
		}
		size := binary.BigEndian.Uint32(hdr[2:6])
		if size < 10 || size > maxResponse {
			return 0, fmt.Errorf("swtpm: response size %d out of range [10, %d]", size, maxResponse)
		}
		buf := make([]byte, size)
		copy(buf, hdr[:])
		if _, err := io.ReadFull(c.Conn, buf[10:]); err != nil {
			return 0, fmt.Errorf("swtpm: reading %d-byte response: %w", size, err)
		}
		c.pending = buf
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}
