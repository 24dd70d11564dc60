package cli

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
)

// newSim runs `ccnp sim init` into a fresh directory and returns it.
func newSim(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sim")
	if code, _, errs := run(t, append([]string{"sim", "init", "--dir", dir}, extra...)...); code != 0 {
		t.Fatalf("sim init: %s", errs)
	}
	return dir
}

// The live CCEL of the simulator replays to the RTMRs it reports.
func TestSimEventlogReplayEqualsMeasurements(t *testing.T) {
	dir := newSim(t)
	code, out, errs := run(t, "--tee", "sim", "--sim-dir", dir, "eventlog", "--replay", "-o", "json")
	if code != 0 {
		t.Fatalf("eventlog: %s", errs)
	}
	var lg logOutput
	readJSON(t, out, &lg)
	code, out, errs = run(t, "--tee", "sim", "--sim-dir", dir, "measurements", "-o", "json")
	if code != 0 {
		t.Fatalf("measurements: %s", errs)
	}
	var ms struct {
		TEE          string            `json:"tee"`
		Measurements map[string]string `json:"measurements"`
	}
	readJSON(t, out, &ms)
	if ms.TEE != "sim" {
		t.Errorf("tee = %q", ms.TEE)
	}
	for _, r := range []string{"rtmr0", "rtmr1", "rtmr2"} {
		if lg.Replayed[r] == "" || lg.Replayed[r] != ms.Measurements[r] {
			t.Errorf("%s: replay %s, measurement %s", r, lg.Replayed[r], ms.Measurements[r])
		}
	}
	// After an extend of RTMR2 the two differ: the comparison can fail.
	if code, _, errs := run(t, "sim", "extend", "--dir", dir, "--rtmr", "2", "--digest", strings.Repeat("ab", 48)); code != 0 {
		t.Fatal(errs)
	}
	_, out, _ = run(t, "--tee", "sim", "--sim-dir", dir, "measurements", "--imr", "2", "-o", "json")
	readJSON(t, out, &ms)
	if ms.Measurements["rtmr2"] == lg.Replayed["rtmr2"] {
		t.Error("rtmr2 unchanged by extend")
	}
}

func TestSimQuoteGet(t *testing.T) {
	dir := newSim(t)
	q := filepath.Join(t.TempDir(), "q.bin")
	nonce := strings.Repeat("00", 32)
	code, _, errs := run(t, "--tee", "sim", "--sim-dir", dir, "quote", "get", "--nonce", nonce, "-o", q)
	if code != 0 {
		t.Fatalf("quote get: %s", errs)
	}
	code, out, errs := run(t, "quote", "inspect", q, "-o", "json")
	if code != 0 {
		t.Fatalf("inspect: %s", errs)
	}
	var in map[string]any
	readJSON(t, out, &in)
	n, _ := hex.DecodeString(nonce)
	want := cctrusted.ReportData(n, nil)
	if in["report_data"] != hex.EncodeToString(want[:]) {
		t.Errorf("report_data %v, want SHA-512(nonce) %x", in["report_data"], want)
	}
	for _, bad := range [][]string{
		{"--nonce", "zz"}, {"--nonce", ""}, {"--nonce", strings.Repeat("00", 65)},
		{"--nonce", nonce, "--user-data", "q"}, {"--nonce", nonce, "-o", q, "--out", q},
	} {
		if code, _, _ := run(t, append([]string{"--tee", "sim", "--sim-dir", dir, "quote", "get"}, bad...)...); code == 0 {
			t.Errorf("quote get %v succeeded", bad)
		}
	}
}

func TestLiveWithoutTEEFails(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"--host-root", root, "--tpm", filepath.Join(root, "tpm"), "info"},
		{"--host-root", root, "--tpm", filepath.Join(root, "tpm"), "measurements"},
		{"--tee", "sim", "measurements"},
		{"--tee", "sim", "--sim-dir", root, "measurements"},
		{"--tee", "nope", "info"},
	} {
		code, _, errs := run(t, args...)
		if code == 0 || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

// With swtpm running, the live commands work over TCP.
func TestTPMMeasurementsAndQuote(t *testing.T) {
	s := swtpm.StartT(t)
	code, out, errs := run(t, "--tee", "tpm", "--tpm", s.Addr(), "measurements", "-o", "json")
	if code != 0 {
		t.Fatalf("measurements: %s", errs)
	}
	var ms struct {
		Algorithm    string            `json:"algorithm"`
		Measurements map[string]string `json:"measurements"`
	}
	readJSON(t, out, &ms)
	if ms.Algorithm != "sha256" || len(ms.Measurements) != 24 {
		t.Fatalf("got %s with %d PCRs", ms.Algorithm, len(ms.Measurements))
	}
	f := filepath.Join(t.TempDir(), "tpmquote.json")
	code, _, errs = run(t, "--tpm", s.Addr(), "quote", "get", "--nonce", "0102", "--out", f)
	if code != 0 {
		t.Fatalf("quote get: %s", errs)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var rep reportOutput
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	want := cctrusted.ReportData([]byte{1, 2}, nil)
	if rep.TEE != cctrusted.TEETPM || rep.ReportData != hex.EncodeToString(want[:]) || rep.Quote == "" || rep.Signature == "" {
		t.Fatalf("report %+v", rep)
	}
}
