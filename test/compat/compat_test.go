package compat

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/version"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// rig is one simulated TD and one server plugin that accepts it.
type rig struct {
	node   *simtest.Node
	client *nodeattestorv1.NodeAttestorPluginClient
	logs   *simtest.LogBuffer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	n := simtest.NewNode(t, sim.InitOptions{})
	srv := simtest.ServePCS(t, pcs.Handler(n.Dir))
	r := &rig{node: n, logs: &simtest.LogBuffer{}}
	r.client = simtest.ServeConfigured(t, serververifier.New(), n.ServerConfig(srv.URL, simtest.ServerExtra{}), r.logs, hclog.Info)
	return r
}

func (r *rig) attest(t *testing.T, h *simtest.Hooks) error {
	t.Helper()
	_, err := simtest.AttestT(t, time.Minute, r.client, r.node.Prov, r.node.AgentConfig(t, ""), h)
	return err
}

// lastAudit is the server's audit line of the last attestation.
func (r *rig) lastAudit(t *testing.T) map[string]any {
	t.Helper()
	lines := r.logs.Audit(t)
	if len(lines) == 0 {
		t.Fatalf("no audit line:\n%s", r.logs.String())
	}
	return lines[len(lines)-1]
}

// rewriteHello decodes a hello payload, lets edit change it and encodes it
// again exactly as an agent would (evidence.Encode), so the server sees a
// well-formed hello of version p.Version.
func rewriteHello(t *testing.T, b []byte, edit func(*evidencepb.Payload)) []byte {
	t.Helper()
	var p evidencepb.Payload
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	edit(&p)
	out, err := proto.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServerLogsAgentVersion: the server plugin writes the version the
// agent sent in Hello.agent_version into the audit line of the attestation
// (field agent_version), accepted or rejected, so that an operator can tell
// which agent build attested a node.
func TestServerLogsAgentVersion(t *testing.T) {
	const claimed = "v1.2.3-compat-test"
	withVersion := func(b []byte) []byte {
		return rewriteHello(t, b, func(p *evidencepb.Payload) { p.GetHello().AgentVersion = claimed })
	}
	r := newRig(t)

	// The agent plugin's own hello carries this build's version.
	if err := r.attest(t, nil); err != nil {
		t.Fatalf("genuine attestation rejected: %v", err)
	}
	if got, want := r.lastAudit(t)["agent_version"], version.Get().Version; got != want {
		t.Fatalf("audit line agent_version = %v, want the agent build's %q:\n%s", got, want, r.logs.String())
	}

	if err := r.attest(t, &simtest.Hooks{Agent: withVersion}); err != nil {
		t.Fatalf("attestation of an agent saying %s rejected: %v", claimed, err)
	}
	line := r.lastAudit(t)
	if line["result"] != "accepted" || line["agent_version"] != claimed {
		t.Fatalf("audit line result %v agent_version %v, want accepted and %q:\n%s", line["result"], line["agent_version"], claimed, r.logs.String())
	}

	// A rejected attestation names the agent's version too: that is when
	// an operator needs it most (an old agent against a new policy).
	flip := func(e *evidencepb.Evidence) { e.GetQuote()[200] ^= 1 }
	if err := r.attest(t, &simtest.Hooks{Agent: withVersion, Mutate: flip}); err == nil {
		t.Fatal("attestation with a flipped quote byte accepted")
	}
	line = r.lastAudit(t)
	if line["result"] != "rejected" || line["agent_version"] != claimed {
		t.Fatalf("audit line result %v agent_version %v, want rejected and %q:\n%s", line["result"], line["agent_version"], claimed, r.logs.String())
	}
}

// TestCompatOlderAgentHello: an agent of an older build speaks wire
// version 1 but leaves out what later releases added to the hello
// (agent_version, the checkpoint capability): the server accepts it with a
// full attestation, as docs/compatibility.md says.
func TestCompatOlderAgentHello(t *testing.T) {
	r := newRig(t)
	older := func(b []byte) []byte {
		return rewriteHello(t, b, func(p *evidencepb.Payload) {
			p.GetHello().AgentVersion = ""
			p.GetHello().Caps = nil
		})
	}
	if err := r.attest(t, &simtest.Hooks{Agent: older}); err != nil {
		t.Fatalf("hello of an older agent (no agent_version, no caps) rejected: %v", err)
	}
	line := r.lastAudit(t)
	if line["result"] != "accepted" || line["agent_version"] != "" || line["incremental"] != false {
		t.Fatalf("audit line result %v agent_version %v incremental %v, want accepted, empty and false:\n%s",
			line["result"], line["agent_version"], line["incremental"], r.logs.String())
	}
}

// TestCompatNewerAgentHello: an agent of a newer build, same wire version,
// whose hello carries a field this server does not know (and a capability
// it does not know): the server ignores both and accepts, as
// docs/compatibility.md says. The field is still bound into the quote with
// the rest of the hello's bytes.
func TestCompatNewerAgentHello(t *testing.T) {
	r := newRig(t)
	newer := func(b []byte) []byte {
		return rewriteHello(t, b, func(p *evidencepb.Payload) {
			h := p.GetHello()
			h.Caps = append(h.Caps, "future:capability")
			unknown := protowire.AppendTag(nil, 99, protowire.BytesType)
			unknown = protowire.AppendBytes(unknown, []byte("a field of a later release"))
			h.ProtoReflect().SetUnknown(unknown)
		})
	}
	if err := r.attest(t, &simtest.Hooks{Agent: newer}); err != nil {
		t.Fatalf("hello of a newer agent (unknown field 99, unknown capability) rejected: %v", err)
	}
	if line := r.lastAudit(t); line["result"] != "accepted" {
		t.Fatalf("audit line %v, want accepted:\n%s", line, r.logs.String())
	}
}

// TestCompatHelloVersions: a hello whose payload version is not the one
// this build speaks is refused before anything else is read, with
// FailedPrecondition (SPIRE's agent retries it for about a minute and then
// fails, saying why) and a message naming both versions: no version at all
// (not a ccnp payload), and a newer version (an agent upgraded before its
// server).
func TestCompatHelloVersions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint32
		parts   []string
	}{
		{"no version", 0, []string{"carries no version", fmt.Sprintf("supports version %d only", evidence.Version)}},
		{"newer version", evidence.Version + 1, []string{fmt.Sprintf("payload version %d is not supported", evidence.Version+1), fmt.Sprintf("supports version %d only", evidence.Version), "compatible releases"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if err := r.attest(t, nil); err != nil {
				t.Fatalf("genuine attestation rejected: %v", err)
			}
			sendVersion := func(b []byte) []byte {
				return rewriteHello(t, b, func(p *evidencepb.Payload) { p.Version = tc.version })
			}
			err := r.attest(t, &simtest.Hooks{Hello: sendVersion})
			simtest.WantRejection(t, err, codes.FailedPrecondition, "payload", append(tc.parts, "hello")...)
			line := r.lastAudit(t)
			if line["result"] != "rejected" || line["check"] != "payload" || line["code"] != codes.FailedPrecondition.String() {
				t.Fatalf("audit line %v, want rejected by check payload with FailedPrecondition:\n%s", line, r.logs.String())
			}
		})
	}
}
