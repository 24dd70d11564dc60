// Package imapolicy appraises IMA measurement lists against runtime
// policies: which files may have run with which digests, which signing keys
// vouch for files, which keys and buffers the kernel may have measured. It
// reads a policy in two forms, the HCL ima block (conf.ParseIMAPolicy) and
// Keylime's runtime policy JSON (ParseKeylime), both into one model
// (conf.IMAPolicy), compiles it once (Compile) and appraises parsed entries
// ([]ima.Entry) in full or incrementally (Policy.Appraise with a Verdict).
//
// The rules are Keylime's (keylime/ima/ima.py, _validate_ima_ng,
// _validate_ima_sig, _validate_ima_buf; file_signatures.py), so that a
// Keylime policy gives the verdict Keylime gives. Where this package differs
// it says so at the rule: it adds ima-cgpath, ima-dep-cgn and the v2
// templates, signature v3 (fs-verity), allowed hash algorithms, path-
// independent digests and per-container scope.
//
// The package appraises what a list says; that the list is the one the
// hardware signed is Replay's and Verify's job in eventlog/ima, and must be
// checked first.
package imapolicy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// maxKeyFile bounds a verification key file: a certificate is a few KB.
const maxKeyFile = 1 << 20

// Policy is a compiled runtime policy, safe for concurrent use.
type Policy struct {
	enforce         bool
	podUID          string
	containerID     string
	algs            map[string]bool // nil: every algorithm
	allowViolations bool
	excl            excluder
	files           digestMap
	anyPath         map[string]struct{} // string(raw digest)
	keyrings        digestMap
	ignoreAllRings  bool
	ignoredRings    map[string]bool
	buffers         digestMap
	keys            map[uint32][]*Key
	fingerprint     string

	// learned caches keys parsed from keyring measurements, by the SHA-256
	// of their DER, so that resuming a Verdict does not parse them again.
	mu      sync.Mutex
	learned map[[32]byte]*Key
}

// Compile checks and precomputes a policy: exclusions compiled once,
// digests decoded into maps, keys parsed (key files read). Errors name the
// policy field (and for keys the source line).
func Compile(ctx context.Context, src *conf.IMAPolicy) (*Policy, error) {
	if src == nil {
		return nil, fmt.Errorf("ima policy: none given")
	}
	p := &Policy{
		enforce:         src.Enforce,
		podUID:          src.PodUID,
		containerID:     src.ContainerID,
		allowViolations: src.AllowViolations,
		learned:         make(map[[32]byte]*Key),
		keys:            make(map[uint32][]*Key),
	}
	if p.podUID != "" && p.containerID != "" {
		return nil, fmt.Errorf("%s: pod_uid and container_id are both set", src.Source)
	}
	if src.HashAlgorithms != nil {
		p.algs = make(map[string]bool, len(src.HashAlgorithms))
		for _, a := range src.HashAlgorithms {
			p.algs[a] = true
		}
	}
	var err error
	if p.excl, err = compileExcludes(src.Exclude); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Source, err)
	}
	if p.files, err = decodeDigestMap("file", src.Files); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Source, err)
	}
	if p.keyrings, err = decodeDigestMap("keyring", src.Keyrings); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Source, err)
	}
	if p.buffers, err = decodeDigestMap("buffer", src.Buffers); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Source, err)
	}
	p.anyPath = make(map[string]struct{}, len(src.Digests))
	for i, d := range src.Digests {
		b, err := decodeDigest(d)
		if err != nil {
			return nil, fmt.Errorf("%s: digests[%d]: %w", src.Source, i, err)
		}
		p.anyPath[string(b)] = struct{}{}
	}
	p.ignoredRings = make(map[string]bool, len(src.IgnoredKeyrings))
	for _, r := range src.IgnoredKeyrings {
		if r == "*" {
			p.ignoreAllRings = true
		}
		p.ignoredRings[r] = true
	}
	keyDERs := make([][]byte, 0, len(src.VerificationKeys))
	for _, kc := range src.VerificationKeys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data := kc.Data
		if kc.File != "" {
			if data, err = smallfile.Read(kc.File, maxKeyFile); err != nil {
				return nil, fmt.Errorf("%s: %w", kc.Where, err)
			}
		}
		k, err := ParseKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kc.Where, err)
		}
		if kc.HasKeyID {
			k.ID = kc.KeyID
		}
		p.keys[k.ID] = append(p.keys[k.ID], k)
		keyDERs = append(keyDERs, binaryKeyID(k.ID, k.DER))
	}
	p.fingerprint = fingerprint(src, keyDERs)
	return p, nil
}

func binaryKeyID(id uint32, der []byte) []byte {
	return append([]byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}, der...)
}

// fingerprint identifies the policy's content, so a Verdict computed under
// one policy is never continued under another. Keys count by their DER and
// key ID (not by file name); JSON of the model sorts map keys.
func fingerprint(src *conf.IMAPolicy, keys [][]byte) string {
	type canon struct {
		Enforce         bool
		PodUID          string
		ContainerID     string
		HashAlgorithms  []string
		AllowViolations bool
		Exclude         []string
		Digests         []string
		Files           map[string][]string
		Keyrings        map[string][]string
		IgnoredKeyrings []string
		Buffers         map[string][]string
		Keys            [][]byte
	}
	c := canon{src.Enforce, src.PodUID, src.ContainerID, src.HashAlgorithms, src.AllowViolations,
		src.Exclude, src.Digests, src.Files, src.Keyrings, src.IgnoredKeyrings, src.Buffers, keys}
	b, err := json.Marshal(c)
	if err != nil {
		// Only maps of strings and byte slices: cannot fail.
		panic(err)
	}
	h := sha256.Sum256(append([]byte("ccnp-spire ima policy v1\x00"), b...))
	return hex.EncodeToString(h[:])
}

// Fingerprint is the hex SHA-256 identifying the policy's content: a
// Verdict carries it, and the server can log it.
func (p *Policy) Fingerprint() string { return p.fingerprint }

// Enforce reports whether an offending entry fails the policy (false:
// warn-only, mode = "warn").
func (p *Policy) Enforce() bool { return p.enforce }

// Scope returns the pod UID or container ID the policy is restricted to
// (at most one is set), both empty for a node-wide policy.
func (p *Policy) Scope() (podUID, containerID string) { return p.podUID, p.containerID }

func decodeDigest(s string) ([]byte, error) {
	if err := conf.ValidIMADigest(s); err != nil {
		return nil, err
	}
	return hex.DecodeString(s)
}

// digestMap maps names to allowed digests. The digests live in one arena,
// each as a length byte and its bytes, and the map holds only where a
// name's run starts: a lookup touches the map slot, the key and one arena
// run, which keeps a 50k-path policy's lookups cheap in cache misses.
type digestMap struct {
	idx   map[string]digestRun
	arena []byte
}

type digestRun struct {
	off uint32
	n   uint32
}

// has reports whether name is listed, and whether d is one of its digests.
func (m *digestMap) has(name string, d []byte) (listed, allowed bool) {
	r, ok := m.idx[name]
	if !ok {
		return false, false
	}
	a := m.arena[r.off:]
	for range r.n {
		l := int(a[0])
		if l == len(d) && bytes.Equal(a[1:1+l], d) {
			return true, true
		}
		a = a[1+l:]
	}
	return true, false
}

func decodeDigestMap(what string, m map[string][]string) (digestMap, error) {
	out := digestMap{idx: make(map[string]digestRun, len(m))}
	for name, ds := range m {
		run := digestRun{off: uint32(len(out.arena)), n: uint32(len(ds))}
		for i, d := range ds {
			b, err := decodeDigest(d)
			if err != nil {
				return digestMap{}, fmt.Errorf("%s %q: digests[%d]: %w", what, name, i, err)
			}
			out.arena = append(append(out.arena, byte(len(b))), b...)
		}
		if uint64(len(out.arena)) > 1<<32-1 {
			return digestMap{}, fmt.Errorf("%s: more than 4 GiB of digests", what)
		}
		out.idx[name] = run
	}
	return out, nil
}

// excluder matches paths against the exclusions as Keylime does: its
// valid_exclude_list joins them as "(a)|(b)|..." and calls re.match, which
// anchors at the start of the path only ("/tmp/" excludes "/tmp/x"; use "$"
// to anchor the end). Each pattern is compiled alone, anchored the same
// way, and patterns with a literal prefix are only run on paths with that
// prefix: most exclusions are directories, and this keeps a 100k-entry list
// from running every regular expression on every path.
type excluder struct {
	prefixed []prefixedRE
	rest     *regexp.Regexp // the patterns without a literal prefix, joined
}

type prefixedRE struct {
	prefix string
	re     *regexp.Regexp // nil when the pattern is the literal prefix
}

func compileExcludes(pats []string) (excluder, error) {
	var e excluder
	var rest []string
	for i, pat := range pats {
		if err := conf.ValidIMAExclude(pat); err != nil {
			return excluder{}, fmt.Errorf("exclude[%d]: %w", i, err)
		}
		re := regexp.MustCompile(`^(?:` + pat + `)`)
		prefix, complete := re.LiteralPrefix()
		if prefix == "" {
			rest = append(rest, "(?:"+pat+")")
			continue
		}
		if complete {
			re = nil // a plain directory: the prefix test is the whole match
		}
		e.prefixed = append(e.prefixed, prefixedRE{prefix, re})
	}
	if len(rest) > 0 {
		e.rest = regexp.MustCompile(`^(?:` + strings.Join(rest, "|") + `)`)
	}
	return e, nil
}

func (e *excluder) match(path string) bool {
	for i := range e.prefixed {
		if strings.HasPrefix(path, e.prefixed[i].prefix) && (e.prefixed[i].re == nil || e.prefixed[i].re.MatchString(path)) {
			return true
		}
	}
	return e.rest != nil && e.rest.MatchString(path)
}

func containsDigest(list [][]byte, d []byte) bool {
	return slices.ContainsFunc(list, func(x []byte) bool { return bytes.Equal(x, d) })
}

func (m *digestMap) allows(name string, d []byte) bool {
	_, ok := m.has(name, d)
	return ok
}
