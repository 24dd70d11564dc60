package imapolicy

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
)

// rec is one entry to write into a binary test list.
type rec struct {
	template  string // ima-ng (default), ima-sig, ima-buf, ima-cgpath
	path      string
	alg       string // sha256 by default
	digest    []byte
	sig       []byte
	buf       []byte
	cgpath    string
	violation bool
}

// binaryList writes entries as the kernel's binary_runtime_measurements
// (little endian, SHA-1 template hashes), so tests go through ima.Parse
// exactly as a real list does.
func binaryList(t testing.TB, recs []rec) []byte {
	t.Helper()
	var out []byte
	le := binary.LittleEndian
	field := func(td, f []byte) []byte {
		td = le.AppendUint32(td, uint32(len(f)))
		return append(td, f...)
	}
	for _, r := range recs {
		tmpl := r.template
		if tmpl == "" {
			tmpl = "ima-ng"
		}
		alg := r.alg
		if alg == "" {
			alg = "sha256"
		}
		dng := append([]byte(alg+":\x00"), r.digest...)
		nng := []byte(r.path + "\x00")
		var td []byte
		switch tmpl {
		case "ima-ng":
			td = field(field(td, dng), nng)
		case "ima-sig":
			td = field(field(field(td, dng), nng), r.sig)
		case "ima-buf":
			td = field(field(field(td, dng), nng), r.buf)
		case "ima-cgpath":
			td = field(field(field(field(td, []byte("/usr/bin/containerd-shim\x00")), []byte(r.cgpath+"\x00")), dng), nng)
		default:
			t.Fatalf("binaryList: template %s", tmpl)
		}
		th := sha1.Sum(td)
		if r.violation {
			th = [20]byte{}
		}
		out = le.AppendUint32(out, 10)
		out = append(out, th[:]...)
		out = le.AppendUint32(out, uint32(len(tmpl)))
		out = append(out, tmpl...)
		out = le.AppendUint32(out, uint32(len(td)))
		out = append(out, td...)
	}
	return out
}

func parseList(t testing.TB, recs []rec) []ima.Entry {
	t.Helper()
	l, err := ima.Parse(binaryList(t, recs), ima.Options{})
	if err != nil {
		t.Fatalf("parse test list: %v", err)
	}
	return l.Entries
}

func sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func hx(b []byte) string { return hex.EncodeToString(b) }

// signer makes IMA signatures (signature_v2_hdr) as evmctl writes them.
type signer struct {
	priv crypto.Signer
	k1   *secp256k1.PrivateKey
	id   uint32
	pem  string // public key, PEM
}

func newSigner(t testing.TB, kind string) *signer {
	t.Helper()
	s := &signer{}
	var pub any
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		s.priv, pub = k, &k.PublicKey
	case "p256", "p384":
		c := elliptic.P256()
		if kind == "p384" {
			c = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.priv, pub = k, &k.PublicKey
	case "secp256k1":
		k, err := secp256k1.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		s.k1, pub = k, k.PubKey()
		// crypto/x509 cannot marshal secp256k1: write the SPKI by hand.
		s.pem = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: secp256k1SPKI(t, k.PubKey())}))
	}
	id, err := KeyIDv2(pub)
	if err != nil {
		t.Fatal(err)
	}
	s.id = id
	if s.pem == "" {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		s.pem = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	return s
}

func secp256k1SPKI(t testing.TB, pub *secp256k1.PublicKey) []byte {
	t.Helper()
	// SEQUENCE { SEQUENCE { id-ecPublicKey, secp256k1 }, BIT STRING point }
	alg := []byte{0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}
	pt := pub.SerializeUncompressed()
	bits := append([]byte{0x03, byte(len(pt) + 1), 0x00}, pt...)
	body := append(alg, bits...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

// sign returns a type 3 version 2 signature over a sha256 file digest.
func (s *signer) sign(t testing.TB, digest []byte) []byte {
	t.Helper()
	return s.signRaw(t, 3, 2, 4, crypto.SHA256, digest)
}

func (s *signer) signRaw(t testing.TB, typ, version, algo uint8, h crypto.Hash, digest []byte) []byte {
	t.Helper()
	var sig []byte
	var err error
	if s.k1 != nil {
		sig = secpecdsa.Sign(s.k1, digest).Serialize()
	} else {
		sig, err = s.priv.Sign(rand.Reader, digest, h)
		if err != nil {
			t.Fatal(err)
		}
	}
	hdr := []byte{typ, version, algo}
	hdr = binary.BigEndian.AppendUint32(hdr, s.id)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(sig)))
	return append(hdr, sig...)
}

func compile(t testing.TB, p *conf.IMAPolicy) *Policy {
	t.Helper()
	if p.Source == "" {
		p.Source = "test policy"
	}
	c, err := Compile(context.Background(), p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func appraise(t testing.TB, p *Policy, entries []ima.Entry, opts Options) Verdict {
	t.Helper()
	v, err := p.Appraise(p.Start(), 0, entries, opts)
	if err != nil {
		t.Fatalf("Appraise: %v", err)
	}
	return v
}
