package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStreamConn feeds the TCP framing responses split, oversized, short
// and garbled.
func TestStreamConn(t *testing.T) {
	rsp := func(size uint32, body []byte) []byte {
		b := []byte{0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[2:], size)
		return append(b, body...)
	}
	for name, tc := range map[string]struct {
		chunks [][]byte
		want   string // error substring, "" = success
		n      int
	}{
		"whole":          {[][]byte{rsp(14, []byte{1, 2, 3, 4})}, "", 14},
		"split":          {[][]byte{rsp(14, nil)[:3], rsp(14, nil)[3:], {1, 2}, {3, 4}}, "", 14},
		"oversized":      {[][]byte{rsp(maxResponse+1, nil)}, "out of range", 0},
		"size too small": {[][]byte{rsp(9, nil)}, "out of range", 0},
		"short body":     {[][]byte{rsp(100, []byte{1})}, "100-byte response", 0},
		"short header":   {[][]byte{{0x80, 0x01}}, "response header", 0},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				for _, c := range tc.chunks {
					b.Write(c)
				}
				b.Close()
			}()
			sc := &streamConn{Conn: a}
			defer sc.Close()
			buf := make([]byte, 4096)
			n, err := sc.Read(buf)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil || n != tc.n {
				t.Fatalf("Read = %d, %v", n, err)
			}
		})
	}
	// A small reader buffer gets the rest of the response on the next Read.
	a, b := net.Pipe()
	go func() { b.Write(rsp(14, []byte{1, 2, 3, 4})); b.Close() }()
	sc := &streamConn{Conn: a}
	defer sc.Close()
	p1 := make([]byte, 8)
	p2 := make([]byte, 8)
	n1, _ := sc.Read(p1)
	n2, _ := sc.Read(p2)
	if n1 != 8 || n2 != 6 || !bytes.Equal(p2[:n2], []byte{0, 0, 1, 2, 3, 4}) {
		t.Fatalf("reads %d %d %x", n1, n2, p2)
	}
}

func TestRawLogs(t *testing.T) {
	root := t.TempDir()
	p := &Provider{opts: Options{HostRoot: root}}
	ctx := context.Background()
	if _, err := p.RawEventLog(ctx); err == nil || !strings.Contains(err.Error(), EventLogPath) {
		t.Fatalf("missing log: %v", err)
	}
	if _, err := p.EventLog(ctx, 0, 0); err == nil {
		t.Fatal("EventLog without a log")
	}
	alt := filepath.Join(root, IMALogPathAlt)
	if err := os.MkdirAll(filepath.Dir(alt), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alt, []byte("ima"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := p.RawIMALog(ctx); err != nil || string(b) != "ima" {
		t.Fatalf("IMA log from the integrity/ path: %q, %v", b, err)
	}
	// A log that is not a TCG log is an error naming the file.
	el := filepath.Join(root, EventLogPath)
	os.MkdirAll(filepath.Dir(el), 0o755)
	os.WriteFile(el, []byte("garbage garbage garbage garbage"), 0o644)
	if _, err := p.EventLog(ctx, 0, 0); err == nil || !strings.Contains(err.Error(), "binary_bios_measurements") {
		t.Fatalf("garbage log: %v", err)
	}
}
