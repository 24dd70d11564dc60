package adversarial

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// imaRuntimeConfig requires the sim policy "runtime", whose ima block
// allows the boot aggregate and /usr/bin/app with the content "app".
func imaRuntimeConfig(n *simNode) string {
	hexOf := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	return n.serverConfig(fmt.Sprintf(`require_policy = true
policy "runtime" {
  tee = ["sim"]
  ima {
    file "boot_aggregate" { digests = [%q] }
    file "/usr/bin/app" { digests = [%q] }
  }
}
`, hexOf("boot"), hexOf("app")))
}

// TestIMARuntimePolicyOutsideBinary is the attack "the node ran a binary
// outside its runtime policy": the list is genuine (every entry extended
// into RTMR2, so the replay passes), and only the runtime policy can tell
// that /usr/bin/miner, or /usr/bin/app with other content, ran. First the
// list the policy allows is accepted with policy:runtime.
func TestIMARuntimePolicyOutsideBinary(t *testing.T) {
	boot := imaEntry(10, "ima-ng", dng("boot"), nng("boot_aggregate"))
	app := imaEntry(10, "ima-ng", dng("app"), nng("/usr/bin/app"))
	{
		n := newSimNode(t, sim.InitOptions{})
		a := n.agent(t)
		imaList(boot, app)(t, n, a)
		attrs, err := newServer(t, imaRuntimeConfig(n)).attest(a)
		if err != nil {
			t.Fatalf("list the policy allows rejected: %v", err)
		}
		if !slices.Contains(attrs.GetSelectorValues(), "sim:policy:runtime") {
			t.Fatalf("no sim:policy:runtime among %v", attrs.GetSelectorValues())
		}
	}
	d := sha256.Sum256([]byte("miner"))
	tampered := sha256.Sum256([]byte("app, patched"))
	for _, c := range []struct {
		name  string
		entry []byte
		want  string
	}{
		{"binary not in the policy", imaEntry(10, "ima-ng", dng("miner"), nng("/usr/bin/miner")),
			"entry 2 /usr/bin/miner sha256:" + hex.EncodeToString(d[:]) + ": not_in_policy"},
		{"allowed path, other content", imaEntry(10, "ima-ng", dng("app, patched"), nng("/usr/bin/app")),
			"entry 2 /usr/bin/app sha256:" + hex.EncodeToString(tampered[:]) + ": digest_not_allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newSimNode(t, sim.InitOptions{})
			a := n.agent(t)
			imaList(boot, app, c.entry)(t, n, a)
			s := newServer(t, imaRuntimeConfig(n))
			_, err := s.attest(a)
			s.want(t, err, reject(codes.PermissionDenied, "policy", `policy "runtime": ima: `+c.want))
		})
	}
}
