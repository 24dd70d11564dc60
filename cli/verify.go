package cli

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/eventlog"
)

func init() { commands = append(commands, newVerifyCmd) }

type verifyFlags struct {
	quote, ccel, table string
	ima                string
	trustedRoot        string
	at                 string
	reportData         string
	pcsURL             string
	acceptTCB          string
	allowDebug         bool
	// --evidence mode (verify_evidence.go).
	recorded evidenceFlags
}

// verifyOutput is the JSON shape of `ccnp verify`.
type verifyOutput struct {
	Verified    bool              `json:"verified"`
	FailedCheck string            `json:"failed_check,omitempty"`
	Error       string            `json:"error,omitempty"`
	Checks      []appraisal.Check `json:"checks"`
	TCBStatus   string            `json:"tcb_status,omitempty"`
	FMSPC       string            `json:"fmspc,omitempty"`
	Debug       bool              `json:"debug"`
	MRTD        string            `json:"mrtd,omitempty"`
	RTMR        []string          `json:"rtmr,omitempty"`
	ReportData  string            `json:"report_data,omitempty"`
	Facts       *eventlog.Facts   `json:"facts,omitempty"`
	// IMA is set when --ima was given and the list replayed.
	IMA *verifyIMA `json:"ima,omitempty"`
}

// verifyIMA is what the replayed IMA list holds.
type verifyIMA struct {
	Entries    int `json:"entries"`
	Violations int `json:"violations"`
}

func newVerifyCmd(g *globals) *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify (--quote FILE [--ccel FILE [--ccel-table FILE] [--ima FILE]] [--trusted-root PEM] | --evidence FILE --nonce HEX [--server-config HCL] | --azure-tdx FILE --nonce HEX|--nonce-text STR) [--at RFC3339]",
		Short: "Verify a TDX quote offline (or with PCS collateral) and replay its CCEL, as the server plugin does",
		Long: `Verify a TDX quote with the code the server plugin runs: the PCK chain to the
trusted root (Intel's by default), the quote and QE report signatures, with
--pcs-url the TCB status and revocation from a PCS-compatible service, the DEBUG
attribute, and with --ccel the replay of the CCEL against RTMR0..2. With --ima
(an IMA list, binary or ascii, of a TDX kernel that extends RTMR2: CCNP's
kernels), RTMR2 must equal the CCEL's RTMR2 replay extended with every entry.
Exit 0 when every check holds, 2 naming the failed check otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.recorded.file != "" {
				return g.verifyEvidence(cmd, &f)
			}
			in, opts, err := f.load()
			if err != nil {
				return err
			}
			res, verr := appraisal.TDX(cmd.Context(), in, opts)
			out := verifyOutput{Verified: verr == nil}
			if res != nil {
				out.Checks, out.TCBStatus, out.FMSPC, out.Debug, out.Facts = res.Checks, res.TCBStatus, res.FMSPC, res.Debug, res.Facts
				if verr == nil && len(in.IMA) > 0 {
					out.IMA = &verifyIMA{Entries: res.IMAEntries, Violations: res.IMAViolations}
				}
				if q := res.Quote; q != nil {
					out.MRTD = hex.EncodeToString(q.Body.MRTD[:])
					for _, r := range q.Body.RTMR {
						out.RTMR = append(out.RTMR, hex.EncodeToString(r[:]))
					}
					out.ReportData = hex.EncodeToString(q.Body.ReportData[:])
				}
			}
			if verr != nil {
				out.Error = verr.Error()
				if ae, ok := appraisal.AsError(verr); ok {
					out.FailedCheck = ae.Check
				}
			}
			if err := g.emit(out, func() error { g.printVerify(&out); return nil }); err != nil {
				return err
			}
			if verr != nil {
				return &exitError{code: 2, err: fmt.Errorf("verification failed: %w", verr)}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.quote, "quote", "", "TDX quote v4 file (required)")
	fl.StringVar(&f.ccel, "ccel", "", "CCEL event log to replay against RTMR0..2")
	fl.StringVar(&f.table, "ccel-table", "", "CCEL ACPI table")
	fl.StringVar(&f.ima, "ima", "", "IMA measurement list (binary or ascii) replayed onto RTMR2 after the CCEL; needs --ccel")
	fl.StringVar(&f.trustedRoot, "trusted-root", "", "PEM file of trusted root CAs (default: the Intel SGX Root CA)")
	fl.StringVar(&f.at, "at", "", "verify as of this time (RFC 3339; default: now)")
	fl.StringVar(&f.reportData, "report-data", "", "expected REPORTDATA, 128 hex characters")
	fl.StringVar(&f.pcsURL, "pcs-url", "", "PCS-compatible base URL for collateral and revocation (Intel's URL paths under it)")
	fl.StringVar(&f.acceptTCB, "accept-tcb-status", "UpToDate", "comma-separated TCB statuses to accept (with --pcs-url)")
	fl.BoolVar(&f.allowDebug, "allow-debug", false, "accept DEBUG TDs")
	f.recorded.register(cmd)
	registerAzure(cmd, g, &f)
	return cmd
}

func (f *verifyFlags) load() (appraisal.TDXEvidence, appraisal.TDXOptions, error) {
	var (
		in   appraisal.TDXEvidence
		opts appraisal.TDXOptions
		err  error
	)
	if f.quote == "" {
		return in, opts, fmt.Errorf("--quote FILE or --evidence FILE is required")
	}
	if in.Quote, err = readInput("--quote", f.quote); err != nil {
		return in, opts, err
	}
	if f.ccel != "" {
		if in.CCEL, err = readInput("--ccel", f.ccel); err != nil {
			return in, opts, err
		}
	}
	if f.table != "" {
		if f.ccel == "" {
			return in, opts, fmt.Errorf("--ccel-table needs --ccel")
		}
		if in.CCELTable, err = readInput("--ccel-table", f.table); err != nil {
			return in, opts, err
		}
	}
	if f.ima != "" {
		if f.ccel == "" {
			return in, opts, fmt.Errorf("--ima needs --ccel: RTMR2 starts from the value the CCEL replays to")
		}
		if in.IMA, err = readInput("--ima", f.ima); err != nil {
			return in, opts, err
		}
	}
	if f.reportData != "" {
		if in.ReportData, err = hex.DecodeString(f.reportData); err != nil || len(in.ReportData) != 64 {
			return in, opts, fmt.Errorf("--report-data: want 128 hex characters")
		}
	}
	opts, err = f.tdxOptions()
	return in, opts, err
}

// tdxOptions are the TD quote's trust settings from the flags (every mode
// that verifies a TD quote: --quote, --azure-tdx).
func (f *verifyFlags) tdxOptions() (appraisal.TDXOptions, error) {
	var (
		opts appraisal.TDXOptions
		err  error
	)
	if f.trustedRoot != "" {
		pemBytes, err := readInput("--trusted-root", f.trustedRoot)
		if err != nil {
			return opts, err
		}
		opts.TrustedRoots = x509.NewCertPool()
		if !opts.TrustedRoots.AppendCertsFromPEM(pemBytes) {
			return opts, fmt.Errorf("--trusted-root: %s holds no PEM certificate", f.trustedRoot)
		}
	}
	if f.at != "" {
		if opts.Now, err = time.Parse(time.RFC3339, f.at); err != nil {
			return opts, fmt.Errorf("--at: %w", err)
		}
	}
	for _, s := range strings.Split(f.acceptTCB, ",") {
		if s = strings.TrimSpace(s); s != "" {
			opts.AcceptedTCBStatuses = append(opts.AcceptedTCBStatuses, s)
		}
	}
	opts.AllowDebug = f.allowDebug
	if f.pcsURL != "" {
		if opts.Collateral, err = pcsGetter(f.pcsURL); err != nil {
			return opts, err
		}
		opts.CheckRevocations = true
	}
	return opts, nil
}

// printCheck prints one verification check as a line of the human output
// of every verify mode.
func (g *globals) printCheck(name string, ok, skipped bool, detail string) {
	state := "ok"
	switch {
	case skipped:
		state = "skipped"
	case !ok:
		state = "FAILED"
	}
	g.printf("%-16s %-8s %s\n", name, state, detail)
}

func (g *globals) printVerify(out *verifyOutput) {
	for _, c := range out.Checks {
		g.printCheck(c.Name, c.OK, c.Skipped, c.Detail)
	}
	if out.IMA != nil {
		g.printf("ima: %d entries, %d violations\n", out.IMA.Entries, out.IMA.Violations)
	}
	if out.Verified {
		g.printf("verified: the quote and every supplied log check out\n")
	} else {
		g.printf("not verified: %s failed\n", out.FailedCheck)
	}
}

func pcsGetter(base string) (*collateral.Getter, error) {
	g, err := collateral.NewGetter(base)
	if err != nil {
		return nil, fmt.Errorf("--pcs-url: %w", err)
	}
	return g, nil
}
