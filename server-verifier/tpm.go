package serververifier

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
)

// activationSecretSize is the credential activation secret: as large as the
// SHA-256 name digest it is bound with.
const activationSecretSize = 32

// imaPCR is where IMA measures on a TPM.
const imaPCR = cctrusted.PCR(10)

// verifyTPM checks TPM evidence: EK trust, the AK's quote over the binding
// and the PCRs, the firmware, IMA and runtime logs against the quoted PCRs,
// and, last because it costs a round trip, credential activation tying the
// AK to the EK.
//
// With inc, the IMA and runtime logs are suffixes from the checkpoint's
// offsets, replayed from the PCR values it records; the firmware log is
// always whole (it does not grow).
func (a *attestation) verifyTPM(ctx context.Context, ev *evidencepb.Evidence, logs *evidence.Logs, binding []byte, inc *incremental) (*verified, error) {
	t := ev.GetTpm()
	a.quoteSHA256 = sha256Hex(t.GetQuote())
	ekPub := t.GetEkPublic()
	if len(ekPub) == 0 {
		return nil, rejectf(codes.InvalidArgument, CheckEKTrust, "evidence.tpm.ek_public is empty")
	}
	ekHash, err := tpm.PublicKeyHash(ekPub)
	if err != nil {
		return nil, reject(codes.InvalidArgument, CheckEKTrust, fmt.Errorf("evidence.tpm.ek_public: %w", err))
	}
	if inc != nil {
		if err := inc.checkAgent(a, ekHash, nil); err != nil {
			return nil, err
		}
	}
	phase := a.st.metrics.start(phaseQuote)
	ekTrust, err := a.ekTrust(t, ekPub, ekHash)
	if err != nil {
		return nil, err
	}

	pcrs := cctrusted.Registers{}
	for _, bank := range t.GetPcrs() {
		for idx, v := range bank.GetValues() {
			pcrs.Set(cctrusted.PCR(idx).IMR(), cctrusted.Algorithm(bank.GetAlg()), v)
		}
	}
	if err := tpm.VerifyQuote(t.GetAkPublic(), t.GetQuote(), t.GetSignature(), binding, pcrs); err != nil {
		code := codes.PermissionDenied
		var qe *tpm.QuoteError
		if errors.As(err, &qe) && (qe.Check == tpm.CheckAK || qe.Check == tpm.CheckAttest) {
			code = codes.InvalidArgument
		}
		return nil, reject(code, CheckTPMQuote, err)
	}
	// Policies, selectors and the logs work on the SHA-256 bank, which
	// every PC Client TPM allocates.
	if !hasBank(pcrs, cctrusted.AlgSHA256) {
		return nil, rejectf(codes.PermissionDenied, CheckTPMQuote, "PCR bank sha256 missing: the quote covers no SHA-256 PCR")
	}
	phase.done()

	v := &verified{id: ekHash}
	f := &v.facts
	f.TEE = conf.TEETPM
	f.PCRs = pcrs

	phase = a.st.metrics.start(phaseReplay)
	reserved := a.st.cfg.TPM.RuntimePCR
	// The runtime log's register is checked before the firmware log, which
	// would otherwise report a runtime log on a PCR of the firmware range
	// as a firmware replay mismatch.
	var rl *runtimelog.Log
	if inc == nil {
		if rl, err = decodeRuntimeLog(logs.Runtime); err != nil {
			return nil, err
		}
		if err := checkTPMRuntimePCR(rl, reserved); err != nil {
			return nil, err
		}
	}
	var fw *eventlog.Facts
	if len(logs.TPM) > 0 {
		if fw, err = eventlog.VerifyTPMWith(logs.TPM, pcrs, eventlog.TPMOptions{RuntimePCR: reserved}); err != nil {
			if errors.Is(err, eventlog.ErrRuntimePCRExtended) {
				return nil, reject(codes.PermissionDenied, CheckTPMLogReplay, fmt.Errorf("%w: %v is this server's tpm.runtime_pcr, whose runtime log replays from zero; keep the runtime log on a PCR in 11..15 that nothing else on the node extends", err, reserved.IMR()))
			}
			return nil, replayRejection(CheckTPMLogReplay, "TPM firmware log", err)
		}
		factsFromFirmware(f, fw)
	}
	next := a.newCheckpointState()
	ir := imaResult{verified: len(logs.IMA) > 0}
	var rt *runtimeResult
	if inc != nil {
		if ir, rt, err = inc.verifyTPM(pcrs, logs, next, reserved); err != nil {
			return nil, err
		}
	} else {
		imaEntries := 0
		if len(logs.IMA) > 0 {
			if imaEntries, ir.violations, err = verifyIMAOnPCR(logs.IMA, pcrs); err != nil {
				return nil, err
			}
		}
		if rt, err = verifyTPMRuntime(rl, pcrs); err != nil {
			return nil, err
		}
		next.fullTPM(pcrs, logs, imaEntries, rt, a.want, reserved)
	}
	protected, err := tpmRuntimeProof(reserved, pcrs, rt)
	if err != nil {
		return nil, err
	}
	phase.done()
	f.Workloads, f.WorkloadsKnown, f.WorkloadsUnknown = rt.workloads, rt.known, protected.why
	f.RuntimeNotice, f.RuntimeFull = rt.incomplete, rt.full
	next.facts(fw, ir, rt)
	v.next = next

	// The activation round trip waits for the agent: it must not hold a
	// verification slot while it does.
	if a.release != nil {
		a.release()
	}
	if err := a.akTrust(t, ekPub); err != nil {
		return nil, err
	}

	s := []string{"tee:tpm", "tpm:ek_hash:" + ekHash, "tpm:ek_trust:" + ekTrust}
	s = append(s, pcrSelectors(pcrs)...)
	s = append(s, bootSelectors(f, fw)...)
	s = append(s, a.imaSelectors(ir)...)
	s = append(s, "tpm:runtime_rollback_protected:"+boolString(protected.ok))
	v.selectors = append(s, rt.selectors()...)
	return v, nil
}

// ekTrust accepts the EK when its hash is allow-listed or its certificate
// chains to a configured EK CA; it returns which.
func (a *attestation) ekTrust(t *evidencepb.TPMEvidence, ekPub []byte, ekHash string) (string, error) {
	if a.st.ekAllow[ekHash] {
		return "allow_list", nil
	}
	if a.st.ekRoots == nil {
		return "", rejectf(codes.PermissionDenied, CheckEKTrust, "EK %s is not in ek_hash_allow_list (and no ek_ca_files are configured)", ekHash)
	}
	if len(t.GetEkCertificate()) == 0 {
		return "", rejectf(codes.PermissionDenied, CheckEKTrust, "EK %s is not in ek_hash_allow_list and the node sent no EK certificate", ekHash)
	}
	inters := x509.NewCertPool()
	for i, der := range t.GetEkIntermediates() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", reject(codes.InvalidArgument, CheckEKTrust, fmt.Errorf("evidence.tpm.ek_intermediates[%d]: %w", i, err))
		}
		inters.AddCert(c)
	}
	if _, err := tpm.VerifyEKCertificate(t.GetEkCertificate(), ekPub, x509.VerifyOptions{
		Roots: a.st.ekRoots, Intermediates: inters, CurrentTime: a.p.now(),
	}); err != nil {
		return "", reject(codes.PermissionDenied, CheckEKTrust, fmt.Errorf("EK %s: certificate not trusted by ek_ca_files: %w", ekHash, err))
	}
	return "certificate", nil
}

// akTrust ties the AK to the EK by credential activation, which only the
// TPM holding the EK, with the AK loaded, can complete. It always runs: the
// agent ID and tpm:ek_hash name the EK, so the EK must be one the sender
// proved it holds. An AK certificate says nothing about which EK the AK
// lives with (EK certificates and public keys are public: a node could
// send another TPM's EK next to its own certified AK), so with ak_ca_files
// configured the certificate is an additional requirement, checked first
// because it needs no round trip.
func (a *attestation) akTrust(t *evidencepb.TPMEvidence, ekPub []byte) error {
	akPub := t.GetAkPublic()
	if a.st.akRoots != nil {
		chain := t.GetAkCertificateChain()
		if len(chain) == 0 {
			return rejectf(codes.PermissionDenied, CheckAKTrust, "tpm.ak_ca_files is configured, so an AK certificate is required, but the node sent none (evidence.tpm.ak_certificate_chain is empty)")
		}
		if err := a.akCertificate(chain, akPub); err != nil {
			return err
		}
	}
	name, err := tpm.AKName(akPub)
	if err != nil {
		return reject(codes.InvalidArgument, CheckActivation, fmt.Errorf("AK name: %w", err))
	}
	if a.offline != nil {
		// A recording holds no TPM to answer; the EK is then unproven,
		// and VerifyOffline says so (never in a plugin SPIRE runs).
		a.offline.activationSkipped = true
		return nil
	}
	secret := make([]byte, activationSecretSize)
	if _, err := rand.Read(secret); err != nil {
		return reject(codes.Internal, CheckActivation, err)
	}
	blob, enc, err := tpm.MakeCredential(ekPub, name, secret)
	if err != nil {
		return reject(codes.InvalidArgument, CheckActivation, fmt.Errorf("making the credential for the EK: %w", err))
	}
	if err := a.sendChallenge(&evidencepb.Challenge{CredentialBlob: blob, EncryptedSecret: enc}); err != nil {
		return err
	}
	resp, err := a.recv(a.stream.Context(), "activated secret")
	if err != nil {
		return err
	}
	b := resp.GetChallengeResponse()
	if b == nil {
		return rejectf(codes.InvalidArgument, CheckProtocol, "expected the activated secret as a challenge response")
	}
	got, err := evidence.DecodeActivatedSecret(b, a.limits)
	if err != nil {
		return payloadRejection("activated secret", err)
	}
	if subtle.ConstantTimeCompare(got.GetSecret(), secret) != 1 {
		return rejectf(codes.PermissionDenied, CheckActivation, "the activated secret is wrong: the AK is not loaded in the TPM that holds the EK")
	}
	return nil
}

// akCertificate checks that chain (leaf first) chains to ak_ca_files and
// that its leaf certifies akPub.
func (a *attestation) akCertificate(chain [][]byte, akPub []byte) error {
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return reject(codes.InvalidArgument, CheckAKTrust, fmt.Errorf("evidence.tpm.ak_certificate_chain[%d]: %w", i, err))
		}
		certs[i] = c
	}
	inters := x509.NewCertPool()
	for _, c := range certs[1:] {
		inters.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: a.st.akRoots, Intermediates: inters, CurrentTime: a.p.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return reject(codes.PermissionDenied, CheckAKTrust, fmt.Errorf("AK certificate not trusted by ak_ca_files: %w", err))
	}
	pub, err := tpm.ParsePublic(akPub)
	if err != nil {
		return reject(codes.InvalidArgument, CheckAKTrust, fmt.Errorf("evidence.tpm.ak_public: %w", err))
	}
	certKey, err := x509.MarshalPKIXPublicKey(certs[0].PublicKey)
	if err != nil {
		return reject(codes.InvalidArgument, CheckAKTrust, err)
	}
	akKey, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || !bytes.Equal(certKey, akKey) {
		return rejectf(codes.PermissionDenied, CheckAKTrust, "the AK certificate certifies another key than evidence.tpm.ak_public")
	}
	return nil
}

// verifyIMAOnPCR replays an IMA list against PCR10 in the SHA-256 bank and
// returns how many entries it has and how many of them are violations.
func verifyIMAOnPCR(raw []byte, pcrs cctrusted.Registers) (entries, violations int, err error) {
	l, err := ima.Parse(raw, ima.Options{})
	if err != nil {
		return 0, 0, reject(codes.InvalidArgument, CheckIMAReplay, fmt.Errorf("IMA log: %w", err))
	}
	signed, ok := pcrs.Get(imaPCR.IMR(), cctrusted.AlgSHA256)
	if !ok {
		return 0, 0, rejectf(codes.PermissionDenied, CheckIMAReplay, "the node sent an IMA log but did not quote pcr10 in the sha256 bank")
	}
	if err := l.Verify(cctrusted.AlgSHA256, imaPCR.IMR(), signed, nil); err != nil {
		return 0, 0, replayRejection(CheckIMAReplay, "IMA log", err)
	}
	return len(l.Entries), l.Violations(), nil
}

// checkTPMRuntimePCR refuses a runtime log (nil: none) on a register a TPM
// runtime log cannot be on: outside PCRs 11..23, or on a PCR of the
// firmware range (11..15) other than the server's tpm.runtime_pcr
// (reserved, zero when unset), which the firmware log owns.
func checkTPMRuntimePCR(l *runtimelog.Log, reserved cctrusted.PCR) error {
	if l == nil {
		return nil
	}
	imr := l.IMR()
	if imr.Space != cctrusted.SpacePCR || imr.Index < conf.MinRuntimePCR || imr.Index >= cctrusted.NumPCRs {
		return rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log extends %v; on a TPM it must extend a PCR in 11..23 (an application PCR, 16..23, or the PCR of 11..15 set as tpm.runtime_pcr)", imr)
	}
	p := cctrusted.PCR(imr.Index)
	if conf.RuntimePCRProtected(p) && p != reserved {
		if reserved == 0 {
			return rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log extends %v, a PCR of the firmware range, but this server's tpm block sets no runtime_pcr: set tpm.runtime_pcr = %d on the server if every TPM node keeps its runtime log there", imr, p)
		}
		return rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log extends %v, but this server's tpm.runtime_pcr is %d: the node's tpm.runtime_pcr (agent) and runtime_pcr (workload attestor) must be %d", imr, reserved, reserved)
	}
	return nil
}

// verifyTPMRuntime replays the runtime log l (nil: none sent; its register
// checked by checkTPMRuntimePCR) from zero against the PCR it names, in its
// bank, which the quote must cover.
func verifyTPMRuntime(l *runtimelog.Log, pcrs cctrusted.Registers) (*runtimeResult, error) {
	if l == nil {
		return &runtimeResult{}, nil
	}
	imr, alg := l.IMR(), l.Algorithm()
	signed, ok := pcrs.Get(imr, alg)
	if !ok {
		return nil, rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log extends %v in the %v bank, which the quote does not cover", imr, alg)
	}
	return verifyRuntimeLog(l, imr, alg, signed)
}

// runtimeProof is what a TPM node's runtime record is worth.
type runtimeProof struct {
	// ok: the record is on the server's tpm.runtime_pcr, which no command
	// short of a TPM reset (a reboot) clears, and it is whole.
	ok bool
	// why says, when !ok, why the workloads are unknown.
	why string
}

// tpmRuntimeProof decides what a TPM node's verified runtime record (rt,
// replayed in full or from a checkpoint) proves, and clears its workloads
// when that is nothing.
//
// Anything the agent can do, root on the node can do, and the server keeps
// no per-node state, so only the register can stop a rollback: a runtime
// log on a PCR that can be reset without a reboot (16..23) could have been
// wiped, reset and restarted, and proves nothing. A PCR of 11..15 cannot be
// reset, but the agent chooses which PCR its log names, so a node could
// move its log off a PCR that still holds a forbidden record onto an unused
// one. Hence one PCR, the server's tpm.runtime_pcr (reserved), carries the
// runtime record of every TPM node, and its quoted value must be accounted
// for whatever the node sent: by a runtime log on it that replayed from
// zero, or by being zero (the node ran nothing). A value nothing accounts
// for is a rejection naming the PCR.
func tpmRuntimeProof(reserved cctrusted.PCR, pcrs cctrusted.Registers, rt *runtimeResult) (runtimeProof, error) {
	onLog := rt.imr.Space == cctrusted.SpacePCR
	notProof := func(why string) (runtimeProof, error) {
		// A record that proves nothing gives no runtime: selector, not
		// even that the log is incomplete.
		rt.workloads, rt.known, rt.incomplete, rt.full = nil, false, nil, nil
		return runtimeProof{why: why}, nil
	}
	if reserved == 0 {
		if onLog {
			return notProof(fmt.Sprintf("the runtime log is on %v, which can be reset without a reboot, and this server's tpm block sets no runtime_pcr: the record proves nothing", rt.imr))
		}
		return notProof("this server's tpm block sets no runtime_pcr, so no TPM runtime record proves what a node ran")
	}
	res := reserved.IMR()
	if onLog && rt.imr == res && rt.alg == cctrusted.AlgSHA256 {
		return runtimeProof{ok: rt.known}, nil
	}
	v, quoted := pcrs.Get(res, cctrusted.AlgSHA256)
	if quoted && !allZero(v) {
		what := "the node sent no runtime log"
		if onLog {
			what = fmt.Sprintf("the node's runtime log is on %v (%v bank)", rt.imr, rt.alg)
		}
		return runtimeProof{}, rejectf(codes.PermissionDenied, CheckRuntimeReplay, "%v (tpm.runtime_pcr) is %x, but %s: nothing accounts for its value (a runtime log deleted or moved to another PCR, or something else on the node extending %v)", res, v, what, res)
	}
	switch {
	case onLog && rt.imr == res:
		return notProof(fmt.Sprintf("the runtime log on %v is in the %v bank; the workload attestor records runtime logs in sha256, the bank the server checks", res, rt.alg))
	case !quoted:
		return notProof(fmt.Sprintf("the quote does not cover %v (tpm.runtime_pcr) in the sha256 bank: add it to the agent's tpm.pcrs", res))
	case onLog:
		return notProof(fmt.Sprintf("the runtime log is on %v, which can be reset without a reboot: only a log on %v (tpm.runtime_pcr) proves what the node ran; set the agent's tpm.runtime_pcr and the workload attestor's runtime_pcr to %d", rt.imr, res, reserved))
	}
	// No log and the reserved PCR at its reset value: the node recorded
	// nothing since boot.
	rt.workloads, rt.known = nil, true
	return runtimeProof{ok: true}, nil
}

func replayRejection(check, what string, err error) *rejection {
	var me *cctrusted.MismatchError
	if errors.As(err, &me) {
		return reject(codes.PermissionDenied, check, fmt.Errorf("%s does not replay to the quoted registers: %w", what, err))
	}
	return reject(codes.InvalidArgument, check, fmt.Errorf("%s: %w", what, err))
}

func hasBank(pcrs cctrusted.Registers, alg cctrusted.Algorithm) bool {
	for _, banks := range pcrs {
		if _, ok := banks[alg]; ok {
			return true
		}
	}
	return false
}

// pcrSelectors are tpm:pcr:<bank>:<index>:<hex> for every quoted PCR.
func pcrSelectors(pcrs cctrusted.Registers) []string {
	var s []string
	for m, banks := range pcrs {
		for alg, v := range banks {
			s = append(s, "tpm:pcr:"+alg.String()+":"+strconv.Itoa(int(m.Index))+":"+hex.EncodeToString(v))
		}
	}
	slices.Sort(s)
	return s
}
