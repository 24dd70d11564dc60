package serververifier

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// azureVM is an Azure TDX confidential VM built from this project's parts,
// without Azure and without depending on a paravisor simulator: a swtpm is
// its vTPM (an RSA attestation key, the real firmware log replayed into its
// PCRs), and its "paravisor" is a TD whose TD quote the simulator's PKI
// signs over SHA-256 of runtime data naming that key, with the HCL report
// laid out as Azure's (azuretdx's parser reads it). Evidence is the wire
// contract's: hello tee azure_tdx, the HCL report, the TD quote, the vTPM
// quote over the binding, the TPM log.
type azureVM struct {
	sim  *simNode
	tpm  *simtest.TPMNode
	vtpm *tpm.Provider
	auth *pki.Authority
	// mrtd is the "paravisor" build; akPub the vTPM AK's TPMT_PUBLIC and
	// ak its key.
	mrtd  [48]byte
	akPub []byte
	ak    *rsa.PublicKey
}

func newAzureVM(t *testing.T) *azureVM {
	t.Helper()
	vm := &azureVM{sim: newSimNode(t, sim.InitOptions{}), tpm: simtest.StartTPMNode(t, nil)}
	var err error
	if vm.auth, err = pki.Load(filepath.Join(vm.sim.dir, pcs.PKIDir)); err != nil {
		t.Fatal(err)
	}
	p := simtest.OpenAgentTEE(t, simtest.AgentConfig(t, vm.tpm.AgentHCL("rsa", "", vm.tpm.Base)))
	vm.vtpm = tee.Unwrap(p).(*tpm.Provider)
	if vm.akPub, err = vm.vtpm.AttestationKeyPublic(); err != nil {
		t.Fatal(err)
	}
	k, err := tpmquote.ParsePublic(vm.akPub)
	if err != nil {
		t.Fatal(err)
	}
	vm.ak = k.(*rsa.PublicKey)
	vm.mrtd = sha512.Sum384([]byte("simulated Azure paravisor build"))
	return vm
}

// azureBlock is the server's azure_tdx block trusting mrtd.
func azureBlock(mrtd [48]byte) string {
	return fmt.Sprintf("azure_tdx {\n  paravisor_mrtds = [%q]\n}\n", hex.EncodeToString(mrtd[:]))
}

// serverConfig accepts this VM's simulated paravisor: tdx (collateral from
// the simulated PCS), sim and azure_tdx blocks.
func (vm *azureVM) serverConfig(extra string) string {
	return vm.sim.serverConfig("", azureBlock(vm.mrtd)+extra)
}

// build says how to make one answer; the zero value is the genuine one.
type build struct {
	// runtimeAK is the key the runtime data names (nil: the vTPM's AK).
	runtimeAK *rsa.PublicKey
	// userData goes into the runtime data, to tell two reports apart.
	userData string
	// mrtd is the TD's MRTD (zero: the VM's paravisor build).
	mrtd [48]byte
}

// parts are one HCL report and the TD quote of its TD report.
type parts struct{ hcl, quote []byte }

// paravisor mints what the paravisor and the platform's quoting enclave
// would: runtime data naming the AK, a TD quote over SHA-256 of it, and
// the HCL report holding that quote's TD report and the runtime data.
func (vm *azureVM) paravisor(t *testing.T, b build) parts {
	t.Helper()
	ak := b.runtimeAK
	if ak == nil {
		ak = vm.ak
	}
	b64 := base64.RawURLEncoding.EncodeToString
	rt, err := json.Marshal(map[string]any{
		"keys": []map[string]any{{
			"kid": azuretdx.AKKeyID, "kty": "RSA", "key_ops": []string{"sign"},
			"n": b64(ak.N.Bytes()), "e": b64(big.NewInt(int64(ak.E)).Bytes()),
		}},
		"vm-configuration": map[string]any{"secure-boot": true, "tpm-enabled": true, "console-enabled": false, "vmUniqueId": "00000000-0000-0000-0000-000000000001"},
		"user-data":        hex.EncodeToString([]byte(b.userData)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	sum := sha256.Sum256(rt)
	copy(rd[:], sum[:])
	body := pki.TDQuoteBody{MRTD: vm.mrtd}
	if b.mrtd != ([48]byte{}) {
		body.MRTD = b.mrtd
	}
	quote, err := vm.auth.SignQuote(body, rd)
	if err != nil {
		t.Fatal(err)
	}
	return parts{hcl: hclReport(t, quote, rt), quote: quote}
}

// hclReport lays out an HCL report (azuretdx/hcl.go): the header, the TD
// report of quote in the hardware report slot, the IGVM request data and
// the runtime data.
func hclReport(t *testing.T, quote, runtime []byte) []byte {
	t.Helper()
	q, err := tdxquote.Parse(quote)
	if err != nil {
		t.Fatal(err)
	}
	b := &q.Body
	td := make([]byte, azuretdx.TDReportSize)
	td[0] = 0x81
	copy(td[128:], b.ReportData[:])
	copy(td[264:], b.TEETCBSVN[:])
	copy(td[280:], b.MRSEAM[:])
	copy(td[328:], b.MRSignerSEAM[:])
	copy(td[376:], b.SEAMAttributes[:])
	copy(td[512:], b.TDAttributes[:])
	copy(td[520:], b.XFAM[:])
	copy(td[528:], b.MRTD[:])
	copy(td[576:], b.MRConfigID[:])
	copy(td[624:], b.MROwner[:])
	copy(td[672:], b.MROwnerConfig[:])
	for i := range b.RTMR {
		copy(td[720+48*i:], b.RTMR[i][:])
	}
	const reqOff, rtOff = 32 + 1184, 32 + 1184 + 20
	out := make([]byte, rtOff+len(runtime))
	le := binary.LittleEndian
	copy(out, "HCLA")
	le.PutUint32(out[4:], 2)
	le.PutUint32(out[8:], uint32(len(out)))
	le.PutUint32(out[12:], 2)
	copy(out[32:], td)
	le.PutUint32(out[reqOff:], uint32(20+len(runtime)))
	le.PutUint32(out[reqOff+4:], 1)
	le.PutUint32(out[reqOff+8:], 4)
	le.PutUint32(out[reqOff+12:], 1)
	le.PutUint32(out[reqOff+16:], uint32(len(runtime)))
	copy(out[rtOff:], runtime)
	return out
}

// evidence is the node's answer to nonce: the paravisor's parts, the vTPM
// quote over the binding with the PCR values, and the TPM firmware log.
func (vm *azureVM) evidence(t *testing.T, nonce, hello []byte, p parts) *evidencepb.Evidence {
	t.Helper()
	h := sha256.Sum256(hello)
	r, err := vm.vtpm.Report(context.Background(), nonce, h[:])
	if err != nil {
		t.Fatal(err)
	}
	binding := evidence.Binding(nonce, hello)
	var banks []*evidencepb.PCRBank
	for _, alg := range []cctrusted.Algorithm{cctrusted.AlgSHA256} {
		bank := &evidencepb.PCRBank{Alg: uint32(alg), Values: map[uint32][]byte{}}
		for m, vs := range r.Registers {
			if v, ok := vs[alg]; ok {
				bank.Values[m.Index] = v
			}
		}
		banks = append(banks, bank)
	}
	return &evidencepb.Evidence{
		Tee: string(cctrusted.TEEAzureTDX), Binding: binding[:],
		HclReport: p.hcl, Quote: p.quote,
		Tpm:    &evidencepb.TPMEvidence{AkPublic: vm.akPub, Quote: r.Quote, Signature: r.Signature, Pcrs: banks},
		TpmLog: simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_TPM, vm.tpm.Firmware),
	}
}

// azureRun is one attestation of the VM.
type azureRun struct {
	// build makes the paravisor's parts; mutate edits the evidence, and
	// answer, when set, replaces the encoded answer to the challenge.
	build  build
	mutate func(*evidencepb.Evidence)
	answer func(t *testing.T, nonce, hello []byte) []byte
	// sent receives the encoded evidence.
	sent *[]byte
	// challenges counts the challenges the server sent.
	challenges int
}

// attest runs the agent side of the protocol for an Azure TDX node over
// the real plugin transport: hello, nonce challenge, evidence. A second
// challenge (a credential activation, a checkpoint) is a failure: an
// azure_tdx node is never asked for either.
func (vm *azureVM) attest(h *harness, run *azureRun) (*nodeattestorv1.AgentAttributes, error) {
	t := h.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := h.client.Attest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	hello, err := evidence.Encode(evidence.NewHello(&evidencepb.Hello{
		Tee: string(cctrusted.TEEAzureTDX), AgentVersion: "test",
		Caps: []string{evidence.CapZstd, evidence.CapLogTPM, evidence.CapLogIMA, evidence.CapLogRuntime, evidence.CapCheckpoint},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: hello}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	run.challenges++
	ch, err := evidence.DecodeChallenge(resp.GetChallenge(), evidence.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.GetCredentialBlob()) > 0 || ch.GetCheckpoint() != nil {
		t.Fatalf("the first challenge to an azure_tdx node is not a plain nonce: %v", ch)
	}
	var ans []byte
	if run.answer != nil {
		ans = run.answer(t, ch.GetNonce(), hello)
	} else {
		ev := vm.evidence(t, ch.GetNonce(), hello, vm.paravisor(t, run.build))
		if run.mutate != nil {
			run.mutate(ev)
		}
		if ans, err = evidence.Encode(evidence.NewEvidence(ev)); err != nil {
			t.Fatal(err)
		}
	}
	if run.sent != nil {
		*run.sent = ans
	}
	if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: ans}}); err != nil {
		if _, rerr := stream.Recv(); rerr != nil {
			return nil, rerr
		}
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		return nil, err
	}
	if resp.GetChallenge() != nil {
		run.challenges++
		t.Fatalf("the server sent an azure_tdx node a second challenge (%d bytes): no credential activation, no checkpoint", len(resp.GetChallenge()))
	}
	return resp.GetAgentAttributes(), nil
}

// TestAttestAzureTDXSimulatedParavisor: a simulated paravisor is accepted
// only as a simulation: every selector but tee:sim under sim:, the agent
// ID under /ccnp/sim/, one challenge and no credential activation; the vTPM's
// firmware log replayed to its PCRs gives the boot facts.
func TestAttestAzureTDXSimulatedParavisor(t *testing.T) {
	begin := time.Now()
	vm := newAzureVM(t)
	t.Logf("VM ready in %v", time.Since(begin))
	// A policy written for Azure hardware never matches a simulation; one
	// that lists "sim" does.
	h := newHarness(t, nil).mustConfigure(vm.serverConfig("policy \"azure-hw\" {\n  tee = [\"azure_tdx\"]\n}\npolicy \"lab\" {\n  tee = [\"sim\"]\n}\n"))
	run := &azureRun{}
	begin = time.Now()
	attrs, err := vm.attest(h, run)
	if err != nil {
		t.Fatalf("attestation: %v\n%s", err, h.logs.String())
	}
	t.Logf("attested in %v", time.Since(begin))
	if run.challenges != 1 {
		t.Errorf("%d challenges, want 1", run.challenges)
	}
	akDER, err := x509.MarshalPKIXPublicKey(vm.ak)
	if err != nil {
		t.Fatal(err)
	}
	akHash := sha256.Sum256(akDER)
	if want := "spiffe://" + trustDomain + "/spire/agent/ccnp/sim/" + hex.EncodeToString(akHash[:]); attrs.GetSpiffeId() != want {
		t.Errorf("agent ID %s, want %s", attrs.GetSpiffeId(), want)
	}
	sels := attrs.GetSelectorValues()
	for _, s := range sels {
		if s != "tee:sim" && !strings.HasPrefix(s, "sim:") {
			t.Errorf("selector %q: a simulated paravisor must get sim selectors only", s)
		}
	}
	for _, want := range []string{
		"tee:sim", "sim:mrtd:" + hex.EncodeToString(vm.mrtd[:]), "sim:azure:paravisor:true", "sim:azure:vm_secure_boot:true",
		"sim:azure:ak_hash:" + hex.EncodeToString(akHash[:]), "sim:pcr:sha256:0:" + simtest.ExpectedPCR(t, 0), "sim:tcb_status:UpToDate",
	} {
		if !hasSelector(attrs, want) {
			t.Errorf("selector %s missing from %q", want, sels)
		}
	}
	if !hasSelector(attrs, "sim:policy:lab") {
		t.Errorf("the sim policy did not match the simulated paravisor: %q", sels)
	}
	for _, s := range sels {
		if strings.Contains(s, "azure-hw") {
			t.Errorf("selector %q: a policy for Azure hardware matched a simulated paravisor", s)
		}
	}
	if len(selectorsWithPrefix(attrs, "sim:boot:")) == 0 {
		t.Errorf("no sim:boot: selector from the replayed firmware log: %q", sels)
	}
	var audit bool
	for _, l := range h.logs.Audit(t) {
		if l["result"] == "accepted" && l["tee"] == "azure_tdx" && l["simulated"] == true {
			audit = true
		}
	}
	if !audit {
		t.Errorf("no audit line saying the azure_tdx node was simulated:\n%s", h.logs.String())
	}
}

// otherAKArea is area (a TPMT_PUBLIC) with another RSA modulus n.
func otherAKArea(t *testing.T, area, n []byte) []byte {
	t.Helper()
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](area)
	if err != nil {
		t.Fatal(err)
	}
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: n})
	return tpm2.Marshal(p)
}

// TestAttackAzureSimQuoteWithoutSimBlock: a TD quote that chains to the
// simulated root is refused by a server without a sim block.
func TestAttackAzureSimQuoteWithoutSimBlock(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf("tdx {\n  collateral {\n    pcs_url = %q\n  }\n}\n%s", vm.sim.pcs.URL, azureBlock(vm.mrtd)))
	_, err := vm.attest(h, &azureRun{})
	h.wantReject(err, codes.PermissionDenied, "td_quote."+appraisal.CheckPCKChain, "does not chain to a trusted root")
}

// TestAttackAzureSimQuoteAsHardware: the simulated root configured as a
// TDX root (no sim block) still does not make a simulator's TD quote a
// hardware paravisor's.
func TestAttackAzureSimQuoteAsHardware(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf("tdx {\n  trusted_roots_file = %q\n  collateral {\n    pcs_url = %q\n  }\n}\n%s", vm.sim.node.RootFile(), vm.sim.pcs.URL, azureBlock(vm.mrtd)))
	_, err := vm.attest(h, &azureRun{})
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckSimulatedQuote, "never accepted as azure_tdx")
}

// TestAttackAzureHelloWithoutAzureBlock: an azure_tdx hello to a server
// that accepts TDX, TPM-less and sim nodes but has no azure_tdx block.
func TestAttackAzureHelloWithoutAzureBlock(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.sim.serverConfig("", ""))
	_, err := vm.attest(h, &azureRun{answer: func(t *testing.T, _, _ []byte) []byte {
		t.Fatal("the server challenged an azure_tdx node it does not accept")
		return nil
	}})
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckTEE, `tee "azure_tdx" is not accepted`, "no azure_tdx block")
}

// TestAttackAzurePlainTDXQuote: a plain TD's quote sent as azure_tdx. With
// the genuine HCL report, the quote is not its TD report's; a TD that is
// no paravisor build minting the whole chain itself (its own runtime data
// and key, REPORTDATA over them, "vTPM" quotes of its choosing) is refused
// by the paravisor MRTD.
func TestAttackAzurePlainTDXQuote(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.serverConfig(""))
	td := vm.sim.prov
	_, err := vm.attest(h, &azureRun{mutate: func(e *evidencepb.Evidence) {
		// The TD's own quote, REPORTDATA the binding, as a tdx node's.
		r, err := td.Report(context.Background(), []byte("n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.Quote = r.Quote
	}})
	h.wantReject(err, codes.PermissionDenied, azuretdx.CheckTDReportMatch, "the quote is not for this report")

	var plain [48]byte
	copy(plain[:], sim.DefaultMRTD())
	_, err = vm.attest(h, &azureRun{build: build{mrtd: plain}})
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckParavisorMRTD, hex.EncodeToString(plain[:]), "paravisor_mrtds")
}

// TestAttackAzureHCLReportOfAnotherVM: one VM's HCL report with the TD
// quote of another (or of another report of the same TD).
func TestAttackAzureHCLReportOfAnotherVM(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.serverConfig(""))
	other := vm.paravisor(t, build{userData: "another VM"})
	_, err := vm.attest(h, &azureRun{mutate: func(e *evidencepb.Evidence) { e.Quote = other.quote }})
	h.wantReject(err, codes.PermissionDenied, azuretdx.CheckTDReportMatch, "report_data")
}

// TestAttackAzureVTPMQuoteOtherKey: the vTPM quote is signed by a key other
// than the HCLAkPub the TD quote vouches for.
func TestAttackAzureVTPMQuoteOtherKey(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.serverConfig(""))
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, err = vm.attest(h, &azureRun{build: build{runtimeAK: &k.PublicKey}, mutate: func(e *evidencepb.Evidence) { e.Tpm.AkPublic = nil }})
	h.wantReject(err, codes.PermissionDenied, azuretdx.CheckTPMSignature)
}

// TestAttackAzureAKPublicOtherKey: the node's ak_public names a key other
// than HCLAkPub (here its vTPM's real AK while the runtime data names
// another): refused even where the signature would not be checked with it.
func TestAttackAzureAKPublicOtherKey(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.serverConfig(""))
	_, err := vm.attest(h, &azureRun{mutate: func(e *evidencepb.Evidence) {
		// A well-formed RSA public area of another key.
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		e.Tpm.AkPublic = otherAKArea(t, vm.akPub, k.N.Bytes())
	}})
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckAzureAK, "HCLAkPub")
}

// TestAttackAzureReplayedEvidence: evidence that answered an earlier
// challenge, sent again: its binding is the old nonce's.
func TestAttackAzureReplayedEvidence(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.serverConfig(""))
	var old []byte
	if _, err := vm.attest(h, &azureRun{sent: &old}); err != nil {
		t.Fatal(err)
	}
	_, err := vm.attest(h, &azureRun{answer: func(*testing.T, []byte, []byte) []byte { return old }})
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckBinding, "binding")
}

// TestAttackAzureActivationReply: a credential activation reply (an
// activated secret) in answer to an azure_tdx node's challenge.
func TestAttackAzureActivationReply(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.serverConfig(""))
	_, err := vm.attest(h, &azureRun{answer: func(t *testing.T, _, _ []byte) []byte {
		b, err := evidence.Encode(evidence.NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: make([]byte, 32)}))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}})
	h.wantReject(err, codes.InvalidArgument, appraisal.CheckPayload, "evidence")
}

// TestAzureTPMLogDoesNotReplay: a TPM log that does not replay to the
// PCRs the vTPM quoted is refused, naming the PCR.
func TestAzureTPMLogDoesNotReplay(t *testing.T) {
	vm := newAzureVM(t)
	h := newHarness(t, nil).mustConfigure(vm.serverConfig(""))
	other := simtest.Testdata(t, "tpmlog", "ubuntu-2104-no-secure-boot.bin")
	_, err := vm.attest(h, &azureRun{mutate: func(e *evidencepb.Evidence) {
		e.TpmLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_TPM, other)
	}})
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckTPMLogReplay, "does not replay to the quoted registers", "replay mismatch on pcr")
}
