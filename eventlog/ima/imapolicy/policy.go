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
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
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

// digestMap maps names to allowed digests. It is an open-addressing table
// of 8-byte slots over one arena that holds each name beside its digests:
// a lookup hashes the name (maphash, seeded per map), reads one slot (the
// high half of the hash as a tag, the arena offset) and, when the tag
// matches, one arena run holding name and digests together. A Go map of
// strings would add a miss for the key's bytes, which live apart from the
// slot; on a 50k-path policy those misses were most of the appraisal.
type digestMap struct {
	seed  maphash.Seed
	slots []digestSlot // len a power of two, at most half full; nil when empty
	arena []byte       // per name: u32 name length, name, u32 count, (u8 length, digest)*
}

type digestSlot struct {
	tag uint32 // high half of the name's hash
	off uint32 // arena offset of the name's run; 0: empty (the arena starts with a pad byte)
}

// has reports whether name is listed, and whether d is one of its digests.
func (m *digestMap) has(name string, d []byte) (listed, allowed bool) {
	return m.digestsAt(m.find(name), d)
}

// find returns the arena offset of name's digest count, 0 when name is not
// listed.
func (m *digestMap) find(name string) uint32 {
	if m.slots == nil {
		return 0
	}
	h := maphash.String(m.seed, name)
	return m.probe(h, h&uint64(len(m.slots)-1), name)
}

// probe looks for name, whose hash is h, from slot i on.
func (m *digestMap) probe(h, i uint64, name string) uint32 {
	mask := uint64(len(m.slots) - 1)
	for ; ; i = (i + 1) & mask {
		sl := m.slots[i]
		if sl.off == 0 {
			return 0
		}
		if r := m.match(sl, uint32(h>>32), name); r != 0 {
			return r
		}
	}
}

// match returns the offset of the digest count when slot sl holds name.
func (m *digestMap) match(sl digestSlot, tag uint32, name string) uint32 {
	if sl.tag != tag {
		return 0
	}
	a := m.arena[sl.off:]
	nl := int(binary.LittleEndian.Uint32(a))
	if nl != len(name) || string(a[4:4+nl]) != name {
		return 0
	}
	return sl.off + 4 + uint32(nl)
}

// resolveBatch is how many entries resolve looks up together: enough for
// their cache misses to overlap, few enough for its arrays to stay on the
// stack.
const resolveBatch = 16

// resolve sets runs[k] to find(entries[k].FileName). It reads every
// entry's first slot before comparing any name, and touches every
// candidate's arena run before comparing it, so that the loads of a batch,
// independent of each other, are in flight together; whatever the first
// slot does not settle is probed on from the next slot.
func (m *digestMap) resolve(entries []ima.Entry, runs []uint32) {
	if m.slots == nil {
		clear(runs)
		return
	}
	var hs [resolveBatch]uint64
	var sl [resolveBatch]digestSlot
	var first [resolveBatch]byte
	mask := uint64(len(m.slots) - 1)
	for k := range entries {
		hs[k] = maphash.String(m.seed, entries[k].FileName)
		sl[k] = m.slots[hs[k]&mask]
	}
	for k := range entries {
		if sl[k].off != 0 && sl[k].tag == uint32(hs[k]>>32) {
			first[k] = m.arena[sl[k].off]
		}
	}
	for k := range entries {
		switch {
		case sl[k].off == 0:
			runs[k] = 0 // an empty first slot: not listed
		case first[k] == byte(len(entries[k].FileName)):
			if runs[k] = m.match(sl[k], uint32(hs[k]>>32), entries[k].FileName); runs[k] == 0 {
				runs[k] = m.probe(hs[k], (hs[k]+1)&mask, entries[k].FileName)
			}
		default:
			runs[k] = m.probe(hs[k], (hs[k]+1)&mask, entries[k].FileName)
		}
	}
}

// digestsAt reports whether run (from find; 0: not listed) is listed, and
// whether d is one of its digests.
func (m *digestMap) digestsAt(run uint32, d []byte) (listed, allowed bool) {
	if run == 0 {
		return false, false
	}
	a := m.arena[run:]
	n := binary.LittleEndian.Uint32(a)
	a = a[4:]
	for range n {
		l := int(a[0])
		if l == len(d) && equalDigest(a[1:1+l], d) {
			return true, true
		}
		a = a[1+l:]
	}
	return true, false
}

// equalDigest compares digests of the common sizes as fixed-size arrays
// (a few wide loads, no call), others byte by byte.
func equalDigest(a, b []byte) bool {
	switch len(b) {
	case 32:
		return [32]byte(a) == [32]byte(b)
	case 48:
		return [48]byte(a) == [48]byte(b)
	case 20:
		return [20]byte(a) == [20]byte(b)
	case 64:
		return [64]byte(a) == [64]byte(b)
	}
	return bytes.Equal(a, b)
}

func decodeDigestMap(what string, m map[string][]string) (digestMap, error) {
	out := digestMap{seed: maphash.MakeSeed()}
	if len(m) == 0 {
		return out, nil
	}
	size := 16
	for size < 2*len(m) {
		size *= 2
	}
	out.slots = make([]digestSlot, size)
	out.arena = []byte{0}
	mask := uint64(size - 1)
	for name, ds := range m {
		off := len(out.arena)
		out.arena = binary.LittleEndian.AppendUint32(out.arena, uint32(len(name)))
		out.arena = binary.LittleEndian.AppendUint32(append(out.arena, name...), uint32(len(ds)))
		for i, d := range ds {
			b, err := decodeDigest(d)
			if err != nil {
				return digestMap{}, fmt.Errorf("%s %q: digests[%d]: %w", what, name, i, err)
			}
			out.arena = append(append(out.arena, byte(len(b))), b...)
		}
		if uint64(len(out.arena)) > 1<<32-1 {
			return digestMap{}, fmt.Errorf("%s: more than 4 GiB of names and digests", what)
		}
		h := maphash.String(out.seed, name)
		i := h & mask
		for out.slots[i].off != 0 {
			i = (i + 1) & mask
		}
		out.slots[i] = digestSlot{tag: uint32(h >> 32), off: uint32(off)}
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
		// The prefix comes from the pattern as written: the anchored
		// form's LiteralPrefix calls "^(?:/tmp/$)" complete, and trusting
		// that would exclude "/tmp/x" (TestExcludeLiteralPrefixAnchors).
		prefix, complete := regexp.MustCompile(pat).LiteralPrefix()
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
