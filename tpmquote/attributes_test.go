package tpmquote_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// TestReservedObjectAttributes: every function that parses a public area
// refuses one whose objectAttributes set a reserved bit, and accepts the
// real areas (swtpm's AKs and EKs in testdata).
func TestReservedObjectAttributes(t *testing.T) {
	for _, name := range []string{"ak-ecc.pub", "ak-rsa.pub", "ek-ecc.pub", "ek-rsa.pub"} {
		pub, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tpmquote.ParsePublic(pub); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, bit := range []uint{0, 3, 12, 15, 20, 31} {
			bad := bytes.Clone(pub)
			binary.BigEndian.PutUint32(bad[4:], binary.BigEndian.Uint32(bad[4:])|1<<bit)
			for fn, f := range map[string]func([]byte) error{
				"ParsePublic":   func(b []byte) error { _, err := tpmquote.ParsePublic(b); return err },
				"AKName":        func(b []byte) error { _, err := tpmquote.AKName(b); return err },
				"PublicKeyHash": func(b []byte) error { _, err := tpmquote.PublicKeyHash(b); return err },
			} {
				if err := f(bad); err == nil || !strings.Contains(err.Error(), "reserved objectAttributes") {
					t.Errorf("%s with bit %d: %s gives %v", name, bit, fn, err)
				}
			}
		}
	}
}
