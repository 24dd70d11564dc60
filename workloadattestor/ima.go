package workloadattestor

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor/cgroup"
)

// imaIndex computes per-container IMRs from an ima-cgpath IMA log the way
// CCNP's server does (service/ccnp-server, container.rs and service.rs):
// every ima-cgpath entry whose cg-path names a container is filed under the
// container key (the pod UID on Kubernetes, else the container ID), and each
// key's register starts at zero and is extended SHA-384(imr || digest) with
// the digest IMA extended into the SHA-384 bank for that entry. CCNP seeds
// the register with the host processes its policy lists; with no such policy
// (the default here) the seed is zero.
//
// The list only grows, so the bytes read last time are kept and only what
// follows them is parsed again.
type imaIndex struct {
	path string

	mu   sync.Mutex
	seen []byte            // the list as last read
	imrs map[string][]byte // container key -> register
}

// maxIMALog bounds the list read (the ima package's own default).
const maxIMALog = ima.DefaultMaxBytes

func newIMAIndex(path string) *imaIndex {
	return &imaIndex{path: path, imrs: make(map[string][]byte)}
}

// containerIMR returns the register of the container key, or nil when the
// log has no entry for it.
func (x *imaIndex) containerIMR(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := readBounded(x.path, maxIMALog)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.update(b); err != nil {
		return nil, err
	}
	if v, ok := x.imrs[key]; ok {
		return bytes.Clone(v), nil
	}
	return nil, nil
}

func (x *imaIndex) update(b []byte) error {
	tail := b
	if len(x.seen) > 0 && bytes.HasPrefix(b, x.seen) {
		tail = b[len(x.seen):]
	} else {
		x.imrs = make(map[string][]byte)
	}
	if len(tail) == 0 {
		x.seen = b
		return nil
	}
	l, err := ima.Parse(tail, ima.Options{AllowUnknownTemplates: true})
	if err != nil {
		return fmt.Errorf("ima log %s: %w", x.path, err)
	}
	d := make([]byte, cctrusted.AlgSHA384.Size())
	for i := range l.Entries {
		e := &l.Entries[i]
		if e.Template != "ima-cgpath" || e.CgroupPath == "" || e.CgroupPath == "-" {
			continue
		}
		id := cgroup.IdentifyPath(e.CgroupPath)
		key := id.PodUID
		if key == "" {
			key = id.ContainerID
		}
		if key == "" {
			continue
		}
		if err := ima.EntryDigest(cctrusted.AlgSHA384, e, d); err != nil {
			return fmt.Errorf("ima log %s: entry %d: %w", x.path, i, err)
		}
		cur, ok := x.imrs[key]
		if !ok {
			cur = make([]byte, len(d))
		}
		s := sha512.Sum384(append(cur, d...))
		x.imrs[key] = s[:]
	}
	x.seen = b
	return nil
}

// readBounded reads a file that may report no size (securityfs).
func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ima log: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("ima log: reading %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("ima log: %s is larger than %d bytes", path, limit)
	}
	return b, nil
}
