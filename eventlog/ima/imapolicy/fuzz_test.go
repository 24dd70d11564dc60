package imapolicy

import (
	"testing"
)

// FuzzParseKeylime: any input is a policy or an error, never a panic, and
// a policy that parses compiles or fails with an error.
func FuzzParseKeylime(f *testing.F) {
	f.Add([]byte(`{"meta":{"version":1,"generator":2},"release":0,"digests":{"/a":["` + hx(sum("a")) + `"]},"excludes":["/tmp/"],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`))
	f.Add([]byte(`{"verification-keys":"{\"keyids\":[1],\"pubkeys\":[\"AAAA\"]}"}`))
	f.Add([]byte(`{"payload":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseKeylime(b, "fuzz.json")
		if err != nil {
			return
		}
		_, _ = Compile(t.Context(), p)
	})
}

// FuzzSignatureAndKey: the signature header and key parsers never panic,
// and a parsed signature is self-consistent.
func FuzzSignatureAndKey(f *testing.F) {
	s := newSigner(f, "secp256k1")
	f.Add(s.sign(f, sum("x")), []byte(s.pem))
	r := newSigner(f, "rsa")
	f.Add(r.sign(f, sum("x")), []byte(r.pem))
	f.Add([]byte{3, 2, 4, 0, 0, 0, 0, 0, 1, 0}, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, sigBytes, keyBytes []byte) {
		sig, err := ParseSignature(sigBytes)
		if err == nil {
			if len(sig.Sig)+sigHeaderLen != len(sigBytes) {
				t.Fatalf("signature of %d bytes from %d input bytes", len(sig.Sig), len(sigBytes))
			}
			_ = sig.usable()
			_, _, _ = sig.signedDigest("sha256", "", sum("x"))
		}
		k, err := ParseKey(keyBytes)
		if err == nil {
			if k.Public == nil || len(k.DER) == 0 {
				t.Fatal("a key without a public key")
			}
			if err == nil && sig.Sig != nil {
				h, d, err := sig.signedDigest("sha256", "", sum("x"))
				if err == nil {
					_ = verifyDigest(k.Public, h, d, sig.Sig)
				}
			}
		}
	})
}
