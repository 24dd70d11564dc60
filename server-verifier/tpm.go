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
	var fw *eventlog.Facts
	if len(logs.TPM) > 0 {
		if fw, err = eventlog.VerifyTPM(logs.TPM, pcrs); err != nil {
			return nil, replayRejection(CheckTPMLogReplay, "TPM firmware log", err)
		}
		factsFromFirmware(f, fw)
	}
	next := a.newCheckpointState()
	ir := imaResult{verified: len(logs.IMA) > 0}
	var rt *runtimeResult
	if inc != nil {
		if ir, rt, err = inc.verifyTPM(pcrs, logs, next); err != nil {
			return nil, err
		}
	} else {
		imaEntries := 0
		if len(logs.IMA) > 0 {
			if imaEntries, ir.violations, err = verifyIMAOnPCR(logs.IMA, pcrs); err != nil {
				return nil, err
			}
		}
		if rt, err = verifyTPMRuntime(logs.Runtime, pcrs); err != nil {
			return nil, err
		}
		next.fullTPM(pcrs, logs, imaEntries, rt, a.want)
	}
	phase.done()
	f.Workloads, f.WorkloadsKnown = rt.workloads, rt.known
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

// akTrust ties the AK to the EK: by an AK certificate chaining to ak_ca_files
// when both are there, otherwise by credential activation, which only the
// TPM holding the EK, with the AK loaded, can complete.
func (a *attestation) akTrust(t *evidencepb.TPMEvidence, ekPub []byte) error {
	akPub := t.GetAkPublic()
	if a.st.akRoots != nil && len(t.GetAkCertificateChain()) > 0 {
		return a.akCertificate(t.GetAkCertificateChain(), akPub)
	}
	name, err := tpm.AKName(akPub)
	if err != nil {
		return reject(codes.InvalidArgument, CheckActivation, fmt.Errorf("AK name: %w", err))
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

// verifyTPMRuntime replays the runtime log against the PCR it names (an
// application PCR, 16..23) in its bank, which the quote must cover.
func verifyTPMRuntime(raw []byte, pcrs cctrusted.Registers) (*runtimeResult, error) {
	l, err := decodeRuntimeLog(raw)
	if err != nil {
		return nil, err
	}
	if l == nil {
		v, ok := pcrs.Get(cctrusted.PCR(conf.DefaultRuntimePCR).IMR(), cctrusted.AlgSHA256)
		return &runtimeResult{known: ok && allZero(v)}, nil
	}
	imr, alg := l.IMR(), l.Algorithm()
	if imr.Space != cctrusted.SpacePCR || imr.Index < 16 || imr.Index > 23 {
		return nil, rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log extends %v; on a TPM it must extend an application PCR (16..23)", imr)
	}
	signed, ok := pcrs.Get(imr, alg)
	if !ok {
		return nil, rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log extends %v in the %v bank, which the quote does not cover", imr, alg)
	}
	return verifyRuntimeLog(l, imr, alg, signed)
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
