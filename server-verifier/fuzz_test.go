package serververifier

import (
	"context"
	"testing"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

// FuzzAttest feeds arbitrary hello and evidence bytes to a configured
// plugin, seeded with a real simulated attestation: whatever arrives, the
// plugin answers with a status and never panics or accepts garbage.
func FuzzAttest(f *testing.F) {
	n := newSimNode(f, sim.InitOptions{})
	p := New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  n.serverConfig("", ""),
	}); err != nil {
		f.Fatal(err)
	}
	x := prepareExchanges(f, n, 1)[0]
	f.Add(x.hello, x.evidence)
	f.Add(x.hello, x.evidence[:len(x.evidence)/2])
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, hello, ev []byte) {
		p.newNonce = func() ([]byte, error) { return x.nonce, nil }
		s := &memStream{ctx: context.Background(), in: []*nodeattestorv1.AttestRequest{
			{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}},
			{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: ev}},
		}}
		err := p.Attest(s)
		if err == nil && (string(hello) != string(x.hello) || string(ev) != string(x.evidence)) {
			// Only the exact seed exchange (or an equivalent re-encoding of
			// it) can be accepted; anything accepted must carry attributes.
			if len(s.out) == 0 || s.out[len(s.out)-1].GetAgentAttributes() == nil {
				t.Fatalf("accepted without attributes")
			}
		}
	})
}
