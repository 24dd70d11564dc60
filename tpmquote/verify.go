// Package tpmquote holds the TPM 2.0 formats the server verifies and the
// checks on them, with no TPM device: a TPM2_Quote (TPMS_ATTEST signed by
// the attestation key, over a PCR selection), TPMT_PUBLIC key areas and
// their Names, the server side of credential activation (MakeCredential)
// and EK certificates. It sits next to tdxquote: the server links it, and
// the agent's provider (tee/tpm) uses the same code to check its own quotes
// and keys before they leave the node.
package tpmquote

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-tpm/tpm2"
)

// Size limits for the structures the verifier parses. Real ones are far
// smaller (a TPMT_PUBLIC of an RSA-4096 key is ~600 bytes, a quote's
// TPMS_ATTEST ~200); anything bigger is rejected before parsing.
const (
	MaxPublicSize    = 2048
	MaxAttestSize    = 2048
	MaxSignatureSize = 1024
	MaxCredentialIn  = 1024
)

// The checks VerifyQuote performs, as QuoteError.Check names them.
const (
	CheckAK           = "ak"            // the AK public area: parse, restricted signing key
	CheckSignature    = "signature"     // the AK's signature over the TPMS_ATTEST bytes
	CheckAttest       = "attest"        // TPM_GENERATED magic, quote type, structure
	CheckExtraData    = "extra_data"    // extraData equals the expected binding
	CheckPCRSelection = "pcr_selection" // supplied PCR values cover exactly the quoted selection
	CheckPCRDigest    = "pcr_digest"    // digest of the supplied PCR values equals the quoted pcrDigest
)

// QuoteError says which check of VerifyQuote failed and, where one is
// involved, which PCR and bank.
type QuoteError struct {
	Check string
	// IMR and Alg name the register involved, when one is (Alg == 0 otherwise).
	IMR cctrusted.IMR
	Alg cctrusted.Algorithm
	Err error
}

func (e *QuoteError) Error() string {
	if e.Alg != 0 {
		return fmt.Sprintf("tpm: quote check %s failed on %v (%v): %v", e.Check, e.IMR, e.Alg, e.Err)
	}
	return fmt.Sprintf("tpm: quote check %s failed: %v", e.Check, e.Err)
}

func (e *QuoteError) Unwrap() error { return e.Err }

func quoteErr(check string, format string, args ...any) error {
	return &QuoteError{Check: check, Err: fmt.Errorf(format, args...)}
}

// strictUnmarshal parses a TPM structure and insists that the bytes are its
// canonical encoding with nothing after it: a name is the hash of the bytes
// while the key is what the parser saw, so the two must be the same thing.
// go-tpm's reflection decoder is not written for hostile input; a panic in
// it becomes an error here.
func strictUnmarshal[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](what string, b []byte, limit int) (v *T, err error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", what)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", what, len(b), limit)
	}
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%s does not parse (decoder panic: %v)", what, r)
		}
	}()
	v, err = tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", what, err)
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, fmt.Errorf("%s is not a canonical encoding (trailing or non-minimal bytes)", what)
	}
	return v, nil
}

// ParsePublic parses a TPMT_PUBLIC area (as AttestationKeyPublic and
// EKPublic return it) into its Go public key.
func ParsePublic(pub []byte) (crypto.PublicKey, error) {
	p, err := parsePublicArea("TPMT_PUBLIC", pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	return publicKey(p)
}

func publicKey(p *tpm2.TPMTPublic) (k crypto.PublicKey, err error) {
	defer func() {
		if r := recover(); r != nil {
			k, err = nil, fmt.Errorf("tpm: public key does not decode (panic: %v)", r)
		}
	}()
	k, err = tpm2.Pub(*p)
	if err != nil {
		return nil, fmt.Errorf("tpm: public area of type %v: %w", p.Type, err)
	}
	return k, nil
}

// PublicKeyHash is the hex SHA-256 of a TPMT_PUBLIC's key in PKIX (DER)
// form: the same value whether the key comes from the TPM or from its
// certificate, so it can name a TPM (the EK) in agent IDs and allow-lists.
func PublicKeyHash(pub []byte) (string, error) {
	k, err := ParsePublic(pub)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", fmt.Errorf("tpm: encoding public key: %w", err)
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), nil
}

// AKName returns the TPM Name of a key from its TPMT_PUBLIC area: the
// nameAlg (2 bytes) followed by the nameAlg digest of the area. This is what
// MakeCredential binds a credential to.
func AKName(akPub []byte) ([]byte, error) {
	p, err := parsePublicArea("AK TPMT_PUBLIC", akPub)
	if err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	return nameOf(p.NameAlg, akPub)
}

func nameOf(alg tpm2.TPMIAlgHash, area []byte) ([]byte, error) {
	h, err := hashOf(alg)
	if err != nil {
		return nil, fmt.Errorf("tpm: name algorithm: %w", err)
	}
	hh := h.New()
	hh.Write(area)
	return hh.Sum(binary.BigEndian.AppendUint16(nil, uint16(alg))), nil
}

// hashOf maps the TPM hash algorithms this package accepts for signatures
// and names. SHA-1 is refused: it is not collision resistant.
func hashOf(alg tpm2.TPMIAlgHash) (crypto.Hash, error) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, nil
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, nil
	case tpm2.TPMAlgSHA512:
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("hash algorithm 0x%04x is not accepted (want sha256, sha384 or sha512)", uint16(alg))
}

// ValidateAK insists on what makes a quote trustworthy: only a restricted
// signing key refuses to sign data that starts with TPM_GENERATED_VALUE but
// did not come from the TPM, and only a fixedTPM key cannot leave the TPM
// that the EK (credential activation) vouches for.
func ValidateAK(p *tpm2.TPMTPublic) error {
	a := p.ObjectAttributes
	switch {
	case p.Type != tpm2.TPMAlgECC && p.Type != tpm2.TPMAlgRSA:
		return fmt.Errorf("AK type 0x%04x is neither RSA nor ECC", uint16(p.Type))
	case !a.SignEncrypt || a.Decrypt:
		return errors.New("AK is not a signing-only key")
	case !a.Restricted:
		return errors.New("AK is not restricted: it could sign forged attestation data")
	case !a.FixedTPM || !a.FixedParent:
		return errors.New("AK is not fixedTPM/fixedParent: it could live outside this TPM")
	}
	_, _, err := akScheme(p)
	return err
}

// akScheme returns the signing scheme and hash fixed in the AK's public area.
// A restricted signing key carries one; a quote must be signed with exactly
// it. Checking it also makes the public area's bytes canonical: two areas
// that differ only in an unused scheme field would otherwise name two AKs
// with one key.
func akScheme(p *tpm2.TPMTPublic) (tpm2.TPMAlgID, crypto.Hash, error) {
	var (
		alg  tpm2.TPMAlgID
		hash tpm2.TPMIAlgHash
	)
	switch p.Type {
	case tpm2.TPMAlgECC:
		d, err := p.Parameters.ECCDetail()
		if err != nil {
			return 0, 0, err
		}
		if d.Scheme.Scheme != tpm2.TPMAlgECDSA {
			return 0, 0, fmt.Errorf("AK scheme 0x%04x is not ECDSA", uint16(d.Scheme.Scheme))
		}
		s, err := d.Scheme.Details.ECDSA()
		if err != nil {
			return 0, 0, err
		}
		alg, hash = tpm2.TPMAlgECDSA, s.HashAlg
	case tpm2.TPMAlgRSA:
		d, err := p.Parameters.RSADetail()
		if err != nil {
			return 0, 0, err
		}
		switch d.Scheme.Scheme {
		case tpm2.TPMAlgRSASSA:
			s, err := d.Scheme.Details.RSASSA()
			if err != nil {
				return 0, 0, err
			}
			alg, hash = tpm2.TPMAlgRSASSA, s.HashAlg
		case tpm2.TPMAlgRSAPSS:
			s, err := d.Scheme.Details.RSAPSS()
			if err != nil {
				return 0, 0, err
			}
			alg, hash = tpm2.TPMAlgRSAPSS, s.HashAlg
		default:
			return 0, 0, fmt.Errorf("AK scheme 0x%04x is not RSASSA or RSAPSS", uint16(d.Scheme.Scheme))
		}
	default:
		return 0, 0, fmt.Errorf("AK type 0x%04x is neither RSA nor ECC", uint16(p.Type))
	}
	h, err := hashOf(hash)
	if err != nil {
		return 0, 0, fmt.Errorf("AK scheme: %w", err)
	}
	return alg, h, nil
}

// VerifyQuote checks a TPM2_Quote: akPub (TPMT_PUBLIC) is a restricted
// signing key whose signature sig (TPMT_SIGNATURE) covers attest
// (TPMS_ATTEST); attest is a genuine quote whose extraData equals
// extraData; pcrs holds a value for exactly every quoted PCR of every quoted
// bank, and their digest is the quoted pcrDigest. Trust in the AK itself
// (credential activation, certificates) is the caller's business.
// Failures are *QuoteError naming the check.
func VerifyQuote(akPub, attest, sig, extraData []byte, pcrs cctrusted.Registers) error {
	ak, err := parsePublicArea("AK TPMT_PUBLIC", akPub)
	if err != nil {
		return quoteErr(CheckAK, "%w", err)
	}
	if err := ValidateAK(ak); err != nil {
		return quoteErr(CheckAK, "%w", err)
	}
	key, err := publicKey(ak)
	if err != nil {
		return quoteErr(CheckAK, "%w", err)
	}
	if len(attest) > MaxAttestSize {
		return quoteErr(CheckAttest, "TPMS_ATTEST is %d bytes, more than the %d allowed", len(attest), MaxAttestSize)
	}
	schemeAlg, schemeHash, err := akScheme(ak)
	if err != nil {
		return quoteErr(CheckAK, "%w", err)
	}
	hash, err := verifySignature(key, schemeAlg, attest, sig)
	if err != nil {
		return quoteErr(CheckSignature, "%w", err)
	}
	if hash != schemeHash {
		return quoteErr(CheckSignature, "signature hash %v is not the AK's scheme hash %v", hash, schemeHash)
	}

	att, err := strictUnmarshal[tpm2.TPMSAttest]("TPMS_ATTEST", attest, MaxAttestSize)
	if err != nil {
		return quoteErr(CheckAttest, "%w", err)
	}
	if att.Magic != tpm2.TPMGeneratedValue {
		return quoteErr(CheckAttest, "magic 0x%08x is not TPM_GENERATED_VALUE", uint32(att.Magic))
	}
	if att.Type != tpm2.TPMSTAttestQuote {
		return quoteErr(CheckAttest, "attestation type 0x%04x is not a quote", uint16(att.Type))
	}
	q, err := att.Attested.Quote()
	if err != nil {
		return quoteErr(CheckAttest, "%w", err)
	}
	if subtle.ConstantTimeCompare(att.ExtraData.Buffer, extraData) != 1 {
		return quoteErr(CheckExtraData, "quote extraData %x is not the expected %x", att.ExtraData.Buffer, extraData)
	}

	digest, err := pcrDigest(q.PCRSelect, pcrs, hash)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(digest, q.PCRDigest.Buffer) != 1 {
		return quoteErr(CheckPCRDigest, "the supplied values of %s digest to %x, the quote signed %x: a PCR value was changed",
			describeSelection(q.PCRSelect), digest, q.PCRDigest.Buffer)
	}
	return nil
}

// verifySignature checks sig, which must use scheme, over msg with key and returns the hash the
// signature used (the TPM digests the PCRs with the same one).
func verifySignature(key crypto.PublicKey, scheme tpm2.TPMAlgID, msg, sigBytes []byte) (crypto.Hash, error) {
	sig, err := strictUnmarshal[tpm2.TPMTSignature]("TPMT_SIGNATURE", sigBytes, MaxSignatureSize)
	if err != nil {
		return 0, err
	}
	if sig.SigAlg != scheme {
		return 0, fmt.Errorf("signature scheme 0x%04x is not the AK's scheme 0x%04x", uint16(sig.SigAlg), uint16(scheme))
	}
	var (
		hashAlg tpm2.TPMIAlgHash
		verify  func(digest []byte, h crypto.Hash) error
	)
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return 0, err
		}
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("ECDSA signature but the AK is %T", key)
		}
		hashAlg = s.Hash
		verify = func(d []byte, _ crypto.Hash) error {
			r, ss := new(big.Int).SetBytes(s.SignatureR.Buffer), new(big.Int).SetBytes(s.SignatureS.Buffer)
			if !ecdsa.Verify(pub, d, r, ss) {
				return errors.New("ECDSA signature does not verify with the AK")
			}
			return nil
		}
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		var s *tpm2.TPMSSignatureRSA
		if sig.SigAlg == tpm2.TPMAlgRSASSA {
			s, err = sig.Signature.RSASSA()
		} else {
			s, err = sig.Signature.RSAPSS()
		}
		if err != nil {
			return 0, err
		}
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("RSA signature but the AK is %T", key)
		}
		hashAlg = s.Hash
		pss := sig.SigAlg == tpm2.TPMAlgRSAPSS
		verify = func(d []byte, h crypto.Hash) error {
			var err error
			if pss {
				err = rsa.VerifyPSS(pub, h, d, s.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
			} else {
				err = rsa.VerifyPKCS1v15(pub, h, d, s.Sig.Buffer)
			}
			if err != nil {
				return fmt.Errorf("RSA signature does not verify with the AK: %w", err)
			}
			return nil
		}
	default:
		return 0, fmt.Errorf("signature scheme 0x%04x is not ECDSA, RSASSA or RSAPSS", uint16(sig.SigAlg))
	}
	h, err := hashOf(hashAlg)
	if err != nil {
		return 0, err
	}
	hh := h.New()
	hh.Write(msg)
	return h, verify(hh.Sum(nil), h)
}

// pcrDigest concatenates the supplied PCR values in the quote's selection
// order (banks as listed, PCRs ascending) and hashes them, as the TPM does.
// Values supplied but not quoted are refused: a caller could otherwise
// believe them signed.
func pcrDigest(sel tpm2.TPMLPCRSelection, pcrs cctrusted.Registers, h crypto.Hash) ([]byte, error) {
	type reg struct {
		imr cctrusted.IMR
		alg cctrusted.Algorithm
	}
	quoted := make(map[reg]bool)
	hh := h.New()
	for _, s := range sel.PCRSelections {
		alg := cctrusted.Algorithm(s.Hash)
		if !alg.Known() {
			return nil, quoteErr(CheckPCRSelection, "quote selects unknown bank 0x%04x", uint16(s.Hash))
		}
		for byteIdx, bits := range s.PCRSelect {
			for bit := range 8 {
				if bits&(1<<bit) == 0 {
					continue
				}
				idx := uint32(byteIdx*8 + bit)
				m := cctrusted.PCR(idx).IMR()
				if !m.Valid() {
					return nil, &QuoteError{Check: CheckPCRSelection, IMR: m, Alg: alg, Err: errors.New("quote selects a PCR beyond 23")}
				}
				r := reg{m, alg}
				if quoted[r] {
					return nil, &QuoteError{Check: CheckPCRSelection, IMR: m, Alg: alg, Err: errors.New("quote selects the bank twice")}
				}
				quoted[r] = true
				v, ok := pcrs.Get(m, alg)
				if !ok {
					return nil, &QuoteError{Check: CheckPCRSelection, IMR: m, Alg: alg, Err: errors.New("quoted but no value supplied")}
				}
				if len(v) != alg.Size() {
					return nil, &QuoteError{Check: CheckPCRSelection, IMR: m, Alg: alg,
						Err: fmt.Errorf("supplied value is %d bytes, want %d", len(v), alg.Size())}
				}
				hh.Write(v)
			}
		}
	}
	if len(quoted) == 0 {
		return nil, quoteErr(CheckPCRSelection, "the quote covers no PCR")
	}
	// Report a stray value deterministically: lowest bank, then register.
	var stray []reg
	for m, banks := range pcrs {
		for alg := range banks {
			if !quoted[reg{m, alg}] {
				stray = append(stray, reg{m, alg})
			}
		}
	}
	if len(stray) > 0 {
		slices.SortFunc(stray, func(a, b reg) int {
			if a.alg != b.alg {
				return int(a.alg) - int(b.alg)
			}
			if a.imr.Space != b.imr.Space {
				return int(a.imr.Space) - int(b.imr.Space)
			}
			return int(a.imr.Index) - int(b.imr.Index)
		})
		return nil, &QuoteError{Check: CheckPCRSelection, IMR: stray[0].imr, Alg: stray[0].alg,
			Err: errors.New("value supplied but not covered by the quote")}
	}
	return hh.Sum(nil), nil
}

// describeSelection renders a selection for messages, e.g. "sha256 pcrs 0-23".
func describeSelection(sel tpm2.TPMLPCRSelection) string {
	var b bytes.Buffer
	for i, s := range sel.PCRSelections {
		if i > 0 {
			b.WriteString(", ")
		}
		var idx []int
		for byteIdx, bits := range s.PCRSelect {
			for bit := range 8 {
				if bits&(1<<bit) != 0 {
					idx = append(idx, byteIdx*8+bit)
				}
			}
		}
		fmt.Fprintf(&b, "%v pcrs %s", cctrusted.Algorithm(s.Hash), ranges(idx))
	}
	return b.String()
}

func ranges(idx []int) string {
	var b bytes.Buffer
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if i == j {
			fmt.Fprintf(&b, "%d", idx[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", idx[i], idx[j])
		}
		i = j + 1
	}
	return b.String()
}

// MakeCredential is the server side of credential activation: it encrypts
// secret to the EK (ekPub, a TPMT_PUBLIC) bound to the name of the AK
// (AKName), so that only the TPM holding that EK, with that AK loaded,
// recovers it through ActivateCredential.
func MakeCredential(ekPub, akName, secret []byte) (credBlob, encSecret []byte, err error) {
	ek, err := parsePublicArea("EK TPMT_PUBLIC", ekPub)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: %w", err)
	}
	a := ek.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt || !a.FixedTPM {
		return nil, nil, errors.New("tpm: make credential: EK is not a fixedTPM restricted decryption key")
	}
	nh, err := hashOf(ek.NameAlg)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: EK %w", err)
	}
	if len(secret) == 0 || len(secret) > nh.Size() {
		return nil, nil, fmt.Errorf("tpm: make credential: secret is %d bytes, want 1..%d (the EK's name digest size)", len(secret), nh.Size())
	}
	if len(akName) < 2 {
		return nil, nil, errors.New("tpm: make credential: AK name is too short")
	}
	ah, err := hashOf(tpm2.TPMIAlgHash(binary.BigEndian.Uint16(akName)))
	if err != nil || len(akName) != 2+ah.Size() {
		return nil, nil, fmt.Errorf("tpm: make credential: AK name %x is not nameAlg || digest", akName)
	}
	var key tpm2.LabeledEncapsulationKey
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("EK public key does not decode (panic: %v)", r)
			}
		}()
		key, err = tpm2.ImportEncapsulationKey(ek)
	}()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: EK: %w", err)
	}
	credBlob, encSecret, err = tpm2.CreateCredential(rand.Reader, key, akName, secret)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: %w", err)
	}
	return credBlob, encSecret, nil
}

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// VerifyEKCertificate parses an EK certificate (DER), checks that it
// certifies the EK public area ekPub (TPMT_PUBLIC; nil skips this) and that
// it chains to opts.Roots. EK certificates name the TPM in a critical
// subject alternative name holding only a directoryName, which Go's x509
// leaves "unhandled"; it is accepted here after checking that it is
// well-formed GeneralNames. opts.KeyUsages defaults to any, since the
// tcg-kp-EKCertificate usage is unknown to Go.
func VerifyEKCertificate(der, ekPub []byte, opts x509.VerifyOptions) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK certificate: %w", err)
	}
	var rest []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if oid.Equal(oidSAN) && wellFormedSAN(cert) {
			continue
		}
		rest = append(rest, oid)
	}
	cert.UnhandledCriticalExtensions = rest
	if ekPub != nil {
		k, err := ParsePublic(ekPub)
		if err != nil {
			return nil, fmt.Errorf("tpm: EK public area: %w", err)
		}
		eq, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !eq.Equal(k) {
			return nil, errors.New("tpm: EK certificate certifies another key than the EK")
		}
	}
	if len(opts.KeyUsages) == 0 {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	if _, err := cert.Verify(opts); err != nil {
		return nil, fmt.Errorf("tpm: EK certificate (serial %x, issuer %q): %w", cert.SerialNumber, cert.Issuer.String(), err)
	}
	return cert, nil
}

func wellFormedSAN(cert *x509.Certificate) bool {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(oidSAN) {
			continue
		}
		var names []asn1.RawValue
		rest, err := asn1.Unmarshal(e.Value, &names)
		return err == nil && len(rest) == 0 && len(names) > 0
	}
	return false
}
