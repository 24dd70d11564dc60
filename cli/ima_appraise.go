package cli

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima/imapolicy"
)

func init() { commands = append(commands, newIMACmd) }

func newIMACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ima", Short: "Work with IMA measurement lists and runtime policies"}
	var policyFile string
	var bootAggregates []string
	app := &cobra.Command{
		Use:   "appraise --policy FILE LIST",
		Short: "Appraise an IMA measurement list against a runtime policy",
		Long: `Appraise every entry of an IMA measurement list (ascii or binary) against a
runtime policy: an HCL file holding one ima block, or a Keylime runtime policy
(JSON). Exit 0 when every entry is allowed, 2 when some entry offends (each is
named, at most ` + fmt.Sprint(imapolicy.MaxFindings) + `), 1 when an input cannot be read.
The list's integrity (its replay to the signed registers) is not checked here:
use ccnp verify for that.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := loadIMAPolicy(cmd, policyFile)
			if err != nil {
				return err
			}
			raw, err := readInput("ima list", args[0])
			if err != nil {
				return err
			}
			l, err := ima.Parse(raw, ima.Options{})
			if err != nil {
				return err
			}
			var opts imapolicy.Options
			for _, s := range bootAggregates {
				b, err := hex.DecodeString(s)
				if err != nil || len(b) < 20 {
					return fmt.Errorf("--boot-aggregate %q: want the digest in hex", s)
				}
				opts.BootAggregates = append(opts.BootAggregates, b)
			}
			v, err := p.Appraise(p.Start(), 0, l.Entries, opts)
			if err != nil {
				return err
			}
			err = g.emit(struct {
				OK      bool              `json:"ok"`
				Enforce bool              `json:"enforce"`
				Entries int               `json:"entries"`
				Verdict imapolicy.Verdict `json:"verdict"`
			}{v.OK(), p.Enforce(), len(l.Entries), v}, func() error {
				c := v.Counts
				g.printf("%d entries: %d digest, %d signature, %d excluded, %d boot_aggregate, %d keyring, %d buffer, %d violation allowed, %d out of scope, %d offending\n",
					len(l.Entries), c.Digest, c.Signature, c.Excluded, c.Boot, c.Keyring, c.Buffer, c.Violation, c.OutOfScope, c.Failed)
				for _, f := range v.Findings {
					g.printf("offending %s\n", f)
				}
				if n := v.Truncated(); n > 0 {
					g.printf("... and %d more offending entries\n", n)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !v.OK() {
				return &exitError{code: 2, err: fmt.Errorf("%d of %d entries offend the policy; first: %s", v.Counts.Failed, len(l.Entries), v.First)}
			}
			return nil
		},
	}
	app.Flags().StringVar(&policyFile, "policy", "", "runtime policy: HCL (an ima block) or Keylime JSON")
	app.Flags().StringSliceVar(&bootAggregates, "boot-aggregate", nil, "boot_aggregate digest(s) computed from the signed registers, hex")
	_ = app.MarkFlagRequired("policy")
	cmd.AddCommand(app)
	return cmd
}

// loadIMAPolicy reads a runtime policy, telling Keylime's JSON from our HCL
// by its first character (conf refuses JSON, so the two cannot be confused).
func loadIMAPolicy(cmd *cobra.Command, path string) (*imapolicy.Policy, error) {
	raw, err := readInput("ima policy", path)
	if err != nil {
		return nil, err
	}
	var src *conf.IMAPolicy
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		src, err = imapolicy.ParseKeylime(raw, path)
	} else {
		src, err = conf.ParseIMAPolicy(string(raw), path)
	}
	if err != nil {
		return nil, err
	}
	return imapolicy.Compile(cmd.Context(), src)
}
