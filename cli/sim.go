package cli

import (
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

func init() { commands = append(commands, newSimCmd) }

func newSimCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Drive the simulated TDX (for the demo and tests; never trusted by default)",
	}
	var (
		dir, ccelFile, tableFile, tcbStatus string
		debug                               bool
	)
	initCmd := &cobra.Command{
		Use:   "init --dir D",
		Short: "Create a simulated TD: PKI, collateral, state booted from a real CCEL, and D/root.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := sim.InitOptions{TCBStatus: tcbStatus, Debug: debug}
			var err error
			if ccelFile != "" {
				if opts.CCEL, err = readInput("--ccel", ccelFile); err != nil {
					return err
				}
			}
			if tableFile != "" {
				if ccelFile == "" {
					return fmt.Errorf("--ccel-table needs --ccel")
				}
				if opts.CCELTable, err = readInput("--ccel-table", tableFile); err != nil {
					return err
				}
			}
			if err := sim.Init(dir, opts); err != nil {
				return err
			}
			root := filepath.Join(dir, "root.pem")
			out := map[string]any{"dir": dir, "root": root, "tcb_status": orDefault(tcbStatus, "UpToDate"), "debug": debug}
			return g.emit(out, func() error {
				g.printf("simulated TD created in %s (TCB status %s, debug %v)\n", dir, out["tcb_status"], debug)
				g.printf("its root of trust, for a verifier that should accept it: %s\n", root)
				return nil
			})
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory for the simulated TD (required)")
	initCmd.Flags().StringVar(&ccelFile, "ccel", "", "CCEL the TD booted with (default: an embedded real one)")
	initCmd.Flags().StringVar(&tableFile, "ccel-table", "", "CCEL ACPI table for --ccel (default: made for the log)")
	initCmd.Flags().StringVar(&tcbStatus, "tcb-status", "", "TCB status the simulated PCS reports (UpToDate, OutOfDate, ...)")
	initCmd.Flags().BoolVar(&debug, "debug", false, "make it a DEBUG TD (td_attributes bit 0)")
	_ = initCmd.MarkFlagRequired("dir")

	var pcsDir, listen string
	pcsCmd := &cobra.Command{
		Use:   "pcs --dir D --listen 127.0.0.1:PORT",
		Short: "Serve the simulated TD's collateral over HTTP at Intel's PCS paths, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lc net.ListenConfig
			ln, err := lc.Listen(cmd.Context(), "tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			// The actual address matters when the port was 0; scripts read it.
			fmt.Fprintf(g.stdout, "simulated PCS for %s listening on http://%s\n", pcsDir, ln.Addr())
			return pcs.ServeListener(cmd.Context(), pcsDir, ln)
		},
	}
	pcsCmd.Flags().StringVar(&pcsDir, "dir", "", "simulated TD directory (required)")
	pcsCmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on")
	_ = pcsCmd.MarkFlagRequired("dir")

	var extDir, digestHex string
	var rtmr int
	extendCmd := &cobra.Command{
		Use:   "extend --dir D --rtmr 2|3 --digest HEX",
		Short: "Extend RTMR2 or RTMR3 of the simulated TD with a SHA-384 digest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := hex.DecodeString(digestHex)
			if err != nil || len(d) != 48 {
				return fmt.Errorf("--digest: want 96 hex characters (SHA-384), got %d characters", len(digestHex))
			}
			p, err := sim.Open(cmd.Context(), extDir)
			if err != nil {
				return err
			}
			var digest [48]byte
			copy(digest[:], d)
			if err := p.ExtendRTMR(cmd.Context(), rtmr, digest); err != nil {
				return err
			}
			g.printf("extended rtmr%d of %s\n", rtmr, extDir)
			return nil
		},
	}
	extendCmd.Flags().StringVar(&extDir, "dir", "", "simulated TD directory (required)")
	extendCmd.Flags().IntVar(&rtmr, "rtmr", 3, "register: 2 or 3")
	extendCmd.Flags().StringVar(&digestHex, "digest", "", "SHA-384 digest, hex (required)")
	_ = extendCmd.MarkFlagRequired("dir")
	_ = extendCmd.MarkFlagRequired("digest")

	cmd.AddCommand(initCmd, pcsCmd, extendCmd)
	return cmd
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
