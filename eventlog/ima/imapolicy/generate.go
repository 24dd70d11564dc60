package imapolicy

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
)

// Generator builds a runtime policy from golden measurements: the IMA list
// of a golden node (AddList) and the files of a root filesystem or unpacked
// container image (AddTree). Paths an exclusion matches are left out of the
// file list, since appraisal allows them whatever their digest. It follows
// `keylime-policy create runtime` (keylime/policy/create_runtime_policy.py)
// where Keylime decides, and says so where it differs.
type Generator struct {
	excl     excluder
	excludes []string
	files    map[string][]string
	keyrings map[string][]string
	buffers  map[string][]string
	algs     map[string]bool
}

// NewGenerator starts an empty policy with these exclusions, checked by the
// rules the policy loader applies (conf.ValidIMAExclude); an error names
// the pattern.
func NewGenerator(excludes []string) (*Generator, error) {
	for _, x := range excludes {
		if err := conf.ValidIMAExclude(x); err != nil {
			return nil, fmt.Errorf("--exclude %q: %w", x, err)
		}
	}
	excl, err := compileExcludes(excludes)
	if err != nil {
		return nil, err
	}
	return &Generator{
		excl: excl, excludes: slices.Clone(excludes),
		files: map[string][]string{}, keyrings: map[string][]string{}, buffers: map[string][]string{},
		algs: map[string]bool{},
	}, nil
}

// ListOptions say which measurements of a list become policy.
type ListOptions struct {
	// Keyrings lists keys measured into keyrings (ima-buf entries holding
	// a key) under their keyring (Keylime: --keyrings).
	Keyrings bool
	// Buffers lists other ima-buf measurements under their name (Keylime:
	// --ima-buf).
	Buffers bool
}

// ListStats counts what AddList did with a list's entries.
type ListStats struct {
	Files      int // file measurements listed (boot_aggregate among them)
	Excluded   int // file measurements an exclusion covers
	Keys       int // keys listed under their keyring
	Buffers    int // other buffers listed
	Violations int // ToMToU or open-writers entries: they measured nothing
	Skipped    int // entries that cannot become policy (see AddList)
}

// AddList adds the measurements of a golden list. As Keylime's generator
// does, every file measurement, boot_aggregate included, is listed under
// its path with its digest, and ima-buf entries are listed only when asked
// (keys under their keyring, other buffers under their
// name). Keylime has no notion of violation entries when it generates: it
// lists their all-zero digest under the path, which allows nothing a real
// file can measure to; this generator lists nothing for them and counts
// them, since accepting them is the policy's violations setting. Skipped
// are entries that no policy can allow this way: an unknown template, a
// digest shorter than SHA-1's, a name that is not UTF-8, a key of a type
// IMA signatures cannot use, buffers and keys not asked for.
func (g *Generator) AddList(entries []ima.Entry, o ListOptions) ListStats {
	var st ListStats
	for i := range entries {
		e := &entries[i]
		d := e.FileDigest.Value
		switch {
		case e.Violation:
			st.Violations++
			continue
		case !utf8.ValidString(e.FileName) || e.FileName == "" || conf.ValidIMADigest(hex.EncodeToString(d)) != nil:
			st.Skipped++
			continue
		}
		switch e.Template {
		case "ima-buf":
			_, err := ParseKey(e.Buf)
			switch {
			case err == nil && o.Keyrings:
				g.keyrings[e.FileName] = append(g.keyrings[e.FileName], hex.EncodeToString(d))
				st.Keys++
			case err == nil || errors.Is(err, ErrUnsupportedKey) || !o.Buffers:
				st.Skipped++
			default:
				g.buffers[e.FileName] = append(g.buffers[e.FileName], hex.EncodeToString(d))
				st.Buffers++
			}
		case "ima", "ima-ng", "ima-ngv2", "ima-sig", "ima-sigv2", "ima-cgpath", "ima-dep-cgn":
			if g.excl.match(e.FileName) {
				st.Excluded++
				continue
			}
			g.files[e.FileName] = append(g.files[e.FileName], hex.EncodeToString(d))
			g.algs[e.DigestAlgo] = true
			st.Files++
		default:
			st.Skipped++
		}
	}
	return st
}

// Bounds of a tree walk: a root filesystem has some hundred thousand files;
// these stop a walk of something else (a mount of the whole network, a
// loop of bind mounts) with an error instead of running for hours.
const (
	// MaxTreeEntries bounds the directory entries a walk visits.
	MaxTreeEntries = 4 << 20
	// MaxTreeFiles bounds the files a walk hashes.
	MaxTreeFiles = 1 << 20
	// MaxTreeBytes bounds the bytes a walk hashes in all.
	MaxTreeBytes = 64 << 30
	// MaxTreeDepth bounds how deep a walk descends.
	MaxTreeDepth = 128
	// maxTreePath bounds a path (PATH_MAX).
	maxTreePath = 4096
)

// TreeOptions say how AddTree walks a tree.
type TreeOptions struct {
	// Hash is the kernel's name of the digest algorithm: sha256 (the
	// default), sha384 or sha512, as the node's ima_hash= says.
	Hash string
	// AllFiles hashes every regular file, not only executable ones:
	// Keylime does, and IMA measures libraries mapped executable and
	// files read under a policy's func=FILE_CHECK rules whatever their mode.
	AllFiles bool
}

// TreeStats counts what AddTree did.
type TreeStats struct {
	Files    int   // files hashed and listed
	Bytes    int64 // bytes hashed
	Excluded int   // files an exclusion covers
	Symlinks int   // symbolic links, never followed
	Mounts   int   // directories on another file system, not entered
	Skipped  int   // regular files left out: not executable (without AllFiles) or a name that is not UTF-8
}

// treeHashes are the algorithms AddTree computes, by the kernel's names.
var treeHashes = map[string]crypto.Hash{"sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512}

// AddTree hashes the regular executable files under dir (a root file system
// or an unpacked container image) and lists each under the path it has at
// run time: relative to dir, with a leading "/", spaces written as "_" as
// IMA writes them. Symbolic links are never followed (IMA measures the file
// a link resolves to, under that file's own path, which the walk reaches
// by itself) and every open goes through an os.Root of dir, so nothing
// outside dir is read even if the tree changes during the walk. Other file
// systems mounted below dir are not entered (as Keylime's --rootfs). The
// walk is bounded by MaxTreeEntries, MaxTreeFiles, MaxTreeBytes and
// MaxTreeDepth: going past one is an error, never a partial policy.
func (g *Generator) AddTree(ctx context.Context, dir string, o TreeOptions) (TreeStats, error) {
	var st TreeStats
	alg := o.Hash
	if alg == "" {
		alg = "sha256"
	}
	h, ok := treeHashes[alg]
	if !ok {
		return st, fmt.Errorf("--hash %q: want sha256, sha384 or sha512", alg)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("--ima-root: %w", err)
	}
	defer root.Close()
	top, err := root.Stat(".")
	if err != nil {
		return st, fmt.Errorf("--ima-root: %w", err)
	}
	dev, devOK := device(top)
	var entries int
	buf := make([]byte, 1<<20)
	err = fs.WalkDir(root.FS(), ".", func(name string, de fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", path.Join(dir, name), err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if entries++; entries > MaxTreeEntries {
			return fmt.Errorf("more than %d entries under %s", MaxTreeEntries, dir)
		}
		runPath := "/" + name
		if name == "." {
			runPath = "/"
		}
		if len(runPath) > maxTreePath {
			return fmt.Errorf("%s: path longer than %d bytes", path.Join(dir, name), maxTreePath)
		}
		switch t := de.Type(); {
		case t&fs.ModeSymlink != 0:
			st.Symlinks++
			return nil
		case t.IsDir():
			if strings.Count(name, "/") >= MaxTreeDepth {
				return fmt.Errorf("%s: deeper than %d directories", path.Join(dir, name), MaxTreeDepth)
			}
			if name != "." && devOK {
				if fi, err := de.Info(); err == nil {
					if d, ok := device(fi); ok && d != dev {
						st.Mounts++
						return fs.SkipDir
					}
				}
			}
			return nil
		case !t.IsRegular():
			return nil // devices, sockets, FIFOs: IMA measures none of them as files
		}
		fi, err := de.Info()
		if err != nil {
			return fmt.Errorf("%s: %w", path.Join(dir, name), err)
		}
		runPath = strings.ReplaceAll(runPath, " ", "_")
		switch {
		case !o.AllFiles && fi.Mode().Perm()&0o111 == 0, !utf8.ValidString(runPath):
			st.Skipped++
			return nil
		case g.excl.match(runPath):
			st.Excluded++
			return nil
		}
		if st.Files++; st.Files > MaxTreeFiles {
			return fmt.Errorf("more than %d files to hash under %s", MaxTreeFiles, dir)
		}
		sum, n, err := hashFile(ctx, root, name, h, buf, MaxTreeBytes-st.Bytes)
		st.Bytes += n
		if err != nil {
			return fmt.Errorf("%s: %w", path.Join(dir, name), err)
		}
		g.files[runPath] = append(g.files[runPath], sum)
		g.algs[alg] = true
		return nil
	})
	return st, err
}

// hashFile hashes one file of the tree, reading at most limit bytes.
func hashFile(ctx context.Context, root *os.Root, name string, h crypto.Hash, buf []byte, limit int64) (string, int64, error) {
	// O_NONBLOCK: a FIFO put in the file's place after the walk saw it
	// must not hang the walk; the fstat below then refuses it.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return "", 0, err
	} else if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("no longer a regular file")
	}
	hh := h.New()
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", n, err
		}
		k, err := f.Read(buf)
		n += int64(k)
		if n > limit {
			return "", n, fmt.Errorf("more than %d bytes hashed under the tree", int64(MaxTreeBytes))
		}
		hh.Write(buf[:k])
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", n, err
		}
	}
	return hex.EncodeToString(hh.Sum(nil)), n, nil
}

func device(fi fs.FileInfo) (uint64, bool) {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), true
	}
	return 0, false
}

// Algorithms returns the file digest algorithms of the listed digests,
// sorted: a policy in HCL must allow them in hash_algorithms when they are
// not the default ones (sha1 lists).
func (g *Generator) Algorithms() []string {
	out := make([]string, 0, len(g.algs))
	for a := range g.algs {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Policy returns what was gathered as an enforcing policy, every digest
// list sorted and without duplicates (as Keylime writes them). It leaves
// HashAlgorithms nil (every algorithm, as a Keylime policy), which the
// caller narrows for HCL.
func (g *Generator) Policy() *conf.IMAPolicy {
	return &conf.IMAPolicy{
		Enforce:  true,
		Exclude:  slices.Clone(g.excludes),
		Files:    uniq(g.files),
		Keyrings: uniq(g.keyrings),
		Buffers:  uniq(g.buffers),
		Source:   "generated policy",
	}
}

func uniq(m map[string][]string) map[string][]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		v = slices.Clone(v)
		sort.Strings(v)
		out[k] = slices.Compact(v)
	}
	return out
}
