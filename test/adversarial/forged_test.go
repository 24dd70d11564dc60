package adversarial

import (
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// TestForgedQuotes: quotes from something that is not a trusted TD, and
// genuine quotes whose signed bytes were edited.
func TestForgedQuotes(t *testing.T) {
	runSimCases(t, []simCase{
		{
			name:  "simulated quote presented as tdx under Intel's root",
			setup: func(t *testing.T, n *simNode, a *agent) { a.p = simtest.AsTDX{Provider: n.Prov} },
			want:  reject(codes.PermissionDenied, "pck_chain"),
		},
		{
			name:         "simulated quote without a sim block",
			serverConfig: func(n *simNode) string { return fmt.Sprintf("tdx {\n collateral { pcs_url = %q }\n}\n", n.pcs.URL) },
			want:         reject(codes.PermissionDenied, "tee", "no sim block"),
		},
		{
			name:  "simulated root wrongly among the tdx roots",
			setup: func(t *testing.T, n *simNode, a *agent) { a.p = simtest.AsTDX{Provider: n.Prov} },
			serverConfig: func(n *simNode) string {
				return fmt.Sprintf("tdx {\n trusted_roots_file = %q\n collateral { pcs_url = %q }\n}\n", filepath.Join(n.Dir, sim.RootFile), n.pcs.URL)
			},
			want: reject(codes.PermissionDenied, "simulated_quote"),
		},
		{
			name:  "quote of another simulator with its own root",
			setup: func(t *testing.T, n *simNode, a *agent) { a.p = newSimNode(t, sim.InitOptions{}).Prov },
			want:  reject(codes.PermissionDenied, "pck_chain"),
		},
		{
			name: "real Intel TDX quote substituted",
			setup: func(t *testing.T, n *simNode, a *agent) {
				q := simtest.Testdata(t, "tdx", "cos-113-tdx-quote.dat")
				a.Mutate = func(e *evidencepb.Evidence) { e.Quote = q }
			},
			want: reject(codes.PermissionDenied, "pck_chain"),
		},
		{
			name:  "MRTD byte flipped",
			setup: func(t *testing.T, n *simNode, a *agent) { a.Mutate = flip(offMRTD) },
			want:  reject(codes.PermissionDenied, "quote_signature"),
		},
		{
			name:  "RTMR3 byte flipped",
			setup: func(t *testing.T, n *simNode, a *agent) { a.Mutate = flip(offRTMR3 + 47) },
			want:  reject(codes.PermissionDenied, "quote_signature"),
		},
		{
			name:  "REPORTDATA byte flipped",
			setup: func(t *testing.T, n *simNode, a *agent) { a.Mutate = flip(offReportData) },
			want:  reject(codes.PermissionDenied, "quote_signature"),
		},
		{
			name:  "quote signature byte flipped",
			setup: func(t *testing.T, n *simNode, a *agent) { a.Mutate = flip(offSigData + 5) },
			want:  reject(codes.PermissionDenied, "quote_signature"),
		},
		{
			name:  "attestation key replaced",
			setup: func(t *testing.T, n *simNode, a *agent) { a.Mutate = flip(offSigData + 64 + 3) },
			want:  reject(codes.PermissionDenied, "quote_signature"),
		},
		{
			name: "quote truncated after the body",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) { e.Quote = e.Quote[:offSigData] }
			},
			want: reject(codes.InvalidArgument, "quote_format"),
		},
		{
			name: "quote version 5",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) { e.Quote[0] = 5 }
			},
			want: reject(codes.InvalidArgument, "quote_format"),
		},
		{
			name: "tpm evidence from a sim node",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) {
					e.Tpm = &evidencepb.TPMEvidence{AkPublic: []byte{1}, Quote: []byte{1}, Signature: []byte{1}}
				}
			},
			want: reject(codes.InvalidArgument, "payload"),
		},
		{
			name: "evidence tee differs from the hello",
			setup: func(t *testing.T, n *simNode, a *agent) {
				a.Mutate = func(e *evidencepb.Evidence) { e.Tee = "tdx" }
			},
			want: reject(codes.PermissionDenied, "tee"),
		},
	})
}
