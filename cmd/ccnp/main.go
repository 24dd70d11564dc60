// Command ccnp is the operator CLI of ccnp-spire: inspect event logs and
// quotes, verify evidence offline, and drive the simulated TEE.
package main

import (
	"os"

	"github.com/ccnp-spire/ccnp-spire/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
