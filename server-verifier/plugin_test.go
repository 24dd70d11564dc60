package serververifier

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
)

func TestConcurrentAttestations(t *testing.T) {
	// The agents share one simulated TD and the test's cores: every agent
	// with a stream open is challenged at once and quotes in software next
	// to the server, so they run 32 at a time (eight times the verification
	// slots of two cores) with a deadline for a shared, loaded machine. In a
	// fleet each node answers only its own challenge on its own CPU.
	n, h, _ := simSetup(t, sim.InitOptions{}, "", `challenge_timeout = "10m"`)
	const (
		count      = 200
		concurrent = 32
	)
	var wg sync.WaitGroup
	errs := make(chan error, count)
	ids := make(chan string, count)
	turns := make(chan struct{}, concurrent)
	for range count {
		wg.Go(func() {
			turns <- struct{}{}
			defer func() { <-turns }()
			a := n.agent(t, "")
			attrs, err := h.attest(a)
			if err != nil {
				errs <- err
				return
			}
			ids <- attrs.GetSpiffeId()
		})
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Errorf("%d distinct agent IDs for one node", len(seen))
	}
	if got := n.tcbFetches.Load(); got != 1 {
		t.Errorf("TCB info for the one FMSPC fetched %d times, want once", got)
	}
	if got := len(h.logs.Audit(t)); got != count {
		t.Errorf("%d audit lines for %d attestations", got, count)
	}
	if held := h.plugin.budget.held.Load(); held != 0 {
		t.Errorf("%d evidence bytes still counted after every attestation ended", held)
	}
	if busy := len(h.plugin.slots); busy != 0 {
		t.Errorf("%d verification slots still taken after every attestation ended", busy)
	}
}

// TestRejectRuntimeOutsidePolicy is issue 5 item 6: the node's runtime log is replayed
// at every (re-)attestation and a runtime allow-list rejects a node that ran
// something outside it; warn-only, it reports instead.
func TestRejectRuntimeOutsidePolicy(t *testing.T) {
	allowed := bytes.Repeat([]byte{0xa1}, 32)
	outside := bytes.Repeat([]byte{0xb2}, 32)
	policy := func(enforce bool) string {
		return fmt.Sprintf(`require_policy = true
policy "node" {
  enforce = true
  tee     = ["sim"]
}
policy "workloads" {
  enforce = %v
  tee     = ["sim"]
  runtime {
    allowed_exe_sha256 = ["%x"]
    allowed_containers = ["c1"]
  }
}`, enforce, allowed)
	}
	n := newSimNode(t, sim.InitOptions{})
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", strings.Replace(policy(true), `"node"`, `"unused"`, 1)))
	a := n.agent(t, "")
	n.runWorkloads(t, runtimelog.Workload{ExeSHA256: allowed, ExeSHA384: bytes.Repeat([]byte{1}, 48), ContainerID: "c1", ExePath: "/app"})
	attrs, err := h.attest(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"sim:policy:workloads", "sim:policy:unused", "sim:runtime:exe:sha256:" + hex.EncodeToString(allowed)} {
		if !hasSelector(attrs, s) {
			t.Errorf("selector %s missing from %v", s, attrs.GetSelectorValues())
		}
	}

	// The node runs something else; at its next re-attestation it no
	// longer matches.
	n.runWorkloads(t, runtimelog.Workload{ExeSHA256: outside, ExeSHA384: bytes.Repeat([]byte{2}, 48), ContainerID: "c1", ExePath: "/tmp/miner"})
	h2 := newHarness(t, nil).mustConfigure(n.serverConfig("", strings.Replace(policy(true), `enforce = true
  tee     = ["sim"]`, `enforce = true
  tee     = ["tpm"]`, 1)))
	_, err = h2.attest(a)
	h2.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, `policy "workloads": runtime.allowed_exe_sha256: runtime log record 1 ran exe sha256 `+hex.EncodeToString(outside))

	// Warn-only: accepted, with policy_warn and a log line.
	h3 := newHarness(t, nil).mustConfigure(n.serverConfig("", policy(false)))
	attrs, err = h3.attest(a)
	if err != nil {
		t.Fatal(err)
	}
	if !hasSelector(attrs, "sim:policy_warn:workloads") || !hasSelector(attrs, "sim:policy:node") || hasSelector(attrs, "sim:policy:workloads") {
		t.Errorf("selectors %v", attrs.GetSelectorValues())
	}
	warn := h3.logs.Lines(t, "Warn-only policy not met")
	if len(warn) != 1 || warn[0]["policy"] != "workloads" {
		t.Errorf("warn lines %v", warn)
	}
	audit := h3.logs.Audit(t)
	if len(audit) != 1 || !strings.Contains(fmt.Sprint(audit[0]["policies"]), "workloads digest=") {
		t.Errorf("audit %v", audit)
	}
}

func TestConfigure(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	h := newHarness(t, nil)
	// Unconfigured.
	_, err := h.attest(n.agent(t, ""))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unconfigured: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(notPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, td, hcl, want string
	}{
		{"no trust domain", "", `tpm { ek_hash_allow_list = ["` + strings.Repeat("a", 64) + `"] }`, "trust domain"},
		{"bad trust domain", "Example/Org", `tpm { ek_hash_allow_list = ["` + strings.Repeat("a", 64) + `"] }`, "trust domain"},
		{"unknown key", trustDomain, `tpm { ek_hash_allow_list = ["` + strings.Repeat("a", 64) + `"] }` + "\nalow_debug = true", "alow_debug"},
		{"missing root file", trustDomain, `sim { trusted_root_file = "/nonexistent/root.pem" }`, "sim.trusted_root_file"},
		{"not a certificate", trustDomain, fmt.Sprintf(`sim { trusted_root_file = %q }`, notPEM), "PRIVATE KEY"},
		{"no certificate", trustDomain, fmt.Sprintf(`tpm { ek_ca_files = [%q] }`, empty), "no PEM certificate"},
		{"missing tdx roots", trustDomain, `tdx { trusted_roots_file = "/nonexistent.pem" }`, "tdx.trusted_roots_file"},
		{"missing ak roots", trustDomain, `tpm {
  ek_hash_allow_list = ["` + strings.Repeat("a", 64) + `"]
  ak_ca_files = ["/nonexistent.pem"]
}`, "tpm.ak_ca_files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.config.Configure(context.Background(), &configv1.ConfigureRequest{
				CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: tc.td}, HclConfiguration: tc.hcl,
			})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Configure: %v, want InvalidArgument mentioning %q", err, tc.want)
			}
			v, err := h.plugin.Validate(context.Background(), &configv1.ValidateRequest{
				CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: tc.td}, HclConfiguration: tc.hcl,
			})
			if err != nil || v.Valid || len(v.Notes) == 0 {
				t.Errorf("Validate: %v %v", v, err)
			}
		})
	}
	// A failed Configure keeps nothing; a good one applies, and Validate agrees.
	v, err := h.plugin.Validate(context.Background(), &configv1.ValidateRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain}, HclConfiguration: n.serverConfig("", ""),
	})
	if err != nil || !v.Valid {
		t.Fatalf("Validate good config: %v %v", v, err)
	}
	h.mustConfigure(n.serverConfig("", `require_policy = true
policy "w" {
  enforce = false
  tee = ["sim"]
}`))
	if len(h.logs.Lines(t, "Policy requirement cannot be met: require_policy is true but every policy is warn-only: every node will be rejected")) != 1 {
		t.Error("no warning about warn-only policies under require_policy")
	}
	_, err = h.attest(n.agent(t, ""))
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "warn-only")

	// Offline collateral and Intel's PCS build without any network.
	dir := t.TempDir()
	h.mustConfigure(fmt.Sprintf(`tdx { collateral { offline_dir = %q } }`, dir))
	h.mustConfigure(`tdx {}`)
}

func TestAgentPathTemplate(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	const deprecated = "agent_path_template includes /spire/agent: this form is deprecated; write the path after it, as for SPIRE's own attestors (e.g. \"/{{ .PluginName }}/{{ .TEE }}/{{ .ID }}\")"
	for _, tt := range []struct {
		template string
		legacy   bool
	}{
		// SPIRE's form: the path after /spire/agent, .PluginName offered.
		{"/{{ .PluginName }}/nodes/{{ .TEE }}-{{ .ID }}", false},
		// The deprecated full path: accepted, with a warning.
		{"/spire/agent/ccnp/nodes/{{ .TEE }}-{{ .ID }}", true},
	} {
		h := newHarness(t, nil).mustConfigure(n.serverConfig("", `agent_path_template = "`+tt.template+`"`))
		attrs, err := h.attest(n.agent(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := nodeattestorInstanceID(n)
		if want := "spiffe://" + trustDomain + "/spire/agent/ccnp/nodes/sim-" + id; attrs.GetSpiffeId() != want {
			t.Errorf("%s: SPIFFE ID %s, want %s", tt.template, attrs.GetSpiffeId(), want)
		}
		if got := len(h.logs.Lines(t, deprecated)); got != map[bool]int{true: 1}[tt.legacy] {
			t.Errorf("%s: %d deprecation warnings", tt.template, got)
		}
	}
	// Outside SPIRE's namespace for this attestor: refused at Configure,
	// naming the key.
	h := newHarness(t, nil)
	err := h.configure(n.serverConfig("", `agent_path_template = "/spire/agent/ccnp-nodes/{{ .TEE }}-{{ .ID }}"`))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "agent_path_template") || !strings.Contains(err.Error(), "under /spire/agent/ccnp/") {
		t.Errorf("template outside /spire/agent/ccnp/: %v", err)
	}
}

// rawStream drives the plugin with hand-made messages.
func rawStream(t *testing.T, h *harness) nodeattestorv1.NodeAttestor_AttestClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	s, err := h.client.Attest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProtocolErrors(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", `challenge_timeout = "1s"`))

	t.Run("challenge response first", func(t *testing.T) {
		s := rawStream(t, h)
		if err := s.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: []byte{1}}}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Recv()
		h.wantReject(err, codes.InvalidArgument, appraisal.CheckProtocol, "hello payload")
	})
	hello, err := evidence.Encode(evidence.NewHello(&evidencepb.Hello{Tee: "sim", InstanceId: "node1", Caps: []string{evidence.CapLogCCEL}}))
	if err != nil {
		t.Fatal(err)
	}
	start := func(t *testing.T) nodeattestorv1.NodeAttestor_AttestClient {
		s := rawStream(t, h)
		if err := s.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
		if err != nil || len(ch.GetWant()) != 1 || ch.GetWant()[0] != evidencepb.LogKind_LOG_KIND_CCEL {
			t.Fatalf("challenge %v: %v (want only the CCEL the hello offered)", ch, err)
		}
		return s
	}
	t.Run("payload instead of challenge response", func(t *testing.T) {
		s := start(t)
		if err := s.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Recv()
		h.wantReject(err, codes.InvalidArgument, appraisal.CheckProtocol, "challenge response")
	})
	t.Run("no answer", func(t *testing.T) {
		s := start(t)
		_, err := s.Recv()
		h.wantReject(err, codes.DeadlineExceeded, appraisal.CheckProtocol, "challenge_timeout")
	})
	t.Run("agent hangs up", func(t *testing.T) {
		s := start(t)
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		_, err := s.Recv()
		h.wantReject(err, codes.InvalidArgument, appraisal.CheckProtocol, "closed the stream")
	})
	t.Run("tpm not configured", func(t *testing.T) {
		s := rawStream(t, h)
		b, _ := evidence.Encode(evidence.NewHello(&evidencepb.Hello{Tee: "tpm"}))
		if err := s.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: b}}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Recv()
		h.wantReject(err, codes.PermissionDenied, appraisal.CheckTEE, "no tpm block")
	})
	t.Run("evidence of another tee", func(t *testing.T) {
		a := n.agent(t, "")
		a.Mutate = func(e *evidencepb.Evidence) { e.Tee = "tdx" }
		_, err := h.attest(a)
		h.wantReject(err, codes.PermissionDenied, appraisal.CheckTEE, `evidence is for tee "tdx"`)
	})
	t.Run("sim sends tpm evidence", func(t *testing.T) {
		a := n.agent(t, "")
		a.Mutate = func(e *evidencepb.Evidence) {
			e.Quote = nil
			e.Tpm = &evidencepb.TPMEvidence{EkPublic: []byte{1}, AkPublic: []byte{1}, Quote: []byte{1}, Signature: []byte{1}, Pcrs: []*evidencepb.PCRBank{{Alg: 11, Values: map[uint32][]byte{0: make([]byte, 32)}}}}
		}
		_, err := h.attest(a)
		h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload, "tpm evidence")
	})
}

// TestRoundNonce: a round's nonce is fresh until issued+nonce_ttl and not a
// nanosecond later, and a nonce source that returns anything but 32 bytes
// is refused rather than used.
func TestRoundNonce(t *testing.T) {
	now := time.Now()
	good := func() ([]byte, error) { return bytes.Repeat([]byte{1}, evidence.NonceSize), nil }
	n, err := newRoundNonce(good, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.fresh(now.Add(time.Minute)); err != nil {
		t.Errorf("at exactly nonce_ttl: %v", err)
	}
	err = n.fresh(now.Add(time.Minute + time.Nanosecond))
	if !errors.Is(err, errNonceExpired) || !strings.Contains(err.Error(), "nonce_ttl 1m0s") {
		t.Errorf("past nonce_ttl: %v", err)
	}
	for name, src := range map[string]func() ([]byte, error){
		"short":  func() ([]byte, error) { return make([]byte, evidence.NonceSize-1), nil },
		"long":   func() ([]byte, error) { return make([]byte, evidence.NonceSize+1), nil },
		"failed": func() ([]byte, error) { return nil, errors.New("no entropy") },
	} {
		if _, err := newRoundNonce(src, now, time.Minute); err == nil {
			t.Errorf("%s nonce source accepted", name)
		}
	}
}

// TestOfflineCollateral attests with collateral from an offline directory
// and no PCS at all.
func TestOfflineCollateral(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	c, err := pcs.Load(n.dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	off := filepath.Join(t.TempDir(), "collateral")
	if err := pcs.WriteOffline(c, off); err != nil {
		t.Fatal(err)
	}
	n.pcs.Close()
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tdx { collateral { offline_dir = %q } }
sim { trusted_root_file = %q }`, off, filepath.Join(n.dir, sim.RootFile)))
	attrs, err := h.attest(n.agent(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if !hasSelector(attrs, "sim:tcb_status:UpToDate") {
		t.Errorf("selectors %v", attrs.GetSelectorValues())
	}
	// Without the files, an outage: Unavailable, so agents retry.
	h2 := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tdx { collateral { offline_dir = %q } }
sim { trusted_root_file = %q }`, t.TempDir(), filepath.Join(n.dir, sim.RootFile)))
	_, err = h2.attest(n.agent(t, ""))
	h2.wantReject(err, codes.Unavailable, "collateral")
}

func TestRejectionMapping(t *testing.T) {
	for _, tc := range []struct {
		err   error
		code  codes.Code
		check string
	}{
		{&appraisal.Error{Check: "x", Code: appraisal.CodeInvalidEvidence, Err: errors.New("e")}, codes.InvalidArgument, "x"},
		{&appraisal.Error{Check: "x", Code: appraisal.CodeRejected, Err: errors.New("e")}, codes.PermissionDenied, "x"},
		{&appraisal.Error{Check: "x", Code: appraisal.CodeUnavailable, Err: errors.New("e")}, codes.Unavailable, "x"},
		{&appraisal.Error{Check: "x", Code: appraisal.CodeConfig, Err: errors.New("e")}, codes.FailedPrecondition, "x"},
		{&appraisal.Error{Check: "x", Code: 99, Err: errors.New("e")}, codes.Internal, "x"},
		{errors.New("plain"), codes.Internal, "appraisal"},
	} {
		r := appraisalRejection(tc.err)
		if r.code != tc.code || r.check != tc.check {
			t.Errorf("%v: %v %s", tc.err, r.code, r.check)
		}
	}
	r := reject(codes.PermissionDenied, appraisal.CheckNonce, errNonceExpired)
	if !errors.Is(r, errNonceExpired) || status.Code(r) != codes.PermissionDenied {
		t.Errorf("rejection %v does not unwrap or carry its code", r)
	}
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("wrapped: %w", r), codes.PermissionDenied},
		{status.Error(codes.Canceled, "gone"), codes.Canceled},
		{errors.New("plain"), codes.Internal},
	} {
		if got := asRejection(tc.err); got.code != tc.code {
			t.Errorf("asRejection(%v) = %v", tc.err, got.code)
		}
	}
}
