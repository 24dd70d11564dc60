package tpm

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ccnp-spire/ccnp-spire/tpmquote"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// AKTemplate ("rsa": RSA-2048 RSASSA-SHA256, else ECC P-256 ECDSA) is a
// restricted signing primary key in the owner hierarchy, as an Azure
// paravisor's HCL AK is (test/azuresim makes one from it).
// The template is fixed, so the same TPM derives the same AK at every Open.
func AKTemplate(typ string) tpm2.TPMTPublic {
	attrs := tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
		UserWithAuth: true, NoDA: true, Restricted: true, SignEncrypt: true,
	}
	if typ == "rsa" {
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme: tpm2.TPMTRSAScheme{
					Scheme:  tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}
	}
	return tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

func loadAK(t transport.TPM, opts Options) (key, error) {
	wantType := tpm2.TPMAlgECC
	if opts.AKType == "rsa" {
		wantType = tpm2.TPMAlgRSA
	}
	if opts.AKHandle != 0 {
		h := tpm2.TPMHandle(opts.AKHandle)
		rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
		switch {
		case err == nil:
			pub, err := rsp.OutPublic.Contents()
			if err != nil {
				return key{}, fmt.Errorf("AK at 0x%08x: %w", opts.AKHandle, err)
			}
			if err := tpmquote.ValidateAK(pub); err != nil {
				return key{}, fmt.Errorf("persistent handle 0x%08x does not hold an AK: %w", opts.AKHandle, err)
			}
			if pub.Type != wantType {
				return key{}, fmt.Errorf("persistent handle 0x%08x holds a %v AK, configured ak_type is %s", opts.AKHandle, pub.Type, opts.AKType)
			}
			return key{handle: h, name: rsp.Name, public: rsp.OutPublic.Bytes()}, nil
		case !errors.Is(err, tpm2.TPMRCHandle):
			return key{}, fmt.Errorf("reading AK at 0x%08x: %w", opts.AKHandle, err)
		case opts.AKMustExist:
			return key{}, fmt.Errorf("no key at persistent handle 0x%08x: the AK must already be there (it is never created here)", opts.AKHandle)
		}
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(AKTemplate(opts.AKType)),
	}.Execute(t)
	if err != nil {
		return key{}, fmt.Errorf("creating %s AK: %w", opts.AKType, err)
	}
	k := key{handle: rsp.ObjectHandle, name: rsp.Name, public: rsp.OutPublic.Bytes(), transient: true}
	if !opts.PersistAK {
		return k, nil
	}
	persistent := tpm2.TPMHandle(opts.AKHandle)
	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     &tpm2.NamedHandle{Handle: k.handle, Name: k.name},
		PersistentHandle: persistent,
	}.Execute(t)
	_, ferr := tpm2.FlushContext{FlushHandle: k.handle}.Execute(t)
	if err != nil {
		return key{}, fmt.Errorf("persisting AK at 0x%08x: %w", opts.AKHandle, err)
	}
	if ferr != nil {
		return key{}, fmt.Errorf("flushing the transient AK: %w", ferr)
	}
	return key{handle: persistent, name: k.name, public: k.public}, nil
}

// AttestationKeyPublic is the AK's TPMT_PUBLIC area.
func (p *Provider) AttestationKeyPublic() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rwc == nil {
		return nil, errClosed
	}
	return slices.Clone(p.ak.public), nil
}

// AttestationKeyHandle is the handle the AK is loaded at (persistent when
// Options.AKHandle named one).
func (p *Provider) AttestationKeyHandle() uint32 { return uint32(p.ak.handle) }

// loadEK uses the EK at its conventional persistent handle if one of the
// configured type is there, else derives it from the TCG default template
// (deterministic, so it is the key the EK certificate certifies).
func (p *Provider) loadEK(t transport.TPM) (*key, error) {
	if p.ek != nil {
		return p.ek, nil
	}
	tmpl, handle, typ := tpm2.RSAEKTemplate, EKHandleRSA, tpm2.TPMAlgRSA
	if p.opts.EKType == "ecc" {
		tmpl, handle, typ = tpm2.ECCEKTemplate, EKHandleECC, tpm2.TPMAlgECC
	}
	if rsp, err := (tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}).Execute(t); err == nil {
		if pub, err := rsp.OutPublic.Contents(); err == nil && pub.Type == typ {
			p.ek = &key{handle: tpm2.TPMHandle(handle), name: rsp.Name, public: rsp.OutPublic.Bytes()}
			return p.ek, nil
		}
	}
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tmpl)}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("creating the %s EK from the TCG template: %w", p.opts.EKType, err)
	}
	p.ek = &key{handle: rsp.ObjectHandle, name: rsp.Name, public: rsp.OutPublic.Bytes(), transient: true}
	return p.ek, nil
}

// EKPublic is the endorsement key's TPMT_PUBLIC area.
func (p *Provider) EKPublic(ctx context.Context) ([]byte, error) {
	var pub []byte
	err := p.do(ctx, "ek", func(t transport.TPM) error {
		ek, err := p.loadEK(t)
		if err == nil {
			pub = slices.Clone(ek.public)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: EK: %w", err)
	}
	return pub, nil
}

// EKCertificate reads the EK certificate (DER) from Options.EKNVIndex.
func (p *Provider) EKCertificate(ctx context.Context) ([]byte, error) {
	idx := p.opts.EKNVIndex
	var out []byte
	err := p.do(ctx, "ek certificate", func(t transport.TPM) (err error) {
		out, err = readNV(t, idx, maxEKCert)
		return err
	})
	if errors.Is(err, ErrNVNotDefined) {
		err = errors.New("the index is not defined: this TPM has no EK certificate there")
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: EK certificate at NV index 0x%08x: %w", idx, err)
	}
	return out, nil
}

// maxEKCert bounds an EK certificate: real ones are 1-2 KiB.
const maxEKCert = 8 << 10

// ReadNV reads the whole of NV index idx, refusing an index larger than
// maxSize. An index that is not defined is ErrNVNotDefined.
func (p *Provider) ReadNV(ctx context.Context, idx uint32, maxSize int) ([]byte, error) {
	var out []byte
	err := p.do(ctx, "nv read", func(t transport.TPM) (err error) {
		out, err = readNV(t, idx, maxSize)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: NV index 0x%08x: %w", idx, err)
	}
	return out, nil
}

// ReadNVIndex opens device, reads NV index idx as ReadNV does and closes the
// device again, without loading any key: cheap enough to probe a TPM with
// (an Azure paravisor's vTPM is recognised by what one index holds).
func ReadNVIndex(ctx context.Context, device string, idx uint32, maxSize int) ([]byte, error) {
	rwc, err := openDevice(ctx, device)
	if err != nil {
		return nil, err
	}
	p := &Provider{rwc: rwc, tpm: transport.FromReadWriter(rwc), opts: Options{Device: device}}
	defer p.Close()
	return p.ReadNV(ctx, idx, maxSize)
}

// ErrNVNotDefined is the error of reading an NV index the TPM does not have.
var ErrNVNotDefined = errors.New("the NV index is not defined")

// nvChunkFallback is below every TPM's TPM_PT_NV_BUFFER_MAX, for a TPM that
// does not report it.
const nvChunkFallback = 512

// nvBufferMax is the most bytes one TPM2_NV_Read returns on this TPM
// (TPM_PT_NV_BUFFER_MAX), as Azure's own tooling reads its vTPM's indices.
func nvBufferMax(t transport.TPM) int {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTNVBufferMax), PropertyCount: 1}.Execute(t)
	if err != nil {
		return nvChunkFallback
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTNVBufferMax {
		return nvChunkFallback
	}
	v := int(props.TPMProperty[0].Value)
	if v < 64 || v > 4096 {
		// A value no TPM reports: do not trust it to size reads.
		return nvChunkFallback
	}
	return v
}

// readNV reads a whole written NV index in chunks of the TPM's NV buffer.
func readNV(t transport.TPM, idx uint32, maxSize int) ([]byte, error) {
	h := tpm2.TPMHandle(idx)
	pub, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, ErrNVNotDefined
	}
	if err != nil {
		return nil, err
	}
	info, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	if !info.Attributes.Written {
		return nil, errors.New("the index is defined but was never written")
	}
	size := int(info.DataSize)
	if size > maxSize {
		return nil, fmt.Errorf("the index holds %d bytes, more than the %d expected", size, maxSize)
	}
	chunk := nvBufferMax(t)
	// Owner authorisation is how tpm2-tools, go-tpm-tools and Azure's
	// tooling read these indices; the index's own (empty) auth is the
	// fallback.
	readWith := func(auth tpm2.AuthHandle) ([]byte, error) {
		buf := make([]byte, 0, size)
		for off := 0; off < size; off += chunk {
			n := min(chunk, size-off)
			rsp, err := tpm2.NVRead{
				AuthHandle: auth,
				NVIndex:    tpm2.NamedHandle{Handle: h, Name: pub.NVName},
				Size:       uint16(n), Offset: uint16(off),
			}.Execute(t)
			if err != nil {
				return nil, fmt.Errorf("reading bytes %d..%d: %w", off, off+n, err)
			}
			if len(rsp.Data.Buffer) != n {
				return nil, fmt.Errorf("reading bytes %d..%d: the TPM returned %d bytes", off, off+n, len(rsp.Data.Buffer))
			}
			buf = append(buf, rsp.Data.Buffer...)
		}
		return buf, nil
	}
	out, err := readWith(tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)})
	if err != nil && info.Attributes.AuthRead {
		out, err = readWith(tpm2.AuthHandle{Handle: h, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)})
	}
	return out, err
}

// ActivateCredential is the agent side of credential activation: the TPM
// decrypts the server's challenge (MakeCredential output) with the EK, and
// only does so if the AK named in it is loaded in this TPM.
func (p *Provider) ActivateCredential(ctx context.Context, credBlob, encSecret []byte) ([]byte, error) {
	if len(credBlob) == 0 || len(credBlob) > tpmquote.MaxCredentialIn || len(encSecret) == 0 || len(encSecret) > tpmquote.MaxCredentialIn {
		return nil, fmt.Errorf("tpm: activate credential: blob (%d bytes) and secret (%d bytes) must be 1..%d bytes",
			len(credBlob), len(encSecret), tpmquote.MaxCredentialIn)
	}
	var out []byte
	err := p.do(ctx, "activate credential", func(t transport.TPM) error {
		ek, err := p.loadEK(t)
		if err != nil {
			return err
		}
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: p.ak.handle, Name: p.ak.name, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, ekPolicy)},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
		}.Execute(t)
		if err != nil {
			return err
		}
		out = rsp.CertInfo.Buffer
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: activate credential (EK %s, AK 0x%08x): %w", p.opts.EKType, uint32(p.ak.handle), err)
	}
	return out, nil
}

// ekPolicy satisfies the TCG default EK policy: PolicySecret(TPM_RH_ENDORSEMENT).
func ekPolicy(t transport.TPM, handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.TPMRHEndorsement,
		PolicySession: handle,
		NonceTPM:      nonceTPM,
	}.Execute(t)
	return err
}
