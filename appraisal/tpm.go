package appraisal

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// imaPCR is where IMA measures on a TPM.
const imaPCR = cctrusted.PCR(10)

// TPMEvidence is what a TPM node presents.
type TPMEvidence struct {
	EKPublic        []byte
	EKCertificate   []byte
	EKIntermediates [][]byte
	AKPublic        []byte
	// AKCertificateChain is leaf first.
	AKCertificateChain [][]byte
	// Quote (TPMS_ATTEST) and Signature by the AK, over PCRs.
	Quote, Signature []byte
	PCRs             cctrusted.Registers
	// ExtraData is the binding the quote must carry (the server's nonce
	// binding).
	ExtraData []byte
	// TPMLog is the firmware log, always whole; IMA and Runtime whole, or
	// suffixes from the start's offsets (see Start).
	TPMLog, IMA, Runtime []byte
}

// Activator proves that the AK is loaded in the TPM that holds the EK:
// credential activation, a round trip with the node. ekPublic and akName
// are verified; an error is returned by TPM unchanged.
type Activator func(ctx context.Context, ekPublic, akName []byte) error

// TPMOptions configures TPM appraisal.
type TPMOptions struct {
	NodeOptions
	// Now is the time certificates are checked at; zero means time.Now().
	Now time.Time
	// EKHashAllowList holds EK hashes (lower-case hex, see EKHash) trusted
	// without a certificate.
	EKHashAllowList map[string]bool
	// EKRoots are the CAs an EK certificate must chain to; nil trusts
	// none.
	EKRoots *x509.CertPool
	// AKRoots, when set, make an AK certificate chaining to them a
	// requirement, in addition to activation.
	AKRoots *x509.CertPool
	// RuntimePCR is the PCR of 11..15 that carries every node's runtime
	// record (tpm.runtime_pcr); zero when none is set, and then no runtime
	// record proves what a node ran.
	RuntimePCR cctrusted.PCR
	// Activate ties the AK to the EK. It must be set unless
	// SkipActivation is: evidence that only a recording holds cannot be
	// activated, and the EK it names is then unproven (TPMResult says so).
	Activate       Activator
	SkipActivation bool
}

// TPMResult is what a TPM appraisal established.
type TPMResult struct {
	// EKHash names the node (its agent ID); EKTrust says how the EK was
	// trusted: "allow_list" or "certificate".
	EKHash, EKTrust string
	// ActivationSkipped: the EK is unproven (TPMOptions.SkipActivation).
	ActivationSkipped bool
	Node              *Node
	// LogsTime is the time spent on the logs, for a caller's metrics.
	LogsTime time.Duration
	Checks   []Check
}

func (r *TPMResult) pass(name, detail string) { r.Checks = pass(r.Checks, name, detail) }
func (r *TPMResult) skip(name, detail string) { r.Checks = skip(r.Checks, name, detail) }

// fail records err as the failed check: an *Error, which names its own
// check, or a StartError or an Activator's error, returned as they are.
func (r *TPMResult) fail(err error) error {
	if e, ok := AsError(err); ok {
		r.Checks = append(r.Checks, Check{Name: e.Check, Detail: e.Err.Error()})
	}
	return err
}

// EKHash is the hash that names a TPM node (SHA-256 of the EK public key,
// lower-case hex), for a caller that must know the node before appraising
// it.
func EKHash(ekPublic []byte) (string, error) {
	if len(ekPublic) == 0 {
		return "", &Error{Check: CheckEKTrust, Code: CodeInvalidEvidence, Err: errors.New("evidence.tpm.ek_public is empty")}
	}
	h, err := tpmquote.PublicKeyHash(ekPublic)
	if err != nil {
		return "", &Error{Check: CheckEKTrust, Code: CodeInvalidEvidence, Err: fmt.Errorf("evidence.tpm.ek_public: %w", err)}
	}
	return h, nil
}

// TPM appraises TPM evidence, in this order:
//
//  1. EK trust: the EK's hash is allow-listed, or its certificate chains to
//     EKRoots.
//  2. The AK's quote: signature, extraData = ExtraData, PCR selection and
//     digest; the SHA-256 bank quoted.
//  3. to 6. The logs against the quoted PCRs (replayPCRLogs, shared with
//     AzureTDX): the runtime log's register (a PCR in 11..23, in the
//     firmware range only RuntimePCR), the firmware log, IMA against PCR10
//     in SHA-256, the runtime log and what its record proves.
//  7. AK trust: the AK certificate when AKRoots is set, then credential
//     activation (last: it costs a round trip).
//
// With opts.Start, IMA and the runtime log are suffixes replayed from the
// recorded PCR values; the firmware log is whole (it does not grow). The
// result is non-nil; the error is an *Error naming the failed check, a
// *StartError, or the Activator's.
func TPM(ctx context.Context, in TPMEvidence, opts TPMOptions) (*TPMResult, error) {
	res := &TPMResult{}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if opts.Activate == nil && !opts.SkipActivation {
		return res, &Error{Check: CheckActivation, Code: CodeConfig, Err: errors.New("no activator: credential activation is required")}
	}
	// 1. EK trust.
	ekHash, err := EKHash(in.EKPublic)
	if err != nil {
		return res, res.fail(err)
	}
	res.EKHash = ekHash
	if res.EKTrust, err = ekTrust(in, ekHash, opts, now); err != nil {
		return res, res.fail(err)
	}
	res.pass(CheckEKTrust, "EK "+ekHash+" trusted by "+res.EKTrust)

	// 2. The quote.
	pcrs := in.PCRs
	if err := tpmquote.VerifyQuote(in.AKPublic, in.Quote, in.Signature, in.ExtraData, pcrs); err != nil {
		code := CodeRejected
		var qe *tpmquote.QuoteError
		if errors.As(err, &qe) && (qe.Check == tpmquote.CheckAK || qe.Check == tpmquote.CheckAttest) {
			code = CodeInvalidEvidence
		}
		return res, res.fail(&Error{Check: CheckTPMQuote, Code: code, Err: err})
	}
	// Policies, selectors and the logs work on the SHA-256 bank, which
	// every PC Client TPM allocates.
	if !hasBank(pcrs, cctrusted.AlgSHA256) {
		return res, res.fail(&Error{Check: CheckTPMQuote, Code: CodeRejected, Err: errors.New("PCR bank sha256 missing: the quote covers no SHA-256 PCR")})
	}
	res.pass(CheckTPMQuote, "the AK signs the PCRs and the binding")

	node := &Node{}
	node.Facts.TEE = cctrusted.TEETPM
	logsStart := time.Now()
	logs, err := replayPCRLogs(ctx, pcrs, in.TPMLog, in.IMA, in.Runtime, opts.NodeOptions, opts.RuntimePCR, node, &res.Checks)
	if err != nil {
		return res, res.fail(err)
	}
	res.LogsTime = time.Since(logsStart)

	// 7. AK trust.
	if err := akTrust(ctx, in, opts, now, res); err != nil {
		return res, res.fail(err)
	}

	s := []string{"tee:tpm", "tpm:ek_hash:" + ekHash, "tpm:ek_trust:" + res.EKTrust}
	node.Selectors = append(s, logs.selectors(node, opts.AllowIMAViolations)...)
	res.Node = node
	return res, nil
}

// pcrLogs is what a node's logs established against PCR values a quote
// vouched for: a TPM's AK quote (TPM), an Azure paravisor's vTPM quote
// (AzureTDX). One replay for both.
type pcrLogs struct {
	pcrs      cctrusted.Registers
	fw        *eventlog.Facts
	ir        imaResult
	rt        *runtimeResult
	protected runtimeProof
}

// replayPCRLogs replays a node's logs against its verified PCRs, in this
// order (steps 3 to 6 of TPM):
//
//  1. The runtime log's register: a PCR in 11..23, and in the firmware
//     range only reserved (the server's runtime PCR; checked before the
//     firmware log, which would otherwise report a runtime log there as a
//     firmware mismatch).
//  2. The firmware log (tpmLog) against the PCRs.
//  3. IMA against PCR10 in SHA-256.
//  4. The runtime log against its PCR, then what that record proves (see
//     proveRuntime).
//
// It records its checks in checks and fills in node's facts (PCRs,
// firmware, workloads, IMA verdicts) and what a later appraisal can start
// from; node.Facts.TEE is the caller's. The error is an *Error naming the
// failed check or a *StartError.
func replayPCRLogs(ctx context.Context, pcrs cctrusted.Registers, tpmLog, imaLog, runtime []byte, opts NodeOptions, reserved cctrusted.PCR, node *Node, checks *[]Check) (*pcrLogs, error) {
	start := opts.Start
	n := &node.Next
	f := &node.Facts
	f.PCRs = pcrs

	// 1. The runtime log's register.
	rl, err := decodeRuntime(runtime, start)
	if err != nil {
		return nil, err
	}
	if start == nil {
		if err := checkRuntimePCR(rl, reserved); err != nil {
			return nil, err
		}
	}

	// 2. The firmware log.
	var fw *eventlog.Facts
	if len(tpmLog) > 0 {
		if fw, err = eventlog.VerifyTPMWith(tpmLog, pcrs, eventlog.TPMOptions{RuntimePCR: reserved}); err != nil {
			if errors.Is(err, eventlog.ErrRuntimePCRExtended) {
				return nil, &Error{Check: CheckTPMLogReplay, Code: CodeRejected, Err: fmt.Errorf("%w: %v is this server's tpm.runtime_pcr, whose runtime log replays from zero; keep the runtime log on a PCR in 11..15 that nothing else on the node extends", err, reserved.IMR())}
			}
			return nil, replayError(CheckTPMLogReplay, "TPM firmware log", err)
		}
		factsFromFirmware(f, fw)
		*checks = pass(*checks, CheckTPMLogReplay, "the firmware log replays to the quoted PCRs")
	} else {
		*checks = skip(*checks, CheckTPMLogReplay, "no TPM firmware log sent")
	}

	// 3. IMA on PCR10.
	var suffix imaSuffix
	if start == nil && len(imaLog) > 0 || start != nil && start.IMA != nil {
		signed, ok := pcrs.Get(imaPCR.IMR(), cctrusted.AlgSHA256)
		if !ok {
			if start != nil {
				return nil, startErr("the quote does not cover pcr10 in the sha256 bank")
			}
			return nil, &Error{Check: CheckIMAReplay, Code: CodeRejected, Err: errors.New("the node sent an IMA log but did not quote pcr10 in the sha256 bank")}
		}
		var from []byte
		if start != nil {
			if from = start.register(imaPCR.IMR(), cctrusted.AlgSHA256); from == nil {
				return nil, startErr("the checkpoint records no %v value in the %v bank", imaPCR.IMR(), cctrusted.AlgSHA256)
			}
			if len(imaLog) == 0 && !bytes.Equal(from, signed) {
				return nil, startErr("%v moved since the checkpoint, but the IMA suffix is empty", imaPCR.IMR())
			}
		}
		if suffix, err = replayIMA(imaLog, start, n, "IMA log", func(l *ima.Log) error {
			return l.Verify(cctrusted.AlgSHA256, imaPCR.IMR(), signed, from)
		}); err != nil {
			return nil, err
		}
		if start != nil {
			n.register(imaPCR.IMR(), cctrusted.AlgSHA256, signed)
		}
		*checks = pass(*checks, CheckIMAReplay, fmt.Sprintf("%d IMA entries (%d violations) replay to pcr10", suffix.entries, suffix.violations))
	} else {
		// An empty IMA offset in the checkpoint is a claim that the list is
		// empty so far: only a PCR that IMA never extended proves it (see
		// the TDX case).
		if v, ok := pcrs.Get(imaPCR.IMR(), cctrusted.AlgSHA256); start == nil && ok && allZero(v) {
			n.IMA = &Offset{}
		}
		*checks = skip(*checks, CheckIMAReplay, "no IMA log sent")
	}
	ir := suffix.with(start)
	if start == nil {
		ir.verified = len(imaLog) > 0
	}
	if ir.appraisals, err = appraiseIMA(ctx, opts.IMAPolicies, suffix, start, ir, bootAggregates(pcrs)); err != nil {
		return nil, err
	}

	// 4. The runtime log.
	var rt *runtimeResult
	switch {
	case start != nil:
		imr, alg := startRuntimePCR(start, reserved)
		if p := cctrusted.PCR(imr.Index); conf.RuntimePCRProtected(p) && p != reserved {
			// tpm.runtime_pcr changed since the start was recorded.
			return nil, startErr("the checkpoint recorded the runtime log on %v, this server's tpm.runtime_pcr is %d", imr, reserved)
		}
		signed, ok := pcrs.Get(imr, alg)
		if !ok {
			return nil, startErr("the quote does not cover the runtime register %v in the %v bank", imr, alg)
		}
		if rt, err = replayRuntime(rl, len(runtime), start, imr, alg, signed, n); err != nil {
			return nil, err
		}
		n.register(imr, alg, signed)
	case rl == nil:
		rt = &runtimeResult{}
		n.Runtime = &Offset{}
	default:
		imr, alg := rl.IMR(), rl.Algorithm()
		signed, ok := pcrs.Get(imr, alg)
		if !ok {
			return nil, &Error{Check: CheckRuntimeReplay, Code: CodeRejected, Err: fmt.Errorf("runtime log extends %v in the %v bank, which the quote does not cover", imr, alg)}
		}
		if rt, err = replayRuntime(rl, len(runtime), nil, imr, alg, signed, n); err != nil {
			return nil, err
		}
	}
	if start == nil {
		if v, ok := pcrs.Get(imaPCR.IMR(), cctrusted.AlgSHA256); ok {
			n.register(imaPCR.IMR(), cctrusted.AlgSHA256, v)
		}
		imr, alg := rt.imr, rt.alg
		if rt.records == 0 {
			imr, alg = noLogRuntimePCR(reserved).IMR(), cctrusted.AlgSHA256
		}
		if v, ok := pcrs.Get(imr, alg); ok {
			n.register(imr, alg, v)
		}
	}
	protected, err := proveRuntime(reserved, pcrs, rt)
	if err != nil {
		return nil, err
	}
	*checks = pass(*checks, CheckRuntimeReplay, runtimeDetail(rt, protected))
	f.Workloads, f.WorkloadsKnown, f.WorkloadsUnknown = rt.workloads, rt.known, protected.why
	f.RuntimeNotice, f.RuntimeFull = rt.incomplete, rt.full
	f.IMAVerdicts, node.IMA = imaVerdicts(ir.appraisals), ir.appraisals
	n.record(fw, ir, rt)
	return &pcrLogs{pcrs: pcrs, fw: fw, ir: ir, rt: rt, protected: protected}, nil
}

// selectors are the selectors of what the logs proved: every quoted PCR,
// the boot facts, IMA, whether the runtime record is rollback protected,
// and the workloads. withheld is set on node as imaSelectors says.
func (l *pcrLogs) selectors(node *Node, allowIMAViolations bool) []string {
	s := pcrSelectors(l.pcrs)
	s = append(s, bootSelectors(&node.Facts, l.fw)...)
	is, withheld := imaSelectors(l.ir, allowIMAViolations)
	s = append(s, is...)
	s = append(s, "tpm:runtime_rollback_protected:"+strconv.FormatBool(l.protected.ok))
	node.IMAWithheld = withheld
	return append(s, l.rt.selectors()...)
}

func runtimeDetail(rt *runtimeResult, p runtimeProof) string {
	if !p.ok {
		return "workloads unknown: " + p.why
	}
	if rt.records == 0 {
		return "no runtime record: the runtime PCR is at its reset value"
	}
	return fmt.Sprintf("%d runtime records replay to %v", rt.records, rt.imr)
}

// ekTrust accepts the EK when its hash is allow-listed or its certificate
// chains to a configured EK CA; it returns which.
func ekTrust(in TPMEvidence, ekHash string, opts TPMOptions, now time.Time) (string, error) {
	if opts.EKHashAllowList[ekHash] {
		return "allow_list", nil
	}
	if opts.EKRoots == nil {
		return "", &Error{Check: CheckEKTrust, Code: CodeRejected, Err: fmt.Errorf("EK %s is not in ek_hash_allow_list (and no ek_ca_files are configured)", ekHash)}
	}
	if len(in.EKCertificate) == 0 {
		return "", &Error{Check: CheckEKTrust, Code: CodeRejected, Err: fmt.Errorf("EK %s is not in ek_hash_allow_list and the node sent no EK certificate", ekHash)}
	}
	inters := x509.NewCertPool()
	for i, der := range in.EKIntermediates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", &Error{Check: CheckEKTrust, Code: CodeInvalidEvidence, Err: fmt.Errorf("evidence.tpm.ek_intermediates[%d]: %w", i, err)}
		}
		inters.AddCert(c)
	}
	if _, err := tpmquote.VerifyEKCertificate(in.EKCertificate, in.EKPublic, x509.VerifyOptions{
		Roots: opts.EKRoots, Intermediates: inters, CurrentTime: now,
	}); err != nil {
		return "", &Error{Check: CheckEKTrust, Code: CodeRejected, Err: fmt.Errorf("EK %s: certificate not trusted by ek_ca_files: %w", ekHash, err)}
	}
	return "certificate", nil
}

// akTrust ties the AK to the EK by credential activation, which only the
// TPM holding the EK, with the AK loaded, can complete. It always runs: the
// agent ID and tpm:ek_hash name the EK, so the EK must be one the sender
// proved it holds. An AK certificate says nothing about which EK the AK
// lives with (EK certificates and public keys are public: a node could
// send another TPM's EK next to its own certified AK), so with AKRoots the
// certificate is an additional requirement, checked first because it needs
// no round trip.
func akTrust(ctx context.Context, in TPMEvidence, opts TPMOptions, now time.Time, res *TPMResult) error {
	if opts.AKRoots != nil {
		if len(in.AKCertificateChain) == 0 {
			return &Error{Check: CheckAKTrust, Code: CodeRejected, Err: errors.New("tpm.ak_ca_files is configured, so an AK certificate is required, but the node sent none (evidence.tpm.ak_certificate_chain is empty)")}
		}
		if err := akCertificate(in.AKCertificateChain, in.AKPublic, opts.AKRoots, now); err != nil {
			return err
		}
		res.pass(CheckAKTrust, "the AK certificate chains to ak_ca_files")
	} else {
		res.skip(CheckAKTrust, "no ak_ca_files configured")
	}
	name, err := tpmquote.AKName(in.AKPublic)
	if err != nil {
		return &Error{Check: CheckActivation, Code: CodeInvalidEvidence, Err: fmt.Errorf("AK name: %w", err)}
	}
	if opts.SkipActivation {
		res.ActivationSkipped = true
		res.skip(CheckActivation, "needs the live TPM: the agent ID is unproven")
		return nil
	}
	if err := opts.Activate(ctx, in.EKPublic, name); err != nil {
		return err
	}
	res.pass(CheckActivation, "the TPM holding the EK activated a credential for the AK")
	return nil
}

// akCertificate checks that chain (leaf first) chains to roots and that its
// leaf certifies akPub.
func akCertificate(chain [][]byte, akPub []byte, roots *x509.CertPool, now time.Time) error {
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return &Error{Check: CheckAKTrust, Code: CodeInvalidEvidence, Err: fmt.Errorf("evidence.tpm.ak_certificate_chain[%d]: %w", i, err)}
		}
		certs[i] = c
	}
	inters := x509.NewCertPool()
	for _, c := range certs[1:] {
		inters.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return &Error{Check: CheckAKTrust, Code: CodeRejected, Err: fmt.Errorf("AK certificate not trusted by ak_ca_files: %w", err)}
	}
	pub, err := tpmquote.ParsePublic(akPub)
	if err != nil {
		return &Error{Check: CheckAKTrust, Code: CodeInvalidEvidence, Err: fmt.Errorf("evidence.tpm.ak_public: %w", err)}
	}
	certKey, err := x509.MarshalPKIXPublicKey(certs[0].PublicKey)
	if err != nil {
		return &Error{Check: CheckAKTrust, Code: CodeInvalidEvidence, Err: err}
	}
	akKey, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || !bytes.Equal(certKey, akKey) {
		return &Error{Check: CheckAKTrust, Code: CodeRejected, Err: errors.New("the AK certificate certifies another key than evidence.tpm.ak_public")}
	}
	return nil
}

// checkRuntimePCR refuses a runtime log (nil: none) on a register a TPM
// runtime log cannot be on: outside PCRs 11..23, or on a PCR of the
// firmware range (11..15) other than the server's tpm.runtime_pcr
// (reserved, zero when unset), which the firmware log owns.
func checkRuntimePCR(l *runtimelog.Log, reserved cctrusted.PCR) error {
	if l == nil {
		return nil
	}
	imr := l.IMR()
	reject := func(format string, args ...any) error {
		return &Error{Check: CheckRuntimeReplay, Code: CodeRejected, Err: fmt.Errorf(format, args...)}
	}
	if imr.Space != cctrusted.SpacePCR || imr.Index < conf.MinRuntimePCR || imr.Index >= cctrusted.NumPCRs {
		return reject("runtime log extends %v; on a TPM it must extend a PCR in 11..23 (an application PCR, 16..23, or the PCR of 11..15 set as tpm.runtime_pcr)", imr)
	}
	p := cctrusted.PCR(imr.Index)
	if conf.RuntimePCRProtected(p) && p != reserved {
		if reserved == 0 {
			return reject("runtime log extends %v, a PCR of the firmware range, but this server's tpm block sets no runtime_pcr: set tpm.runtime_pcr = %d on the server if every TPM node keeps its runtime log there", imr, p)
		}
		return reject("runtime log extends %v, but this server's tpm.runtime_pcr is %d: the node's tpm.runtime_pcr (agent) and runtime_pcr (workload attestor) must be %d", imr, reserved, reserved)
	}
	return nil
}

// startRuntimePCR is the PCR (11..23) the start recorded for the runtime
// log; when it recorded none, the server's tpm.runtime_pcr (reserved) or
// PCR23, in sha256.
func startRuntimePCR(start *Start, reserved cctrusted.PCR) (cctrusted.IMR, cctrusted.Algorithm) {
	for m, banks := range start.Registers {
		if m.Space == cctrusted.SpacePCR && m.Index >= conf.MinRuntimePCR && m.Index < cctrusted.NumPCRs {
			for alg := range banks {
				return m, alg
			}
		}
	}
	return noLogRuntimePCR(reserved).IMR(), cctrusted.AlgSHA256
}

// noLogRuntimePCR is the runtime register recorded for a node that sent no
// runtime log: the server's tpm.runtime_pcr, whose value is then known to
// be zero, or PCR23 without one.
func noLogRuntimePCR(reserved cctrusted.PCR) cctrusted.PCR {
	if reserved != 0 {
		return reserved
	}
	return conf.DefaultRuntimePCR
}

// runtimeProof is what a TPM node's runtime record is worth.
type runtimeProof struct {
	// ok: the record is on the server's tpm.runtime_pcr, which no command
	// short of a TPM reset (a reboot) clears, and it is whole.
	ok bool
	// why says, when !ok, why the workloads are unknown.
	why string
}

// proveRuntime decides what a TPM node's verified runtime record (rt,
// replayed in full or from a start) proves, and clears its workloads when
// that is nothing.
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
func proveRuntime(reserved cctrusted.PCR, pcrs cctrusted.Registers, rt *runtimeResult) (runtimeProof, error) {
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
		return runtimeProof{}, &Error{Check: CheckRuntimeReplay, Code: CodeRejected, Err: fmt.Errorf("%v (tpm.runtime_pcr) is %x, but %s: nothing accounts for its value (a runtime log deleted or moved to another PCR, or something else on the node extending %v)", res, v, what, res)}
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
