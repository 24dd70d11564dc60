package cli

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee"
)

func init() { commands = append(commands, newEvidenceCmd) }

func newEvidenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Record what the agent plugin sends, for `ccnp verify --evidence`",
	}
	var nonce, agentConfig, out string
	collect := &cobra.Command{
		Use:   "collect --nonce HEX -o FILE [--agent-config FILE]",
		Short: "Write the exact hello and evidence the agent plugin would send for a nonce",
		Long: `Run the agent NodeAttestor's own collection code on this node (--tee tdx, tpm
or sim) for a 32-byte nonce and write the hello and evidence bytes it would send
to FILE (see README: "Debugging a rejected node"). --agent-config is the agent's
plugin_data (HCL), so the recording holds what that agent sends: the same logs,
compression, instance ID and runtime log. Without it the global flags (--tee,
--sim-dir, --tpm, --host-root) and the plugin's defaults are used. A stored
checkpoint is never offered: the recording holds whole logs. On a TPM node the
credential activation round needs the live server, so it is not recorded.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{outputFileAllowed: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "text" && g.output != "json" {
				if out != "" {
					return fmt.Errorf("both -o %s and --out %s given", g.output, out)
				}
				out, g.output = g.output, "text"
			}
			if out == "" {
				return fmt.Errorf("-o FILE: say where to write the recording")
			}
			n, err := parseNonce(nonce)
			if err != nil {
				return err
			}
			cfg, err := g.agentConfig(agentConfig)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			p, err := tee.Open(ctx, tee.ForNodeAttestor(cfg))
			if err != nil {
				return err
			}
			defer p.Close()
			rec, err := nodeattestor.Record(ctx, p, cfg, n)
			if err != nil {
				return err
			}
			b, err := rec.Marshal()
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			g.printf("wrote %s: %s evidence for nonce %s (hello %d bytes, evidence %d bytes)\n", out, p.TEE(), nonce, len(rec.Hello), len(rec.Evidence))
			return nil
		},
	}
	fl := collect.Flags()
	fl.StringVar(&nonce, "nonce", "", "the verifier's nonce, 64 hex characters (required)")
	fl.StringVar(&agentConfig, "agent-config", "", "the agent NodeAttestor's plugin_data (HCL file)")
	fl.StringVar(&out, "out", "", "write the recording to this file")
	_ = collect.MarkFlagRequired("nonce")
	cmd.AddCommand(collect)
	return cmd
}

// parseNonce reads a --nonce flag: exactly evidence.NonceSize bytes in hex.
func parseNonce(s string) ([]byte, error) {
	n, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(n) != evidence.NonceSize {
		return nil, fmt.Errorf("--nonce: want %d hex characters (%d bytes)", 2*evidence.NonceSize, evidence.NonceSize)
	}
	return n, nil
}

// agentConfig parses the agent plugin_data at path with the plugin's own
// parser, or, without a path, one written from the global flags.
func (g *globals) agentConfig(path string) (*conf.AgentNodeAttestor, error) {
	var src string
	if path != "" {
		b, err := readInput("--agent-config", path)
		if err != nil {
			return nil, err
		}
		src = string(b)
	} else {
		var sb strings.Builder
		fmt.Fprintf(&sb, "tee = %s\nhost_root = %s\n", strconv.Quote(g.tee), strconv.Quote(g.hostRoot))
		if g.tee == string(cctrusted.TEESim) {
			fmt.Fprintf(&sb, "sim {\n  dir = %s\n}\n", strconv.Quote(g.simDir))
		}
		if g.tee == string(cctrusted.TEETPM) || g.tee == string(conf.TEEAuto) {
			fmt.Fprintf(&sb, "tpm {\n  device = %s\n}\n", strconv.Quote(g.tpm))
		}
		src = sb.String()
		path = "the global flags"
	}
	cfg, err := conf.ParseAgentNodeAttestor(src)
	if err != nil {
		return nil, fmt.Errorf("--agent-config (%s): %w", path, err)
	}
	return cfg, nil
}
