package tpm

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// legacyLog reports whether the firmware log on this host is in the legacy
// SHA-1 format. A log that cannot be read or parsed is not: the server
// then says what is wrong with it.
func (p *Provider) legacyLog(ctx context.Context) bool {
	raw, err := p.RawEventLog(ctx)
	if err != nil {
		return false
	}
	l, err := eventlog.ParseTPM(raw)
	return err == nil && l.Legacy
}

// quoteAttempts bounds how often Report re-quotes when a PCR changed between
// the quote and reading the values back (another process extended one).
const quoteAttempts = 3

// Report quotes Options.QuotePCRs of Options.QuoteBanks with the AK, with
// extraData = SHA-512(nonce || userData). The report carries the
// TPMS_ATTEST bytes as Quote, the TPMT_SIGNATURE as Signature and the
// quoted PCR values as Registers; the values are checked against the
// quote's digest before returning, so they are exactly what was signed.
//
// When the firmware log is in the legacy SHA-1 format, the SHA-1 bank is
// quoted too (when the TPM has it): that log has only SHA-1 digests, so
// only the SHA-1 PCRs can check it.
func (p *Provider) Report(ctx context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	rd := cctrusted.ReportData(nonce, userData)
	for _, b := range p.opts.QuoteBanks {
		if err := p.checkBank(b); err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
	}
	banks := p.opts.QuoteBanks
	if !slices.Contains(banks, cctrusted.AlgSHA1) && slices.Contains(p.banks, cctrusted.AlgSHA1) && p.legacyLog(ctx) {
		banks = append(slices.Clone(banks), cctrusted.AlgSHA1)
	}
	sel := tpm2.TPMLPCRSelection{}
	pcrs := make([]uint, len(p.opts.QuotePCRs))
	for i, pcr := range p.opts.QuotePCRs {
		pcrs[i] = uint(pcr)
	}
	for _, b := range banks {
		sel.PCRSelections = append(sel.PCRSelections, tpm2.TPMSPCRSelection{
			Hash: tpm2.TPMIAlgHash(b), PCRSelect: tpm2.PCClientCompatible.PCRs(pcrs...),
		})
	}

	var lastErr error
	for range quoteAttempts {
		var (
			attest, sig []byte
			regs        cctrusted.Registers
		)
		err := p.do(ctx, "quote", func(t transport.TPM) error {
			rsp, err := tpm2.Quote{
				SignHandle:     tpm2.AuthHandle{Handle: p.ak.handle, Name: p.ak.name, Auth: tpm2.PasswordAuth(nil)},
				QualifyingData: tpm2.TPM2BData{Buffer: rd[:]},
				InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
				PCRSelect:      sel,
			}.Execute(t)
			if errors.Is(err, tpm2.TPMRCSize) {
				return fmt.Errorf("the TPM refuses %d bytes of extraData (its qualifyingData holds at most the largest digest it implements; 64 bytes need a SHA-512-capable TPM): %w", len(rd), err)
			}
			if err != nil {
				return err
			}
			attest = rsp.Quoted.Bytes()
			sig = tpm2.Marshal(rsp.Signature)
			regs = make(cctrusted.Registers)
			for _, b := range banks {
				vals, err := readBank(t, b, pcrs)
				if err != nil {
					return fmt.Errorf("reading quoted %v PCRs: %w", b, err)
				}
				for i, v := range vals {
					regs.Set(cctrusted.PCR(i).IMR(), b, v)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		lastErr = p.matchesQuote(attest, sig, regs)
		if lastErr == nil {
			return &cctrusted.Report{TEE: cctrusted.TEETPM, ReportData: rd[:], Quote: attest, Signature: sig, Registers: regs}, nil
		}
	}
	return nil, fmt.Errorf("tpm: quote: PCR values kept changing while quoting (%d attempts): %w", quoteAttempts, lastErr)
}

// matchesQuote checks, as the server will, that regs are what the quote
// signed. It also catches a quote that is wrong for any other reason before
// it leaves the node.
func (p *Provider) matchesQuote(attest, sig []byte, regs cctrusted.Registers) error {
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](attest)
	if err != nil {
		return err
	}
	return tpmquote.VerifyQuote(p.ak.public, attest, sig, att.ExtraData.Buffer, regs)
}
