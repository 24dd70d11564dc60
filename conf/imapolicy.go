package conf

import (
	"encoding/pem"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// IMAPolicy is an IMA runtime policy: which files, buffers and keys an IMA
// measurement list may show. It is the one model behind both front ends,
// the HCL `ima` block (ParseIMAPolicy) and Keylime's runtime policy JSON
// (eventlog/ima/imapolicy.ParseKeylime); eventlog/ima/imapolicy compiles and
// evaluates it.
//
// In HCL (a file whose top level is one ima block; the same block will sit
// inside a server policy block):
//
//	ima {
//	  mode       = "enforce"                  # or "warn": report, never reject
//	  pod_uid    = "<uid>"                    # or container_id: only that workload's entries
//	  hash_algorithms = ["sha256", "sha384"]  # file digest algorithms (default sha256, sha384, sha512)
//	  violations = "reject"                   # or "allow" (ToMToU / open-writers entries)
//	  exclude    = ["/tmp/.*", "/var/log/"]   # regular expressions matched at the start of the path
//	  digests    = ["<hex>"]                  # allowed whatever the path
//	  file "/usr/bin/bash" { digests = ["<hex>"] }
//	  keyring ".ima" { digests = ["<hex>"] }  # keys measured into a keyring (ima-buf)
//	  ignored_keyrings = [".builtin_trusted_keys"] # "*" ignores every keyring
//	  buffer "kernel_version" { digests = ["<hex>"] } # other ima-buf measurements
//	  verification_keys      = ["-----BEGIN PUBLIC KEY-----\n..."] # ima-sig keys: PEM key or certificate
//	  verification_key_files = ["/etc/ccnp/ima-signing.pem"]        # PEM or DER, key or certificate
//	}
type IMAPolicy struct {
	// Enforce false (mode = "warn") reports offending entries without
	// failing the policy.
	Enforce bool
	// PodUID or ContainerID, when set, restricts the policy to the entries
	// whose cgroup path (ima-cgpath) names that pod or container, as the
	// workload attestor's pod:uid and container:id selectors name them.
	PodUID      string
	ContainerID string
	// HashAlgorithms lists the kernel names of the file digest algorithms
	// a listed digest or a signature may use; nil allows every algorithm
	// (Keylime's policies do not constrain it).
	HashAlgorithms []string
	// AllowViolations accepts ToMToU and open-writers entries, which
	// measure nothing.
	AllowViolations bool
	// Exclude holds regular expressions; a path (or buffer or keyring name)
	// that one of them matches from its first character is not appraised.
	Exclude []string
	// Digests are lower-case hex file digests allowed under any path.
	Digests []string
	// Files maps a path to its allowed lower-case hex digests.
	Files map[string][]string
	// Keyrings maps a keyring name to the allowed digests of the keys IMA
	// measures into it (ima-buf entries whose buffer is a key).
	Keyrings map[string][]string
	// IgnoredKeyrings are keyrings whose key measurements are not
	// appraised; "*" ignores every keyring.
	IgnoredKeyrings []string
	// Buffers maps an ima-buf name to the allowed digests of its buffer.
	Buffers map[string][]string
	// VerificationKeys verify ima-sig signatures.
	VerificationKeys []IMAKey
	// Source says where the policy came from, for messages.
	Source string
}

// IMAKey is one ima-sig verification key as configured: PEM or DER, a
// public key or an X.509 certificate. Its meaning is read by
// eventlog/ima/imapolicy, which reports problems naming Where.
type IMAKey struct {
	// Data is the key's bytes, or nil when File names them.
	Data []byte
	// File is a path to read the key from (verification_key_files).
	File string
	// KeyID is the signature key identifier the key answers to, when the
	// source says (Keylime's keyids); else it is derived from the key.
	KeyID    uint32
	HasKeyID bool
	// Where names the key in messages ("ima.hcl: line 12: verification_keys[0]").
	Where string
}

// IMA policy modes and violation handling, as written in HCL.
const (
	IMAModeEnforce      = "enforce"
	IMAModeWarn         = "warn"
	IMAViolationsReject = "reject"
	IMAViolationsAllow  = "allow"
)

// DefaultIMAHashAlgorithms are the file digest algorithms an HCL ima block
// allows when it does not say: the SHA-2 family IMA uses (ima_hash=); sha1
// and md5 must be named, since a listed digest is only as strong as its hash.
var DefaultIMAHashAlgorithms = []string{"sha256", "sha384", "sha512"}

// IMAHashAlgorithms are the algorithm names hash_algorithms accepts: the
// kernel's names (crypto/hash_info.c) of the algorithms IMA can use.
var IMAHashAlgorithms = []string{"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sm3", "streebog256", "streebog512"}

// MaxIMAPolicyFileBytes bounds an HCL ima policy file. Policies of tens of
// thousands of files are better kept as Keylime JSON, which parses in a
// fraction of the memory.
const MaxIMAPolicyFileBytes = 16 << 20

// Digest length bounds, as Keylime's schema has them (^[0-9a-f]{40,128}$):
// 20 (sha1) to 64 (sha512) bytes.
const (
	minIMADigestHex = 40
	maxIMADigestHex = 128
)

// podOrContainerRE is the shape of a pod UID (UUID or a static pod's hash)
// or a container ID, as the workload selectors write them.
var podOrContainerRE = regexp.MustCompile(`^[0-9a-f][0-9a-f-]{0,127}$`)

type rawIMAFile struct {
	IMA *rawIMA `hcl:"ima"`
}

type rawIMA struct {
	Mode                 string          `hcl:"mode"`
	PodUID               string          `hcl:"pod_uid"`
	ContainerID          string          `hcl:"container_id"`
	HashAlgorithms       []string        `hcl:"hash_algorithms"`
	Violations           string          `hcl:"violations"`
	Exclude              []string        `hcl:"exclude"`
	Digests              []string        `hcl:"digests"`
	Files                []rawIMADigests `hcl:"file"`
	Keyrings             []rawIMADigests `hcl:"keyring"`
	IgnoredKeyrings      []string        `hcl:"ignored_keyrings"`
	Buffers              []rawIMADigests `hcl:"buffer"`
	VerificationKeys     []string        `hcl:"verification_keys"`
	VerificationKeyFiles []string        `hcl:"verification_key_files"`
}

type rawIMADigests struct {
	Name    string   `hcl:",key"`
	Digests []string `hcl:"digests"`
}

// ParseIMAPolicy parses an HCL file holding one ima block. filename is used
// in error messages ("ima.hcl: line 3: ima: file \"/bin/sh\": ...").
func ParseIMAPolicy(src, filename string) (*IMAPolicy, error) {
	if filename == "" {
		filename = "ima policy"
	}
	var errs errList
	d := newDoc(filename, &errs)
	var raw rawIMAFile
	if !parseDoc(d, src, MaxIMAPolicyFileBytes, &raw) {
		return nil, errs.err()
	}
	if raw.IMA == nil {
		d.errLine(0, "no ima block: write ima { ... }")
		return nil, errs.err()
	}
	p, ok := imaPolicy(d, "ima", raw.IMA)
	if !ok || !errs.empty() {
		return nil, errs.err()
	}
	return p, nil
}

// imaPolicy validates a decoded ima block at key path path.
func imaPolicy(d *doc, path string, r *rawIMA) (*IMAPolicy, bool) {
	c := &policyCheck{d: d, path: path, sep: ".", ok: true}
	p := &IMAPolicy{Enforce: true, Source: fmt.Sprintf("%s line %d", d.name, d.line(path))}
	switch {
	case !c.has("mode") || r.Mode == IMAModeEnforce:
	case r.Mode == IMAModeWarn:
		p.Enforce = false
	default:
		c.errf("mode", "%q is not %q or %q", truncateValue(r.Mode), IMAModeEnforce, IMAModeWarn)
	}
	switch {
	case !c.has("violations") || r.Violations == IMAViolationsReject:
	case r.Violations == IMAViolationsAllow:
		p.AllowViolations = true
	default:
		c.errf("violations", "%q is not %q or %q", truncateValue(r.Violations), IMAViolationsReject, IMAViolationsAllow)
	}
	for _, k := range []struct {
		key string
		val string
		dst *string
	}{{"pod_uid", r.PodUID, &p.PodUID}, {"container_id", r.ContainerID, &p.ContainerID}} {
		if !c.has(k.key) {
			continue
		}
		if !podOrContainerRE.MatchString(k.val) {
			c.errf(k.key, "%q is not a lower-case pod UID or container ID as the pod:uid and container:id selectors write it", truncateValue(k.val))
			continue
		}
		*k.dst = k.val
	}
	if c.has("pod_uid") && c.has("container_id") {
		c.errf("container_id", "set pod_uid or container_id, not both")
	}
	p.HashAlgorithms = slices.Clone(DefaultIMAHashAlgorithms)
	if c.has("hash_algorithms") {
		p.HashAlgorithms = c.imaHashAlgorithms(r.HashAlgorithms)
	}
	p.Exclude = c.imaExcludes(r.Exclude)
	if c.has("digests") {
		p.Digests = c.imaDigests("digests", r.Digests)
	}
	p.Files = c.imaDigestBlocks("file", r.Files)
	p.Keyrings = c.imaDigestBlocks("keyring", r.Keyrings)
	p.Buffers = c.imaDigestBlocks("buffer", r.Buffers)
	if c.has("ignored_keyrings") {
		p.IgnoredKeyrings = c.strList("ignored_keyrings", r.IgnoredKeyrings)
	}
	for i, v := range r.VerificationKeys {
		key := fmt.Sprintf("verification_keys[%d]", i)
		if b, _ := pem.Decode([]byte(v)); b == nil {
			c.errf(key, "no PEM block: write the key or certificate in PEM (or use verification_key_files for DER)")
			continue
		}
		p.VerificationKeys = append(p.VerificationKeys, IMAKey{Data: []byte(v), Where: c.where(key)})
	}
	for i, v := range r.VerificationKeyFiles {
		key := fmt.Sprintf("verification_key_files[%d]", i)
		if strings.TrimSpace(v) == "" {
			c.errf(key, "empty path")
			continue
		}
		p.VerificationKeys = append(p.VerificationKeys, IMAKey{File: v, Where: c.where(key) + " (" + v + ")"})
	}
	if c.ok && len(p.Exclude) == 0 && len(p.Digests) == 0 && len(p.Files) == 0 && len(p.Keyrings) == 0 &&
		len(p.Buffers) == 0 && len(p.VerificationKeys) == 0 {
		c.ok = false
		d.errLine(d.line(path), "%s: allows nothing: set digests, file, exclude, keyring, buffer or verification keys", path)
	}
	return p, c.ok
}

// where locates a key of the block for messages outside conf.
func (c *policyCheck) where(sub string) string {
	return fmt.Sprintf("%s: line %d: %s%s%s", c.d.name, c.d.line(c.path+"."+sub), c.path, c.sep, sub)
}

func (c *policyCheck) imaHashAlgorithms(vals []string) []string {
	if len(vals) == 0 {
		c.errf("hash_algorithms", "empty list allows no file digest; remove the key for the default %v", DefaultIMAHashAlgorithms)
		return nil
	}
	out := make([]string, 0, len(vals))
	for i, v := range vals {
		ek := fmt.Sprintf("hash_algorithms[%d]", i)
		switch {
		case !slices.Contains(IMAHashAlgorithms, v):
			c.errf(ek, "%q is not one of %s (the kernel's names)", truncateValue(v), strings.Join(IMAHashAlgorithms, ", "))
		case slices.Contains(out, v):
			c.errf(ek, "%q is listed twice", v)
		default:
			out = append(out, v)
		}
	}
	return out
}

// imaExcludes checks that every exclusion is a regular expression Go's
// regexp (RE2) compiles. Python's lookarounds and back-references, which a
// Keylime exclude list may use, are refused here rather than mis-read.
func (c *policyCheck) imaExcludes(vals []string) []string {
	if !c.has("exclude") {
		return nil
	}
	if len(vals) == 0 {
		c.errf("exclude", "empty list excludes nothing; remove the key")
		return nil
	}
	out := make([]string, 0, len(vals))
	for i, v := range vals {
		ek := fmt.Sprintf("exclude[%d]", i)
		if err := ValidIMAExclude(v); err != nil {
			c.errf(ek, "%v", err)
			continue
		}
		out = append(out, v)
	}
	return out
}

// ValidIMAExclude reports why pattern cannot be an IMA path exclusion: it
// must be non-empty UTF-8 that Go's regexp compiles.
func ValidIMAExclude(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("empty pattern would exclude every path")
	}
	if !utf8.ValidString(pattern) {
		return fmt.Errorf("not valid UTF-8")
	}
	if _, err := regexp.Compile(pattern); err != nil {
		return fmt.Errorf("%q is not a regular expression Go accepts (RE2 syntax): %v", truncateValue(pattern), err)
	}
	return nil
}

func (c *policyCheck) imaDigests(key string, vals []string) []string {
	if len(vals) == 0 {
		c.errf(key, "empty list allows nothing; remove it")
		return nil
	}
	out := make([]string, 0, len(vals))
	for i, v := range vals {
		ek := fmt.Sprintf("%s[%d]", key, i)
		if err := ValidIMADigest(v); err != nil {
			c.errf(ek, "%v", err)
			continue
		}
		lv := lowerHex(v)
		if !slices.Contains(out, lv) {
			out = append(out, lv)
		}
	}
	return out
}

// ValidIMADigest reports why v cannot be a file digest of an IMA policy:
// an even number of hex digits, 40 (sha1) to 128 (sha512).
func ValidIMADigest(v string) error {
	if len(v) < minIMADigestHex || len(v) > maxIMADigestHex || len(v)%2 != 0 {
		return fmt.Errorf("want an even number of %d to %d hex characters, got %d", minIMADigestHex, maxIMADigestHex, len(v))
	}
	if j := badHex(v); j >= 0 {
		return fmt.Errorf("character %d (%q) is not a hex digit", j+1, v[j])
	}
	return nil
}

func (c *policyCheck) imaDigestBlocks(name string, raws []rawIMADigests) map[string][]string {
	if len(raws) == 0 {
		return nil
	}
	out := make(map[string][]string, len(raws))
	for _, r := range raws {
		sub := fmt.Sprintf("%s %q", name, r.Name)
		switch {
		case r.Name == "":
			c.errf(sub, "empty name")
			continue
		case !utf8.ValidString(r.Name):
			c.errf(sub, "name is not valid UTF-8")
			continue
		case !c.has(sub + ".digests"):
			c.errf(sub, "set digests = [...]")
			continue
		}
		if l := c.imaDigests(sub+".digests", r.Digests); l != nil {
			out[r.Name] = l
		}
	}
	return out
}

// HCL renders the policy as an ima block that ParseIMAPolicy reads back to
// the same policy; keys given as data are written as PEM strings (DER keys
// as a PUBLIC KEY or CERTIFICATE block is the caller's choice, so they must
// already be PEM), files by path.
func (p *IMAPolicy) HCL() string {
	var b strings.Builder
	b.WriteString("ima {\n")
	if !p.Enforce {
		fmt.Fprintf(&b, "  mode = %s\n", quoteHCL(IMAModeWarn))
	}
	if p.PodUID != "" {
		fmt.Fprintf(&b, "  pod_uid = %s\n", quoteHCL(p.PodUID))
	}
	if p.ContainerID != "" {
		fmt.Fprintf(&b, "  container_id = %s\n", quoteHCL(p.ContainerID))
	}
	if p.HashAlgorithms != nil && !slices.Equal(p.HashAlgorithms, DefaultIMAHashAlgorithms) {
		writeHCLList(&b, "  ", "hash_algorithms", p.HashAlgorithms)
	}
	if p.AllowViolations {
		fmt.Fprintf(&b, "  violations = %s\n", quoteHCL(IMAViolationsAllow))
	}
	if len(p.Exclude) > 0 {
		writeHCLList(&b, "  ", "exclude", p.Exclude)
	}
	if len(p.Digests) > 0 {
		writeHCLList(&b, "  ", "digests", p.Digests)
	}
	if len(p.IgnoredKeyrings) > 0 {
		writeHCLList(&b, "  ", "ignored_keyrings", p.IgnoredKeyrings)
	}
	var pems, files []string
	for _, k := range p.VerificationKeys {
		if k.File != "" {
			files = append(files, k.File)
		} else {
			pems = append(pems, string(k.Data))
		}
	}
	if len(pems) > 0 {
		writeHCLList(&b, "  ", "verification_keys", pems)
	}
	if len(files) > 0 {
		writeHCLList(&b, "  ", "verification_key_files", files)
	}
	for _, blk := range []struct {
		name string
		m    map[string][]string
	}{{"keyring", p.Keyrings}, {"buffer", p.Buffers}, {"file", p.Files}} {
		names := make([]string, 0, len(blk.m))
		for n := range blk.m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "  %s %s { digests = [", blk.name, quoteHCL(n))
			for i, v := range blk.m[n] {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(quoteHCL(v))
			}
			b.WriteString("] }\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func writeHCLList(b *strings.Builder, indent, key string, vals []string) {
	fmt.Fprintf(b, "%s%s = [\n", indent, key)
	for _, v := range vals {
		fmt.Fprintf(b, "%s  %s,\n", indent, quoteHCL(v))
	}
	fmt.Fprintf(b, "%s]\n", indent)
}
