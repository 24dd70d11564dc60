// Command ccnp-install copies the ccnp plugins from the image's /opt/ccnp/bin
// into a directory shared with SPIRE's containers (the init container of
// deploy/k8s and deploy/helm) and prints each file's plugin_checksum.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/ccnp-spire/ccnp-spire/internal/install"
	"github.com/ccnp-spire/ccnp-spire/internal/version"
)

// plugins are what SPIRE's containers need; ccnp serve runs from the image itself.
var plugins = []string{"ccnp-agent-nodeattestor", "ccnp-agent-workloadattestor", "ccnp-server-nodeattestor"}

func main() {
	src := flag.String("from", "/opt/ccnp/bin", "directory holding the plugins (the image's)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: ccnp-install [--from DIR] DEST_DIR (or --version)\n")
		flag.PrintDefaults()
	}
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		_ = version.Get().Write(os.Stdout, "ccnp-install")
		return
	}
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	copied, err := install.Copy(context.Background(), *src, flag.Arg(0), plugins)
	for _, c := range copied {
		fmt.Printf("%s  %s\n", c.SHA256, c.Name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ccnp-install: %v\n", err)
		os.Exit(1)
	}
}
