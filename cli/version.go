package cli

import (
	"bytes"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
)

func init() { commands = append(commands, newVersionCmd) }

// newVersionCmd is `ccnp version`: the same text as `ccnp --version`, or
// JSON with -o json (for inventory scripts).
func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and platform of this build",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			info := version.Get()
			return g.emit(info, func() error { return info.Write(g.stdout, "ccnp") })
		},
	}
}

// versionTemplate is what `ccnp --version` prints. The build strings are
// restricted to [0-9A-Za-z.+_-] by package version, so they cannot carry
// template actions into cobra's template.
func versionTemplate() string {
	var b bytes.Buffer
	_ = version.Get().Write(&b, "ccnp")
	return b.String()
}
