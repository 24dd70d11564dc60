package sim

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/collateral"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/verify"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

// RTMR0..2 that the real cos-113 TDX VM's quote signed (go-tdx-guest
// testing/testdata/ccel/cos-113-tdx-quote.dat, quote offsets 376/424/472, read out
// with python3). The embedded CCEL is that VM's log, so a sim booted with it must
// start with exactly these values.
var cos113RTMR = [3]string{
	"3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
	"f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1",
	"4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
}

func newSim(t testing.TB, opts InitOptions) *Provider {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sim")
	if err := Init(dir, opts); err != nil {
		t.Fatalf("Init: %v", err)
	}
	p, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return p
}

func simRoots(t testing.TB, p *Provider) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(p.Dir(), RootFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, p.RootPEM()) || !pool.AppendCertsFromPEM(b) {
		t.Fatal("root.pem differs from RootPEM or holds no certificate")
	}
	return pool
}

func timeSet(t time.Time) *verify.TimeSet {
	return &verify.TimeSet{PckCertChain: t, TcbInfo: t, QeIdentity: t, PckCrl: t, RootCaCrl: t}
}

func report(t testing.TB, p *Provider) (*cctrusted.Report, []byte, []byte) {
	t.Helper()
	nonce := bytes.Repeat([]byte{0xab}, 32)
	ud := []byte("user data")
	r, err := p.Report(context.Background(), nonce, ud)
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	return r, nonce, ud
}

func TestReportVerifiesOnlyUnderSimRoot(t *testing.T) {
	p := newSim(t, InitOptions{})
	if p.TEE() != cctrusted.TEESim {
		t.Fatalf("TEE() = %q", p.TEE())
	}
	r, nonce, ud := report(t, p)
	if r.TEE != cctrusted.TEESim {
		t.Fatalf("report TEE = %q", r.TEE)
	}
	want := sha512.Sum512(append(append([]byte{}, nonce...), ud...))
	if !bytes.Equal(r.Quote[568:632], want[:]) || !bytes.Equal(r.ReportData, want[:]) {
		t.Fatalf("REPORTDATA %x, want SHA-512(nonce || user data) %x", r.Quote[568:632], want)
	}
	if got := string(r.Quote[12:28]); got != "CCNP-SIM-NOTINTL" {
		t.Errorf("QE vendor ID %q", got)
	}
	now := time.Now()
	flipped := bytes.Clone(r.Quote)
	flipped[424+7] ^= 0x80 // RTMR1
	for _, tc := range []struct {
		name  string
		quote []byte
		roots *x509.CertPool
		ok    bool
	}{
		{"sim root", r.Quote, simRoots(t, p), true},
		{"default Intel root", r.Quote, nil, false},
		{"flipped RTMR byte", flipped, simRoots(t, p), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verify.RawTdxQuote(tc.quote, &verify.Options{TrustedRoots: tc.roots, Now: timeSet(now)})
			if (err == nil) != tc.ok {
				t.Fatalf("RawTdxQuote: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestCollateralFromSimPCS(t *testing.T) {
	for _, tc := range []struct {
		status string
		ok     bool
	}{
		{"UpToDate", true},
		{"OutOfDate", false},
		{"ConfigurationNeeded", false},
	} {
		t.Run(tc.status, func(t *testing.T) {
			p := newSim(t, InitOptions{TCBStatus: tc.status})
			srv := httptest.NewServer(pcs.Handler(p.Dir()))
			defer srv.Close()
			r, _, _ := report(t, p)
			err := verify.RawTdxQuote(r.Quote, &verify.Options{
				GetCollateral:    true,
				CheckRevocations: true,
				Getter:           &collateral.Getter{BaseURL: srv.URL, Client: srv.Client()},
				TrustedRoots:     simRoots(t, p),
				Now:              timeSet(time.Now()),
			})
			if (err == nil) != tc.ok {
				t.Fatalf("RawTdxQuote with collateral: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "TCB") {
				t.Fatalf("failure does not name the TCB check: %v", err)
			}
		})
	}
}

func TestRevokedPCKFails(t *testing.T) {
	p := newSim(t, InitOptions{})
	if err := pcs.WriteParams(p.Dir(), pcs.Params{TCBStatus: "UpToDate", RevokePCK: true}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(pcs.Handler(p.Dir()))
	defer srv.Close()
	r, _, _ := report(t, p)
	err := verify.RawTdxQuote(r.Quote, &verify.Options{
		GetCollateral: true, CheckRevocations: true,
		Getter:       &collateral.Getter{BaseURL: srv.URL, Client: srv.Client()},
		TrustedRoots: simRoots(t, p), Now: timeSet(time.Now()),
	})
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked PCK: %v", err)
	}
}

func TestDebugAttribute(t *testing.T) {
	for _, debug := range []bool{false, true} {
		p := newSim(t, InitOptions{Debug: debug})
		r, _, _ := report(t, p)
		if got := r.Quote[48+120]&1 != 0; got != debug {
			t.Errorf("Debug=%v: td_attributes bit 0 = %v", debug, got)
		}
		s, err := p.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.Debug() != debug {
			t.Errorf("Debug=%v: State.Debug() = %v", debug, s.Debug())
		}
	}
}

func TestRTMRsReplayFromCCEL(t *testing.T) {
	p := newSim(t, InitOptions{})
	ctx := context.Background()
	mrtd, rtmr, err := p.Measurements(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mrtd[:], DefaultMRTD()) {
		t.Errorf("MRTD %x", mrtd)
	}
	for i, want := range cos113RTMR {
		if got := hex.EncodeToString(rtmr[i][:]); got != want {
			t.Errorf("RTMR%d = %s, want the real VM's %s", i, got, want)
		}
	}
	if rtmr[3] != [48]byte{} {
		t.Errorf("RTMR3 = %x, want zeros", rtmr[3])
	}
	table, log, err := p.RawCCEL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventlog.VerifyCCEL(table, log, [3][]byte{rtmr[0][:], rtmr[1][:], rtmr[2][:]}); err != nil {
		t.Fatalf("VerifyCCEL of the sim's own CCEL: %v", err)
	}
	// The quote carries the same registers as the TDREPORT.
	r, _, _ := report(t, p)
	for i := range rtmr {
		if !bytes.Equal(r.Quote[376+48*i:424+48*i], rtmr[i][:]) {
			t.Errorf("quote RTMR%d differs from TDREPORT", i)
		}
	}
	// Extending RTMR2 breaks the replay, as it would on hardware.
	if err := p.ExtendRTMR(ctx, 2, [48]byte{1}); err != nil {
		t.Fatal(err)
	}
	_, rtmr, err = p.Measurements(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mm *cctrusted.MismatchError
	if _, err := eventlog.VerifyCCEL(table, log, [3][]byte{rtmr[0][:], rtmr[1][:], rtmr[2][:]}); !errors.As(err, &mm) {
		t.Fatalf("VerifyCCEL after extending RTMR2: %v, want a MismatchError", err)
	}
}

func TestInitWithOwnCCEL(t *testing.T) {
	log, table := DefaultCCEL()
	// Without a table, Init makes one that the verifier's table parser accepts.
	p := newSim(t, InitOptions{CCEL: log})
	tbl, _, err := p.RawCCEL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pt, err := eventlog.ParseCCELTable(tbl)
	if err != nil {
		t.Fatalf("generated table: %v", err)
	}
	if pt.LAML != uint64(len(log)) || pt.CCType != eventlog.CCTypeTDX {
		t.Fatalf("generated table %+v", pt)
	}
	_ = table
}

func TestInitRejects(t *testing.T) {
	log, table := DefaultCCEL()
	for name, opts := range map[string]InitOptions{
		"unknown TCB status": {TCBStatus: "Fine"},
		"short MRTD":         {MRTD: make([]byte, 47)},
		"table without log":  {CCELTable: table},
		"garbage CCEL":       {CCEL: []byte("garbage")},
		"truncated CCEL":     {CCEL: log[:1000], CCELTable: table},
		"table too small":    {CCEL: log, CCELTable: makeCCELTable(100)},
	} {
		t.Run(name, func(t *testing.T) {
			if err := Init(filepath.Join(t.TempDir(), "sim"), opts); err == nil {
				t.Fatal("Init accepted it")
			}
		})
	}
	dir := filepath.Join(t.TempDir(), "sim")
	if err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, InitOptions{}); err == nil {
		t.Fatal("Init over an existing sim succeeded")
	}
	if _, err := Open(context.Background(), t.TempDir()); err == nil || !strings.Contains(err.Error(), StateFile) {
		t.Fatalf("Open of an empty dir: %v", err)
	}
}

func TestExtendRTMR(t *testing.T) {
	p := newSim(t, InitOptions{})
	ctx := context.Background()
	for _, idx := range []int{0, 1, 4, -1} {
		if err := p.ExtendRTMR(ctx, idx, [48]byte{}); err == nil {
			t.Errorf("extend of RTMR%d accepted", idx)
		}
	}
	// The store refuses them too, whoever calls it.
	if err := (&extender{st: p.st}).ExtendRTMR(ctx, 1, [48]byte{}); err == nil {
		t.Error("store extended RTMR1")
	}
	d := sha512.Sum384([]byte("workload"))
	if err := p.ExtendRTMR(ctx, 3, d); err != nil {
		t.Fatal(err)
	}
	got, err := p.Measurement(ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	if err != nil {
		t.Fatal(err)
	}
	want := sha512.Sum384(append(make([]byte, 48), d[:]...))
	if !bytes.Equal(got.Value, want[:]) {
		t.Fatalf("RTMR3 = %x, want SHA-384(zeros || d) = %x", got.Value, want)
	}
}

// chain returns n extends of d into a zero register, computed without the sim.
func chain(d [48]byte, n int) []byte {
	v := make([]byte, 48)
	for range n {
		s := sha512.Sum384(append(v, d[:]...))
		v = s[:]
	}
	return v
}

const (
	helperEnvDir = "CCNP_SIM_TEST_EXTEND_DIR"
	helperEnvN   = "CCNP_SIM_TEST_EXTEND_N"
)

var concurrentDigest = sha512.Sum384([]byte("concurrent"))

// TestHelperExtend is not a test: TestConcurrentExtend runs the test binary with it
// to extend RTMR3 from another process.
func TestHelperExtend(t *testing.T) {
	dir := os.Getenv(helperEnvDir)
	if dir == "" {
		t.Skip("helper process only")
	}
	n, err := strconv.Atoi(os.Getenv(helperEnvN))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := p.ExtendRTMR(context.Background(), 3, concurrentDigest); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentExtend(t *testing.T) {
	p := newSim(t, InitOptions{})
	const perWorker = 25
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 2 { // goroutines of this process
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				if err := p.ExtendRTMR(ctx, 3, concurrentDigest); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 2 { // other processes
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperExtend$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnvDir+"="+p.Dir(), helperEnvN+"="+strconv.Itoa(perWorker))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("helper process: %v\n%s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := p.Measurement(ctx, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	if err != nil {
		t.Fatal(err)
	}
	if want := chain(concurrentDigest, 4*perWorker); !bytes.Equal(got.Value, want) {
		t.Fatalf("RTMR3 after %d concurrent extends = %x, want %x (an update was lost)", 4*perWorker, got.Value, want)
	}
}

func TestParseState(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseState(good); err != nil {
		t.Fatalf("testdata/state.json: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"garbage":       []byte("\x00garbage"),
		"truncated":     good[:len(good)/2],
		"oversized":     bytes.Repeat([]byte(" "), maxStateFile+1),
		"no marker":     bytes.Replace(good, []byte(SimulatedMarker), []byte("real TDX"), 1),
		"wrong version": bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 2`), 1),
		"short mrtd":    bytes.Replace(good, []byte(`"mrtd": "`), []byte(`"mrtd": "00`), 1),
		"bad hex":       bytes.Replace(good, []byte(`"xfam": "`), []byte(`"xfam": "zz`), 1),
		"three rtmrs":   []byte(`{"simulated":"` + SimulatedMarker + `","version":1,"rtmr":["","",""]}`),
		"wrong type":    []byte(`{"version":"1"}`),
	} {
		if _, err := ParseState(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseState(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "state.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(b)
		if err == nil {
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted invalid state: %v", err)
			}
			_ = s.quoteBody()
		}
	})
}

// TestInitState compares the state a default Init writes with testdata/state.json,
// which python3 wrote (hashlib.sha384 for the MRTD label, RTMR0..2 from the real
// cos-113 quote), not this package.
func TestInitState(t *testing.T) {
	p := newSim(t, InitOptions{})
	got, err := os.ReadFile(filepath.Join(p.Dir(), StateFile))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	gs, err := ParseState(got)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := ParseState(want)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gs) != fmt.Sprint(ws) {
		t.Fatalf("Init wrote\n%s\nwant\n%s", got, want)
	}
}

// TestEventLogReplaysToMeasurements is the acceptance check "eventlog --replay equals
// measurements" at the API level: the CCEL events the provider serves, replayed and
// mapped to TDX registers, equal RTMR0..2 of a fresh TDREPORT.
func TestEventLogReplaysToMeasurements(t *testing.T) {
	p := newSim(t, InitOptions{})
	ctx := context.Background()
	events, err := p.EventLog(ctx, 0, 0)
	if err != nil && strings.Contains(err.Error(), "not wired") {
		t.Skipf("tee/tdx does not serve events yet: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	regs, err := cctrusted.Replay(events)
	if err != nil {
		t.Fatal(err)
	}
	_, rtmr, err := p.Measurements(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[cctrusted.IMR][]byte{}
	for imr, banks := range regs {
		m, err := imr.TDX()
		if err != nil {
			t.Fatalf("event register %v: %v", imr, err)
		}
		if v, ok := banks[cctrusted.AlgSHA384]; ok {
			got[m] = v
		}
	}
	for i := range 3 {
		if !bytes.Equal(got[cctrusted.RTMR(i).IMR()], rtmr[i][:]) {
			t.Errorf("RTMR%d: events replay to %x, TDREPORT says %x", i, got[cctrusted.RTMR(i).IMR()], rtmr[i])
		}
	}
}

func BenchmarkReport(b *testing.B) {
	p := newSim(b, InitOptions{})
	ctx := context.Background()
	nonce := make([]byte, 32)
	for b.Loop() {
		if _, err := p.Report(ctx, nonce, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtendRTMR3(b *testing.B) {
	p := newSim(b, InitOptions{})
	ctx := context.Background()
	for b.Loop() {
		if err := p.ExtendRTMR(ctx, 3, concurrentDigest); err != nil {
			b.Fatal(err)
		}
	}
}
