// Command ccnp-demo-workload is the demo's workload: it fetches its X.509-SVID
// from the SPIRE agent's Workload API and prints what it was given.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/ccnp-spire/ccnp-spire/internal/version"
)

func main() {
	socket := flag.String("socket", "unix:///tmp/spire-agent/public/api.sock", "Workload API address")
	timeout := flag.Duration("timeout", 60*time.Second, "how long to wait for an SVID")
	asJSON := flag.Bool("json", false, "print JSON")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		_ = version.Get().Write(os.Stdout, "ccnp-demo-workload")
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// The agent answers "no identity issued" until it has synced the
	// entries that match this workload: ask again until the deadline.
	var (
		svid *x509svid.SVID
		err  error
	)
	for {
		if svid, err = workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(*socket)); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "ccnp-demo-workload: no SVID from %s within %v: %v\n", *socket, *timeout, err)
			os.Exit(1)
		case <-time.After(500 * time.Millisecond):
		}
	}
	leaf := svid.Certificates[0]
	sum := sha256.Sum256(leaf.Raw)
	out := map[string]any{
		"spiffe_id":       svid.ID.String(),
		"not_after":       leaf.NotAfter.UTC().Format(time.RFC3339),
		"cert_sha256":     hex.EncodeToString(sum[:]),
		"chain_length":    len(svid.Certificates),
		"workload_pid":    os.Getpid(),
		"workload_binary": os.Args[0],
	}
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(out)
		return
	}
	fmt.Printf("workload (pid %d) got X.509-SVID %s, valid until %s\n", os.Getpid(), out["spiffe_id"], out["not_after"])
}
