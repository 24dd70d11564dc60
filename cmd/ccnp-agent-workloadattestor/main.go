// Command ccnp-agent-workloadattestor is the SPIRE agent's WorkloadAttestor
// plugin "ccnp" (see package workloadattestor). SPIRE starts it as an
// external plugin; stdout belongs to the plugin transport, so nothing here
// writes to it, except --version when run by hand (SPIRE never passes it).
package main

import (
	"os"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
	"github.com/ccnp-spire/ccnp-spire/workloadattestor"
)

func main() {
	if version.PluginFlag("ccnp-agent-workloadattestor", os.Args[1:], os.Stdout) {
		return
	}
	p := workloadattestor.New()
	pluginmain.Serve(
		workloadattestorv1.WorkloadAttestorPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}
