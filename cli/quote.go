package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

func init() { commands = append(commands, newQuoteCmd) }

func newQuoteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quote",
		Short: "Inspect TDX quotes",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "inspect FILE",
		Short: "Print every field of a TDX quote v4",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readInput("quote", args[0])
			if err != nil {
				return err
			}
			q, err := tdxquote.Parse(raw)
			if err != nil {
				return err
			}
			in := q.Inspect()
			return g.emit(in, func() error { g.printInspection(&in); return nil })
		},
	})
	var nonce, userData, out string
	get := &cobra.Command{
		Use:   "get --nonce HEX [--user-data HEX] [-o FILE]",
		Short: "Get a quote from the live TEE with REPORTDATA = SHA-512(nonce || user data)",
		Long: `Get a quote from the live TEE (--tee). With -o FILE (any value other than
text or json) or --out FILE the quote is written to FILE: raw bytes for TDX and
the simulator, JSON for a TPM report. Otherwise it is printed.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{outputFileAllowed: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "text" && g.output != "json" {
				if out != "" {
					return fmt.Errorf("both -o %s and --out %s given", g.output, out)
				}
				out, g.output = g.output, "text"
			}
			return g.quoteGet(cmd, nonce, userData, out)
		},
	}
	get.Flags().StringVar(&nonce, "nonce", "", "nonce, hex (required)")
	get.Flags().StringVar(&userData, "user-data", "", "user data, hex")
	get.Flags().StringVar(&out, "out", "", "write the quote to this file")
	_ = get.MarkFlagRequired("nonce")
	cmd.AddCommand(get)
	return cmd
}

func (g *globals) printInspection(in *tdxquote.Inspection) {
	row := func(k, v string) { g.printf("%-22s %s\n", k+":", v) }
	g.printf("TDX quote v%d, attestation key type %d, TEE type 0x%x, body type %d\n", in.Version, in.AttestationKeyType, in.TEEType, in.BodyType)
	row("qe_vendor_id", in.QEVendorID)
	row("tee_tcb_svn", in.TEETCBSVN)
	row("mrseam", in.MRSEAM)
	row("mrsignerseam", in.MRSignerSEAM)
	row("seam_attributes", in.SEAMAttributes)
	flags := strings.Join(in.TDAttributeFlags, ",")
	if flags == "" {
		flags = "none"
	}
	row("td_attributes", in.TDAttributes+" ("+flags+")")
	if in.Debug {
		row("debug", "true (DEBUG TD: its memory and registers are visible to the host)")
	} else {
		row("debug", "false")
	}
	row("xfam", in.XFAM)
	row("mrtd", in.MRTD)
	row("mrconfigid", in.MRConfigID)
	row("mrowner", in.MROwner)
	row("mrownerconfig", in.MROwnerConfig)
	row("rtmr0", in.RTMR0)
	row("rtmr1", in.RTMR1)
	row("rtmr2", in.RTMR2)
	row("rtmr3", in.RTMR3)
	row("report_data", in.ReportData)
	if in.TEETCBSVN2 != "" {
		row("tee_tcb_svn2", in.TEETCBSVN2)
		row("mrservicetd", in.MRServiceTD)
	}
	row("qe_mrenclave", in.QEMRENCLAVE)
	row("qe_mrsigner", in.QEMRSIGNER)
	row("fmspc", in.FMSPC)
	row("pceid", in.PCEID)
	for i, c := range in.PCKChain {
		row("pck_chain["+itoa(i)+"]", c.Subject)
	}
	if in.TrailingBytes > 0 {
		row("trailing_bytes", itoa(in.TrailingBytes))
	}
}
