package workloadsvc

import (
	"encoding/base64"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "ccnpl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "uds", "s.sock")

	l, err := Listen(sock, 0o660, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	if _, err := Listen(sock, 0o660, -1); err == nil {
		t.Fatal("a socket with a live server was replaced")
	}
	// A socket file whose server is gone is stale: replaced. (Closing a Go
	// listener unlinks its file, so make a stale one by hand.)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l, err = Listen(sock, 0o600, -1)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l.Close()

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, 0o660, -1); err == nil {
		t.Fatal("a regular file was replaced by the socket")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("the regular file was changed")
	}
}

func TestDecodeField(t *testing.T) {
	for _, tt := range []struct {
		in   string
		max  int
		want string
		ok   bool
	}{
		{"", 4, "", true},
		{"QUJD", 4, "ABC", true},
		{"QUI=", 4, "AB", true},
		{"QUI", 4, "AB", true},                 // unpadded
		{"QUJDRA==", 4, "ABCD", true},          // exactly max
		{"QUJDREU=", 4, "", false},             // max+1
		{"QUJDREVG", 4, "", false},             // over max, no padding
		{"QUJ=", 4, "", false},                 // non-canonical padding bits
		{"QU JD", 4, "", false},                // space
		{"QUJD\n", 4, "", false},               // newline
		{"_-_-", 4, "", false},                 // URL alphabet
		{"QUI==", 4, "", false},                // too much padding
		{"IXUKoBO1UM3c1wopN4sY", 64, "", true}, // CCNP's README nonce
	} {
		got, err := decodeField("f", tt.in, tt.max)
		if (err == nil) != tt.ok {
			t.Errorf("decodeField(%q, %d) error %v, want ok=%v", tt.in, tt.max, err, tt.ok)
			continue
		}
		if err != nil {
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
				t.Errorf("decodeField(%q): code %v", tt.in, st.Code())
			}
			continue
		}
		if tt.want != "" && string(got) != tt.want {
			t.Errorf("decodeField(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzDecodeField: never panics, never returns more than max bytes, and
// what it accepts is what the standard decoder reads.
func FuzzDecodeField(f *testing.F) {
	for _, s := range []string{"", "QUJD", "QUI", "QUI=", "IXUKoBO1UM3c1wopN4sY",
		"MTIzNDU2NzgxMjM0NTY3ODEyMzQ1Njc4MTIzNDU2NzgxMjM0NTY3ODEyMzQ1Njc4", "QUJ=", "====", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := decodeField("nonce", s, MaxNonceSize)
		if err != nil {
			return
		}
		if len(b) > MaxNonceSize {
			t.Fatalf("%d bytes accepted", len(b))
		}
		std, err1 := base64.StdEncoding.DecodeString(s)
		raw, err2 := base64.RawStdEncoding.DecodeString(s)
		if (err1 != nil || string(std) != string(b)) && (err2 != nil || string(raw) != string(b)) {
			t.Fatalf("%q decoded to %x, which no standard decoder agrees with", s, b)
		}
	})
}
