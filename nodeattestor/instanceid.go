package nodeattestor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// InstanceIDSize is the number of random bytes in an instance ID; the file
// and the hello carry them as 2*InstanceIDSize lower-case hex characters.
const InstanceIDSize = 16

// maxInstanceIDFile bounds what is read from the instance ID file: the ID and
// a trailing newline someone may have added with an editor.
const maxInstanceIDFile = 2*InstanceIDSize + 2

// InstanceID returns the agent's instance ID stored at path, creating it
// (16 random bytes, hex, mode 0600) the first time. TDX gives a VM no
// identity of its own, so this ID names the node in its agent ID: it must
// survive restarts and must never change behind the operator's back. Hence
// an existing file that does not hold a well-formed ID is an error, never
// overwritten.
//
// Creation is atomic across processes: the ID is written to a temporary file
// in the same directory, synced, and hard-linked into place, which fails if
// another process got there first; the loser then reads the winner's ID.
func InstanceID(path string) (string, error) {
	if id, err := readInstanceID(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("instance id %s: %w", path, err)
	}
	var raw [InstanceIDSize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("instance id: random: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	if err := smallfile.Create(path, []byte(id+"\n"), 0o600); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("instance id %s: %w", path, err)
		}
		// Another process created it between our read and our link.
		return readInstanceID(path)
	}
	return id, nil
}

// readInstanceID reads and checks an existing instance ID file.
func readInstanceID(path string) (string, error) {
	b, err := smallfile.Read(path, maxInstanceIDFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("instance id: %w (remove the file to create a new identity)", err)
	}
	id, err := parseInstanceID(b)
	if err != nil {
		return "", fmt.Errorf("instance id %s: %w (remove the file to create a new identity)", path, err)
	}
	return id, nil
}

// parseInstanceID accepts exactly 32 lower-case hex characters, optionally
// followed by one newline.
func parseInstanceID(b []byte) (string, error) {
	if len(b) > maxInstanceIDFile {
		return "", fmt.Errorf("file is larger than %d bytes", maxInstanceIDFile)
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if len(b) != 2*InstanceIDSize {
		return "", fmt.Errorf("holds %d characters, want %d hex characters", len(b), 2*InstanceIDSize)
	}
	for i, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("character %q at offset %d is not lower-case hex", c, i)
		}
	}
	return string(b), nil
}
