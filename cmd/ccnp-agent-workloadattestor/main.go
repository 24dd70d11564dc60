// Command ccnp-agent-workloadattestor is the SPIRE agent's WorkloadAttestor
// plugin "ccnp" (see package workloadattestor). SPIRE starts it as an
// external plugin; stdout belongs to the plugin transport, so nothing here
// writes to it.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"github.com/ccnp-spire/ccnp-spire/workloadattestor"
)

func main() {
	p := workloadattestor.New()
	pluginmain.Serve(
		workloadattestorv1.WorkloadAttestorPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}
