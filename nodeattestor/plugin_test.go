package nodeattestor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// writeRuntimeLog writes a one-record runtime log to path, as the workload
// attestor would, and returns its bytes.
func writeRuntimeLog(t *testing.T, path string) []byte {
	t.Helper()
	rl := runtimelog.New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384)
	exe256 := sha256.Sum256([]byte("workload"))
	exe384 := sha512.Sum384([]byte("workload"))
	if _, err := rl.Append(runtimelog.Workload{ExeSHA256: exe256[:], ExeSHA384: exe384[:], ExePath: "/usr/bin/workload"}); err != nil {
		t.Fatal(err)
	}
	b, err := rl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAttestSim(t *testing.T) {
	tests := []struct {
		compression string
		enc         evidencepb.Encoding
	}{
		{"none", evidencepb.Encoding_ENCODING_NONE},
		{"zstd", evidencepb.Encoding_ENCODING_ZSTD},
		{"gzip", evidencepb.Encoding_ENCODING_GZIP},
	}
	for _, tt := range tests {
		t.Run(tt.compression, func(t *testing.T) {
			simDir, base := newSim(t), t.TempDir()
			runtime := writeRuntimeLog(t, filepath.Join(base, "state", "runtime.cel"))
			l := load(t)
			l.configure(t, simConfig(simDir, base, `compression = "`+tt.compression+`"`))

			s := l.begin(t)
			if err := s.recvHello(); err != nil {
				t.Fatal(err)
			}
			if s.hello.GetTee() != "sim" {
				t.Errorf("hello tee %q", s.hello.GetTee())
			}
			stored := strings.TrimSpace(string(readFile(t, filepath.Join(base, "state", "instance_id"))))
			if s.hello.GetInstanceId() != stored || len(stored) != 32 {
				t.Errorf("hello instance id %q, file holds %q", s.hello.GetInstanceId(), stored)
			}
			for _, c := range []string{evidence.CapLogCCEL, evidence.CapLogRuntime, evidence.CapZstd, evidence.CapGzip} {
				if !slices.Contains(s.hello.GetCaps(), c) {
					t.Errorf("caps %v lack %s", s.hello.GetCaps(), c)
				}
			}
			// The simulator has no IMA list and no TPM.
			for _, c := range []string{evidence.CapLogIMA, evidence.CapLogTPM, evidence.CapCredentialActivation} {
				if slices.Contains(s.hello.GetCaps(), c) {
					t.Errorf("caps %v claim %s", s.hello.GetCaps(), c)
				}
			}

			s.challenge(allLogs, 0)
			if err := s.recvEvidence(); err != nil {
				t.Fatal(err)
			}
			// REPORTDATA, read from the quote by the project's parser and
			// recomputed here with crypto/sha512 directly.
			q, err := tdxquote.Parse(s.ev.GetQuote())
			if err != nil {
				t.Fatalf("quote: %v", err)
			}
			hh := sha256.Sum256(s.helloBytes)
			want := sha512.Sum512(append(slices.Clone(s.nonce), hh[:]...))
			if q.Body.ReportData != want {
				t.Errorf("REPORTDATA %x, want SHA-512(nonce || SHA-256(hello)) %x", q.Body.ReportData, want)
			}
			if s.ev.GetTee() != "sim" || s.ev.GetTpm() != nil {
				t.Errorf("evidence tee %q, tpm %v", s.ev.GetTee(), s.ev.GetTpm())
			}
			// The logs are the bytes on disk, whatever the compression.
			if !bytes.Equal(s.logs.CCEL, readFile(t, filepath.Join(simDir, "sys/firmware/acpi/tables/data/CCEL"))) {
				t.Error("CCEL differs from the simulated TD's")
			}
			if !bytes.Equal(s.ev.GetCcelTable(), readFile(t, filepath.Join(simDir, "sys/firmware/acpi/tables/CCEL"))) {
				t.Error("CCEL table differs from the simulated TD's")
			}
			if !bytes.Equal(s.logs.Runtime, runtime) {
				t.Error("runtime log differs from the file")
			}
			if s.logs.IMA != nil || s.logs.TPM != nil {
				t.Error("logs the simulator does not have were sent")
			}
			for _, lg := range []*evidencepb.Log{s.ev.GetCcel(), s.ev.GetRuntimeLog()} {
				if lg.GetEncoding() != tt.enc {
					t.Errorf("%s log encoding %s, want %s", lg.GetKind(), lg.GetEncoding(), tt.enc)
				}
			}
			if tt.enc != evidencepb.Encoding_ENCODING_NONE && len(s.ev.GetCcel().GetData()) >= len(s.logs.CCEL) {
				t.Errorf("compressed CCEL is %d bytes, raw %d", len(s.ev.GetCcel().GetData()), len(s.logs.CCEL))
			}
			s.end()
			if !strings.Contains(l.logs.String(), "Sent attestation evidence") {
				t.Errorf("no log line for the evidence:\n%s", l.logs)
			}
		})
	}
}

// TestAttestSimWantedLogsOnly: the agent sends what the server wants and
// the config allows, nothing more.
func TestAttestSimWantedLogsOnly(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	writeRuntimeLog(t, filepath.Join(base, "state", "runtime.cel"))
	tests := []struct {
		name        string
		extra       string
		want        []evidencepb.LogKind
		ccel, rtlog bool
	}{
		{"server wants ccel only", "", []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_CCEL}, true, false},
		{"server wants none", "", nil, false, false},
		{"config sends runtime only", `logs = ["runtime"]`, allLogs, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load(t)
			l.configure(t, simConfig(simDir, base, tt.extra))
			s := l.begin(t)
			if err := s.recvHello(); err != nil {
				t.Fatal(err)
			}
			s.challenge(tt.want, 0)
			if err := s.recvEvidence(); err != nil {
				t.Fatal(err)
			}
			if (s.logs.CCEL != nil) != tt.ccel || (s.ev.GetCcelTable() != nil) != tt.ccel || (s.logs.Runtime != nil) != tt.rtlog {
				t.Errorf("ccel sent %v, runtime sent %v; want %v, %v", s.logs.CCEL != nil, s.logs.Runtime != nil, tt.ccel, tt.rtlog)
			}
			s.end()
		})
	}
}

// TestAttestSimNoRuntimeLog: before the workload attestor has written
// anything there is no runtime log; attestation goes on without it.
func TestAttestSimNoRuntimeLog(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	l := load(t)
	l.configure(t, simConfig(simDir, base, ""))
	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	s.challenge(allLogs, 0)
	if err := s.recvEvidence(); err != nil {
		t.Fatal(err)
	}
	if s.logs.Runtime != nil || s.logs.CCEL == nil {
		t.Errorf("runtime sent %v, ccel sent %v", s.logs.Runtime != nil, s.logs.CCEL != nil)
	}
	s.end()
	if !strings.Contains(l.logs.String(), "not present on this node") {
		t.Errorf("no warning for the missing runtime log:\n%s", l.logs)
	}
}

// TestInstanceIDPersisted: the first attestation creates the ID (0600), the
// next ones, also from a restarted plugin, reuse it.
func TestInstanceIDPersisted(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	idPath := filepath.Join(base, "state", "instance_id")
	var ids []string
	for range 3 {
		l := load(t) // a fresh plugin each time: a restarted agent
		l.configure(t, simConfig(simDir, base, ""))
		s := l.begin(t)
		if err := s.recvHello(); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.hello.GetInstanceId())
		s.challenge(nil, 0)
		if err := s.recvEvidence(); err != nil {
			t.Fatal(err)
		}
		s.end()
	}
	if ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("instance ids %q: want one, reused", ids)
	}
	fi, err := os.Stat(idPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("instance id file mode %v, want 0600", fi.Mode().Perm())
	}
	// A corrupted identity is an error, never silently replaced.
	if err := os.WriteFile(idPath, []byte("not-an-id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := load(t)
	l.configure(t, simConfig(simDir, base, ""))
	s := l.begin(t)
	wantStatus(t, s.recvHello(), codes.Internal, "instance id", idPath)
	if got := string(readFile(t, idPath)); got != "not-an-id\n" {
		t.Errorf("corrupt instance id file was rewritten to %q", got)
	}
}

func TestPayloadLimit(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	l := load(t)
	l.configure(t, simConfig(simDir, base, ""))
	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	s.challenge(allLogs, 1024)
	_, err := s.recvResponse()
	wantStatus(t, err, codes.ResourceExhausted, "evidence", "at most 1024")
}

func TestNotConfigured(t *testing.T) {
	l := load(t)
	s := l.begin(t)
	wantStatus(t, s.recvHello(), codes.FailedPrecondition, "not configured")
}

func TestConfigureErrors(t *testing.T) {
	tests := []struct {
		name  string
		hcl   string
		parts []string
	}{
		{"unknown key", `compresion = "gzip"`, []string{`unknown key "compresion"`, `"compression"`}},
		{"unknown nested key", "tpm {\n  handle = 1\n}", []string{`unknown key "handle" in tpm`}},
		{"bad tee", `tee = "sgx"`, []string{"tee", `"sgx"`}},
		{"bad compression", `compression = "lz4"`, []string{"compression", `"lz4"`}},
		{"sim without dir", `tee = "sim"`, []string{`tee = "sim" needs sim`}},
		{"bad log", `logs = ["ccel", "dmesg"]`, []string{"logs[1]", `"dmesg"`}},
		{"unsupported device path", `tdx { device_path = "/dev/tdx-guest" }`, []string{"tdx.device_path", "not supported"}},
		{"unsupported configfs path", `tdx { configfs_tsm_path = "/cfg/tsm/report" }`, []string{"tdx.configfs_tsm_path", "not supported"}},
		{"not hcl", `tee = "tdx`, []string{"plugin_data"}},
	}
	l := load(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.cfg.Configure(context.Background(), &configv1.ConfigureRequest{HclConfiguration: tt.hcl})
			wantStatus(t, err, codes.InvalidArgument, tt.parts...)
			v, err := l.cfg.Validate(context.Background(), &configv1.ValidateRequest{HclConfiguration: tt.hcl})
			if err != nil {
				t.Fatal(err)
			}
			if v.GetValid() || len(v.GetNotes()) == 0 || !strings.Contains(v.GetNotes()[0], tt.parts[0]) {
				t.Errorf("Validate = %v", v)
			}
		})
	}
	// A failed Configure leaves the plugin as it was: here, unconfigured.
	s := l.begin(t)
	wantStatus(t, s.recvHello(), codes.FailedPrecondition, "not configured")

	v, err := l.cfg.Validate(context.Background(), &configv1.ValidateRequest{HclConfiguration: `tee = "tpm"`})
	if err != nil || !v.GetValid() {
		t.Errorf("Validate(valid) = %v, %v", v, err)
	}
}

// TestFailedReconfigureKeepsConfig: a bad Configure after a good one keeps
// the good one in force.
func TestFailedReconfigureKeepsConfig(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	l := load(t)
	l.configure(t, simConfig(simDir, base, ""))
	if _, err := l.cfg.Configure(context.Background(), &configv1.ConfigureRequest{HclConfiguration: `tee = "nope"`}); err == nil {
		t.Fatal("bad config accepted")
	}
	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	if s.hello.GetTee() != "sim" {
		t.Errorf("tee %q after a failed reconfigure", s.hello.GetTee())
	}
}

func TestOpenFailure(t *testing.T) {
	root := t.TempDir() // a host with neither TDX nor TPM
	tests := []struct {
		name  string
		hcl   string
		parts []string
	}{
		{"tdx", `tee = "tdx"` + "\nhost_root = \"" + root + "\"", []string{"open tee tdx", "configfs-tsm", "TDREPORT device", root}},
		{"tpm", `tee = "tpm"` + "\ntpm { device = \"" + filepath.Join(root, "tpm0") + "\" }", []string{"open tee tpm", filepath.Join(root, "tpm0")}},
		{"auto", "host_root = \"" + root + "\"\ntpm { device = \"/dev/ccnp-no-such-tpm\" }", []string{"open tee auto", "tdx:", "tpm:", "no-such-tpm", "simulator is only used with tee = sim"}},
		{"sim", "tee = \"sim\"\nsim { dir = \"" + root + "\" }", []string{"open tee sim", root}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load(t)
			l.configure(t, tt.hcl)
			s := l.begin(t)
			wantStatus(t, s.recvHello(), codes.Unavailable, tt.parts...)
			if !strings.Contains(l.logs.String(), "Node attestation failed") {
				t.Errorf("no log line for the failure:\n%s", l.logs)
			}
		})
	}
}

// TestServerMisbehaves: the server side ends or breaks the exchange; the
// plugin fails cleanly, saying at which step.
func TestServerMisbehaves(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	tests := []struct {
		name  string
		act   func(s *server)
		code  codes.Code
		parts []string
	}{
		{"closes after hello", func(s *server) {
			if err := s.stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
		}, codes.Aborted, []string{"receive nonce challenge", "closed the stream before sending a challenge"}},
		{"garbage challenge", func(s *server) { s.sendRaw([]byte("hello?")) }, codes.InvalidArgument, []string{"receive nonce challenge", "malformed"}},
		{"empty challenge", func(s *server) { s.sendRaw(nil) }, codes.InvalidArgument, []string{"receive nonce challenge"}},
		{"evidence instead of a challenge", func(s *server) {
			s.send(evidence.NewHello(&evidencepb.Hello{Tee: "tdx"}))
		}, codes.InvalidArgument, []string{"receive nonce challenge", "hello"}},
		{"short nonce", func(s *server) {
			b, err := evidence.Encode(evidence.NewChallenge(&evidencepb.Challenge{Nonce: make([]byte, 32)}))
			if err != nil {
				t.Fatal(err)
			}
			// Cut the nonce field's length and content down by hand: 31 bytes.
			i := bytes.Index(b, append([]byte{0x0a, 32}, make([]byte, 32)...))
			if i < 0 {
				t.Fatalf("nonce field not found in %x", b)
			}
			b = append(b[:i:i], append([]byte{0x0a, 31}, b[i+2+1:]...)...)
			b[3]-- // the challenge message's own length
			s.sendRaw(b)
		}, codes.InvalidArgument, []string{"challenge.nonce", "31 bytes"}},
		{"activation before evidence", func(s *server) {
			s.send(evidence.NewChallenge(&evidencepb.Challenge{CredentialBlob: []byte{1}, EncryptedSecret: []byte{2}}))
		}, codes.InvalidArgument, []string{"credential activation challenge before any evidence"}},
		{"oversized challenge", func(s *server) {
			s.sendRaw(make([]byte, 65<<10))
		}, codes.InvalidArgument, []string{"receive nonce challenge", "above the limit of 65536"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load(t)
			l.configure(t, simConfig(simDir, base, ""))
			s := l.begin(t)
			if err := s.recvHello(); err != nil {
				t.Fatal(err)
			}
			tt.act(s)
			_, err := s.recvResponse()
			wantStatus(t, err, tt.code, tt.parts...)
		})
	}
}

// TestProductionBuildRefusesSim: an agent plugin built without the simulator
// (the production binary) refuses tee = "sim" at Configure, naming the key,
// instead of failing at every attestation. Tests always link the simulator,
// so the production build is stood in for by simAvailable.
func TestProductionBuildRefusesSim(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	l := load(t)
	l.configure(t, simConfig(simDir, base, "")) // linked: accepted
	t.Cleanup(nodeattestor.SetSimAvailable(func() bool { return false }))
	l2 := load(t)
	_, err := l2.cfg.Configure(context.Background(), &configv1.ConfigureRequest{HclConfiguration: simConfig(simDir, base, "")})
	wantStatus(t, err, codes.InvalidArgument, `plugin_data: tee: "sim"`, "without the simulated TEE", "ccnp_sim")
}
