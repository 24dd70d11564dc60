package nodeattestor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
)

// fakeTDX is a TDX provider whose every answer the test chooses, for the
// paths no simulator reaches: IMA on TDX, failing devices, a provider that
// gets REPORTDATA wrong.
type fakeTDX struct {
	reportErr   error
	badData     bool
	noQuote     bool
	ccelErr     error
	imaErr      error
	ima         []byte
	table, ccel []byte
}

func (f *fakeTDX) TEE() cctrusted.TEE { return cctrusted.TEETDX }
func (f *fakeTDX) DefaultAlgorithm(context.Context) (cctrusted.Algorithm, error) {
	return cctrusted.AlgSHA384, nil
}
func (f *fakeTDX) MeasurementCount(context.Context) (int, error) { return 4, nil }
func (f *fakeTDX) Measurement(context.Context, cctrusted.IMR, cctrusted.Algorithm) (cctrusted.Digest, error) {
	return cctrusted.Digest{}, errors.New("not used")
}
func (f *fakeTDX) EventLog(context.Context, int, int) ([]cctrusted.Event, error) { return nil, nil }
func (f *fakeTDX) Report(_ context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	if f.reportErr != nil {
		return nil, f.reportErr
	}
	rd := cctrusted.ReportData(nonce, userData)
	if f.badData {
		rd[0] ^= 1
	}
	r := &cctrusted.Report{TEE: cctrusted.TEETDX, ReportData: rd[:], Quote: []byte("quote")}
	if f.noQuote {
		r.Quote = nil
	}
	return r, nil
}
func (f *fakeTDX) RawCCEL(context.Context) ([]byte, []byte, error) {
	return f.table, f.ccel, f.ccelErr
}
func (f *fakeTDX) RawIMA(context.Context) ([]byte, error) { return f.ima, f.imaErr }

func tdxConfig(t *testing.T, extra string) *conf.AgentNodeAttestor {
	t.Helper()
	base := t.TempDir()
	c, err := conf.ParseAgentNodeAttestor(fmt.Sprintf("tee = \"tdx\"\ninstance_id_path = %q\nruntime_log_path = %q\n%s",
		filepath.Join(base, "id"), filepath.Join(base, "runtime.cel"), extra))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func nonceChallenge(t *testing.T, want ...evidencepb.LogKind) *evidencepb.Challenge {
	t.Helper()
	n, err := evidence.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	return &evidencepb.Challenge{Nonce: n, Want: want}
}

func TestCollectTDX(t *testing.T) {
	ctx := context.Background()
	f := &fakeTDX{table: []byte("table"), ccel: bytes.Repeat([]byte("ccel"), 100), ima: bytes.Repeat([]byte("ima"), 100)}
	cfg := tdxConfig(t, "")
	hb, err := nodeattestor.Hello(ctx, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := evidence.DecodeHello(hb, evidence.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if h.GetTee() != "tdx" || len(h.GetInstanceId()) != 32 {
		t.Errorf("hello %v", h)
	}
	ch := nonceChallenge(t, allLogs...)
	p, err := nodeattestor.Collect(ctx, f, cfg, hb, ch)
	if err != nil {
		t.Fatal(err)
	}
	ev := p.GetEvidence()
	if err := evidence.CheckBinding(ev.GetBinding(), ch.GetNonce(), hb); err != nil {
		t.Fatal(err)
	}
	logs, err := evidence.DecompressLogs(ev, evidence.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(logs.CCEL, f.ccel) || !bytes.Equal(logs.IMA, f.ima) || !bytes.Equal(ev.GetCcelTable(), f.table) || logs.TPM != nil {
		t.Errorf("logs %+v", logs)
	}
	if string(ev.GetQuote()) != "quote" {
		t.Errorf("quote %q", ev.GetQuote())
	}
}

func TestCollectTDXErrors(t *testing.T) {
	configfsErr := errors.New("configfs-tsm: write inblob: no such device")
	tests := []struct {
		name  string
		f     *fakeTDX
		code  codes.Code
		parts []string
	}{
		{"report fails", &fakeTDX{reportErr: configfsErr}, codes.Unavailable, []string{"tdx report: configfs-tsm: write inblob"}},
		{"report data wrong", &fakeTDX{badData: true}, codes.Internal, []string{"tdx report:", "is not the binding"}},
		{"no quote", &fakeTDX{noQuote: true}, codes.Internal, []string{"tdx report:", "no quote"}},
		{"ccel unreadable", &fakeTDX{ccelErr: errors.New("tdx: CCEL table: permission denied")}, codes.Internal, []string{"tdx ccel: tdx: CCEL table: permission denied"}},
		{"ima unreadable", &fakeTDX{imaErr: errors.New("tdx: IMA log: read: i/o error")}, codes.Internal, []string{"tdx ima log:", "i/o error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cfg := tdxConfig(t, "")
			hb, err := nodeattestor.Hello(ctx, tt.f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = nodeattestor.Collect(ctx, tt.f, cfg, hb, nonceChallenge(t, allLogs...))
			wantStatus(t, err, tt.code, tt.parts...)
			var e *nodeattestor.Error
			if !errors.As(err, &e) || status.Code(err) != tt.code {
				t.Errorf("%T %v is not an *Error with code %s", err, err, tt.code)
			}
		})
	}
}

// TestCollectMissingLogs: a kernel without IMA or a host without a CCEL
// is not an error: the log is skipped with a warning.
func TestCollectMissingLogs(t *testing.T) {
	var out bytes.Buffer
	ctx := nodeattestor.WithLogger(context.Background(), hclog.New(&hclog.LoggerOptions{Output: &out}))
	notThere := fmt.Errorf("tdx: IMA log: %w", fs.ErrNotExist)
	f := &fakeTDX{ccelErr: fmt.Errorf("tdx: CCEL table: %w", fs.ErrNotExist), imaErr: notThere}
	cfg := tdxConfig(t, "")
	hb, err := nodeattestor.Hello(ctx, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := nodeattestor.Collect(ctx, f, cfg, hb, nonceChallenge(t, allLogs...))
	if err != nil {
		t.Fatal(err)
	}
	if ev := p.GetEvidence(); ev.GetCcel() != nil || ev.GetImaLog() != nil || ev.GetRuntimeLog() != nil {
		t.Errorf("missing logs sent: %v", ev)
	}
	for _, l := range []string{"log=ccel", "log=ima", "log=runtime"} {
		if !strings.Contains(out.String(), l) {
			t.Errorf("no warning with %s:\n%s", l, out.String())
		}
	}
}

// TestCollectWantNotConfigured: the config has the last word; the server is
// told in the agent's log why a log it wanted is missing.
func TestCollectWantNotConfigured(t *testing.T) {
	var out bytes.Buffer
	ctx := nodeattestor.WithLogger(context.Background(), hclog.New(&hclog.LoggerOptions{Output: &out}))
	f := &fakeTDX{table: []byte("t"), ccel: []byte("c"), ima: []byte("i")}
	cfg := tdxConfig(t, `logs = ["ccel"]`)
	hb, err := nodeattestor.Hello(ctx, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := nodeattestor.Collect(ctx, f, cfg, hb, nonceChallenge(t, evidencepb.LogKind_LOG_KIND_IMA, evidencepb.LogKind_LOG_KIND_CCEL))
	if err != nil {
		t.Fatal(err)
	}
	if p.GetEvidence().GetImaLog() != nil || p.GetEvidence().GetCcel() == nil {
		t.Errorf("evidence %v", p.GetEvidence())
	}
	if !strings.Contains(out.String(), "configured not to send") || !strings.Contains(out.String(), "log=ima") {
		t.Errorf("no warning:\n%s", out.String())
	}
}

func TestCollectBadInput(t *testing.T) {
	ctx := context.Background()
	f := &fakeTDX{}
	cfg := tdxConfig(t, "")
	if _, err := nodeattestor.Hello(ctx, f, nil); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Hello(nil config) = %v", err)
	}
	if _, err := nodeattestor.Collect(ctx, f, nil, nil, nonceChallenge(t)); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Collect(nil config) = %v", err)
	}
	for _, ch := range []*evidencepb.Challenge{nil, {}, {Nonce: make([]byte, 31)}, {Nonce: make([]byte, 33)}} {
		_, err := nodeattestor.Collect(ctx, f, cfg, []byte("hello"), ch)
		wantStatus(t, err, codes.InvalidArgument, "challenge: nonce")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := nodeattestor.Hello(cctx, f, cfg); status.Code(err) != codes.Canceled {
		t.Errorf("Hello(cancelled) = %v", err)
	}
}

func TestActivateRejects(t *testing.T) {
	ctx := context.Background()
	f := &fakeTDX{}
	tests := []struct {
		name  string
		ch    *evidencepb.Challenge
		parts []string
	}{
		{"nonce challenge", nonceChallenge(t), []string{"not a credential activation challenge"}},
		{"blob only", &evidencepb.Challenge{CredentialBlob: []byte{1}}, []string{"not a credential activation challenge"}},
		{"not a TPM", &evidencepb.Challenge{CredentialBlob: []byte{1}, EncryptedSecret: []byte{2}}, []string{"asked of a tdx node"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := nodeattestor.Activate(ctx, f, tt.ch)
			wantStatus(t, err, codes.InvalidArgument, tt.parts...)
		})
	}
}
