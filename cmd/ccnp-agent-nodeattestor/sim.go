//go:build ccnp_sim

package main

// The demo and the end-to-end tests run this plugin on a simulated TD; only
// a build with -tags ccnp_sim (make build: .bin/sim/) links the simulator.
// The production binary does not, and refuses tee = "sim" at Configure.
import _ "github.com/ccnp-spire/ccnp-spire/tee/sim"
