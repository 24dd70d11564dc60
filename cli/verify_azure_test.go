package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
)

const azureV0 = "../testdata/trustee-az-tdx-vtpm/evidence-v0.json"

type azureResult struct {
	code int
	out  azureOutput
	errs string
}

func verifyAzureJSON(t *testing.T, args ...string) azureResult {
	t.Helper()
	code, out, errs := run(t, append([]string{"verify", "-o", "json", "--at", at}, args...)...)
	r := azureResult{code: code, errs: errs}
	if out != "" {
		readJSON(t, out, &r.out)
	}
	return r
}

func TestVerifyAzureRealEvidence(t *testing.T) {
	r := verifyAzureJSON(t, "--azure-tdx", azureV0, "--nonce-text", "challenge")
	if r.code != 0 || !r.out.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", r.code, r.out.Verified, r.out.Error, r.errs)
	}
	if r.out.Layout != "evidence-v0" || r.out.AK != "RSA-2048" || len(r.out.PCRs) != 24 || r.out.FMSPC != "00806f050000" ||
		!strings.HasPrefix(r.out.MRTD, "024a32b070383331") || r.out.Nonce != "6368616c6c656e6765" || r.out.TCBStatus != "" {
		t.Errorf("output %+v", r.out)
	}
	if len(r.out.Checks) < 15 {
		t.Errorf("%d checks printed", len(r.out.Checks))
	}
	// The same nonce in hex, and the v1 layout of the same evidence.
	ev, err := azuretdx.ParseEvidence(mustRead(t, azureV0))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := ev.MarshalV1()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "evidence-v1.json")
	if err := os.WriteFile(p, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	r = verifyAzureJSON(t, "--azure-tdx", p, "--nonce", "6368616c6c656e6765")
	if r.code != 0 || r.out.Layout != "evidence-v1" {
		t.Fatalf("v1: exit %d, layout %s: %s", r.code, r.out.Layout, r.out.Error)
	}
	// Human output names every check and the verdict.
	code, out, _ := run(t, "verify", "--at", at, "--azure-tdx", azureV0, "--nonce-text", "challenge")
	for _, want := range []string{"td_quote.pck_chain", "td_quote.collateral", "skipped", "runtime_data_hash", "tpm_pcr_digest", "verified: "} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
}

// TestVerifyAzureRejected: exit 2 naming the failed check, as the other
// verify modes.
func TestVerifyAzureRejected(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "garbage.json")
	if err := os.WriteFile(garbage, []byte(`{"version":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		check string
	}{
		{[]string{"--azure-tdx", azureV0, "--nonce-text", "challengf"}, azuretdx.CheckTPMNonce},
		{[]string{"--azure-tdx", azureV0, "--nonce", "00"}, azuretdx.CheckTPMNonce},
		{[]string{"--azure-tdx", garbage, "--nonce-text", "x"}, azuretdx.CheckEvidenceFormat},
		{[]string{"--azure-tdx", azureV0, "--nonce-text", "challenge", "--trusted-root", "../testdata/tdx/README.md"}, ""},
	} {
		r := verifyAzureJSON(t, c.args...)
		if c.check == "" {
			if r.code == 0 {
				t.Errorf("%v: exit 0", c.args)
			}
			continue
		}
		if r.code != 2 || r.out.Verified || r.out.FailedCheck != c.check || !strings.HasPrefix(r.errs, "ccnp: verification failed") {
			t.Errorf("%v: exit %d, failed %q (%s), stderr %q; want 2, %s", c.args, r.code, r.out.FailedCheck, r.out.Error, r.errs, c.check)
		}
		if len(r.out.PCRs) != 0 {
			t.Errorf("%v: PCR values printed for rejected evidence", c.args)
		}
	}
}

func TestVerifyAzureUsage(t *testing.T) {
	for _, args := range [][]string{
		{"verify", "--azure-tdx", azureV0},
		{"verify", "--azure-tdx", azureV0, "--nonce", "zz"},
		{"verify", "--azure-tdx", azureV0, "--nonce", strings.Repeat("00", 65)},
		{"verify", "--azure-tdx", azureV0, "--nonce", "00", "--nonce-text", "x"},
		{"verify", "--azure-tdx", azureV0, "--nonce-text", "x", "--quote", cosQuote},
		{"verify", "--quote", cosQuote, "--nonce-text", "x"},
		{"verify", "--azure-tdx", "/nonexistent/evidence.json", "--nonce-text", "x"},
	} {
		code, out, errs := run(t, args...)
		if code == 0 || code == 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q: want a usage error", args, code, out)
		}
		if lines := strings.Split(strings.TrimRight(errs, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "ccnp: ") {
			t.Errorf("%v: want one clear error line, got %q", args, errs)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
