package tpm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// maxResponse bounds one TPM response read from a TCP stream; TPM 2.0
// responses are a few KiB at most.
const maxResponse = 64 << 10

// openDevice opens a character device or dials tcp://host:port.
func openDevice(ctx context.Context, device string) (io.ReadWriteCloser, error) {
	if addr, ok := strings.CutPrefix(device, "tcp://"); ok {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("tpm: device %q: want tcp://host:port: %w", device, err)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("tpm: connecting to %s: %w", device, err)
		}
		return &streamConn{Conn: c}, nil
	}
	if strings.Contains(device, "://") {
		return nil, fmt.Errorf("tpm: device %q: only tcp:// (raw TPM command stream, as swtpm serves) or a device path is supported", device)
	}
	f, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("tpm: opening %s: %w", device, err)
	}
	return f, nil
}

// streamConn hands go-tpm one whole TPM response per Read: a TCP Read may
// return a fragment, and go-tpm's transport reads once per command.
type streamConn struct {
	net.Conn
	pending []byte
}

func (c *streamConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		var hdr [10]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, fmt.Errorf("tpm: reading response header: %w", err)
		}
		size := binary.BigEndian.Uint32(hdr[2:6])
		if size < 10 || size > maxResponse {
			return 0, fmt.Errorf("tpm: response size %d out of range [10, %d]", size, maxResponse)
		}
		buf := make([]byte, size)
		copy(buf, hdr[:])
		if _, err := io.ReadFull(c.Conn, buf[10:]); err != nil {
			return 0, fmt.Errorf("tpm: reading %d-byte response: %w", size, err)
		}
		c.pending = buf
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}
