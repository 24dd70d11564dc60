// Command ccnp-demo runs `make demo`: real SPIRE server and agent with the
// ccnp plugins on the simulated TDX, until a workload holds an SVID; then it
// stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
	"github.com/ccnp-spire/ccnp-spire/test/spirelab"
)

func main() {
	dir := flag.String("dir", ".demo", "directory for state, configs and logs (emptied first)")
	bin := flag.String("bin", ".bin", "directory with ccnp, the plugins, spire-server and spire-agent")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		_ = version.Get().Write(os.Stdout, "ccnp-demo")
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if err := os.RemoveAll(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "ccnp-demo:", err)
		os.Exit(1)
	}
	lab, err := spirelab.New(*dir, *bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ccnp-demo:", err)
		os.Exit(1)
	}
	res, err := spirelab.RunDemo(ctx, lab, os.Stdout)
	lab.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ccnp-demo: %v\n(logs: %s/*.log)\n", err, lab.Dir)
		os.Exit(1)
	}
	fmt.Printf("==> done: %s holds an SVID on attested agent %s; everything started was stopped\n", res.SPIFFEID, res.AgentID)
}
