package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// azureFlags are the flags of `ccnp verify --azure-tdx`.
type azureFlags struct {
	file, nonceText string
}

// registerAzure adds --azure-tdx and --nonce-text to `ccnp verify` and
// runs that mode when --azure-tdx is given. The TD quote's trust settings
// (--at, --trusted-root, --pcs-url, --accept-tcb-status, --allow-debug) and
// --nonce are the verify command's own.
func registerAzure(cmd *cobra.Command, g *globals, f *verifyFlags) {
	a := &azureFlags{}
	fl := cmd.Flags()
	fl.StringVar(&a.file, "azure-tdx", "", "evidence of an Azure TDX confidential VM in trustee's JSON (evidence-v0 or v1): verify the TD quote, the HCL report and the vTPM quote over --nonce HEX or --nonce-text STR")
	fl.StringVar(&a.nonceText, "nonce-text", "", "with --azure-tdx: the nonce as text (its bytes as given)")
	next := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if a.file == "" {
			if a.nonceText != "" {
				return errors.New("--nonce-text needs --azure-tdx")
			}
			return next(cmd, args)
		}
		return g.verifyAzure(cmd.Context(), f, a)
	}
}

// azureOutput is the JSON shape of `ccnp verify --azure-tdx`.
type azureOutput struct {
	Verified    bool             `json:"verified"`
	FailedCheck string           `json:"failed_check,omitempty"`
	Error       string           `json:"error,omitempty"`
	Layout      string           `json:"layout,omitempty"`
	Checks      []azuretdx.Check `json:"checks"`
	TCBStatus   string           `json:"tcb_status,omitempty"`
	FMSPC       string           `json:"fmspc,omitempty"`
	MRTD        string           `json:"mrtd,omitempty"`
	RTMR        []string         `json:"rtmr,omitempty"`
	ReportData  string           `json:"report_data,omitempty"`
	// AK is the vTPM attestation key from the runtime data, as "RSA-<bits>".
	AK       string                    `json:"ak,omitempty"`
	UserData string                    `json:"user_data,omitempty"`
	VMConfig *azuretdx.VMConfiguration `json:"vm_configuration,omitempty"`
	Nonce    string                    `json:"nonce"`
	// PCRs are the vTPM's quoted values, "sha256:<n>" -> hex, once their
	// digest verified.
	PCRs map[string]string `json:"pcrs,omitempty"`
}

func (g *globals) verifyAzure(ctx context.Context, f *verifyFlags, a *azureFlags) error {
	if f.quote != "" || f.ccel != "" || f.table != "" || f.ima != "" || f.reportData != "" || f.recorded.file != "" {
		return errors.New("--azure-tdx takes the TD quote and the REPORTDATA binding from its file: drop --quote, --ccel, --ccel-table, --ima, --report-data and --evidence")
	}
	var nonce []byte
	switch {
	case f.recorded.nonce != "" && a.nonceText != "":
		return errors.New("--azure-tdx: give --nonce HEX or --nonce-text STR, not both")
	case f.recorded.nonce != "":
		n, err := hex.DecodeString(strings.TrimSpace(f.recorded.nonce))
		if err != nil || len(n) == 0 || len(n) > azuretdx.MaxNonce {
			return fmt.Errorf("--nonce: want 2 to %d hex characters (the vTPM quote's extraData)", 2*azuretdx.MaxNonce)
		}
		nonce = n
	case a.nonceText != "":
		if len(a.nonceText) > azuretdx.MaxNonce {
			return fmt.Errorf("--nonce-text: %d bytes, at most %d", len(a.nonceText), azuretdx.MaxNonce)
		}
		nonce = []byte(a.nonceText)
	default:
		return errors.New("--azure-tdx needs the nonce the evidence was made for: --nonce HEX or --nonce-text STR")
	}
	opts, err := f.tdxOptions()
	if err != nil {
		return err
	}
	b, err := readInput("--azure-tdx", a.file)
	if err != nil {
		return err
	}
	out := azureOutput{Nonce: hex.EncodeToString(nonce)}
	ev, perr := azuretdx.ParseEvidence(b)
	var (
		res  *azuretdx.Result
		verr error
		tdx  *appraisal.TDXResult
	)
	if perr != nil {
		verr = &azuretdx.Error{Check: azuretdx.CheckEvidenceFormat, Kind: azuretdx.KindInvalidEvidence, Err: fmt.Errorf("%s: %w", a.file, perr)}
		out.Checks = []azuretdx.Check{{Name: azuretdx.CheckEvidenceFormat, Detail: verr.Error()}}
	} else {
		out.Layout = string(ev.Layout)
		verifyTD := func(ctx context.Context, quote []byte) (*tdxquote.Quote, []azuretdx.Check, error) {
			r, err := appraisal.TDX(ctx, appraisal.TDXEvidence{Quote: quote}, opts)
			tdx = r
			return r.Quote, azureChecks(r.Checks), err
		}
		res, verr = azuretdx.Verify(ctx, ev, nonce, azuretdx.Options{VerifyTDQuote: verifyTD})
		out.fill(res, tdx)
	}
	out.Verified = verr == nil
	if verr != nil {
		out.Error = verr.Error()
		var e *azuretdx.Error
		if errors.As(verr, &e) {
			out.FailedCheck = e.Check
		}
		if c, ok := failedCheck(out.Checks); ok {
			out.FailedCheck = c
		}
	}
	if err := g.emit(out, func() error { g.printAzure(&out); return nil }); err != nil {
		return err
	}
	if verr != nil {
		return &exitError{code: 2, err: fmt.Errorf("verification failed: %w", verr)}
	}
	return nil
}

// azureChecks are appraisal's checks in azuretdx's type (the same fields).
func azureChecks(cs []appraisal.Check) []azuretdx.Check {
	out := make([]azuretdx.Check, 0, len(cs))
	for _, c := range cs {
		out = append(out, azuretdx.Check{Name: c.Name, OK: c.OK, Skipped: c.Skipped, Detail: c.Detail})
	}
	return out
}

// failedCheck names the first failed check, the most specific name there
// is (td_quote.pck_chain rather than td_quote).
func failedCheck(cs []azuretdx.Check) (string, bool) {
	for _, c := range cs {
		if !c.OK && !c.Skipped {
			return c.Name, true
		}
	}
	return "", false
}

// fill copies what the checks established into the output: nothing that a
// check did not vouch for (the result's fields are set only then).
func (o *azureOutput) fill(res *azuretdx.Result, tdx *appraisal.TDXResult) {
	if res == nil {
		return
	}
	o.Checks = res.Checks
	if q := res.TDQuote; q != nil {
		o.MRTD = hex.EncodeToString(q.Body.MRTD[:])
		for _, r := range q.Body.RTMR {
			o.RTMR = append(o.RTMR, hex.EncodeToString(r[:]))
		}
		o.ReportData = hex.EncodeToString(q.Body.ReportData[:])
		o.FMSPC = strings.ToLower(q.FMSPC())
		if tdx != nil {
			o.TCBStatus = tdx.TCBStatus
		}
	}
	if rt := res.Runtime; rt != nil {
		o.AK = "RSA-" + strconv.Itoa(rt.AK.N.BitLen())
		o.UserData = hex.EncodeToString(rt.UserData)
		o.VMConfig = rt.VMConfiguration
	}
	if res.PCRs != nil {
		o.PCRs = map[string]string{}
		for m, banks := range res.PCRs {
			for alg, v := range banks {
				o.PCRs[fmt.Sprintf("%v:%d", alg, m.Index)] = hex.EncodeToString(v)
			}
		}
	}
}

func (g *globals) printAzure(o *azureOutput) {
	for _, c := range o.Checks {
		g.printCheck(c.Name, c.OK, c.Skipped, c.Detail)
	}
	if o.MRTD != "" {
		g.printf("mrtd: %s (fmspc %s)\n", o.MRTD, o.FMSPC)
	}
	if o.AK != "" {
		g.printf("vTPM attestation key: %s %s\n", o.AK, azuretdx.AKKeyID)
	}
	if vc := o.VMConfig; vc != nil {
		g.printf("paravisor says: secure-boot=%v tpm-enabled=%v console-enabled=%v vmUniqueId=%s\n", vc.SecureBoot, vc.TPMEnabled, vc.ConsoleEnabled, vc.VMUniqueID)
	}
	if len(o.PCRs) > 0 {
		g.printf("vTPM PCRs (quoted, verified):\n")
		for i := range cctrusted.NumPCRs {
			if v, ok := o.PCRs[fmt.Sprintf("%v:%d", cctrusted.AlgSHA256, i)]; ok {
				g.printf("  sha256 %2d %s\n", i, v)
			}
		}
	}
	if o.Verified {
		g.printf("verified: the TD quote, the HCL report and the vTPM quote over the nonce form one chain\n")
	} else {
		g.printf("not verified: %s failed\n", o.FailedCheck)
	}
}
