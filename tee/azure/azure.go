// Package azure is the guest side of an Azure TDX confidential VM, where the
// guest reaches TDX only through the paravisor (the HCL): the HCL report in
// the vTPM's NV index 0x01400001, the TD quote for its TD report from the
// instance metadata service, and the vTPM itself, which quotes its PCRs with
// the paravisor's attestation key at persistent handle 0x81000003.
//
// The Provider is the TPM provider (package tee/tpm) opened on that key, so
// that PCRs, quotes, the TPM event log, IMA and PCR extends are the TPM
// node's code; it adds HCLEvidence. Probe recognises the paravisor's vTPM.
// Package azuretdx parses and verifies what this package collects.
package azure

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
	"github.com/google/go-tpm/tpm2"
)

// Where the paravisor keeps its attestation material in the vTPM.
const (
	// HCLReportNVIndex holds the HCL report.
	HCLReportNVIndex = azuretdx.HCLReportNVIndex
	// AKHandle is the persistent handle of the HCL attestation key
	// (HCLAkPub): an RSA-2048 restricted signing key (RSASSA-SHA256) the
	// paravisor creates.
	AKHandle uint32 = 0x81000003
)

// ErrNotAzure says the TPM is not an Azure paravisor's vTPM: it has no HCL
// report index, or the index holds something other than an HCL report of a
// TD report. Such a TPM is a plain TPM.
var ErrNotAzure = errors.New("not an Azure TDX paravisor's vTPM")

// Probe reads NV index HCLReportNVIndex of the TPM at device (a character
// device or tcp://host:port, as tee/tpm opens it) and parses it as an HCL
// report of a TD report. The TPM is a paravisor's exactly when this
// succeeds. ErrNotAzure (wrapped, saying why) means no HCL report of a TD
// is there: no index, no "HCLA" header, or an SEV-SNP paravisor's report.
// An HCL report it cannot read, or failing to reach the TPM, is another
// error. It loads no key.
func Probe(ctx context.Context, device string) (*azuretdx.HCLReport, error) {
	raw, err := tpm.ReadNVIndex(ctx, device, HCLReportNVIndex, azuretdx.MaxHCLReportSize)
	if errors.Is(err, tpm.ErrNVNotDefined) {
		return nil, fmt.Errorf("%w: %s has no NV index 0x%08x", ErrNotAzure, device, HCLReportNVIndex)
	}
	if err != nil {
		return nil, err
	}
	r, err := azuretdx.ParseHCLReport(raw)
	switch {
	case errors.Is(err, azuretdx.ErrNotHCLReport), errors.Is(err, azuretdx.ErrSNPReport):
		return nil, fmt.Errorf("%w: NV index 0x%08x of %s does not hold an HCL report of a TD: %w", ErrNotAzure, HCLReportNVIndex, device, err)
	case err != nil:
		// An HCL report this version cannot read (another header
		// version, a failed status, ...) is still a paravisor's: taking
		// the vTPM for a plain TPM would silently downgrade the node.
		return nil, fmt.Errorf("NV index 0x%08x of %s holds an HCL report this agent cannot read: %w", HCLReportNVIndex, device, err)
	}
	return r, nil
}

// Options configures Open.
type Options struct {
	// TPM says where the vTPM is (Device, HostRoot for the securityfs
	// logs) and the runtime PCR. The AK settings are overridden: the AK
	// is the paravisor's, at AKHandle, never created here; QuotePCRs
	// default to all 24, as Azure's own attestation quotes them.
	TPM tpm.Options
	// IMDS is the metadata service the TD quote comes from.
	IMDS IMDSOptions
}

// Provider is an open Azure TDX guest: the vTPM on the paravisor's AK, and
// the metadata service.
type Provider struct {
	*tpm.Provider
	imds *IMDSClient
}

var _ cctrusted.Provider = (*Provider)(nil)

// Open opens the vTPM with the HCL AK at AKHandle and checks that the HCL
// report's runtime data names that key: the evidence is then consistent
// before anything is sent, and a mismatch is reported here, naming both.
func Open(ctx context.Context, opts Options) (*Provider, error) {
	imds, err := NewIMDSClient(opts.IMDS)
	if err != nil {
		return nil, err
	}
	o := opts.TPM
	o.AKType, o.AKHandle, o.AKMustExist, o.PersistAK = "rsa", AKHandle, true, false
	if len(o.QuotePCRs) == 0 {
		for i := range cctrusted.NumPCRs {
			o.QuotePCRs = append(o.QuotePCRs, cctrusted.PCR(i))
		}
	}
	// The HCL report first: on a TPM that is not a paravisor's, that is
	// what is missing, and the error should say so rather than name the
	// AK handle.
	dev := o.Device
	if dev == "" {
		dev = tpm.DefaultDevice
	}
	if _, err := Probe(ctx, dev); err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	tp, err := tpm.Open(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("azure: vTPM (HCL AK at persistent handle 0x%08x): %w", AKHandle, err)
	}
	p := &Provider{Provider: tp, imds: imds}
	if _, err := p.hclReport(ctx); err != nil {
		tp.Close()
		return nil, err
	}
	return p, nil
}

// TEE is cctrusted.TEEAzureTDX.
func (p *Provider) TEE() cctrusted.TEE { return cctrusted.TEEAzureTDX }

// Report is the vTPM quote with the HCL AK over extraData =
// SHA-512(nonce || userData), as the TPM provider makes it.
func (p *Provider) Report(ctx context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	r, err := p.Provider.Report(ctx, nonce, userData)
	if err != nil {
		return nil, err
	}
	r.TEE = cctrusted.TEEAzureTDX
	return r, nil
}

// IMDSURL is the metadata service endpoint the provider uses.
func (p *Provider) IMDSURL() string { return p.imds.URL() }

// HCLEvidence reads the HCL report from NV index HCLReportNVIndex (its raw
// bytes, as the verifier parses them) and asks the metadata service for the
// TD quote of its TD report. The report is read as the paravisor last wrote
// it, not refreshed: the freshness of the evidence is the vTPM quote's
// (its extraData is the verifier's binding), and the report's content (the
// AK, the VM configuration, the TD's measurements) does not change while
// the VM runs. The quote's body is checked to be that TD report's, field by
// field, so a metadata service answering for another report is caught here.
func (p *Provider) HCLEvidence(ctx context.Context) (hclReport, tdQuote []byte, err error) {
	raw, err := p.hclReport(ctx)
	if err != nil {
		return nil, nil, err
	}
	r, _ := azuretdx.ParseHCLReport(raw) // hclReport parsed it
	q, err := p.imds.TDQuote(ctx, r.TDReportRaw)
	if err != nil {
		return nil, nil, err
	}
	pq, err := tdxquote.Parse(q)
	if err != nil {
		return nil, nil, &IMDSError{URL: p.imds.URL(), Status: 200, Err: fmt.Errorf("the TD quote does not parse: %w", err)}
	}
	// Every body field, as the server's td_report_match: a quote of
	// another report (even of this TD, with the same REPORTDATA) would be
	// refused there as a verdict the agent does not retry; here it stays
	// a metadata service failure, retried.
	if err := r.TDReport.MatchQuoteBody(pq); err != nil {
		return nil, nil, &IMDSError{URL: p.imds.URL(), Status: 200, Err: err}
	}
	return raw, q, nil
}

// hclReport reads and parses the HCL report and checks that its runtime
// data's HCLAkPub is the key at AKHandle.
func (p *Provider) hclReport(ctx context.Context) ([]byte, error) {
	raw, err := p.ReadNV(ctx, HCLReportNVIndex, azuretdx.MaxHCLReportSize)
	if err != nil {
		return nil, fmt.Errorf("azure: HCL report: %w", err)
	}
	r, err := azuretdx.ParseHCLReport(raw)
	if err != nil {
		return nil, fmt.Errorf("azure: HCL report in NV index 0x%08x: %w", HCLReportNVIndex, err)
	}
	rt, err := azuretdx.ParseRuntimeData(r.RuntimeData)
	if err != nil {
		return nil, fmt.Errorf("azure: HCL report in NV index 0x%08x: %w", HCLReportNVIndex, err)
	}
	ak, err := p.akKey()
	if err != nil {
		return nil, err
	}
	if !ak.Equal(rt.AK) {
		return nil, fmt.Errorf("azure: the HCL report's %s (modulus %x...) is not the key at persistent handle 0x%08x (modulus %x...): the vTPM quote would not verify", azuretdx.AKKeyID, rt.AK.N.Bytes()[:8], AKHandle, ak.N.Bytes()[:8])
	}
	return raw, nil
}

// akKey is the RSA public key of the AK the provider quotes with.
func (p *Provider) akKey() (*rsa.PublicKey, error) {
	area, err := p.AttestationKeyPublic()
	if err != nil {
		return nil, err
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](area)
	if err == nil {
		err = tpmquote.ValidateAK(pub)
	}
	if err != nil {
		return nil, fmt.Errorf("azure: AK at persistent handle 0x%08x: %w", AKHandle, err)
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("azure: AK at persistent handle 0x%08x: %w", AKHandle, err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("azure: AK at persistent handle 0x%08x is a %T, not RSA", AKHandle, k)
	}
	return rk, nil
}
