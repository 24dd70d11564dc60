package imapolicy

import (
	"crypto"
	"encoding/binary"
	"fmt"
)

// The IMA digital signature (security.ima xattr, and the ima-sig template's
// sig field) is the kernel's struct signature_v2_hdr, big endian:
//
//	u8 type | u8 version | u8 hash_algo | u32 keyid | u16 sig_size | sig[sig_size]
//
// type 3 (EVM_IMA_XATTR_DIGSIG) or 5 (EVM_XATTR_PORTABLE_DIGSIG) with
// version 2 signs the file digest itself; type 6 (IMA_VERITY_DIGSIG) with
// version 3 signs the hash, with the same algorithm, of struct ima_file_id
// {u8 hash_type = 6; u8 hash_algorithm; u8 digest[digest size]} over an
// fs-verity digest. hash_algo is the kernel's enum hash_algo.
const (
	sigHeaderLen = 9

	sigTypeDigsig         = 3
	sigTypePortableDigsig = 5
	sigTypeVerityDigsig   = 6
)

// Signature is a parsed IMA signature header and its signature bytes.
type Signature struct {
	Type, Version, HashAlgo uint8
	KeyID                   uint32
	Sig                     []byte
}

// ParseSignature checks the header as Keylime's ast.Signature does: nine
// bytes, then exactly sig_size bytes. A signature that fails this is
// malformed (see Reason ReasonMalformedSignature). A well-formed header of a
// type, version or hash algorithm IMA does not write is not malformed: it
// merely cannot verify (Signature.usable), as in Keylime.
func ParseSignature(b []byte) (Signature, error) {
	if len(b) < sigHeaderLen {
		return Signature{}, fmt.Errorf("signature of %d bytes is shorter than its %d-byte header", len(b), sigHeaderLen)
	}
	s := Signature{Type: b[0], Version: b[1], HashAlgo: b[2], KeyID: binary.BigEndian.Uint32(b[3:7])}
	size := int(binary.BigEndian.Uint16(b[7:9]))
	if sigHeaderLen+size != len(b) {
		return Signature{}, fmt.Errorf("signature header says %d signature bytes, %d follow", size, len(b)-sigHeaderLen)
	}
	s.Sig = b[sigHeaderLen:]
	return s, nil
}

// usable says why a well-formed signature can never verify, or nil.
func (s Signature) usable() error {
	switch {
	case (s.Type == sigTypeDigsig || s.Type == sigTypePortableDigsig) && s.Version == 2:
	case s.Type == sigTypeVerityDigsig && s.Version == 3:
	default:
		return fmt.Errorf("signature type %d version %d is not one IMA verifies (type 3 or 5 version 2, type 6 version 3)", s.Type, s.Version)
	}
	if _, _, ok := kernelHash(s.HashAlgo); !ok {
		return fmt.Errorf("signature hash algorithm %d is not supported", s.HashAlgo)
	}
	if len(s.Sig) == 0 {
		return fmt.Errorf("empty signature")
	}
	return nil
}

// kernelHash maps the kernel's enum hash_algo (include/uapi/linux/hash_info.h)
// to Go's hash and the kernel's name, for the algorithms a signature can use.
func kernelHash(id uint8) (crypto.Hash, string, bool) {
	switch id {
	case 2:
		return crypto.SHA1, "sha1", true
	case 4:
		return crypto.SHA256, "sha256", true
	case 5:
		return crypto.SHA384, "sha384", true
	case 6:
		return crypto.SHA512, "sha512", true
	case 7:
		return crypto.SHA224, "sha224", true
	}
	return 0, "", false
}

// signedDigest returns what the signature signs for a file digest of
// algorithm algoName and digest type (d-ngv2 "ima" or "verity", or "" for
// d-ng), or why the signature cannot apply to that digest.
func (s Signature) signedDigest(algoName, digestType string, digest []byte) (crypto.Hash, []byte, error) {
	h, name, _ := kernelHash(s.HashAlgo)
	if name != algoName {
		return 0, nil, fmt.Errorf("signature uses %s, the measured digest %s", name, algoName)
	}
	if len(digest) != h.Size() {
		return 0, nil, fmt.Errorf("%s digest of %d bytes", name, len(digest))
	}
	if s.Type == sigTypeVerityDigsig {
		if digestType != "verity" {
			return 0, nil, fmt.Errorf("an fs-verity signature on a digest that is not an fs-verity digest")
		}
		w := h.New()
		w.Write([]byte{sigTypeVerityDigsig, s.HashAlgo})
		w.Write(digest)
		return h, w.Sum(nil), nil
	}
	if digestType == "verity" {
		return 0, nil, fmt.Errorf("a file signature on an fs-verity digest")
	}
	return h, digest, nil
}
