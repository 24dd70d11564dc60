// Command ccnp-server-nodeattestor is the SPIRE server NodeAttestor plugin
// "ccnp" (package serververifier). SPIRE starts it as an external plugin:
//
//	NodeAttestor "ccnp" {
//	  plugin_cmd      = "/usr/local/bin/ccnp-server-nodeattestor"
//	  plugin_checksum = "<sha256 of the binary>"
//	  plugin_data { ... }   # docs/configuration.md
//	}
//
// It writes nothing to stdout: that is the plugin transport's. Run by hand
// with --version it prints its version and exits.
package main

import (
	"os"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
)

func main() {
	if version.PluginFlag("ccnp-server-nodeattestor", os.Args[1:], os.Stdout) {
		return
	}
	p := serververifier.New()
	p.OwnProcess()
	pluginmain.Serve(
		nodeattestorv1.NodeAttestorPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}
