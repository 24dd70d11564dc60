package evidence

import (
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// Capabilities an agent can list in Hello.caps. Unknown capabilities are
// accepted (a newer agent may know more); the server asks only for what it
// understands.
const (
	CapZstd                 = "zstd"
	CapGzip                 = "gzip"
	CapLogCCEL              = "log:ccel"
	CapLogTPM               = "log:tpm"
	CapLogIMA               = "log:ima"
	CapLogRuntime           = "log:runtime"
	CapCredentialActivation = "tpm:activate"
	// CapCheckpoint says the agent stores checkpoint tokens and can send
	// log suffixes (incremental re-attestation).
	CapCheckpoint = "checkpoint"
)

// LogCap is the Hello capability with which an agent offers log kind k
// ("" for a kind no capability offers): one table for the agent that lists
// its capabilities and the server that asks for logs.
func LogCap(k evidencepb.LogKind) string {
	switch k {
	case evidencepb.LogKind_LOG_KIND_CCEL:
		return CapLogCCEL
	case evidencepb.LogKind_LOG_KIND_TPM:
		return CapLogTPM
	case evidencepb.LogKind_LOG_KIND_IMA:
		return CapLogIMA
	case evidencepb.LogKind_LOG_KIND_RUNTIME:
		return CapLogRuntime
	}
	return ""
}

// Field bounds. They are far above what a real peer sends and exist so a
// hostile one cannot make a plugin log, hash or store unbounded strings.
const (
	maxInstanceID   = 128
	maxCaps         = 32
	maxCapLen       = 64
	maxAgentVersion = 128
	maxSecret       = 64 // TPM2B_DIGEST: the largest digest (SHA-512)
	maxPCRBanks     = 8
	maxPCRIndex     = 23
	maxPCRValue     = 64
	maxCerts        = 8
	// MaxHCLReport bounds evidence.hcl_report: azuretdx.MaxHCLReportSize
	// (real reports are the 2,600 bytes of the vTPM's NV index). A test
	// keeps the two equal.
	MaxHCLReport = 16 << 10
)

// validate applies the per-message rules; p's version is already checked.
func validate(p *evidencepb.Payload) error {
	switch KindOf(p) {
	case KindHello:
		return validateHello(p.GetHello())
	case KindChallenge:
		return validateChallenge(p.GetChallenge())
	case KindEvidence:
		return validateEvidence(p.GetEvidence())
	case KindActivatedSecret:
		return validateSecret(p.GetActivatedSecret())
	case KindAck:
		return nil
	}
	return malformed("payload", "carries no message (expected one of hello, challenge, evidence, activated secret, ack)")
}

func validTEE(tee string) bool {
	switch cctrusted.TEE(tee) {
	case cctrusted.TEETDX, cctrusted.TEETPM, cctrusted.TEESim, cctrusted.TEEAzureTDX:
		return true
	}
	return false
}

// isIDChar is the character set of instance IDs: safe in a SPIFFE ID path
// segment, a file name and a log line.
func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

func checkToken(field, s string, max int, extra string) error {
	if len(s) > max {
		return malformed(field, "%d bytes, more than %d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isIDChar(c) && !containsByte(extra, c) {
			return malformed(field, "character %q at offset %d is not allowed (use [A-Za-z0-9._-%s])", c, i, extra)
		}
	}
	return nil
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

func validateHello(h *evidencepb.Hello) error {
	if !validTEE(h.GetTee()) {
		return malformed("hello.tee", "%q is not one of tdx, tpm, azure_tdx, sim", truncate(h.GetTee()))
	}
	if h.GetInstanceId() == "." || h.GetInstanceId() == ".." {
		return malformed("hello.instance_id", "%q is not a valid path segment", h.GetInstanceId())
	}
	if err := checkToken("hello.instance_id", h.GetInstanceId(), maxInstanceID, ""); err != nil {
		return err
	}
	if len(h.GetCaps()) > maxCaps {
		return malformed("hello.caps", "%d entries, more than %d", len(h.GetCaps()), maxCaps)
	}
	for i, c := range h.GetCaps() {
		field := fmt.Sprintf("hello.caps[%d]", i)
		if c == "" {
			return malformed(field, "empty")
		}
		if err := checkToken(field, c, maxCapLen, ":"); err != nil {
			return err
		}
	}
	// Printable ASCII only: the version ends up in log lines.
	v := h.GetAgentVersion()
	if len(v) > maxAgentVersion {
		return malformed("hello.agent_version", "%d bytes, more than %d", len(v), maxAgentVersion)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return malformed("hello.agent_version", "byte 0x%02x at offset %d is not printable ASCII", v[i], i)
		}
	}
	if c := h.GetCheckpoint(); c != nil {
		if len(c.GetToken()) == 0 {
			return malformed("hello.checkpoint.token", "empty: present a checkpoint only with its token")
		}
		return validateCheckpoint("hello.checkpoint", c)
	}
	return nil
}

func validLogKind(k evidencepb.LogKind) bool {
	return k >= evidencepb.LogKind_LOG_KIND_CCEL && k <= evidencepb.LogKind_LOG_KIND_RUNTIME
}

func validateChallenge(c *evidencepb.Challenge) error {
	activation := len(c.GetCredentialBlob()) > 0 || len(c.GetEncryptedSecret()) > 0
	if ck := c.GetCheckpoint(); ck != nil && len(ck.GetToken()) > 0 {
		// A checkpoint issuance stands alone, like an activation.
		if activation || len(c.GetNonce()) != 0 || len(c.GetWant()) != 0 {
			return malformed("challenge", "a checkpoint challenge carries no nonce, no log request and no credential")
		}
		return validateCheckpoint("challenge.checkpoint", ck)
	}
	if activation {
		// The two rounds are kept apart so neither side can confuse an
		// activation with a fresh nonce.
		if len(c.GetCredentialBlob()) == 0 || len(c.GetEncryptedSecret()) == 0 {
			return malformed("challenge", "credential activation needs both credential_blob and encrypted_secret")
		}
		if len(c.GetNonce()) != 0 || len(c.GetWant()) != 0 || c.GetCheckpoint() != nil {
			return malformed("challenge", "a credential activation challenge carries no nonce, no log request and no checkpoint")
		}
		return nil
	}
	if len(c.GetNonce()) != NonceSize {
		return malformed("challenge.nonce", "%d bytes, want %d", len(c.GetNonce()), NonceSize)
	}
	for i, k := range c.GetWant() {
		if !validLogKind(k) {
			return malformed(fmt.Sprintf("challenge.want[%d]", i), "unknown log kind %d", int32(k))
		}
	}
	if ck := c.GetCheckpoint(); ck != nil {
		// Here it says where to send from; the token stays with the server.
		if err := validateCheckpoint("challenge.checkpoint", ck); err != nil {
			return err
		}
		for i, o := range ck.GetOffsets() {
			if !slices.Contains(c.GetWant(), o.GetKind()) {
				return malformed(fmt.Sprintf("challenge.checkpoint.offsets[%d]", i), "an offset for the %s, which the challenge does not ask for", logName(o.GetKind()))
			}
		}
	}
	return nil
}

func validateEvidence(e *evidencepb.Evidence) error {
	tee := e.GetTee()
	if !validTEE(tee) {
		return malformed("evidence.tee", "%q is not one of tdx, tpm, azure_tdx, sim", truncate(tee))
	}
	if len(e.GetBinding()) != cctrusted.ReportDataSize {
		return malformed("evidence.binding", "%d bytes, want %d", len(e.GetBinding()), cctrusted.ReportDataSize)
	}
	switch cctrusted.TEE(tee) {
	case cctrusted.TEETDX:
		if len(e.GetQuote()) == 0 {
			return malformed("evidence.quote", "a tdx node must send its quote")
		}
		if e.GetTpm() != nil {
			return malformed("evidence.tpm", "a tdx node sends no tpm evidence")
		}
	case cctrusted.TEETPM:
		if e.GetTpm() == nil {
			return malformed("evidence.tpm", "a tpm node must send its tpm evidence")
		}
		if len(e.GetQuote()) != 0 {
			return malformed("evidence.quote", "a tpm node sends its quote in evidence.tpm.quote")
		}
	case cctrusted.TEESim:
		if len(e.GetQuote()) == 0 && e.GetTpm() == nil {
			return malformed("evidence", "a sim node must send a quote or tpm evidence")
		}
	case cctrusted.TEEAzureTDX:
		if err := validateAzure(e); err != nil {
			return err
		}
	}
	if len(e.GetHclReport()) > 0 && cctrusted.TEE(tee) != cctrusted.TEEAzureTDX {
		return malformed("evidence.hcl_report", "only an azure_tdx node sends an HCL report")
	}
	if t := e.GetTpm(); t != nil && cctrusted.TEE(tee) != cctrusted.TEEAzureTDX {
		if err := validateTPM(t); err != nil {
			return err
		}
	}
	for _, l := range evidenceLogs(e) {
		if err := validateLog(l.field, l.log, l.kind); err != nil {
			return err
		}
	}
	if ck := e.GetCheckpoint(); ck != nil {
		if len(ck.GetToken()) > 0 {
			return malformed("evidence.checkpoint.token", "set: evidence echoes the offsets only")
		}
		if err := validateCheckpoint("evidence.checkpoint", ck); err != nil {
			return err
		}
	}
	return nil
}

func validateLog(field string, l *evidencepb.Log, slot evidencepb.LogKind) error {
	if k := l.GetKind(); k != evidencepb.LogKind_LOG_KIND_UNSPECIFIED && k != slot {
		return malformed(field+".kind", "says %s, but the field holds the %s", logName(k), logName(slot))
	}
	switch l.GetEncoding() {
	case evidencepb.Encoding_ENCODING_NONE:
		if l.GetRawSize() != uint64(len(l.GetData())) {
			return malformed(field+".raw_size", "%d, but the uncompressed data is %d bytes", l.GetRawSize(), len(l.GetData()))
		}
	case evidencepb.Encoding_ENCODING_ZSTD, evidencepb.Encoding_ENCODING_GZIP:
	default:
		return malformed(field+".encoding", "unknown encoding %d (this version knows none, zstd, gzip)", int32(l.GetEncoding()))
	}
	return nil
}

// validateAzure checks the parts of an Azure TDX node's evidence: the HCL
// report, the TD quote of its TD report, and the vTPM's quote, whose key
// the HCL report names (so no EK, no certificates and no credential
// activation: nothing else may be sent in their place).
func validateAzure(e *evidencepb.Evidence) error {
	switch n := len(e.GetHclReport()); {
	case n == 0:
		return malformed("evidence.hcl_report", "an azure_tdx node must send its HCL report (vTPM NV index 0x01400001)")
	case n > MaxHCLReport:
		return malformed("evidence.hcl_report", "%d bytes, more than %d", n, MaxHCLReport)
	}
	if len(e.GetQuote()) == 0 {
		return malformed("evidence.quote", "an azure_tdx node must send the TD quote of its HCL report")
	}
	if len(e.GetCcelTable()) > 0 || e.GetCcel() != nil {
		return malformed("evidence.ccel", "an azure_tdx node sends no CCEL: its firmware log is the vTPM's (tpm_log)")
	}
	t := e.GetTpm()
	if t == nil {
		return malformed("evidence.tpm", "an azure_tdx node must send its vTPM quote")
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"ek_public", len(t.GetEkPublic()) > 0},
		{"ek_certificate", len(t.GetEkCertificate()) > 0},
		{"ek_intermediates", len(t.GetEkIntermediates()) > 0},
		{"ak_certificate_chain", len(t.GetAkCertificateChain()) > 0},
	} {
		if f.set {
			return malformed("evidence.tpm."+f.name, "set, but an azure_tdx node's vTPM key is the one its HCL report names: send no EK or certificates")
		}
	}
	return validateTPMQuote(t)
}

func validateTPM(t *evidencepb.TPMEvidence) error {
	if len(t.GetAkPublic()) == 0 {
		return malformed("evidence.tpm.ak_public", "missing")
	}
	if len(t.GetEkPublic()) == 0 && len(t.GetEkCertificate()) == 0 {
		return malformed("evidence.tpm", "needs ek_public or ek_certificate to identify the node")
	}
	if n := len(t.GetAkCertificateChain()); n > maxCerts {
		return malformed("evidence.tpm.ak_certificate_chain", "%d certificates, more than %d", n, maxCerts)
	}
	if n := len(t.GetEkIntermediates()); n > maxCerts {
		return malformed("evidence.tpm.ek_intermediates", "%d certificates, more than %d", n, maxCerts)
	}
	return validateTPMQuote(t)
}

// validateTPMQuote checks a TPM quote's parts: the quote, its signature
// and the PCR banks.
func validateTPMQuote(t *evidencepb.TPMEvidence) error {
	for _, f := range []struct {
		name string
		v    []byte
	}{
		{"evidence.tpm.quote", t.GetQuote()},
		{"evidence.tpm.signature", t.GetSignature()},
	} {
		if len(f.v) == 0 {
			return malformed(f.name, "missing")
		}
	}
	if n := len(t.GetPcrs()); n == 0 || n > maxPCRBanks {
		return malformed("evidence.tpm.pcrs", "%d banks, want 1..%d", n, maxPCRBanks)
	}
	seen := make(map[uint32]bool, len(t.GetPcrs()))
	for i, b := range t.GetPcrs() {
		field := fmt.Sprintf("evidence.tpm.pcrs[%d]", i)
		if seen[b.GetAlg()] {
			return malformed(field+".alg", "bank 0x%04x appears twice", b.GetAlg())
		}
		seen[b.GetAlg()] = true
		if len(b.GetValues()) == 0 {
			return malformed(field+".values", "empty bank 0x%04x", b.GetAlg())
		}
		for idx, v := range b.GetValues() {
			if idx > maxPCRIndex {
				return malformed(field+".values", "pcr index %d is above %d", idx, maxPCRIndex)
			}
			if len(v) == 0 || len(v) > maxPCRValue {
				return malformed(fmt.Sprintf("%s.values[%d]", field, idx), "%d bytes, want 1..%d", len(v), maxPCRValue)
			}
		}
	}
	return nil
}

func validateSecret(s *evidencepb.ActivatedSecret) error {
	if n := len(s.GetSecret()); n == 0 || n > maxSecret {
		return malformed("activated_secret.secret", "%d bytes, want 1..%d", n, maxSecret)
	}
	return nil
}

// checkRawSizes refuses evidence that would exceed the decompression budget
// once its logs are inflated, judged by their declared raw sizes, before
// anything is inflated.
func checkRawSizes(e *evidencepb.Evidence, lim Limits) error {
	total := evidenceBase(e)
	for _, l := range evidenceLogs(e) {
		total = addSat(total, l.log.GetRawSize())
	}
	if limit := uint64(lim.MaxDecompressedBytes); total > limit {
		return &LimitError{What: "evidence after decompression (by the logs' raw_size)", Size: total, Limit: limit}
	}
	return nil
}

// evidenceBase is the size of e without its logs' data: what counts against
// the decompression budget besides the inflated logs.
func evidenceBase(e *evidencepb.Evidence) uint64 {
	n := uint64(proto.Size(e))
	for _, l := range evidenceLogs(e) {
		n -= uint64(len(l.log.GetData()))
	}
	return n
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

type slotLog struct {
	field string
	log   *evidencepb.Log
	kind  evidencepb.LogKind
}

// evidenceLogs lists the logs e carries, with the field and kind of each slot.
func evidenceLogs(e *evidencepb.Evidence) []slotLog {
	all := [...]slotLog{
		{"evidence.ccel", e.GetCcel(), evidencepb.LogKind_LOG_KIND_CCEL},
		{"evidence.tpm_log", e.GetTpmLog(), evidencepb.LogKind_LOG_KIND_TPM},
		{"evidence.ima_log", e.GetImaLog(), evidencepb.LogKind_LOG_KIND_IMA},
		{"evidence.runtime_log", e.GetRuntimeLog(), evidencepb.LogKind_LOG_KIND_RUNTIME},
	}
	out := make([]slotLog, 0, len(all))
	for _, l := range all {
		if l.log != nil {
			out = append(out, l)
		}
	}
	return out
}

// logName names a log kind in error messages.
func logName(k evidencepb.LogKind) string {
	switch k {
	case evidencepb.LogKind_LOG_KIND_CCEL:
		return "ccel log"
	case evidencepb.LogKind_LOG_KIND_TPM:
		return "tpm log"
	case evidencepb.LogKind_LOG_KIND_IMA:
		return "ima log"
	case evidencepb.LogKind_LOG_KIND_RUNTIME:
		return "runtime log"
	}
	return "log"
}

// truncate keeps error messages about hostile strings short.
func truncate(s string) string {
	const max = 32
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
