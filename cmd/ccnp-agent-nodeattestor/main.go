// Command ccnp-agent-nodeattestor is the ccnp NodeAttestor plugin of the
// SPIRE agent. SPIRE starts it (plugin_cmd) and talks to it over the plugin
// transport on stdin/stdout, so nothing here may print (except --version,
// which SPIRE never passes, when run by hand).
package main

import (
	"os"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
)

func main() {
	if version.PluginFlag("ccnp-agent-nodeattestor", os.Args[1:], os.Stdout) {
		return
	}
	p := nodeattestor.New()
	pluginmain.Serve(
		nodeattestorv1.NodeAttestorPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}
