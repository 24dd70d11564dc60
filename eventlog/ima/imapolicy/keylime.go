package imapolicy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// MaxKeylimeBytes bounds a Keylime runtime policy: a whole distribution's
// files (a few hundred thousand paths) is tens of megabytes.
const MaxKeylimeBytes = 256 << 20

// keylimeVersion is the runtime policy format version Keylime writes
// (RUNTIME_POLICY_CURRENT_VERSION); a later one may mean what this reader
// does not know, and is refused.
const keylimeVersion = 1

// keylimePolicy is the runtime policy as keylime-policy create runtime
// writes it and keylime/ima/ima.py's RUNTIME_POLICY_SCHEMA requires it.
type keylimePolicy struct {
	Meta *struct {
		Version   *int    `json:"version"`
		Generator *int    `json:"generator"`
		Timestamp *string `json:"timestamp"`
	} `json:"meta"`
	Release  *int                `json:"release"`
	Digests  map[string][]string `json:"digests"`
	Excludes []string            `json:"excludes"`
	Keyrings map[string][]string `json:"keyrings"`
	IMA      *struct {
		IgnoredKeyrings []string        `json:"ignored_keyrings"`
		LogHashAlg      *string         `json:"log_hash_alg"`
		DMPolicy        json.RawMessage `json:"dm_policy"`
	} `json:"ima"`
	IMABuf           map[string][]string `json:"ima-buf"`
	VerificationKeys *string             `json:"verification-keys"`
	// Payload marks a DSSE envelope (a signed policy).
	Payload *string `json:"payload"`
}

// keylimeKeyring is what "verification-keys" holds, itself as a JSON
// string: Keylime's ImaKeyring.to_string, base64 DER SubjectPublicKeyInfo
// keys and, optionally, the key ID of each.
type keylimeKeyring struct {
	Meta *struct {
		Version int `json:"version"`
	} `json:"meta"`
	KeyIDs  []int64  `json:"keyids"`
	PubKeys []string `json:"pubkeys"`
}

// ParseKeylime reads a Keylime runtime policy (JSON, as `keylime-policy
// create runtime` writes it) into the policy model, as Keylime's verifier
// reads it:
//
//   - every top-level key of the schema is required, and its types are
//     checked; digests (in digests, keyrings and ima-buf) are lower-case hex
//     of 40 to 128 characters, at least one per name;
//   - digests maps paths (and "boot_aggregate") to allowed digests; there
//     are no path-independent digests and no hash algorithm constraint;
//   - excludes are regular expressions matched at the start of the path
//     (see excluder); one Go's RE2 cannot compile is an error here (Keylime
//     would refuse it too, unless it uses Python-only syntax);
//   - verification-keys is a JSON string of {"keyids": [...], "pubkeys":
//     [base64 DER, ...]} (or "" for none); a key ID of 0 or a missing one is
//     derived from the key. A key that does not parse is an error (Keylime
//     logs and skips it);
//   - ima.log_hash_alg names the template hash algorithm; the list's
//     template hashes are checked by eventlog/ima from their width, so it
//     is checked against Keylime's enum and otherwise ignored;
//   - ima.dm_policy must be null (Keylime's schema says so too);
//   - a DSSE-signed policy (a "payload" envelope) is refused: verify and
//     unwrap it first;
//   - the policy enforces and rejects violation entries; warn-only is the
//     server configuration's choice.
//
// name is used in messages.
func ParseKeylime(data []byte, name string) (*conf.IMAPolicy, error) {
	if len(data) > MaxKeylimeBytes {
		return nil, fmt.Errorf("%s: %d bytes is more than the limit of %d", name, len(data), MaxKeylimeBytes)
	}
	var kp keylimePolicy
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kp); err != nil {
		return nil, fmt.Errorf("%s: not a Keylime runtime policy: %w", name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the policy object", name)
	}
	if kp.Payload != nil {
		return nil, fmt.Errorf("%s: a DSSE-signed policy envelope: verify it and pass its payload", name)
	}
	var missing []string
	for k, set := range map[string]bool{
		"meta": kp.Meta != nil, "release": kp.Release != nil, "digests": kp.Digests != nil,
		"excludes": kp.Excludes != nil, "keyrings": kp.Keyrings != nil, "ima": kp.IMA != nil,
		"ima-buf": kp.IMABuf != nil, "verification-keys": kp.VerificationKeys != nil,
	} {
		if !set {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%s: missing required keys %q", name, missing)
	}
	switch {
	case kp.Meta.Version == nil || kp.Meta.Generator == nil:
		return nil, fmt.Errorf("%s: meta: version and generator are required", name)
	case *kp.Meta.Version < 0 || *kp.Meta.Version > keylimeVersion:
		return nil, fmt.Errorf("%s: meta.version %d: this reader knows versions 0 to %d", name, *kp.Meta.Version, keylimeVersion)
	case *kp.Meta.Generator < 0 || *kp.Meta.Generator > 3:
		return nil, fmt.Errorf("%s: meta.generator %d is not 0 to 3", name, *kp.Meta.Generator)
	case *kp.Release < 0:
		return nil, fmt.Errorf("%s: release %d is negative", name, *kp.Release)
	case kp.IMA.IgnoredKeyrings == nil || kp.IMA.LogHashAlg == nil || kp.IMA.DMPolicy == nil:
		return nil, fmt.Errorf("%s: ima: ignored_keyrings, log_hash_alg and dm_policy are required", name)
	case !slices.Contains([]string{"sha1", "sha256", "sha384", "sha512"}, *kp.IMA.LogHashAlg):
		return nil, fmt.Errorf("%s: ima.log_hash_alg %q is not sha1, sha256, sha384 or sha512", name, *kp.IMA.LogHashAlg)
	case string(bytes.TrimSpace(kp.IMA.DMPolicy)) != "null":
		return nil, fmt.Errorf("%s: ima.dm_policy: device-mapper policies are not supported; it must be null", name)
	}
	p := &conf.IMAPolicy{Enforce: true, Source: name, IgnoredKeyrings: kp.IMA.IgnoredKeyrings}
	var err error
	if p.Files, err = keylimeDigests("digests", kp.Digests); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if p.Keyrings, err = keylimeDigests("keyrings", kp.Keyrings); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if p.Buffers, err = keylimeDigests("ima-buf", kp.IMABuf); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i, x := range kp.Excludes {
		if err := conf.ValidIMAExclude(x); err != nil {
			return nil, fmt.Errorf("%s: excludes[%d]: %w", name, i, err)
		}
	}
	p.Exclude = kp.Excludes
	if p.VerificationKeys, err = keylimeKeys(*kp.VerificationKeys, name); err != nil {
		return nil, err
	}
	return p, nil
}

func keylimeDigests(key string, m map[string][]string) (map[string][]string, error) {
	for n, ds := range m {
		if len(ds) == 0 {
			return nil, fmt.Errorf("%s[%q]: no digest (Keylime's schema wants at least one)", key, n)
		}
		for i, d := range ds {
			if err := conf.ValidIMADigest(d); err != nil {
				return nil, fmt.Errorf("%s[%q][%d]: %w", key, n, i, err)
			}
			for _, c := range d {
				if 'A' <= c && c <= 'F' {
					return nil, fmt.Errorf("%s[%q][%d]: upper-case hex (Keylime's schema wants lower case)", key, n, i)
				}
			}
		}
	}
	return m, nil
}

// keylimeKeys decodes "verification-keys". Keylime's from_string decodes
// the string and, when that yields a string again (a doubly encoded value
// from its database), decodes once more.
func keylimeKeys(s, name string) ([]conf.IMAKey, error) {
	if s == "" {
		return nil, nil
	}
	var raw json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("%s: verification-keys: not JSON: %w", name, err)
	}
	var inner string
	if json.Unmarshal(raw, &inner) == nil {
		raw = json.RawMessage(inner)
	}
	if t := bytes.TrimSpace(raw); bytes.Equal(t, []byte("null")) || bytes.Equal(t, []byte("[]")) {
		return nil, nil
	}
	var kr keylimeKeyring
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kr); err != nil {
		return nil, fmt.Errorf("%s: verification-keys: want {\"keyids\": [...], \"pubkeys\": [...]}: %w", name, err)
	}
	if kr.PubKeys == nil || kr.KeyIDs == nil {
		return nil, fmt.Errorf("%s: verification-keys: keyids and pubkeys are required", name)
	}
	out := make([]conf.IMAKey, 0, len(kr.PubKeys))
	for i, b64 := range kr.PubKeys {
		der, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%s: verification-keys: pubkeys[%d]: not base64: %w", name, i, err)
		}
		k := conf.IMAKey{Data: der, Where: fmt.Sprintf("%s: verification-keys: pubkeys[%d]", name, i)}
		if i < len(kr.KeyIDs) && kr.KeyIDs[i] != 0 {
			id := kr.KeyIDs[i]
			if id < 0 || id > 0xffffffff {
				return nil, fmt.Errorf("%s: verification-keys: keyids[%d]: %d is not a 32-bit key ID", name, i, id)
			}
			k.KeyID, k.HasKeyID = uint32(id), true
		}
		out = append(out, k)
	}
	return out, nil
}

// KeylimeJSON renders a policy as a Keylime runtime policy. Keylime has no
// path-independent digests, hash algorithm constraint, per-container scope,
// warn mode or violation setting: a policy that uses one is refused rather
// than silently widened or narrowed. Keys must be given as data.
func KeylimeJSON(p *conf.IMAPolicy) ([]byte, error) {
	switch {
	case len(p.Digests) > 0:
		return nil, fmt.Errorf("keylime runtime policy: has no digests allowed under any path")
	case p.PodUID != "" || p.ContainerID != "":
		return nil, fmt.Errorf("keylime runtime policy: has no per-pod or per-container scope")
	case p.HashAlgorithms != nil:
		return nil, fmt.Errorf("keylime runtime policy: has no hash algorithm constraint")
	case !p.Enforce || p.AllowViolations:
		return nil, fmt.Errorf("keylime runtime policy: warn mode and allowed violations are the verifier's settings, not the policy's")
	}
	type ima struct {
		IgnoredKeyrings []string `json:"ignored_keyrings"`
		LogHashAlg      string   `json:"log_hash_alg"`
		DMPolicy        any      `json:"dm_policy"`
	}
	type meta struct {
		Version   int `json:"version"`
		Generator int `json:"generator"`
	}
	out := struct {
		Meta             meta                `json:"meta"`
		Release          int                 `json:"release"`
		Digests          map[string][]string `json:"digests"`
		Excludes         []string            `json:"excludes"`
		Keyrings         map[string][]string `json:"keyrings"`
		IMA              ima                 `json:"ima"`
		IMABuf           map[string][]string `json:"ima-buf"`
		VerificationKeys string              `json:"verification-keys"`
	}{
		Meta:     meta{Version: keylimeVersion, Generator: 2},
		Digests:  orEmpty(p.Files),
		Excludes: orEmptyList(p.Exclude),
		Keyrings: orEmpty(p.Keyrings),
		IMA:      ima{IgnoredKeyrings: orEmptyList(p.IgnoredKeyrings), LogHashAlg: "sha1"},
		IMABuf:   orEmpty(p.Buffers),
	}
	if len(p.VerificationKeys) > 0 {
		kr := keylimeKeyring{KeyIDs: []int64{}, PubKeys: []string{}}
		for _, kc := range p.VerificationKeys {
			if kc.Data == nil {
				return nil, fmt.Errorf("%s: keylime runtime policy: key files must be read first", kc.Where)
			}
			k, err := ParseKey(kc.Data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", kc.Where, err)
			}
			id := k.ID
			if kc.HasKeyID {
				id = kc.KeyID
			}
			kr.KeyIDs = append(kr.KeyIDs, int64(id))
			kr.PubKeys = append(kr.PubKeys, base64.StdEncoding.EncodeToString(k.DER))
		}
		b, err := json.Marshal(kr)
		if err != nil {
			return nil, err
		}
		out.VerificationKeys = string(b)
	}
	return json.MarshalIndent(out, "", "  ")
}

func orEmpty(m map[string][]string) map[string][]string {
	if m == nil {
		return map[string][]string{}
	}
	return m
}

func orEmptyList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
