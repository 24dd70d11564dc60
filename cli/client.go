package cli

import (
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/sdk/ccnp"
)

func init() { commands = append(commands, newClientCmd) }

type clientFlags struct {
	socket      string
	containerID string
	timeout     time.Duration
}

func newClientCmd(g *globals) *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Call a CCNP workload service (ccnp serve) as a workload would",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.socket, "socket", ccnp.DefaultSocket, "the service's Unix socket")
	pf.StringVar(&f.containerID, "container-id", "", "container_id to send (pod UID on Kubernetes); empty: the server uses the caller's own")
	pf.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each call")
	cmd.AddCommand(newClientMeasurementCmd(g, &f), newClientEventlogCmd(g, &f), newClientReportCmd(g, &f))
	return cmd
}

func (f *clientFlags) dial() (*ccnp.Client, error) {
	return ccnp.New(f.socket, ccnp.WithContainerID(f.containerID), ccnp.WithTimeout(f.timeout))
}

func newClientMeasurementCmd(g *globals, f *clientFlags) *cobra.Command {
	var index uint32
	var algFlag string
	cmd := &cobra.Command{
		Use:   "measurement",
		Short: "Read one register (RTMR index on TDX, 3 = the container's own; PCR on a TPM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var alg uint16
			if algFlag != "" {
				a, err := cctrusted.ParseAlgorithm(algFlag)
				if err != nil {
					return fmt.Errorf("--alg: %w", err)
				}
				alg = uint16(a)
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := c.Measurement(cmd.Context(), index, alg)
			if err != nil {
				return err
			}
			out := map[string]any{"index": index, "algorithm": cctrusted.Algorithm(d.AlgID).String(), "algo_id": d.AlgID, "hash": hex.EncodeToString(d.Hash)}
			return g.emit(out, func() error {
				g.printf("index %d %s %x\n", index, cctrusted.Algorithm(d.AlgID), d.Hash)
				return nil
			})
		},
	}
	cmd.Flags().Uint32Var(&index, "index", 3, "register index")
	cmd.Flags().StringVar(&algFlag, "alg", "", "bank (default: the TEE's default)")
	return cmd
}

type clientEvent struct {
	RecNum    uint32            `json:"rec_num"`
	IMRIndex  uint32            `json:"imr_index"`
	EventType uint32            `json:"event_type"`
	Digests   map[string]string `json:"digests"`
	Event     string            `json:"event"`
	ExtraInfo map[string]string `json:"extra_info,omitempty"`
}

func newClientEventlogCmd(g *globals, f *clientFlags) *cobra.Command {
	var start, count uint32
	cmd := &cobra.Command{
		Use:   "eventlog",
		Short: "Print the container's event log: platform boot events, then its own records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			events, err := c.EventLog(cmd.Context(), start, count)
			if err != nil {
				return err
			}
			out := make([]clientEvent, 0, len(events))
			for _, e := range events {
				ce := clientEvent{RecNum: e.RecNum, IMRIndex: e.IMRIndex, EventType: e.EventType, Event: hex.EncodeToString(e.Event),
					ExtraInfo: e.ExtraInfo, Digests: map[string]string{}}
				for _, d := range e.Digests {
					ce.Digests[cctrusted.Algorithm(d.AlgID).String()] = hex.EncodeToString(d.Hash)
				}
				out = append(out, ce)
			}
			return g.emit(out, func() error {
				for i, e := range out {
					g.printf("%4d imr %d rec %3d type 0x%08x %s", int(start)+i, e.IMRIndex, e.RecNum, e.EventType, e.ExtraInfo["source"])
					for _, k := range mapsKeys(e.Digests) {
						g.printf(" %s:%s", k, e.Digests[k])
					}
					if p := e.ExtraInfo["exe_path"]; p != "" {
						g.printf(" %s", p)
					}
					g.printf("\n")
				}
				return nil
			})
		},
	}
	cmd.Flags().Uint32Var(&start, "start", 0, "first event")
	cmd.Flags().Uint32Var(&count, "count", 0, "number of events (0: all remaining)")
	return cmd
}

func newClientReportCmd(g *globals, f *clientFlags) *cobra.Command {
	var nonceHex, userHex, outFile string
	cmd := &cobra.Command{
		Use:   "report --nonce HEX [--user-data HEX] [--out FILE]",
		Short: "Get a quote bound to SHA-512(container register || nonce || user data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nonce, err := hex.DecodeString(nonceHex)
			if err != nil || len(nonce) == 0 {
				return fmt.Errorf("--nonce: want hex bytes, got %q", nonceHex)
			}
			ud, err := hex.DecodeString(userHex)
			if err != nil {
				return fmt.Errorf("--user-data: want hex bytes, got %q", userHex)
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.Report(cmd.Context(), nonce, ud)
			if err != nil {
				return err
			}
			out := map[string]any{"cc_type": r.CCType, "quote": hex.EncodeToString(r.Quote)}
			if r.CCType == ccnp.CCTypeTDX && len(r.Quote) >= 632 {
				out["report_data"] = hex.EncodeToString(r.Quote[568:632])
			}
			if outFile != "" {
				if err := os.WriteFile(outFile, r.Quote, 0o644); err != nil {
					return fmt.Errorf("writing the quote: %w", err)
				}
				fmt.Fprintf(g.stderr, "wrote a %d-byte quote (cc_type %d) to %s\n", len(r.Quote), r.CCType, outFile)
				return nil
			}
			return g.emit(out, func() error {
				g.printf("cc_type:     %d\n", r.CCType)
				if rd, ok := out["report_data"]; ok {
					g.printf("report_data: %s\n", rd)
				}
				g.printf("quote:       %x\n", r.Quote)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&nonceHex, "nonce", "", "nonce, hex (required)")
	cmd.Flags().StringVar(&userHex, "user-data", "", "user data, hex")
	cmd.Flags().StringVar(&outFile, "out", "", "write the raw quote to this file (for ccnp verify --quote)")
	return cmd
}
