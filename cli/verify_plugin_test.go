package cli

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// TestVerifyAgreesWithPlugin runs `ccnp verify` (which calls appraisal.TDX)
// on evidence the plugin accepted and on evidence it rejected: both must
// reach the same verdict and name the same check. (It lived in package
// serververifier until the CLI imported that package for --evidence.)
func TestVerifyAgreesWithPlugin(t *testing.T) {
	n := simtest.NewNode(t, sim.InitOptions{})
	pcsServer := simtest.ServePCS(t, pcs.Handler(n.Dir))
	client := simtest.ServeConfigured(t, serververifier.New(), n.ServerConfig(pcsServer.URL, simtest.ServerExtra{}), io.Discard, hclog.Off)
	cfg := n.AgentConfig(t, "")
	a := &simtest.Hooks{}
	var (
		helloBytes, nonce []byte
		ev                *evidencepb.Evidence
	)
	a.Hello = func(b []byte) []byte { helloBytes = bytes.Clone(b); return b }
	a.Challenge = func(c *evidencepb.Challenge) { nonce = bytes.Clone(c.Nonce) }
	flip := false
	a.Mutate = func(e *evidencepb.Evidence) {
		if flip {
			e.Quote[48+400] ^= 1 // RTMR0
		}
		ev = e
	}
	for _, tc := range []struct {
		name  string
		flip  bool
		check string
	}{{"accepted", false, ""}, {"rejected", true, "quote_signature"}} {
		t.Run(tc.name, func(t *testing.T) {
			flip = tc.flip
			_, err := simtest.AttestT(t, time.Minute, client, n.Prov, cfg, a)
			pluginCheck := ""
			if err != nil {
				pluginCheck = asRejectionFromStatus(err)
			}
			if pluginCheck != tc.check {
				t.Fatalf("plugin: %v", err)
			}
			dir := t.TempDir()
			logs, err := evidence.DecompressLogs(ev, evidence.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			files := map[string][]byte{"quote": ev.Quote, "ccel": logs.CCEL, "table": ev.CcelTable}
			for name, b := range files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			binding := evidence.Binding(nonce, helloBytes)
			var stdout, stderr bytes.Buffer
			code := Main([]string{"verify", "-o", "json",
				"--quote", filepath.Join(dir, "quote"), "--ccel", filepath.Join(dir, "ccel"), "--ccel-table", filepath.Join(dir, "table"),
				"--trusted-root", filepath.Join(n.Dir, sim.RootFile), "--report-data", hex.EncodeToString(binding[:]),
				"--pcs-url", pcsServer.URL,
			}, &stdout, &stderr)
			var out struct {
				Verified    bool   `json:"verified"`
				FailedCheck string `json:"failed_check"`
				TCBStatus   string `json:"tcb_status"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
				t.Fatalf("ccnp verify (exit %d): %v\n%s\n%s", code, err, stdout.String(), stderr.String())
			}
			if out.Verified != (tc.check == "") || out.FailedCheck != tc.check {
				t.Fatalf("ccnp verify: verified %v, failed check %q; the plugin said %q", out.Verified, out.FailedCheck, pluginCheck)
			}
			if tc.check == "" && out.TCBStatus != "UpToDate" {
				t.Errorf("ccnp verify TCB status %q", out.TCBStatus)
			}
		})
	}
}

func asRejectionFromStatus(err error) string {
	check, _, _ := strings.Cut(status.Convert(err).Message(), ":")
	return check
}
