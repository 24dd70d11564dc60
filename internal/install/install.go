// Package install copies the ccnp plugins out of their image into a volume
// that SPIRE's containers mount: the init-container step of the chart's
// pattern for custom plugins. SPIRE's images are FROM scratch and so is
// ours, so there is no cp to run; this is it, with the checksums SPIRE's
// plugin_checksum wants printed on the way.
package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Copied is one installed file and the SHA-256 of what was written, as
// plugin_checksum takes it.
type Copied struct {
	Name   string
	SHA256 string
}

// Copy copies each named file from src into dst with mode 0755. Each file
// is written under a temporary name, synced, and renamed into place, so a
// SPIRE container never sees half a plugin, even when a pod restarts midway.
// Names must be plain file names: nothing outside src and dst is touched.
func Copy(ctx context.Context, src, dst string, names []string) ([]Copied, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("no files to install")
	}
	var out []Copied
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if n == "" || n == "." || n == ".." || strings.ContainsRune(n, '/') {
			return out, fmt.Errorf("%q is not a plain file name", n)
		}
		sum, err := copyFile(filepath.Join(src, n), filepath.Join(dst, n))
		if err != nil {
			return out, err
		}
		out = append(out, Copied{Name: n, SHA256: sum})
	}
	return out, nil
}

func copyFile(from, to string) (string, error) {
	in, err := os.Open(from)
	if err != nil {
		return "", err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", from)
	}
	tmp, err := os.CreateTemp(filepath.Dir(to), "."+filepath.Base(to)+".*")
	if err != nil {
		return "", fmt.Errorf("destination %s: %w", filepath.Dir(to), err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), in); err != nil {
		tmp.Close()
		return "", fmt.Errorf("copying %s: %w", from, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), to); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
