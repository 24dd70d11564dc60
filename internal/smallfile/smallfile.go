// Package smallfile reads and writes the small files the plugins keep
// (instance IDs, checkpoints, simulator state, cached collateral, PEM files):
// reads are bounded so that a file replaced by something huge cannot exhaust
// memory, and writes are atomic and durable so that a crash never leaves a
// torn file behind for the next start to trip on.
package smallfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrTooLarge is wrapped by Read when a file holds more than its limit; its
// text ends Read's sentence ("... is larger than the 4096-byte limit").
var ErrTooLarge = errors.New("limit")

// Read returns the content of path, failing with an error naming the path
// and wrapping ErrTooLarge when it holds more than limit bytes. Only regular
// files are read (procfs, sysfs, securityfs and configfs files are regular):
// the file is opened without blocking, so a FIFO planted where a file was
// expected is refused instead of hanging the reader.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than the %d-byte %w", path, limit, ErrTooLarge)
	}
	return b, nil
}

// Write replaces path with data and mode: readers see the old or the new
// content, never a mix, and the new content survives a crash once Write
// returns (temporary file in the same directory, fsync, rename, directory
// fsync).
func Write(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, os.Rename)
}

// Create writes data to path like Write but fails with an error wrapping
// fs.ErrExist when path already exists, so that two processes racing to
// create the same identity never both believe they did.
func Create(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, os.Link)
}

func write(path string, data []byte, mode fs.FileMode, publish func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// A no-op after a rename; after a link it drops the temporary name.
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := publish(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
