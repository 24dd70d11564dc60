package serververifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// verifyFuzzer is a configured server plugin with one prepared simulated
// exchange, and an oracle that checks an accepted quote without the
// plugin's code: go-tdx-guest's verify under the simulated root, and
// REPORTDATA recomputed with crypto/sha256 and crypto/sha512.
type verifyFuzzer struct {
	p     *Plugin
	x     exchange
	node  *simNode
	roots *x509.CertPool
	mem   *memGetter
	// mu guards mem and verdicts: the oracle runs inside fuzz workers,
	// which are separate processes, but a test may run seeds in parallel.
	mu sync.Mutex
	// verdicts remembers the oracle's answer per quote: the fuzzer
	// re-accepts the same quote with other logs many times.
	verdicts map[string]error
	// ev is the decoded seed evidence, for the structured target.
	ev *evidencepb.Evidence
}

func newVerifyFuzzer(f testing.TB) *verifyFuzzer {
	f.Helper()
	n := newSimNode(f, sim.InitOptions{})
	// One workload so that the runtime log and RTMR3 are not empty.
	n.runWorkloads(f, runtimelog.Workload{ExeSHA256: bytes.Repeat([]byte{7}, 32), ExeSHA384: bytes.Repeat([]byte{7}, 48), ExePath: "/usr/bin/fuzz", ContainerID: "c0"})
	p := New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  n.serverConfig("", ""),
	}); err != nil {
		f.Fatal(err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(n.dir, sim.RootFile))
	if err != nil {
		f.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		f.Fatal("sim root is not PEM")
	}
	fz := &verifyFuzzer{
		p: p, node: n, roots: roots,
		mem:      &memGetter{next: &collateral.Getter{BaseURL: n.pcs.URL}, seen: map[string]memResponse{}},
		verdicts: map[string]error{},
	}
	fz.x = prepareExchanges(f, n, 1)[0]
	var pl evidencepb.Payload
	if err := proto.Unmarshal(fz.x.evidence, &pl); err != nil {
		f.Fatal(err)
	}
	fz.ev = pl.GetEvidence()
	// The seed must be accepted, or the fuzzer explores nothing deep.
	if accepted, err := fz.attest(fz.x.evidence); !accepted {
		f.Fatalf("seed exchange rejected: %v", err)
	}
	return fz
}

// attest runs one exchange of the prepared hello and ev through
// Plugin.Attest with the prepared nonce.
func (fz *verifyFuzzer) attest(ev []byte) (bool, error) {
	fz.p.newNonce = func() ([]byte, error) { return fz.x.nonce, nil }
	s := &memStream{ctx: context.Background(), in: []*nodeattestorv1.AttestRequest{
		{Request: &nodeattestorv1.AttestRequest_Payload{Payload: fz.x.hello}},
		{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: ev}},
	}}
	err := fz.p.Attest(s)
	if err != nil {
		return false, err
	}
	if len(s.out) == 0 || s.out[len(s.out)-1].GetAgentAttributes() == nil {
		return false, nil
	}
	return true, nil
}

// oracle is the invariant of the server fuzz targets: an accepted payload
// carries a quote whose signature chain go-tdx-guest verifies under the
// simulated root with the same collateral, and whose REPORTDATA is
// SHA-512(nonce || SHA-256(hello)).
func (fz *verifyFuzzer) oracle(ev []byte) error {
	var pl evidencepb.Payload
	if err := proto.Unmarshal(ev, &pl); err != nil {
		return fmt.Errorf("accepted evidence that does not unmarshal: %w", err)
	}
	quote := pl.GetEvidence().GetQuote()
	fz.mu.Lock()
	verdict, seen := fz.verdicts[string(quote)]
	if !seen {
		now := time.Now()
		verdict = verify.RawTdxQuote(quote, &verify.Options{
			TrustedRoots: fz.roots, GetCollateral: true, CheckRevocations: true, Getter: fz.mem,
			Now: &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now},
		})
		fz.verdicts[string(quote)] = verdict
	}
	fz.mu.Unlock()
	if verdict != nil {
		return fmt.Errorf("accepted a quote go-tdx-guest rejects: %w", verdict)
	}
	q, err := abi.QuoteToProto(quote)
	if err != nil {
		return fmt.Errorf("accepted a quote go-tdx-guest cannot parse: %w", err)
	}
	v4, ok := q.(*tdxpb.QuoteV4)
	if !ok {
		return fmt.Errorf("accepted a quote of type %T", q)
	}
	hh := sha256.Sum256(fz.x.hello)
	want := sha512.Sum512(append(bytes.Clone(fz.x.nonce), hh[:]...))
	if got := v4.GetTdQuoteBody().GetReportData(); !bytes.Equal(got, want[:]) {
		return fmt.Errorf("accepted a quote with REPORTDATA %x, want %x", got, want)
	}
	return nil
}

// TestVerifyOracle shows that the fuzz targets' invariant can fail: the
// oracle passes the genuine exchange and refuses a quote with one
// signature byte flipped and a genuine quote made for another nonce.
func TestVerifyOracle(t *testing.T) {
	fz := newVerifyFuzzer(t)
	if err := fz.oracle(fz.x.evidence); err != nil {
		t.Fatalf("oracle refuses the genuine exchange: %v", err)
	}
	flipped := bytes.Clone(fz.ev.GetQuote())
	flipped[len(flipped)-100] ^= 1
	other := prepareExchanges(t, fz.node, 1)[0]
	var pl evidencepb.Payload
	if err := proto.Unmarshal(other.evidence, &pl); err != nil {
		t.Fatal(err)
	}
	for name, quote := range map[string][]byte{
		"signature byte flipped":  flipped,
		"quote for another nonce": pl.GetEvidence().GetQuote(),
		"real Intel quote":        simtest.Testdata(t, "tdx", "cos-113-tdx-quote.dat"),
	} {
		if err := fz.oracle(fz.structured(t, quote, nil, nil, nil, evidencepb.Encoding_ENCODING_NONE)); err == nil {
			t.Errorf("%s: oracle accepts", name)
		}
	}
}

// FuzzVerify is the server's whole verification entry point: evidence
// bytes in, accept or reject out, through Plugin.Attest with a simulated
// root and simulated collateral configured so that well-formed mutations
// reach the quote, collateral and replay checks. Seeds: the simulated
// exchange, re-encodings of it with each log compression, and evidence
// payloads carrying the real TDX quotes of testdata/tdx. Invariant: no
// input is accepted unless go-tdx-guest verifies its quote under the
// simulated root and its REPORTDATA binds the nonce and the hello.
func FuzzVerify(f *testing.F) {
	fz := newVerifyFuzzer(f)
	f.Add(fz.x.evidence)
	f.Add(fz.x.evidence[:len(fz.x.evidence)/2])
	for _, enc := range []evidencepb.Encoding{evidencepb.Encoding_ENCODING_GZIP} {
		f.Add(fz.structured(f, fz.ev.GetQuote(), fz.logs(f).CCEL, fz.logs(f).Runtime, nil, enc))
	}
	for _, name := range []string{"cos-113-tdx-quote.dat", "tdx_prod_quote_SPR_E4.dat"} {
		f.Add(fz.structured(f, simtest.Testdata(f, "tdx", name), nil, nil, nil, evidencepb.Encoding_ENCODING_NONE))
	}
	f.Fuzz(func(t *testing.T, ev []byte) {
		if accepted, _ := fz.attest(ev); accepted {
			if err := fz.oracle(ev); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzVerifyFields fuzzes the evidence's fields rather than its encoding:
// the quote and the three TDX logs are mutated directly and wrapped in a
// well-formed payload with the right binding, so that the fuzzer spends its
// time in the quote parser, the signature and collateral checks and the
// CCEL, IMA and runtime log replays. Same invariant as FuzzVerify.
func FuzzVerifyFields(f *testing.F) {
	fz := newVerifyFuzzer(f)
	logs := fz.logs(f)
	// The CCEL area is 256 KiB, almost all of it 0xFF padding: the seed
	// is the events only, and the target pads it back, so that the mutator
	// works on the events rather than on the padding.
	area := len(logs.CCEL)
	events := bytes.TrimRight(logs.CCEL, "\xff")
	ima := simtest.Testdata(f, "ima", "cgpath.bin")
	f.Add(fz.ev.GetQuote(), events, logs.Runtime, []byte(nil), uint8(0))
	f.Add(fz.ev.GetQuote(), events, logs.Runtime, ima, uint8(1))
	f.Add(fz.ev.GetQuote(), events[:1024], []byte(nil), []byte(nil), uint8(2))
	f.Add(simtest.Testdata(f, "tdx", "cos-113-tdx-quote.dat"), bytes.TrimRight(simtest.Testdata(f, "tdx", "ccel_data.dat"), "\xff"), []byte(nil), []byte(nil), uint8(0))
	f.Fuzz(func(t *testing.T, quote, ccel, runtime, ima []byte, enc uint8) {
		e := evidencepb.Encoding(int(enc) % 3)
		if len(ccel) > 0 && len(ccel) < area {
			ccel = append(bytes.Clone(ccel), bytes.Repeat([]byte{0xff}, area-len(ccel))...)
		}
		ev := fz.structured(t, quote, ccel, runtime, ima, e)
		if ev == nil {
			return
		}
		if accepted, _ := fz.attest(ev); accepted {
			if err := fz.oracle(ev); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// logs are the seed's decompressed logs.
func (fz *verifyFuzzer) logs(t testing.TB) *evidence.Logs {
	t.Helper()
	l, err := evidence.DecompressLogs(fz.ev, evidence.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// structured encodes sim evidence with the given quote and logs, the seed's
// CCEL table and the right binding; nil when a log cannot be compressed.
func (fz *verifyFuzzer) structured(t testing.TB, quote, ccel, runtime, ima []byte, enc evidencepb.Encoding) []byte {
	t.Helper()
	binding := evidence.Binding(fz.x.nonce, fz.x.hello)
	e := &evidencepb.Evidence{Tee: "sim", Binding: binding[:], Quote: quote, CcelTable: fz.ev.GetCcelTable()}
	for _, l := range []struct {
		dst  **evidencepb.Log
		kind evidencepb.LogKind
		b    []byte
	}{
		{&e.Ccel, evidencepb.LogKind_LOG_KIND_CCEL, ccel},
		{&e.RuntimeLog, evidencepb.LogKind_LOG_KIND_RUNTIME, runtime},
		{&e.ImaLog, evidencepb.LogKind_LOG_KIND_IMA, ima},
	} {
		if len(l.b) == 0 {
			continue
		}
		c, err := evidence.CompressLog(l.kind, l.b, enc)
		if err != nil {
			return nil
		}
		*l.dst = c
	}
	b, err := proto.Marshal(evidence.NewEvidence(e))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
