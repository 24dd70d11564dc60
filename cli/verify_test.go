package cli

import (
	"bytes"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

// at is inside the validity of the real quotes' PCK chains.
const at = "2026-11-27T00:00:00Z"

func verifyBadCases(p map[string]string) [][]string {
	return [][]string{
		{"verify", "--quote", p["empty"]},
		{"verify", "--quote", p["garbage"]},
		{"verify", "--quote", p["truncatedQuote"]},
		{"verify", "--quote", p["oversized"]},
		{"verify", "--quote", p["missing"]},
		{"verify", "--quote", cosCCEL},
		{"verify", "--quote", cosQuote, "--ccel", p["garbage"], "--at", at},
		{"verify", "--quote", cosQuote, "--ccel", p["truncatedCCEL"], "--at", at},
		{"verify", "--quote", cosQuote, "--ccel", p["oversized"]},
		{"verify", "--quote", cosQuote, "--ccel-table", cosTable},
		{"verify", "--quote", cosQuote, "--ima", ccnpIMA},
		{"verify", "--quote", cosQuote, "--ccel", cosCCEL, "--ima", p["missing"]},
		{"verify", "--quote", cosQuote, "--trusted-root", p["garbage"]},
		{"verify", "--quote", cosQuote, "--at", "yesterday"},
		{"verify", "--quote", cosQuote, "--report-data", "00"},
		{"verify", "--quote", cosQuote, "--pcs-url", "ftp://x"},
		{"verify", "--quote", cosQuote, "--at", at, "--accept-tcb-status", "Bogus"},
		{"verify"},
	}
}

type verifyResult struct {
	code int
	out  verifyOutput
	errs string
}

func verify(t *testing.T, args ...string) verifyResult {
	t.Helper()
	code, out, errs := run(t, append([]string{"verify", "-o", "json"}, args...)...)
	var r verifyResult
	r.code, r.errs = code, errs
	if out != "" {
		readJSON(t, out, &r.out)
	}
	return r
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyRealQuote(t *testing.T) {
	r := verify(t, "--quote", cosQuote, "--ccel", cosCCEL, "--ccel-table", cosTable, "--at", at)
	if r.code != 0 || !r.out.Verified {
		t.Fatalf("exit %d, %+v: %s", r.code, r.out, r.errs)
	}
	// Without --at the chain is checked now; the SPR quote alone verifies too.
	r = verify(t, "--quote", sprQuote, "--at", at)
	if r.code != 0 || !r.out.Verified {
		t.Fatalf("SPR quote: exit %d: %s", r.code, r.errs)
	}
}

func TestVerifyRejects(t *testing.T) {
	quote, _ := os.ReadFile(cosQuote)
	ccel, _ := os.ReadFile(cosCCEL)

	// One byte of RTMR1 (quote offset 48 + 424) flipped: the body no longer
	// matches its signature.
	q := bytes.Clone(quote)
	q[48+424] ^= 1
	// One digest byte of a CCEL event that extends RTMR1 flipped: the log no
	// longer replays to the signed RTMR1.
	_, out, _ := run(t, "eventlog", cosCCEL, "-o", "json")
	var lg logOutput
	readJSON(t, out, &lg)
	var digest []byte
	for _, e := range lg.Events {
		if e.Register == "ccmr2" && e.Type != "No Action" {
			digest, _ = hex.DecodeString(e.Digests["sha384"])
			break
		}
	}
	i := bytes.Index(ccel, digest)
	if digest == nil || i < 0 {
		t.Fatal("no RTMR1 event digest found in the CCEL")
	}
	c := bytes.Clone(ccel)
	c[i+5] ^= 0x80

	otherRoot := writeTemp(t, mustReadFile(t, filepath.Join(newSim(t), "root.pem")))
	tests := []struct {
		name  string
		args  []string
		check string
		msg   string
	}{
		{"rtmr1 flipped", []string{"--quote", writeTemp(t, q), "--at", at}, "quote_signature", "signature"},
		{"ccel digest flipped", []string{"--quote", cosQuote, "--ccel", writeTemp(t, c), "--ccel-table", cosTable, "--at", at}, "ccel_replay", "rtmr1"},
		{"other root", []string{"--quote", cosQuote, "--trusted-root", otherRoot, "--at", at}, "pck_chain", ""},
		{"expired chain", []string{"--quote", cosQuote, "--at", "2060-01-01T00:00:00Z"}, "pck_chain", ""},
		{"report data", []string{"--quote", cosQuote, "--at", at, "--report-data", strings.Repeat("ab", 64)}, "report_data", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := verify(t, tt.args...)
			if r.code != 2 || r.out.Verified || r.out.FailedCheck != tt.check {
				t.Fatalf("exit %d, failed check %q, want 2 and %q (%s)", r.code, r.out.FailedCheck, tt.check, r.errs)
			}
			if !strings.Contains(r.errs, tt.check) || !strings.Contains(r.errs, tt.msg) || strings.Count(r.errs, "\n") != 1 {
				t.Errorf("stderr %q does not name %q / %q in one line", r.errs, tt.check, tt.msg)
			}
		})
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// simQuote initialises a simulator and gets a quote from it through the CLI.
func simQuote(t *testing.T, initArgs ...string) (dir, quote string) {
	dir = newSim(t, initArgs...)
	quote = filepath.Join(t.TempDir(), "q.bin")
	if code, _, errs := run(t, "--tee", "sim", "--sim-dir", dir, "quote", "get", "--nonce", strings.Repeat("00", 32), "-o", quote); code != 0 {
		t.Fatalf("quote get: %s", errs)
	}
	return dir, quote
}

// The acceptance flow of the simulated TEE: trusted only under its own root,
// TCB status and DEBUG evaluated from collateral served over real HTTP.
func TestVerifySimulated(t *testing.T) {
	dir, q := simQuote(t)
	root := filepath.Join(dir, "root.pem")
	if r := verify(t, "--quote", q, "--trusted-root", root); r.code != 0 {
		t.Fatalf("sim quote under the sim root: exit %d: %s", r.code, r.errs)
	}
	if r := verify(t, "--quote", q); r.code == 0 || r.out.FailedCheck != "pck_chain" {
		t.Fatalf("sim quote under Intel's root: exit %d, check %q", r.code, r.out.FailedCheck)
	}
	srv := httptest.NewServer(pcs.Handler(dir))
	defer srv.Close()
	r := verify(t, "--quote", q, "--trusted-root", root, "--pcs-url", srv.URL)
	if r.code != 0 || r.out.TCBStatus != "UpToDate" {
		t.Fatalf("UpToDate sim with collateral: exit %d, status %q: %s", r.code, r.out.TCBStatus, r.errs)
	}

	odir, oq := simQuote(t, "--tcb-status", "OutOfDate")
	osrv := httptest.NewServer(pcs.Handler(odir))
	defer osrv.Close()
	oroot := filepath.Join(odir, "root.pem")
	r = verify(t, "--quote", oq, "--trusted-root", oroot, "--pcs-url", osrv.URL)
	if r.code != 2 || r.out.FailedCheck != "tcb_status" || !strings.Contains(r.errs, "OutOfDate") {
		t.Fatalf("OutOfDate sim: exit %d, check %q: %s", r.code, r.out.FailedCheck, r.errs)
	}
	r = verify(t, "--quote", oq, "--trusted-root", oroot, "--pcs-url", osrv.URL, "--accept-tcb-status", "UpToDate,OutOfDate")
	if r.code != 0 || r.out.TCBStatus != "OutOfDate" {
		t.Fatalf("OutOfDate accepted: exit %d: %s", r.code, r.errs)
	}

	ddir, dq := simQuote(t, "--debug")
	dsrv := httptest.NewServer(pcs.Handler(ddir))
	defer dsrv.Close()
	droot := filepath.Join(ddir, "root.pem")
	r = verify(t, "--quote", dq, "--trusted-root", droot, "--pcs-url", dsrv.URL)
	if r.code != 2 || r.out.FailedCheck != "debug" {
		t.Fatalf("debug sim: exit %d, check %q: %s", r.code, r.out.FailedCheck, r.errs)
	}
	if r = verify(t, "--quote", dq, "--trusted-root", droot, "--pcs-url", dsrv.URL, "--allow-debug"); r.code != 0 || !r.out.Debug {
		t.Fatalf("debug sim with --allow-debug: exit %d: %s", r.code, r.errs)
	}

	// The PCS is down: collateral is unavailable and nothing is accepted.
	srv.Close()
	if r = verify(t, "--quote", q, "--trusted-root", root, "--pcs-url", srv.URL); r.code == 0 || r.out.FailedCheck != "collateral" {
		t.Fatalf("PCS down: exit %d, check %q", r.code, r.out.FailedCheck)
	}
}

// ccnpIMA is the IMA list of a CCNP-patched TDX kernel (one entry on
// register field 2 with a SHA-384 template hash).
const ccnpIMA = "../testdata/ima/cc-trusted-api/ima_log.ascii"

// TestVerifyIMA: a simulated TD whose RTMR2 the kernel extended with the
// CCNP list's template hash after the CCEL, as a CCNP kernel does, verifies
// with --ima; the checks and the entry count are in both outputs, and an
// altered or incomplete list is refused as ima_replay.
func TestVerifyIMA(t *testing.T) {
	list := mustReadFile(t, ccnpIMA)
	th := strings.Fields(string(list))[1] // the template hash column
	dir := newSim(t)
	if code, _, errs := run(t, "sim", "extend", "--dir", dir, "--rtmr", "2", "--digest", th); code != 0 {
		t.Fatalf("sim extend: %s", errs)
	}
	q := filepath.Join(t.TempDir(), "q.bin")
	if code, _, errs := run(t, "--tee", "sim", "--sim-dir", dir, "quote", "get", "--nonce", strings.Repeat("00", 32), "-o", q); code != 0 {
		t.Fatalf("quote get: %s", errs)
	}
	ccel, table := sim.DefaultCCEL()
	base := []string{"--quote", q, "--trusted-root", filepath.Join(dir, "root.pem"), "--ccel", writeTemp(t, ccel), "--ccel-table", writeTemp(t, table)}

	r := verify(t, append(base, "--ima", ccnpIMA)...)
	if r.code != 0 || r.out.IMA == nil || r.out.IMA.Entries != 1 || r.out.IMA.Violations != 0 {
		t.Fatalf("exit %d, ima %+v: %s", r.code, r.out.IMA, r.errs)
	}
	if c := r.out.Checks[len(r.out.Checks)-1]; c.Name != "ima_replay" || !c.OK {
		t.Fatalf("last check %+v", c)
	}
	code, text, errs := run(t, append([]string{"verify"}, append(base, "--ima", ccnpIMA)...)...)
	if code != 0 || !strings.Contains(text, "ima: 1 entries, 0 violations") || !strings.Contains(text, "ima_replay") {
		t.Fatalf("text output (exit %d):\n%s%s", code, text, errs)
	}

	// Without the list, RTMR2 is not what the CCEL replays to.
	if r := verify(t, base...); r.code != 2 || r.out.FailedCheck != "ccel_replay" {
		t.Fatalf("without --ima: exit %d, check %q", r.code, r.out.FailedCheck)
	}
	// One byte of the file digest changed: the entry is named.
	altered := bytes.Clone(list)
	i := bytes.Index(altered, []byte("sha384:")) + len("sha384:")
	altered[i] ^= 1
	r = verify(t, append(base, "--ima", writeTemp(t, altered))...)
	if r.code != 2 || r.out.FailedCheck != "ima_replay" || r.out.IMA != nil || !strings.Contains(r.errs, "entry 0") {
		t.Fatalf("altered list: exit %d, check %q, ima %+v: %s", r.code, r.out.FailedCheck, r.out.IMA, r.errs)
	}
}
