package nodeattestor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/internal/version"
	"github.com/ccnp-spire/ccnp-spire/tee"
)

// The TEE-specific calls this package needs beyond cctrusted.Provider,
// declared where they are used so that any provider (tee/tdx, tee/sim,
// tee/tpm, or a test's fake) that has them works.
type (
	// ccelReader is a TDX guest's (or the simulator's) firmware log.
	ccelReader interface {
		RawCCEL(ctx context.Context) (table, log []byte, err error)
	}
	// tdxIMAReader is a TDX guest's IMA list.
	tdxIMAReader interface {
		RawIMA(ctx context.Context) ([]byte, error)
	}
	// tpmLogReader is a TPM node's firmware log.
	tpmLogReader interface {
		RawEventLog(ctx context.Context) ([]byte, error)
	}
	// tpmIMAReader is a TPM node's IMA list.
	tpmIMAReader interface {
		RawIMALog(ctx context.Context) ([]byte, error)
	}
	// tpmKeys are the keys a TPM node proves itself with.
	tpmKeys interface {
		AttestationKeyPublic() ([]byte, error)
		EKPublic(ctx context.Context) ([]byte, error)
		EKCertificate(ctx context.Context) ([]byte, error)
	}
	// activator answers a credential activation challenge.
	activator interface {
		ActivateCredential(ctx context.Context, credBlob, encSecret []byte) ([]byte, error)
	}
	// hclReader is an Azure TDX guest's paravisor: the HCL report and the
	// TD quote of its TD report.
	hclReader interface {
		HCLEvidence(ctx context.Context) (hclReport, tdQuote []byte, err error)
	}
)

// tpmBacked says whether a TEE's evidence is a TPM quote with a TPM event
// log: a TPM node, or an Azure TDX guest's vTPM.
func tpmBacked(t cctrusted.TEE) bool {
	return t == cctrusted.TEETPM || t == cctrusted.TEEAzureTDX
}

// logKey is the context key of the logger Hello, Collect and Activate write to.
type logKey struct{}

// WithLogger returns a context whose Hello, Collect and Activate calls log
// to l (skipped logs, a missing EK certificate). Without it they log nothing.
func WithLogger(ctx context.Context, l hclog.Logger) context.Context {
	return context.WithValue(ctx, logKey{}, l)
}

func logger(ctx context.Context) hclog.Logger {
	if l, ok := ctx.Value(logKey{}).(hclog.Logger); ok && l != nil {
		return l
	}
	return hclog.NewNullLogger()
}

// concrete returns the provider behind tee.Open's wrapper, where the
// TEE-specific methods live.
func concrete(p cctrusted.Provider) cctrusted.Provider {
	if tp, ok := p.(tee.Provider); ok {
		return tee.Unwrap(tp)
	}
	return p
}

// Hello returns the encoded payload that opens attestation (protocol step 1).
// The caller sends these exact bytes and keeps them: Collect hashes them into
// the binding. On TDX and the simulator it reads, or creates once, the
// instance ID at cfg.InstanceIDPath; a TPM node is named by its EK and an
// Azure TDX guest by its vTPM, and they send none.
func Hello(ctx context.Context, p cctrusted.Provider, cfg *conf.AgentNodeAttestor) ([]byte, error) {
	return hello(ctx, p, cfg, true)
}

// hello builds the hello, offering the stored checkpoint when withCheckpoint.
func hello(ctx context.Context, p cctrusted.Provider, cfg *conf.AgentNodeAttestor, withCheckpoint bool) ([]byte, error) {
	if cfg == nil {
		return nil, failf(codes.FailedPrecondition, "hello", "no configuration")
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(codes.Canceled, "hello", err)
	}
	t := p.TEE()
	h := &evidencepb.Hello{Tee: string(t), AgentVersion: agentVersion()}
	if !tpmBacked(t) {
		id, err := InstanceID(cfg.InstanceIDPath)
		if err != nil {
			return nil, fail(codes.Internal, "instance id", err)
		}
		h.InstanceId = id
	}
	h.Caps = capabilities(p, cfg)
	if ck := loadCheckpoint(ctx, CheckpointPath(cfg)); withCheckpoint && ck != nil {
		h.Checkpoint = ck
		if b, err := evidence.Encode(evidence.NewHello(h)); err == nil {
			return b, nil
		} else {
			// A stored checkpoint this build would not send is dropped
			// rather than blocking attestation.
			logger(ctx).Warn("Stored checkpoint dropped; attesting with whole logs", "path", CheckpointPath(cfg), "error", err)
			dropCheckpoint(ctx, CheckpointPath(cfg))
			h.Checkpoint = nil
		}
	}
	b, err := evidence.Encode(evidence.NewHello(h))
	if err != nil {
		return nil, fail(codes.Internal, "hello", err)
	}
	return b, nil
}

// Record runs this agent's side of one attestation for a server that is not
// there (`ccnp evidence collect`): the hello, without any stored checkpoint
// so that the evidence holds whole logs, and the evidence for nonce with
// every log the hello offers, which is what a server asks such an agent for.
// The bytes are those AidAttestation would send. Credential activation (TPM)
// needs the server's live challenge, so a recording cannot hold it.
func Record(ctx context.Context, p cctrusted.Provider, cfg *conf.AgentNodeAttestor, nonce []byte) (*evidence.Recording, error) {
	helloBytes, err := hello(ctx, p, cfg, false)
	if err != nil {
		return nil, err
	}
	h, err := evidence.DecodeHello(helloBytes, evidence.DefaultLimits())
	if err != nil {
		return nil, fail(codes.Internal, "hello", err)
	}
	ch := &evidencepb.Challenge{Nonce: nonce}
	for _, k := range []conf.LogKind{conf.LogCCEL, conf.LogTPM, conf.LogIMA, conf.LogRuntime} {
		if slices.Contains(h.GetCaps(), evidence.LogCap(wireLog(k))) {
			ch.Want = append(ch.Want, wireLog(k))
		}
	}
	payload, err := Collect(ctx, p, cfg, helloBytes, ch)
	if err != nil {
		return nil, err
	}
	evBytes, err := evidence.Encode(payload)
	if err != nil {
		return nil, fail(codes.Internal, "encode evidence", err)
	}
	return &evidence.Recording{Hello: helloBytes, Evidence: evBytes}, nil
}

// capabilities lists what this agent can send, so the server asks only for
// logs that exist here.
func capabilities(p cctrusted.Provider, cfg *conf.AgentNodeAttestor) []string {
	caps := []string{evidence.CapZstd, evidence.CapGzip, evidence.CapCheckpoint}
	c := concrete(p)
	for _, k := range cfg.Logs {
		if !logSupported(c, p.TEE(), k) {
			continue
		}
		if c := evidence.LogCap(wireLog(k)); c != "" {
			caps = append(caps, c)
		}
	}
	if _, ok := c.(activator); ok && p.TEE() == cctrusted.TEETPM {
		caps = append(caps, evidence.CapCredentialActivation)
	}
	return caps
}

// logSupported says whether log k exists on this kind of node and the
// provider can read it.
func logSupported(c cctrusted.Provider, t cctrusted.TEE, k conf.LogKind) bool {
	var ok bool
	switch k {
	case conf.LogCCEL:
		_, ok = c.(ccelReader)
		ok = ok && !tpmBacked(t)
	case conf.LogTPM:
		_, ok = c.(tpmLogReader)
		ok = ok && tpmBacked(t)
	case conf.LogIMA:
		if tpmBacked(t) {
			_, ok = c.(tpmIMAReader)
		} else {
			_, ok = c.(tdxIMAReader)
		}
	case conf.LogRuntime:
		ok = true
	}
	return ok
}

// Collect answers a nonce challenge (protocol step 3): it asks the TEE for a
// report whose REPORTDATA (TDX, sim) or extraData (TPM) is
// evidence.Binding(nonce, helloBytes), then reads the logs that both the
// server wants and cfg.Logs allows, compressed per cfg.Compression.
//
// The logs are read after the report on purpose: the kernel (IMA) and the
// workload attestor (runtime log) append to a log before they extend the
// register, so logs read later hold every event the signed registers hold,
// plus possibly a few more, which a verifier can recognise, whereas logs
// read first could lack events the registers already hold.
//
// A log that does not exist on this node (no IMA, no runtime log yet) is
// skipped with a log line; the server decides whether it can do without.
//
// When the challenge carries checkpoint offsets, the IMA and runtime logs
// are sent from those offsets on and the evidence echoes them. A log shorter
// than its offset (a reboot) makes the agent send whole logs instead, and
// the server then asks again without a checkpoint.
func Collect(ctx context.Context, p cctrusted.Provider, cfg *conf.AgentNodeAttestor, helloBytes []byte, ch *evidencepb.Challenge) (*evidencepb.Payload, error) {
	if cfg == nil {
		return nil, failf(codes.FailedPrecondition, "evidence", "no configuration")
	}
	if len(ch.GetNonce()) != evidence.NonceSize {
		return nil, failf(codes.InvalidArgument, "challenge", "nonce is %d bytes, want %d", len(ch.GetNonce()), evidence.NonceSize)
	}
	log := logger(ctx)
	t := p.TEE()
	c := concrete(p)
	helloHash := sha256.Sum256(helloBytes)
	binding := evidence.Binding(ch.GetNonce(), helloBytes)

	rep, err := p.Report(ctx, ch.GetNonce(), helloHash[:])
	if err != nil {
		return nil, fail(codes.Unavailable, string(t)+" report", err)
	}
	if !bytes.Equal(rep.ReportData, binding[:]) {
		// A provider bug, caught here rather than as a binding rejection
		// on the server.
		return nil, failf(codes.Internal, string(t)+" report", "report data %x is not the binding %x", rep.ReportData, binding)
	}
	ev := &evidencepb.Evidence{Tee: string(t), Binding: binding[:]}
	switch t {
	case cctrusted.TEETPM:
		if ev.Tpm, err = tpmEvidence(ctx, c, rep, true); err != nil {
			return nil, err
		}
	case cctrusted.TEEAzureTDX:
		// The vTPM quote as on a TPM node, by the paravisor's AK, which
		// the TD report vouches for: no EK is needed.
		if ev.Tpm, err = tpmEvidence(ctx, c, rep, false); err != nil {
			return nil, err
		}
		hr, ok := c.(hclReader)
		if !ok {
			return nil, failf(codes.Internal, "azure_tdx hcl report", "provider %T cannot read the HCL report", c)
		}
		if ev.HclReport, ev.Quote, err = hr.HCLEvidence(ctx); err != nil {
			return nil, fail(codes.Unavailable, "azure_tdx hcl report and td quote", err)
		}
	default:
		if len(rep.Quote) == 0 {
			return nil, failf(codes.Internal, string(t)+" report", "the provider returned no quote")
		}
		ev.Quote = rep.Quote
	}

	wanted := ch.GetWant()
	for _, w := range wanted {
		if !slices.ContainsFunc(cfg.Logs, func(k conf.LogKind) bool { return wireLog(k) == w }) {
			log.Warn("Server asked for a log this agent is configured not to send", "log", logName(w), "configured_logs", cfg.Logs)
		}
	}
	enc := wireEncoding(cfg.Compression)
	if offs := ch.GetCheckpoint().GetOffsets(); len(offs) > 0 {
		ev.Checkpoint = &evidencepb.Checkpoint{Offsets: offs}
	}
	for _, k := range cfg.Logs {
		if !slices.Contains(wanted, wireLog(k)) {
			log.Debug("Log not sent: the server did not ask for it", "log", k)
			continue
		}
		if !logSupported(c, t, k) {
			log.Debug("Log not sent: it does not exist on this TEE", "log", k, "tee", t)
			continue
		}
		err := addLog(ctx, c, t, cfg, k, enc, ev, ch)
		if errors.Is(err, fs.ErrNotExist) && ev.Checkpoint != nil {
			if off := evidence.OffsetOf(ev.Checkpoint.GetOffsets(), wireLog(k)); off != nil && off.GetBytes() > 0 {
				err = fmt.Errorf("%w: the %s is gone", errCannotCut, k)
			}
		}
		if errors.Is(err, errCannotCut) {
			log.Info("Sending whole logs: cannot send them from the checkpoint", "error", err)
			full := proto.CloneOf(ch)
			full.Checkpoint = nil
			return Collect(ctx, p, cfg, helloBytes, full)
		}
		if err != nil {
			var e *Error
			if errors.As(err, &e) && errors.Is(e.Err, fs.ErrNotExist) {
				log.Warn("Log not sent: not present on this node", "log", k, "error", e.Err)
				continue
			}
			return nil, err
		}
	}
	return evidence.NewEvidence(ev), nil
}

// addLog reads log k and puts it into ev, from the challenge's checkpoint
// offset on when it gives one.
func addLog(ctx context.Context, c cctrusted.Provider, t cctrusted.TEE, cfg *conf.AgentNodeAttestor, k conf.LogKind, enc evidencepb.Encoding, ev *evidencepb.Evidence, ch *evidencepb.Challenge) error {
	var (
		raw []byte
		err error
		op  string
	)
	switch k {
	case conf.LogCCEL:
		op = string(t) + " ccel"
		var table []byte
		if table, raw, err = c.(ccelReader).RawCCEL(ctx); err == nil {
			ev.CcelTable = table
		}
	case conf.LogTPM:
		op = "tpm event log"
		raw, err = c.(tpmLogReader).RawEventLog(ctx)
	case conf.LogIMA:
		op = string(t) + " ima log"
		if tpmBacked(t) {
			raw, err = c.(tpmIMAReader).RawIMALog(ctx)
		} else {
			raw, err = c.(tdxIMAReader).RawIMA(ctx)
		}
	case conf.LogRuntime:
		op = "runtime log"
		raw, err = readRuntimeLog(ctx, cfg.RuntimeLogPath)
	}
	if err != nil {
		return fail(codes.Internal, op, err)
	}
	wk := wireLog(k)
	if raw, _, err = suffix(ch, wk, raw); err != nil {
		return err
	}
	l, err := evidence.CompressLog(wk, raw, enc)
	if err != nil {
		return fail(codes.Internal, op, err)
	}
	switch wk {
	case evidencepb.LogKind_LOG_KIND_CCEL:
		ev.Ccel = l
	case evidencepb.LogKind_LOG_KIND_TPM:
		ev.TpmLog = l
	case evidencepb.LogKind_LOG_KIND_IMA:
		ev.ImaLog = l
	case evidencepb.LogKind_LOG_KIND_RUNTIME:
		ev.RuntimeLog = l
	}
	return nil
}

// readRuntimeLog reads the runtime log the workload attestor writes, within
// the bound the verifier applies to it. An empty file is reported as absent:
// the log format has no empty form.
func readRuntimeLog(ctx context.Context, path string) ([]byte, error) {
	// Under the workload attestor's lock, so a record being written is
	// never half read.
	b, err := runtimelog.ReadStoreFile(ctx, path)
	if errors.Is(err, runtimelog.ErrTooLarge) {
		// The server would refuse it; sent without it, the node still
		// attests, its workloads unknown (no runtime policy matches).
		return nil, fmt.Errorf("%w (not sent: the server sees the runtime register without a log): %w", err, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty or absent: %w", path, fs.ErrNotExist)
	}
	return b, nil
}

// tpmEvidence gathers the TPM quote and the keys the server needs to trust
// its AK: with withEK the EK and its certificate (a TPM node), without only
// the AK (an Azure guest, whose AK the TD report vouches for). A missing EK
// certificate is not fatal: a server can identify the EK by an allow-list
// of public key hashes instead.
func tpmEvidence(ctx context.Context, c cctrusted.Provider, rep *cctrusted.Report, withEK bool) (*evidencepb.TPMEvidence, error) {
	keys, ok := c.(tpmKeys)
	if !ok {
		return nil, failf(codes.Internal, "tpm keys", "provider %T cannot read its AK and EK", c)
	}
	if len(rep.Quote) == 0 || len(rep.Signature) == 0 {
		return nil, failf(codes.Internal, "tpm report", "the provider returned no quote or no signature")
	}
	te := &evidencepb.TPMEvidence{Quote: rep.Quote, Signature: rep.Signature}
	var err error
	if te.AkPublic, err = keys.AttestationKeyPublic(); err != nil {
		return nil, fail(codes.Internal, "tpm ak public", err)
	}
	te.Pcrs = pcrBanks(rep.Registers)
	if len(te.Pcrs) == 0 {
		return nil, failf(codes.Internal, "tpm report", "the provider returned no PCR values")
	}
	if !withEK {
		return te, nil
	}
	if te.EkPublic, err = keys.EKPublic(ctx); err != nil {
		return nil, fail(codes.Internal, "tpm ek public", err)
	}
	if te.EkCertificate, err = keys.EKCertificate(ctx); err != nil {
		logger(ctx).Warn("EK certificate not sent: the server must know this node's EK by its hash", "error", err)
		te.EkCertificate = nil
	}
	return te, nil
}

// pcrBanks converts quoted PCR values to the wire form, banks in ascending
// algorithm order so that the same quote always encodes the same way.
func pcrBanks(regs cctrusted.Registers) []*evidencepb.PCRBank {
	byAlg := map[cctrusted.Algorithm]map[uint32][]byte{}
	for imr, banks := range regs {
		if imr.Space != cctrusted.SpacePCR {
			continue
		}
		for alg, v := range banks {
			if byAlg[alg] == nil {
				byAlg[alg] = map[uint32][]byte{}
			}
			byAlg[alg][imr.Index] = v
		}
	}
	algs := make([]cctrusted.Algorithm, 0, len(byAlg))
	for a := range byAlg {
		algs = append(algs, a)
	}
	slices.Sort(algs)
	out := make([]*evidencepb.PCRBank, 0, len(algs))
	for _, a := range algs {
		out = append(out, &evidencepb.PCRBank{Alg: uint32(a), Values: byAlg[a]})
	}
	return out
}

// Activate answers a credential activation challenge (protocol step 4): the
// TPM recovers the server's secret only if the AK the evidence named is
// loaded next to the EK the secret was encrypted to.
func Activate(ctx context.Context, p cctrusted.Provider, ch *evidencepb.Challenge) (*evidencepb.Payload, error) {
	if len(ch.GetCredentialBlob()) == 0 || len(ch.GetEncryptedSecret()) == 0 {
		return nil, failf(codes.InvalidArgument, "challenge", "not a credential activation challenge (credential_blob and encrypted_secret are required)")
	}
	if p.TEE() == cctrusted.TEEAzureTDX {
		// The AK is the paravisor's, vouched for by the TD report; an
		// activation round would only make the vTPM's EK decrypt for
		// whoever asks.
		return nil, failf(codes.InvalidArgument, "challenge", "credential activation asked of an azure_tdx node: its AK is vouched for by the TD report, not by the EK, and the protocol has no activation round for it")
	}
	a, ok := concrete(p).(activator)
	if !ok || p.TEE() != cctrusted.TEETPM {
		return nil, failf(codes.InvalidArgument, "challenge", "credential activation asked of a %s node, which has no TPM", p.TEE())
	}
	secret, err := a.ActivateCredential(ctx, ch.GetCredentialBlob(), ch.GetEncryptedSecret())
	if err != nil {
		return nil, fail(codes.Internal, "tpm activate credential", err)
	}
	return evidence.NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: secret}), nil
}

// logName is a log kind as config files and log lines name it.
func logName(k evidencepb.LogKind) string {
	switch k {
	case evidencepb.LogKind_LOG_KIND_CCEL:
		return string(conf.LogCCEL)
	case evidencepb.LogKind_LOG_KIND_TPM:
		return string(conf.LogTPM)
	case evidencepb.LogKind_LOG_KIND_IMA:
		return string(conf.LogIMA)
	case evidencepb.LogKind_LOG_KIND_RUNTIME:
		return string(conf.LogRuntime)
	}
	return k.String()
}

// agentVersion is the plugin binary's release version (internal/version:
// linked in by make build and make release), for the server's log lines
// only: it is the agent's claim, never an input to a decision.
func agentVersion() string {
	return version.Get().Version
}
