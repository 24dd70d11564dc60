// Package cli holds the commands of the ccnp operator CLI. Each command is a
// thin layer over the packages the plugins use, so what the CLI shows is what
// the server verifies.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
)

// globals holds the flags every command sees.
type globals struct {
	output   string // text | json
	tee      string
	simDir   string
	tpm      string
	hostRoot string

	stdout io.Writer
	stderr io.Writer
}

// Main runs the CLI with args and returns the process exit code. Errors are
// printed as one line on stderr.
func Main(args []string, stdout, stderr io.Writer) (code int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	defer func() {
		// A parser bug must not print a stack trace at an operator: say what
		// happened in one line and fail.
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "ccnp: internal error: %v\n", r)
			code = 3
		}
	}()
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "ccnp: %s\n", oneLine(err.Error()))
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// exitError carries a specific exit code (verification failures use 2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "ccnp",
		Short:         "Inspect and verify confidential-computing evidence (TDX, TPM, simulated)",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch g.output {
			case "text", "json":
				return nil
			}
			if cmd.Annotations[outputFileAllowed] != "" {
				return nil
			}
			return fmt.Errorf("-o %q: want text or json", g.output)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&g.tee, "tee", "auto", "TEE for live commands: auto, tdx, tpm or sim")
	pf.StringVar(&g.simDir, "sim-dir", "", "state directory of the simulated TEE (with --tee sim)")
	pf.StringVar(&g.tpm, "tpm", "/dev/tpmrm0", "TPM device path or tcp://host:port (swtpm)")
	pf.StringVar(&g.hostRoot, "host-root", "/", "root under which host paths (/sys, /dev) are read")
	root.Version = version.Get().Version
	root.SetVersionTemplate(versionTemplate())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.CompletionOptions.DisableDefaultCmd = true
	for _, add := range commands {
		root.AddCommand(add(g))
	}
	return root
}

// outputFileAllowed marks commands where -o may name a file (quote get).
const outputFileAllowed = "output-file"

// commands registers the subcommands; each file adds its own in init so
// that this file does not change when a command is added.
var commands []func(*globals) *cobra.Command
