package imapolicy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ccnp-spire/ccnp-spire/cgroup"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
)

// Reason says why an entry offends a policy. The values are stable: they
// appear in log lines, gRPC messages and metrics labels.
type Reason string

// The reasons an entry offends.
const (
	// ReasonNotInPolicy: the path is not listed and its digest is not
	// allowed regardless of path (Keylime: not_in_allowlist).
	ReasonNotInPolicy Reason = "not_in_policy"
	// ReasonDigest: the path is listed with other digests
	// (Keylime: runtime_policy_hash).
	ReasonDigest Reason = "digest_not_allowed"
	// ReasonBadSignature: the signature names a configured key but does not
	// verify, and the digest is not allowed either.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonUnknownKey: the signature names no configured or measured key,
	// and the digest is not allowed either.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonMalformedSignature: the signature's header is inconsistent;
	// fails even on an excluded path (see appraiseFile).
	ReasonMalformedSignature Reason = "malformed_signature"
	// ReasonHashAlgorithm: the digest's algorithm is not allowed.
	ReasonHashAlgorithm Reason = "hash_algorithm"
	// ReasonKeyring: a key measured into a keyring the policy does not
	// list, or with a digest it does not list.
	ReasonKeyring Reason = "keyring_not_allowed"
	// ReasonInvalidKey: a keyring measurement holds a key of a type that
	// cannot be used (Keylime: invalid_key).
	ReasonInvalidKey Reason = "invalid_key"
	// ReasonTooManyKeys: more keys measured into keyrings than a Verdict
	// carries (MaxLearnedKeys).
	ReasonTooManyKeys Reason = "too_many_keys"
	// ReasonNoCgroupPath: a policy scoped to a pod or container met an
	// entry whose template (not ima-cgpath) does not say which cgroup ran
	// it; counting it as another pod's would let a kernel booted with
	// another template pass every scoped policy.
	ReasonNoCgroupPath Reason = "no_cgroup_path"
	// ReasonBuffer: an ima-buf measurement the policy does not allow.
	ReasonBuffer Reason = "buffer_not_allowed"
	// ReasonViolation: a ToMToU or open-writers entry, which measured
	// nothing, under violations = "reject".
	ReasonViolation Reason = "violation"
	// ReasonTemplate: an entry of a template that carries no file digest
	// this package can appraise (an unknown template kept opaque).
	ReasonTemplate Reason = "unappraisable_template"
)

// Bounds of what a Verdict carries, so that it stays small enough for a
// checkpoint (a few KB with full findings) however hostile the list.
const (
	// MaxFindings is how many offending entries a Verdict lists (the first
	// is always kept in First as well); Counts.Failed counts them all.
	MaxFindings = 32
	// MaxLearnedKeys bounds the keys learned from keyring measurements.
	MaxLearnedKeys = 32
	// maxFindingPath bounds a path in a Finding.
	maxFindingPath = 256
)

// Finding is one offending entry.
type Finding struct {
	// Index is the entry's 0-based position in the whole list.
	Index int `json:"index"`
	// Path is the file path (or buffer or keyring name), cut to 256 bytes.
	Path string `json:"path"`
	// Digest is "algo:hex" of the measured digest ("" for a violation).
	Digest string `json:"digest,omitempty"`
	// Reason says why.
	Reason Reason `json:"reason"`
	// Detail adds what an operator needs (the key ID, the algorithm).
	Detail string `json:"detail,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("entry %d %s", f.Index, f.Path)
	if f.Digest != "" {
		s += " " + f.Digest
	}
	s += ": " + string(f.Reason)
	if f.Detail != "" {
		s += " (" + f.Detail + ")"
	}
	return s
}

// Counts counts appraised entries by result. Every appraised entry lands in
// exactly one count.
type Counts struct {
	Digest     int `json:"digest"`       // digest listed for the path, or for any path
	Signature  int `json:"signature"`    // ima-sig signature verified
	Excluded   int `json:"excluded"`     // path excluded
	Boot       int `json:"boot"`         // boot_aggregate matched Options.BootAggregates
	Keyring    int `json:"keyring"`      // key measurement allowed (or its keyring ignored)
	Buffer     int `json:"buffer"`       // other ima-buf measurement allowed
	Violation  int `json:"violation"`    // violation entries accepted (violations = "allow")
	OutOfScope int `json:"out_of_scope"` // another pod's or container's entry, or none's
	Failed     int `json:"failed"`       // offending entries
}

// Verdict is the appraisal of a list so far, and the whole state an
// incremental appraisal needs: store it (MarshalBinary) with the checkpoint
// and hand it back to Policy.Appraise with the entries that followed.
type Verdict struct {
	// Policy is the Fingerprint of the policy that produced it.
	Policy string `json:"policy"`
	// Next is the number of entries appraised: the index of the next one.
	Next int `json:"next"`
	// Counts by result.
	Counts Counts `json:"counts"`
	// First is the first offending entry, nil when none.
	First *Finding `json:"first,omitempty"`
	// Findings lists the first MaxFindings offending entries.
	Findings []Finding `json:"findings,omitempty"`
	// Keys are keys learned from allowed keyring measurements: later
	// ima-sig entries verify with them (Keylime adds them to its keyrings).
	Keys []LearnedKey `json:"keys,omitempty"`
}

// LearnedKey is a key measured into a keyring and allowed by the policy.
type LearnedKey struct {
	Keyring string `json:"keyring"`
	ID      uint32 `json:"id"`
	DER     []byte `json:"der"`
}

// OK reports whether no appraised entry offends the policy.
func (v *Verdict) OK() bool { return v.Counts.Failed == 0 }

// Truncated is how many offending entries Findings leaves out.
func (v *Verdict) Truncated() int { return v.Counts.Failed - len(v.Findings) }

// MarshalBinary encodes the Verdict for a checkpoint.
func (v Verdict) MarshalBinary() ([]byte, error) { return json.Marshal(v) }

// maxVerdictBytes bounds an encoded Verdict read back.
const maxVerdictBytes = 1 << 20

// UnmarshalVerdict decodes a stored Verdict and checks its bounds; a
// checkpoint is the server's own data, but one that fails here must lead to
// a full appraisal, never to a half-trusted state.
func UnmarshalVerdict(b []byte) (Verdict, error) {
	var v Verdict
	if len(b) > maxVerdictBytes {
		return Verdict{}, fmt.Errorf("ima verdict: %d bytes is more than %d", len(b), maxVerdictBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return Verdict{}, fmt.Errorf("ima verdict: %w", err)
	}
	c := v.Counts
	total := c.Digest + c.Signature + c.Excluded + c.Boot + c.Keyring + c.Buffer + c.Violation + c.OutOfScope + c.Failed
	switch {
	case v.Next < 0 || total != v.Next || min(c.Digest, c.Signature, c.Excluded, c.Boot, c.Keyring, c.Buffer, c.Violation, c.OutOfScope, c.Failed) < 0:
		return Verdict{}, fmt.Errorf("ima verdict: counts do not add up to %d entries", v.Next)
	case len(v.Findings) > MaxFindings || len(v.Findings) > c.Failed:
		return Verdict{}, fmt.Errorf("ima verdict: %d findings for %d failed entries", len(v.Findings), c.Failed)
	case (v.First == nil) != (c.Failed == 0):
		return Verdict{}, fmt.Errorf("ima verdict: first finding and failed count disagree")
	case len(v.Keys) > MaxLearnedKeys:
		return Verdict{}, fmt.Errorf("ima verdict: %d learned keys is more than %d", len(v.Keys), MaxLearnedKeys)
	}
	return v, nil
}

// Options carry what the appraisal needs from outside the list.
type Options struct {
	// BootAggregates are the boot_aggregate digests the verifier computed
	// from the signed registers: like Keylime, the boot_aggregate entry is
	// allowed when its digest is one of them (or is listed under the path
	// "boot_aggregate").
	BootAggregates [][]byte
}

// Start returns the empty Verdict of this policy: Appraise(p.Start(), 0,
// entries, opts) appraises a whole list.
func (p *Policy) Start() Verdict { return Verdict{Policy: p.fingerprint} }

// ErrResume: a Verdict cannot be continued with these entries (another
// policy, or entries that do not follow it); appraise the whole list.
var ErrResume = errors.New("cannot resume the ima appraisal")

// Appraise appraises entries, which are the list's entries from index start
// on, continuing prev: a full appraisal passes p.Start() and 0, an
// incremental one the stored Verdict and the index of the first new entry
// (prev.Next). It returns the new Verdict; prev is not modified.
//
// For each entry, in order (the rules of Keylime's ima.py; differences
// noted):
//
//  1. Scope: a policy with pod_uid or container_id appraises only the
//     entries whose ima-cgpath cgroup path names that pod or container
//     (cgroup.IdentifyPath, as the workload attestor); others count as out
//     of scope.
//  2. A violation (ToMToU, open-writers) fails unless violations = "allow".
//  3. ima-buf: a buffer that is a key (certificate or public key) is a
//     keyring measurement: allowed when its keyring is ignored, else when
//     the name is excluded or the digest is listed for the keyring; an
//     allowed key is learned for later signatures. Another buffer must be
//     excluded or have its digest listed under its name.
//  4. Files (ima, ima-ng, ima-ngv2, ima-sig, ima-sigv2, ima-cgpath,
//     ima-dep-cgn): a signature whose header is malformed fails; a digest
//     listed for the path (of an allowed algorithm) is allowed; an
//     excluded path is allowed; a digest of an algorithm the policy does
//     not allow fails; a signature that verifies with a configured or
//     learned key is allowed; boot_aggregate is allowed with a digest of
//     Options.BootAggregates; a digest listed for any path is allowed;
//     anything else fails, naming the signature's problem when it had one.
func (p *Policy) Appraise(prev Verdict, start int, entries []ima.Entry, opts Options) (Verdict, error) {
	if prev.Policy != p.fingerprint {
		return Verdict{}, fmt.Errorf("%w: the verdict is of policy %.12s, this is %.12s", ErrResume, prev.Policy, p.fingerprint)
	}
	if start != prev.Next {
		return Verdict{}, fmt.Errorf("%w: the verdict covers %d entries, the new ones start at %d", ErrResume, prev.Next, start)
	}
	v := prev
	v.Findings = slices.Clone(prev.Findings)
	v.Keys = slices.Clone(prev.Keys)
	if v.First != nil {
		f := *v.First
		v.First = &f
	}
	a := appraisal{p: p, v: &v, opts: opts}
	if err := a.loadKeys(); err != nil {
		return Verdict{}, err
	}
	// Entries go in batches whose file paths are looked up together
	// (digestMap.resolve): right after a list is parsed the policy's
	// tables are out of cache, and a batch's misses overlap where one
	// entry at a time would wait for each.
	var offs [resolveBatch]uint32
	for base := 0; base < len(entries); base += resolveBatch {
		batch := entries[base:min(base+resolveBatch, len(entries))]
		a.p.files.resolve(batch, offs[:len(batch)])
		for j := range batch {
			a.fileRun = offs[j]
			a.entry(start+base+j, &batch[j])
		}
	}
	v.Next = start + len(entries)
	return v, nil
}

// appraisal is one call's working state.
type appraisal struct {
	p      *Policy
	v      *Verdict
	opts   Options
	keys   map[uint32][]*Key // learned keys by ID
	scopes map[string]bool   // cgroup path -> in scope
	// fileRun is where the current entry's path lists its digests in
	// p.files (digestMap.resolve), 0 when it is not listed.
	fileRun uint32
}

func (a *appraisal) loadKeys() error {
	if len(a.v.Keys) == 0 {
		return nil
	}
	a.keys = make(map[uint32][]*Key, len(a.v.Keys))
	for i, lk := range a.v.Keys {
		k, err := a.p.learnedKey(lk.DER)
		if err != nil {
			return fmt.Errorf("%w: learned key %d: %v", ErrResume, i, err)
		}
		kc := *k
		kc.ID = lk.ID
		a.keys[lk.ID] = append(a.keys[lk.ID], &kc)
	}
	return nil
}

// learnedKey parses a learned key's DER once per policy.
func (p *Policy) learnedKey(der []byte) (*Key, error) {
	h := sha256.Sum256(der)
	p.mu.Lock()
	k, ok := p.learned[h]
	p.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := ParseKey(der)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.learned) < 4096 {
		p.learned[h] = k
	}
	p.mu.Unlock()
	return k, nil
}

func (a *appraisal) inScope(e *ima.Entry) bool {
	if a.p.podUID == "" && a.p.containerID == "" {
		return true
	}
	if e.CgroupPath == "" || e.CgroupPath == "-" {
		return false
	}
	if in, ok := a.scopes[e.CgroupPath]; ok {
		return in
	}
	id := cgroup.IdentifyPath(e.CgroupPath)
	in := (a.p.podUID != "" && id.PodUID == a.p.podUID) || (a.p.containerID != "" && id.ContainerID == a.p.containerID)
	if a.scopes == nil {
		a.scopes = make(map[string]bool)
	}
	if len(a.scopes) < 65536 {
		a.scopes[e.CgroupPath] = in
	}
	return in
}

func (a *appraisal) fail(i int, e *ima.Entry, r Reason, detail string) {
	c := &a.v.Counts
	c.Failed++
	f := Finding{Index: i, Path: cut(e.FileName), Reason: r, Detail: detail}
	if !e.Violation && len(e.FileDigest.Value) > 0 {
		f.Digest = e.DigestAlgo + ":" + hex.EncodeToString(e.FileDigest.Value)
	}
	if a.v.First == nil {
		ff := f
		a.v.First = &ff
	}
	if len(a.v.Findings) < MaxFindings {
		a.v.Findings = append(a.v.Findings, f)
	}
}

func cut(s string) string {
	if len(s) <= maxFindingPath {
		return s
	}
	return s[:maxFindingPath-3] + "..."
}

func (a *appraisal) entry(i int, e *ima.Entry) {
	c := &a.v.Counts
	if (a.p.podUID != "" || a.p.containerID != "") && e.CgroupPath == "" {
		a.fail(i, e, ReasonNoCgroupPath, "a policy scoped to a pod or container needs the ima-cgpath template (ima_template=ima-cgpath)")
		return
	}
	if !a.inScope(e) {
		c.OutOfScope++
		return
	}
	if e.Violation {
		if a.p.allowViolations {
			c.Violation++
			return
		}
		a.fail(i, e, ReasonViolation, "the kernel measured nothing for this file (ToMToU or open writers)")
		return
	}
	switch e.Template {
	case "ima-buf":
		a.buffer(i, e)
	case "ima", "ima-ng", "ima-ngv2", "ima-sig", "ima-sigv2", "ima-cgpath", "ima-dep-cgn":
		a.file(i, e)
	default:
		a.fail(i, e, ReasonTemplate, "template "+cut(e.Template))
	}
}

// algAllowed applies hash_algorithms (a Keylime policy allows every one).
func (a *appraisal) algAllowed(e *ima.Entry) bool {
	return a.p.algs == nil || a.p.algs[e.DigestAlgo]
}

// file appraises a file measurement.
//
// Keylime (ast.ImaSig.create_signature) turns a malformed signature into no
// signature, so the template data it rebuilds lacks the signature and its
// template hash check fails: the entry fails whatever the exclusions say.
// This package has the real template data, so it fails such an entry
// explicitly, with the reason.
func (a *appraisal) file(i int, e *ima.Entry) {
	var sig Signature
	hasSig := len(e.Signature) > 0
	if hasSig {
		var err error
		if sig, err = ParseSignature(e.Signature); err != nil {
			a.fail(i, e, ReasonMalformedSignature, err.Error())
			return
		}
	}
	// Excluded, verified and listed are alternatives (Keylime tries them
	// in that order; any one allows the entry), so the cheapest, a map
	// lookup, goes first: most entries of a good list are listed, and
	// exclusions are regular expressions.
	d := e.FileDigest.Value
	listed, allowed := a.p.files.digestsAt(a.fileRun, d)
	algOK := a.algAllowed(e)
	if algOK && allowed {
		a.v.Counts.Digest++
		return
	}
	if a.p.excl.match(e.FileName) {
		a.v.Counts.Excluded++
		return
	}
	if !algOK {
		a.fail(i, e, ReasonHashAlgorithm, "algorithm "+cut(e.DigestAlgo)+" is not in hash_algorithms")
		return
	}
	sigReason, sigDetail := Reason(""), ""
	if hasSig {
		ok, r, d := a.verify(sig, e)
		if ok {
			a.v.Counts.Signature++
			return
		}
		sigReason, sigDetail = r, d
	}
	if e.FileName == "boot_aggregate" && containsDigest(a.opts.BootAggregates, d) {
		a.v.Counts.Boot++
		return
	}
	if _, ok := a.p.anyPath[string(d)]; ok {
		a.v.Counts.Digest++
		return
	}
	switch {
	case sigReason != "":
		a.fail(i, e, sigReason, sigDetail+"; the digest is not allowed either")
	case listed:
		a.fail(i, e, ReasonDigest, "the path is allowed with other digests")
	default:
		a.fail(i, e, ReasonNotInPolicy, "")
	}
}

// verify checks an ima-sig signature against the configured keys, then the
// learned ones, as Keylime's ImaKeyrings.integrity_digsig_verify tries
// every keyring for the key ID. Keylime verifies version 2 only; version 3
// (fs-verity) is this package's addition.
func (a *appraisal) verify(sig Signature, e *ima.Entry) (bool, Reason, string) {
	if err := sig.usable(); err != nil {
		return false, ReasonBadSignature, err.Error()
	}
	h, digest, err := sig.signedDigest(e.DigestAlgo, e.DigestType, e.FileDigest.Value)
	if err != nil {
		return false, ReasonBadSignature, err.Error()
	}
	cands := a.p.keys[sig.KeyID]
	learned := a.keys[sig.KeyID]
	if len(cands) == 0 && len(learned) == 0 {
		return false, ReasonUnknownKey, fmt.Sprintf("no key with ID %08x", sig.KeyID)
	}
	for _, k := range cands {
		if verifyDigest(k.Public, h, digest, sig.Sig) {
			return true, "", ""
		}
	}
	for _, k := range learned {
		if verifyDigest(k.Public, h, digest, sig.Sig) {
			return true, "", ""
		}
	}
	return false, ReasonBadSignature, fmt.Sprintf("does not verify with key %08x", sig.KeyID)
}

// buffer appraises an ima-buf measurement (Keylime's _validate_ima_buf).
func (a *appraisal) buffer(i int, e *ima.Entry) {
	k, err := ParseKey(e.Buf)
	if errors.Is(err, ErrUnsupportedKey) {
		a.fail(i, e, ReasonInvalidKey, err.Error())
		return
	}
	if err == nil {
		a.keyring(i, e, k)
		return
	}
	// Keylime checks device-mapper buffers with its dm_policy, which this
	// package does not support (a policy that sets it is refused); every
	// other buffer by its digest under its name.
	if a.p.excl.match(e.FileName) {
		a.v.Counts.Excluded++
		return
	}
	if !a.algAllowed(e) {
		a.fail(i, e, ReasonHashAlgorithm, "algorithm "+cut(e.DigestAlgo)+" is not in hash_algorithms")
		return
	}
	if a.p.buffers.allows(e.FileName, e.FileDigest.Value) {
		a.v.Counts.Buffer++
		return
	}
	a.fail(i, e, ReasonBuffer, "no buffer \""+cut(e.FileName)+"\" with this digest in the policy")
}

// keyring appraises a key measured into the keyring e.FileName. As in
// Keylime, an excluded keyring name allows the key, and an allowed key
// (other than of an ignored keyring) verifies later signatures.
func (a *appraisal) keyring(i int, e *ima.Entry, k *Key) {
	if a.p.ignoreAllRings || a.p.ignoredRings[e.FileName] {
		a.v.Counts.Keyring++
		return
	}
	switch {
	case a.p.excl.match(e.FileName):
	case !a.algAllowed(e):
		a.fail(i, e, ReasonHashAlgorithm, "algorithm "+cut(e.DigestAlgo)+" is not in hash_algorithms")
		return
	case !a.p.keyrings.allows(e.FileName, e.FileDigest.Value):
		a.fail(i, e, ReasonKeyring, fmt.Sprintf("key %08x measured into keyring %q", k.ID, cut(e.FileName)))
		return
	}
	for _, lk := range a.v.Keys {
		if lk.ID == k.ID && bytes.Equal(lk.DER, k.DER) {
			a.v.Counts.Keyring++
			return
		}
	}
	if len(a.v.Keys) >= MaxLearnedKeys {
		a.fail(i, e, ReasonTooManyKeys, fmt.Sprintf("more than %d keys measured into keyrings", MaxLearnedKeys))
		return
	}
	a.v.Keys = append(a.v.Keys, LearnedKey{Keyring: e.FileName, ID: k.ID, DER: bytes.Clone(k.DER)})
	if a.keys == nil {
		a.keys = make(map[uint32][]*Key)
	}
	a.keys[k.ID] = append(a.keys[k.ID], k)
	a.v.Counts.Keyring++
}
