package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima/imapolicy"
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// imaGenFlags are policy generate's flags for IMA runtime policies.
type imaGenFlags struct {
	on              bool
	list            string
	root            string
	hash            string
	excludes        []string
	allFiles        bool
	keyrings        bool
	buffers         bool
	allowViolations bool
}

// liveIMALists are where a node's IMA list is read under --host-root:
// binary first (it carries the exact template data), then ascii, under
// securityfs's two mount layouts.
var liveIMALists = []string{
	"sys/kernel/security/ima/binary_runtime_measurements",
	"sys/kernel/security/integrity/ima/binary_runtime_measurements",
	"sys/kernel/security/ima/ascii_runtime_measurements",
	"sys/kernel/security/integrity/ima/ascii_runtime_measurements",
}

func (f *imaGenFlags) addFlags(gen *cobra.Command) {
	gen.Long += `

With --ima, generate an IMA runtime policy instead: from a golden node's IMA
list (--ima-list FILE, ascii or binary, or --from-node: the live list under
--host-root) and/or from a directory tree (--ima-root DIR: a root file system
or an unpacked container image; every regular executable file is hashed and
listed under its run-time path; symbolic links are not followed, other file
systems not entered; at most ` + fmt.Sprint(imapolicy.MaxTreeFiles) + ` files, ` + fmt.Sprint(imapolicy.MaxTreeBytes>>30) + ` GiB, ` + fmt.Sprint(imapolicy.MaxTreeDepth) + ` levels).
-o hcl (the default) prints the ima block, -o keylime a Keylime runtime
policy (JSON). --exclude adds exclusions (regular expressions matched from
the start of the path); excluded paths are not listed.`
	fl := gen.Flags()
	fl.BoolVar(&f.on, "ima", false, "generate an IMA runtime policy (see below)")
	fl.StringVar(&f.list, "ima-list", "", "golden IMA measurement list, ascii or binary (with --ima)")
	fl.StringVar(&f.root, "ima-root", "", "directory tree whose executable files to hash (with --ima)")
	fl.StringVar(&f.hash, "hash", "sha256", "file digest algorithm for --ima-root: sha256, sha384 or sha512")
	fl.StringArrayVar(&f.excludes, "exclude", nil, "path exclusion, a regular expression (repeatable, with --ima)")
	fl.BoolVar(&f.allFiles, "all-files", false, "with --ima-root, hash every regular file, not only executable ones")
	fl.BoolVar(&f.keyrings, "keyrings", false, "with --ima, list keys measured into keyrings (ima-buf)")
	fl.BoolVar(&f.buffers, "ima-buf", false, "with --ima, list other ima-buf measurements")
	fl.BoolVar(&f.allowViolations, "allow-violations", false, "with --ima -o hcl, accept ToMToU and open-writers entries")
}

// generateIMA writes a runtime policy from a golden list and/or tree.
func (f *policyFlags) generateIMA(ctx context.Context, g *globals) error {
	ff := &f.ima
	format := g.output
	switch format {
	case "text", "hcl":
		format = "hcl"
	case "keylime":
	default:
		return fmt.Errorf("-o %q: with --ima, want hcl or keylime", g.output)
	}
	switch {
	case f.quote != "":
		return fmt.Errorf("--quote does not go with --ima: an IMA policy comes from --ima-list, --from-node or --ima-root")
	case ff.list != "" && f.fromNode:
		return fmt.Errorf("--ima-list and --from-node exclude each other")
	case ff.list == "" && !f.fromNode && ff.root == "":
		return fmt.Errorf("say where the golden measurements come from: --ima-list FILE, --from-node or --ima-root DIR")
	}
	gen, err := imapolicy.NewGenerator(ff.excludes)
	if err != nil {
		return err
	}
	if ff.list != "" || f.fromNode {
		raw, where, err := ff.readList(g, f.fromNode)
		if err != nil {
			return err
		}
		l, err := ima.Parse(raw, ima.Options{})
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		st := gen.AddList(l.Entries, imapolicy.ListOptions{Keyrings: ff.keyrings, Buffers: ff.buffers})
		fmt.Fprintf(g.stderr, "%s: %d entries: %d files listed, %d excluded, %d keys, %d buffers, %d violations, %d skipped\n",
			where, len(l.Entries), st.Files, st.Excluded, st.Keys, st.Buffers, st.Violations, st.Skipped)
		if st.Violations > 0 && !ff.allowViolations {
			fmt.Fprintf(g.stderr, "note: the list has %d violation entries (ToMToU, open writers); the policy rejects them (see --allow-violations)\n", st.Violations)
		}
	}
	if ff.root != "" {
		st, err := gen.AddTree(ctx, ff.root, imapolicy.TreeOptions{Hash: ff.hash, AllFiles: ff.allFiles})
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stderr, "%s: %d files hashed (%d bytes), %d excluded, %d symbolic links and %d other file systems not followed, %d files skipped\n",
			ff.root, st.Files, st.Bytes, st.Excluded, st.Symlinks, st.Mounts, st.Skipped)
	}
	p := gen.Policy()
	if len(p.Files) == 0 && len(p.Keyrings) == 0 && len(p.Buffers) == 0 && len(p.Exclude) == 0 {
		return fmt.Errorf("nothing to put in the policy: no file measured or hashed")
	}
	var out []byte
	switch format {
	case "keylime":
		if ff.allowViolations || f.warnOnly {
			return fmt.Errorf("-o keylime: --allow-violations and --warn-only are Keylime verifier settings, not policy; use -o hcl")
		}
		if out, err = imapolicy.KeylimeJSON(p); err != nil {
			return err
		}
		out = append(out, '\n')
		_, err = imapolicy.ParseKeylime(out, "generated policy")
	default:
		p.Enforce = !f.warnOnly
		p.AllowViolations = ff.allowViolations
		// An HCL block allows sha256, sha384 and sha512 unless it says: a
		// list of another algorithm (sha1 on older kernels) must name it,
		// or its own digests would fail.
		if algs := gen.Algorithms(); slices.ContainsFunc(algs, func(a string) bool { return !slices.Contains(conf.DefaultIMAHashAlgorithms, a) }) {
			p.HashAlgorithms = union(conf.DefaultIMAHashAlgorithms, algs)
			fmt.Fprintf(g.stderr, "note: the digests use %v: hash_algorithms allows %v\n", algs, p.HashAlgorithms)
		}
		out = []byte(p.HCL())
		if len(out) > conf.MaxIMAPolicyFileBytes {
			return fmt.Errorf("the HCL policy would be %d bytes, more than the loader's %d: use -o keylime", len(out), conf.MaxIMAPolicyFileBytes)
		}
		_, err = conf.ParseIMAPolicy(string(out), "generated policy")
	}
	if err != nil {
		// The generator wrote what its own loader refuses: a bug, not the
		// operator's input; say so rather than print it.
		return fmt.Errorf("the generated policy does not load back: %w", err)
	}
	_, err = g.stdout.Write(out)
	return err
}

// readList reads the golden list from --ima-list or, live, from the first
// of liveIMALists under --host-root that exists.
func (ff *imaGenFlags) readList(g *globals, live bool) ([]byte, string, error) {
	if !live {
		b, err := smallfile.Read(ff.list, ima.DefaultMaxBytes)
		if err != nil {
			return nil, "", fmt.Errorf("--ima-list: %w", err)
		}
		return b, ff.list, nil
	}
	for _, rel := range liveIMALists {
		p := filepath.Join(g.hostRoot, rel)
		b, err := smallfile.Read(p, ima.DefaultMaxBytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return b, p, nil
	}
	return nil, "", fmt.Errorf("no IMA measurement list under %s (is securityfs mounted and IMA on?)", g.hostRoot)
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
