package imapolicy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// Expected verdicts below are written from Keylime's source (keylime/ima/
// ima.py _validate_ima_ng, _validate_ima_sig, _validate_ima_buf;
// file_signatures.py ImaKeyrings.integrity_digsig_verify; ast.py
// ImaSig.create_signature and Entry.invalid), not from this package.

const (
	bash = "/usr/bin/bash"
	ls   = "/usr/bin/ls"
)

// TestKeylimeRules: one entry at a time against one policy, each case a
// rule of Keylime's with what Keylime decides.
func TestKeylimeRules(t *testing.T) {
	rsaS := newSigner(t, "rsa")
	k1 := newSigner(t, "secp256k1")
	other := newSigner(t, "rsa") // not configured
	good, bad := sum("bash"), sum("evil")
	policy := func() *conf.IMAPolicy {
		return &conf.IMAPolicy{
			Enforce:          true,
			Exclude:          []string{"/tmp/", `/var/log/.*\.log$`},
			Files:            map[string][]string{bash: {hx(good)}, "boot_aggregate": {hx(sum("listed-boot"))}},
			VerificationKeys: []conf.IMAKey{{Data: []byte(rsaS.pem), Where: "rsa"}, {Data: []byte(k1.pem), Where: "k1"}},
		}
	}
	malformed := rsaS.sign(t, bad)
	malformed = malformed[:len(malformed)-1] // sig_size now disagrees with the bytes that follow
	cases := []struct {
		name   string
		rec    rec
		want   Reason // "" = allowed
		counts func(Counts) int
	}{
		// _validate_ima_ng: listed path with a listed digest.
		{"digest listed for path", rec{path: bash, digest: good}, "", func(c Counts) int { return c.Digest }},
		// _validate_ima_ng: "File not found in allowlist".
		{"path not in policy", rec{path: ls, digest: good}, ReasonNotInPolicy, nil},
		// _validate_ima_ng: "Hash not found in runtime policy".
		{"path allowed with another digest", rec{path: bash, digest: bad}, ReasonDigest, nil},
		// exclude_regex.match: anchored at the start only.
		{"excluded path", rec{path: "/tmp/x/y", digest: bad}, "", func(c Counts) int { return c.Excluded }},
		{"exclude anchored at start", rec{path: "/home/tmp/x", digest: bad}, ReasonNotInPolicy, nil},
		{"exclude with $", rec{path: "/var/log/a.log", digest: bad}, "", func(c Counts) int { return c.Excluded }},
		{"exclude with $ not matching", rec{path: "/var/log/a.log.1", digest: bad}, ReasonNotInPolicy, nil},
		// _validate_ima_sig: a signature that verifies allows whatever digest.
		{"rsa signature verifies", rec{template: "ima-sig", path: ls, digest: bad, sig: rsaS.sign(t, bad)}, "", func(c Counts) int { return c.Signature }},
		{"secp256k1 signature verifies", rec{template: "ima-sig", path: ls, digest: bad, sig: k1.sign(t, bad)}, "", func(c Counts) int { return c.Signature }},
		// _validate_ima_sig: a failing signature falls back to the digest list.
		{"bad signature, digest listed", rec{template: "ima-sig", path: bash, digest: good, sig: rsaS.sign(t, bad)}, "", func(c Counts) int { return c.Digest }},
		{"bad signature", rec{template: "ima-sig", path: ls, digest: bad, sig: rsaS.sign(t, good)}, ReasonBadSignature, nil},
		{"unknown key", rec{template: "ima-sig", path: ls, digest: bad, sig: other.sign(t, bad)}, ReasonUnknownKey, nil},
		{"unknown key, digest listed", rec{template: "ima-sig", path: bash, digest: good, sig: other.sign(t, good)}, "", func(c Counts) int { return c.Digest }},
		// Keylime: the signature header's hash must be the digest's.
		{"signature hash differs from digest", rec{template: "ima-sig", path: ls, digest: bad, sig: rsaS.signRaw(t, 3, 2, 5, 0, bad)}, ReasonBadSignature, nil},
		// Keylime accepts version 2 only (integrity_digsig_verify): a
		// version 3 file signature falls back to the digest list.
		{"v3 file signature", rec{template: "ima-sig", path: ls, digest: bad, sig: rsaS.signRaw(t, 3, 3, 4, 0, bad)}, ReasonBadSignature, nil},
		// ast.ImaSig.create_signature drops a malformed signature, the rebuilt
		// template data then misses it and Entry.invalid fails the template
		// hash before any exclusion is looked at.
		{"malformed signature on excluded path", rec{template: "ima-sig", path: "/tmp/x", digest: bad, sig: malformed}, ReasonMalformedSignature, nil},
		{"malformed signature on listed digest", rec{template: "ima-sig", path: bash, digest: good, sig: malformed}, ReasonMalformedSignature, nil},
		{"short signature header", rec{template: "ima-sig", path: bash, digest: good, sig: []byte{3, 2, 4}}, ReasonMalformedSignature, nil},
		// An ima-sig entry without a signature is an ima-ng entry.
		{"ima-sig without signature", rec{template: "ima-sig", path: bash, digest: good}, "", func(c Counts) int { return c.Digest }},
		// ima.py adds the verifier's boot aggregates to digests["boot_aggregate"].
		{"boot_aggregate from registers", rec{path: "boot_aggregate", digest: sum("boot")}, "", func(c Counts) int { return c.Boot }},
		{"boot_aggregate listed", rec{path: "boot_aggregate", digest: sum("listed-boot")}, "", func(c Counts) int { return c.Digest }},
		{"boot_aggregate wrong", rec{path: "boot_aggregate", digest: sum("other-boot")}, ReasonDigest, nil},
		// Entry.invalid: a ToMToU entry is a failure event.
		{"violation entry", rec{path: bash, digest: good, violation: true}, ReasonViolation, nil},
	}
	p := compile(t, policy())
	opts := Options{BootAggregates: [][]byte{sum("boot")}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := appraise(t, p, parseList(t, []rec{tc.rec}), opts)
			if tc.want == "" {
				if !v.OK() || tc.counts(v.Counts) != 1 {
					t.Fatalf("want allowed, got %+v first=%v", v.Counts, v.First)
				}
				return
			}
			if v.OK() || v.First.Reason != tc.want || v.First.Index != 0 || v.First.Path != tc.rec.path {
				t.Fatalf("want %s, got counts %+v first %v", tc.want, v.Counts, v.First)
			}
			if tc.rec.violation {
				return
			}
			if !strings.HasPrefix(v.First.Digest, "sha256:"+hx(tc.rec.digest)) {
				t.Fatalf("finding names digest %q", v.First.Digest)
			}
		})
	}
}

// TestOurRules covers what this package adds to Keylime's rules.
func TestOurRules(t *testing.T) {
	good, bad := sum("bash"), sum("evil")
	p := compile(t, &conf.IMAPolicy{
		Enforce:        true,
		HashAlgorithms: []string{"sha256"},
		Digests:        []string{hx(sum("anywhere"))},
		Files:          map[string][]string{bash: {hx(good)}, "/usr/bin/sha1ed": {"0123456789012345678901234567890123456789"}},
	})
	cases := []struct {
		name string
		rec  rec
		want Reason
	}{
		{"digest allowed under any path", rec{path: "/opt/x", digest: sum("anywhere")}, ""},
		{"forbidden hash algorithm", rec{path: "/usr/bin/sha1ed", alg: "sha1", digest: []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x67, 0x89}}, ReasonHashAlgorithm},
		{"ima-cgpath entry is a file", rec{template: "ima-cgpath", path: bash, digest: good, cgpath: "/system.slice/ssh.service"}, ""},
		{"ima-cgpath entry not allowed", rec{template: "ima-cgpath", path: bash, digest: bad, cgpath: "/system.slice/ssh.service"}, ReasonDigest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := appraise(t, p, parseList(t, []rec{tc.rec}), Options{})
			if tc.want == "" && !v.OK() || tc.want != "" && (v.OK() || v.First.Reason != tc.want) {
				t.Fatalf("want %q, got %+v first %v", tc.want, v.Counts, v.First)
			}
		})
	}
	t.Run("violations allowed", func(t *testing.T) {
		p := compile(t, &conf.IMAPolicy{Enforce: true, AllowViolations: true, Files: map[string][]string{bash: {hx(good)}}})
		v := appraise(t, p, parseList(t, []rec{{path: ls, digest: bad, violation: true}}), Options{})
		if !v.OK() || v.Counts.Violation != 1 {
			t.Fatalf("got %+v", v.Counts)
		}
	})
}

// TestSignatureVariants: ECDSA P-256 and P-384 v2 signatures, and a v3
// fs-verity signature over struct ima_file_id.
func TestSignatureVariants(t *testing.T) {
	for _, kind := range []string{"p256", "p384", "rsa", "secp256k1"} {
		t.Run(kind, func(t *testing.T) {
			s := newSigner(t, kind)
			p := compile(t, &conf.IMAPolicy{Enforce: true, VerificationKeys: []conf.IMAKey{{Data: []byte(s.pem)}}})
			d := sum(kind)
			v := appraise(t, p, parseList(t, []rec{{template: "ima-sig", path: "/x", digest: d, sig: s.sign(t, d)}}), Options{})
			if !v.OK() || v.Counts.Signature != 1 {
				t.Fatalf("got %+v %v", v.Counts, v.First)
			}
			// The same signature on another digest must not verify.
			v = appraise(t, p, parseList(t, []rec{{template: "ima-sig", path: "/x", digest: sum("other"), sig: s.sign(t, d)}}), Options{})
			if v.OK() || v.First.Reason != ReasonBadSignature {
				t.Fatalf("signature over another digest: got %+v %v", v.Counts, v.First)
			}
		})
	}
}

// TestEvmctlFixture verifies signatures evmctl wrote (testdata/evmctl).
func TestEvmctlFixture(t *testing.T) {
	dir := filepath.Join("testdata", "evmctl")
	content, err := os.ReadFile(filepath.Join(dir, "signed-file"))
	if err != nil {
		t.Fatal(err)
	}
	d := sum(string(content))
	for _, k := range []string{"rsa", "k1", "p256"} {
		t.Run(k, func(t *testing.T) {
			pub, err := os.ReadFile(filepath.Join(dir, k+".pub.pem"))
			if err != nil {
				t.Fatal(err)
			}
			sig, err := os.ReadFile(filepath.Join(dir, k+".sig"))
			if err != nil {
				t.Fatal(err)
			}
			p := compile(t, &conf.IMAPolicy{Enforce: true, VerificationKeys: []conf.IMAKey{{Data: pub}}})
			v := appraise(t, p, parseList(t, []rec{{template: "ima-sig", path: "/usr/bin/signed", digest: d, sig: sig}}), Options{})
			if !v.OK() || v.Counts.Signature != 1 {
				t.Fatalf("evmctl's %s signature: %+v %v", k, v.Counts, v.First)
			}
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)-5] ^= 1
			v = appraise(t, p, parseList(t, []rec{{template: "ima-sig", path: "/usr/bin/signed", digest: d, sig: flipped}}), Options{})
			if v.OK() {
				t.Fatalf("a flipped byte in evmctl's %s signature verified", k)
			}
		})
	}
}

// TestKeyringMeasurements: ima-buf keys (Keylime _validate_ima_buf).
func TestKeyringMeasurements(t *testing.T) {
	s := newSigner(t, "rsa")
	key, err := ParseKey([]byte(s.pem))
	if err != nil {
		t.Fatal(err)
	}
	keyDigest := sum(string(key.DER))
	p := compile(t, &conf.IMAPolicy{
		Enforce:         true,
		Keyrings:        map[string][]string{".ima": {hx(keyDigest)}},
		IgnoredKeyrings: []string{".builtin_trusted_keys"},
		Buffers:         map[string][]string{"kernel_version": {hx(sum("6.8.0"))}},
	})
	file := sum("signed by a measured key")
	cases := []struct {
		name string
		recs []rec
		want Reason
	}{
		{"allowed key then a signature with it", []rec{
			{template: "ima-buf", path: ".ima", digest: keyDigest, buf: key.DER},
			{template: "ima-sig", path: "/x", digest: file, sig: s.sign(t, file)},
		}, ""},
		{"signature before the key is measured", []rec{
			{template: "ima-sig", path: "/x", digest: file, sig: s.sign(t, file)},
			{template: "ima-buf", path: ".ima", digest: keyDigest, buf: key.DER},
		}, ReasonUnknownKey},
		{"keyring not allowed", []rec{{template: "ima-buf", path: ".evm", digest: keyDigest, buf: key.DER}}, ReasonKeyring},
		{"key digest not allowed", []rec{{template: "ima-buf", path: ".ima", digest: sum("x"), buf: key.DER}}, ReasonKeyring},
		{"ignored keyring", []rec{{template: "ima-buf", path: ".builtin_trusted_keys", digest: sum("x"), buf: key.DER}}, ""},
		{"ignored keyring teaches no key", []rec{
			{template: "ima-buf", path: ".builtin_trusted_keys", digest: keyDigest, buf: key.DER},
			{template: "ima-sig", path: "/x", digest: file, sig: s.sign(t, file)},
		}, ReasonUnknownKey},
		{"buffer allowed", []rec{{template: "ima-buf", path: "kernel_version", digest: sum("6.8.0"), buf: []byte("6.8.0")}}, ""},
		{"buffer not allowed", []rec{{template: "ima-buf", path: "kernel_version", digest: sum("6.9.0"), buf: []byte("6.9.0")}}, ReasonBuffer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := appraise(t, p, parseList(t, tc.recs), Options{})
			if tc.want == "" && !v.OK() || tc.want != "" && (v.OK() || v.First.Reason != tc.want) {
				t.Fatalf("want %q, got %+v first %v", tc.want, v.Counts, v.First)
			}
		})
	}
}

// TestContainerScope: a pod's policy appraises only that pod's entries, so
// another pod's entry can neither fail nor satisfy it.
func TestContainerScope(t *testing.T) {
	const (
		podA = "0b7c2d2e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
		podB = "1b7c2d2e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
	)
	cg := func(pod string) string {
		return "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(pod, "-", "_") +
			".slice/cri-containerd-" + strings.Repeat("ab", 32) + ".scope"
	}
	good := sum("app")
	p := compile(t, &conf.IMAPolicy{Enforce: true, PodUID: podA, Files: map[string][]string{"/app": {hx(good)}}})
	v := appraise(t, p, parseList(t, []rec{
		{template: "ima-cgpath", path: "/usr/bin/anything", digest: sum("host"), cgpath: "/system.slice/containerd.service"}, // host entry: out of scope
		{template: "ima-cgpath", path: "/app", digest: good, cgpath: cg(podA)},                                               // allowed
		{template: "ima-cgpath", path: "/evil", digest: sum("evil"), cgpath: cg(podB)},                                       // other pod: out of scope
		{template: "ima-cgpath", path: "/app", digest: sum("tampered"), cgpath: cg(podA)},                                    // offends
	}), Options{})
	if v.Counts.OutOfScope != 2 || v.Counts.Digest != 1 || v.Counts.Failed != 1 || v.First.Index != 3 {
		t.Fatalf("got %+v first %v", v.Counts, v.First)
	}
	// Pod B's entry with pod A's allowed digest satisfies nothing in A's policy.
	v = appraise(t, p, parseList(t, []rec{{template: "ima-cgpath", path: "/app", digest: good, cgpath: cg(podB)}}), Options{})
	if v.Counts.Digest != 0 || v.Counts.OutOfScope != 1 {
		t.Fatalf("another pod's entry counted for pod A: %+v", v.Counts)
	}
	// A list whose template names no cgroup (a kernel booted with
	// ima_template=ima-ng) cannot be scoped: counted as another pod's, its
	// entries would let every scoped policy pass.
	v = appraise(t, p, parseList(t, []rec{{path: "/usr/bin/miner", digest: sum("miner")}}), Options{})
	if v.Counts.Failed != 1 || v.First == nil || v.First.Reason != ReasonNoCgroupPath {
		t.Fatalf("an entry without a cgroup path under a pod-scoped policy: %+v first %v", v.Counts, v.First)
	}
	// By container ID, as the container:id selector names it.
	pc := compile(t, &conf.IMAPolicy{Enforce: true, ContainerID: strings.Repeat("ab", 32), Files: map[string][]string{"/app": {hx(good)}}})
	v = appraise(t, pc, parseList(t, []rec{{template: "ima-cgpath", path: "/evil", digest: sum("evil"), cgpath: cg(podB)}}), Options{})
	if v.Counts.Failed != 1 {
		t.Fatalf("container scope: %+v", v.Counts)
	}
}

// TestIncremental: appraising a list in two parts gives the Verdict of one
// pass, through a stored and reloaded Verdict; wrong resumptions fail.
func TestIncremental(t *testing.T) {
	s := newSigner(t, "rsa")
	key, _ := ParseKey([]byte(s.pem))
	keyDigest := sum(string(key.DER))
	file := sum("f")
	p := compile(t, &conf.IMAPolicy{Enforce: false, Files: map[string][]string{bash: {hx(sum("bash"))}},
		Keyrings: map[string][]string{".ima": {hx(keyDigest)}}})
	recs := []rec{
		{path: bash, digest: sum("bash")},
		{path: ls, digest: sum("ls")},
		{template: "ima-buf", path: ".ima", digest: keyDigest, buf: key.DER},
		{path: bash, digest: sum("evil")},
		{template: "ima-sig", path: "/x", digest: file, sig: s.sign(t, file)}, // needs the key learned in part one
		{path: ls, digest: sum("ls2")},
	}
	all := parseList(t, recs)
	whole := appraise(t, p, all, Options{})
	if whole.Counts.Failed != 3 || whole.Counts.Signature != 1 || len(whole.Findings) != 3 {
		t.Fatalf("whole: %+v %v", whole.Counts, whole.Findings)
	}
	first, err := p.Appraise(p.Start(), 0, all[:4], Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := first.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := UnmarshalVerdict(b)
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Appraise(stored, 4, all[4:], Options{})
	if err != nil {
		t.Fatal(err)
	}
	wb, _ := whole.MarshalBinary()
	sb, _ := second.MarshalBinary()
	if string(wb) != string(sb) {
		t.Fatalf("incremental verdict differs:\n%s\n%s", wb, sb)
	}
	if len(first.Findings) != 2 {
		t.Fatalf("Appraise modified its prev: %d findings", len(first.Findings))
	}
	if _, err := p.Appraise(stored, 5, all[5:], Options{}); err == nil {
		t.Fatal("a gap was resumed")
	}
	other := compile(t, &conf.IMAPolicy{Enforce: false, Files: map[string][]string{bash: {hx(sum("other"))}}})
	if _, err := other.Appraise(stored, 4, all[4:], Options{}); err == nil {
		t.Fatal("a verdict of another policy was resumed")
	}
}

func TestUnmarshalVerdictBounds(t *testing.T) {
	for _, s := range []string{
		`{"policy":"x","next":2,"counts":{"digest":1}}`,
		`{"policy":"x","next":1,"counts":{"failed":1}}`,
		`{"policy":"x","next":1,"counts":{"digest":2,"failed":-1},"first":{"index":0,"path":"a","reason":"x"}}`,
		`{"policy":"x","next":0,"counts":{},"unknown":1}`,
	} {
		if _, err := UnmarshalVerdict([]byte(s)); err == nil {
			t.Errorf("accepted %s", s)
		}
	}
}

// TestWarnFindingsBounded: a warn-only policy lists at most MaxFindings.
func TestWarnFindingsBounded(t *testing.T) {
	p := compile(t, &conf.IMAPolicy{Enforce: false, Files: map[string][]string{bash: {hx(sum("bash"))}}})
	var recs []rec
	for i := range MaxFindings + 10 {
		recs = append(recs, rec{path: "/bad", digest: sum(string(rune('a' + i)))})
	}
	v := appraise(t, p, parseList(t, recs), Options{})
	if v.Counts.Failed != MaxFindings+10 || len(v.Findings) != MaxFindings || v.Truncated() != 10 || p.Enforce() {
		t.Fatalf("got %+v, %d findings", v.Counts, len(v.Findings))
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		p    conf.IMAPolicy
		want string
	}{
		{conf.IMAPolicy{Exclude: []string{"(?=x)"}}, "exclude[0]"},
		{conf.IMAPolicy{Files: map[string][]string{"/a": {"zz"}}}, `file "/a": digests[0]`},
		{conf.IMAPolicy{VerificationKeys: []conf.IMAKey{{Data: []byte("junk"), Where: "verification_keys[3]"}}}, "verification_keys[3]"},
		{conf.IMAPolicy{VerificationKeys: []conf.IMAKey{{File: "/nonexistent/k.pem", Where: "verification_key_files[0]"}}}, "verification_key_files[0]"},
	} {
		_, err := Compile(context.Background(), &tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error naming %q, got %v", tc.want, err)
		}
	}
}

// TestExcludeLiteralPrefixAnchors: exclusions are matched as Keylime's
// re.match does whatever shortcut the excluder takes. A literal pattern
// ending in "$" is not a directory: "/tmp/$" excludes "/tmp/" only, never
// "/tmp/x" (the anchored regexp's LiteralPrefix calls "^(?:/tmp/$)" a
// complete literal, which once made the excluder skip the regexp).
func TestExcludeLiteralPrefixAnchors(t *testing.T) {
	cases := []struct {
		pat  string
		path string
		want bool // Python: re.match(pat, path) is not None
	}{
		{"/tmp/$", "/tmp/", true},
		{"/tmp/$", "/tmp/x", false},
		{`/tmp/\z`, "/tmp/x", false},
		{`/tmp/\b`, "/tmp/x", true}, // a word boundary between "/" and "x"
		{`/tmp/\b`, "/tmp/", false},
		{"/tmp/x?", "/tmp/y", true},
		{"/tmp/", "/tmp/x", true},
		{"/tmp/", "/var/tmp/x", false},
		{"^/tmp/", "/tmp/x", true},
		{"/tmp/.*", "/tmp/x", true},
		{"/tmp/.*", "/tm", false},
		{"(?i)/TMP/", "/tmp/x", true},
		{"/a|/b", "/bin", true},
		{`.*\.pyc$`, "/usr/lib/x.pyc", true},
		{`.*\.pyc$`, "/usr/lib/x.pyc.bak", false},
	}
	for _, tc := range cases {
		e, err := compileExcludes([]string{"/unrelated/", tc.pat})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.match(tc.path); got != tc.want {
			t.Errorf("exclude %q, path %q: excluded %v, want %v", tc.pat, tc.path, got, tc.want)
		}
	}
}
