package evidence

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

// Bounds of checkpoints. A token must fit in a challenge the agent accepts
// (64 KiB) and in a hello, next to everything else; the claims of a real node
// (four registers, two offsets, a kernel command line, a few dozen
// workloads) take a few KiB.
const (
	// MaxCheckpointTokenBytes bounds a token, checked before it is parsed.
	MaxCheckpointTokenBytes = 32 << 10
	// MaxCheckpointWorkloads bounds the workloads a token carries; a node
	// that ran more distinct ones is re-attested in full every time.
	MaxCheckpointWorkloads = 256
	// MinCheckpointKeyBytes is the shortest checkpoint key accepted: the
	// HMAC-SHA-256 block of security it is meant to give.
	MinCheckpointKeyBytes = 32
	// CheckpointFormat is the version of CheckpointClaims this build
	// writes and reads. 2 added ima_violations: a format-1 token, which did
	// not record the prefix's IMA violations, is refused (the agent then
	// re-attests with full logs once).
	CheckpointFormat = 2
	// MaxCheckpointIMAVerdicts bounds the IMA policy verdicts a token
	// carries; a server with more IMA policies appraises whole lists.
	MaxCheckpointIMAVerdicts = 16

	maxCheckpointOffsets   = 4
	maxCheckpointRegisters = 32
	maxCheckpointAgentID   = 2048
	maxCheckpointCmdline   = 4096
	maxCheckpointString    = 256
	checkpointMACContext   = "ccnp-checkpoint-v1"
)

// ErrCheckpoint matches every reason a checkpoint token is refused:
// CheckpointError.Is reports it.
var ErrCheckpoint = errors.New("checkpoint token refused")

// CheckpointError says why a token was refused. Reason is one of
// "malformed", "forged" (the MAC does not verify: another key, or edited
// bytes), "expired", "not yet valid".
type CheckpointError struct {
	Reason string
	Err    error
}

// Error names the reason and the detail.
func (e *CheckpointError) Error() string {
	if e.Err == nil {
		return "checkpoint token " + e.Reason
	}
	return "checkpoint token " + e.Reason + ": " + e.Err.Error()
}

// Is lets errors.Is(err, ErrCheckpoint) match.
func (e *CheckpointError) Is(target error) bool { return target == ErrCheckpoint }

// Unwrap returns the detail.
func (e *CheckpointError) Unwrap() error { return e.Err }

func ckptErr(reason, format string, args ...any) error {
	return &CheckpointError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// CheckpointKey signs and verifies checkpoint tokens. Every server of a
// trust domain holds the same key, so a token one issued is accepted by the
// others (SPIRE's HA mode): the server keeps no per-agent state. It is
// immutable and safe for concurrent use.
type CheckpointKey struct {
	// keys[0] signs; all verify (rotation: the previous key stays for one
	// token lifetime).
	keys [][]byte
	// skew is how far in the future issued_at may be: servers' clocks
	// differ a little.
	skew time.Duration
}

// NewCheckpointKey returns a key that signs with primary and also accepts
// tokens signed with any of previous (key rotation). Each key must be at
// least MinCheckpointKeyBytes long; the bytes are copied.
func NewCheckpointKey(primary []byte, previous ...[]byte) (*CheckpointKey, error) {
	k := &CheckpointKey{skew: 5 * time.Minute}
	for i, b := range append([][]byte{primary}, previous...) {
		if len(b) < MinCheckpointKeyBytes {
			return nil, fmt.Errorf("evidence: checkpoint key %d is %d bytes, want at least %d", i, len(b), MinCheckpointKeyBytes)
		}
		k.keys = append(k.keys, bytes.Clone(b))
	}
	return k, nil
}

// ParseCheckpointKeyFile returns the key a checkpoint_key_file holds: its
// bytes without trailing white space (so `openssl rand -hex 32 > file`
// works, and every server reads the same key from the same file).
func ParseCheckpointKeyFile(b []byte) ([]byte, error) {
	b = bytes.TrimRight(b, " \t\r\n")
	if len(b) < MinCheckpointKeyBytes {
		return nil, fmt.Errorf("%d bytes, want at least %d (e.g. `openssl rand -hex 32`)", len(b), MinCheckpointKeyBytes)
	}
	return b, nil
}

func (k *CheckpointKey) mac(key, claims []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(checkpointMACContext))
	m.Write([]byte{0})
	m.Write(claims)
	return m.Sum(nil)
}

// Seal checks c and returns the signed token. It fails when the token would
// exceed MaxCheckpointTokenBytes: the caller then issues none.
func (k *CheckpointKey) Seal(c *evidencepb.CheckpointClaims) ([]byte, error) {
	if err := validateClaims(c); err != nil {
		return nil, err
	}
	claims, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("evidence: encoding checkpoint claims: %w", err)
	}
	tok, err := proto.MarshalOptions{Deterministic: true}.Marshal(&evidencepb.SignedCheckpoint{Claims: claims, Mac: k.mac(k.keys[0], claims)})
	if err != nil {
		return nil, fmt.Errorf("evidence: encoding checkpoint token: %w", err)
	}
	if len(tok) > MaxCheckpointTokenBytes {
		return nil, &LimitError{What: "checkpoint token", Size: uint64(len(tok)), Limit: MaxCheckpointTokenBytes}
	}
	return tok, nil
}

// Open verifies a token's MAC (before anything in the claims is parsed),
// then its format, bounds and validity at now, and returns the claims. The
// caller still checks that they are for this agent and TEE. Errors match
// ErrCheckpoint.
func (k *CheckpointKey) Open(token []byte, now time.Time) (*evidencepb.CheckpointClaims, error) {
	if len(token) == 0 || len(token) > MaxCheckpointTokenBytes {
		return nil, ckptErr("malformed", "%d bytes, want 1..%d", len(token), MaxCheckpointTokenBytes)
	}
	var sc evidencepb.SignedCheckpoint
	if err := (proto.UnmarshalOptions{RecursionLimit: maxDepth}).Unmarshal(token, &sc); err != nil {
		return nil, &CheckpointError{Reason: "malformed", Err: err}
	}
	ok := false
	for _, key := range k.keys {
		if hmac.Equal(k.mac(key, sc.GetClaims()), sc.GetMac()) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, ckptErr("forged", "MAC does not verify under the configured checkpoint key")
	}
	c := new(evidencepb.CheckpointClaims)
	if err := (proto.UnmarshalOptions{RecursionLimit: maxDepth}).Unmarshal(sc.GetClaims(), c); err != nil {
		return nil, &CheckpointError{Reason: "malformed", Err: err}
	}
	if err := validateClaims(c); err != nil {
		return nil, &CheckpointError{Reason: "malformed", Err: err}
	}
	if t := now.Unix(); t >= c.GetExpiresAt() {
		return nil, ckptErr("expired", "expired at %s", time.Unix(c.GetExpiresAt(), 0).UTC().Format(time.RFC3339))
	}
	if issued := time.Unix(c.GetIssuedAt(), 0); issued.After(now.Add(k.skew)) {
		return nil, ckptErr("not yet valid", "issued at %s, later than now (%s) plus %s of clock skew", issued.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), k.skew)
	}
	return c, nil
}

// validateCheckpoint checks the offsets (and token size) of a Checkpoint
// message: only the logs that grow (IMA, runtime) have offsets, each once.
func validateCheckpoint(field string, c *evidencepb.Checkpoint) error {
	if n := len(c.GetToken()); n > MaxCheckpointTokenBytes {
		return &LimitError{What: field + ".token", Size: uint64(n), Limit: MaxCheckpointTokenBytes}
	}
	return validateOffsets(field+".offsets", c.GetOffsets())
}

func validateOffsets(field string, offs []*evidencepb.LogOffset) error {
	if len(offs) > maxCheckpointOffsets {
		return malformed(field, "%d entries, more than %d", len(offs), maxCheckpointOffsets)
	}
	var seen [8]bool
	for i, o := range offs {
		f := fmt.Sprintf("%s[%d]", field, i)
		k := o.GetKind()
		if k != evidencepb.LogKind_LOG_KIND_IMA && k != evidencepb.LogKind_LOG_KIND_RUNTIME {
			return malformed(f+".kind", "%s: only the ima and runtime logs grow, so only they have offsets", logName(k))
		}
		if seen[k] {
			return malformed(f+".kind", "the %s appears twice", logName(k))
		}
		seen[k] = true
		if o.GetEvents() > o.GetBytes() {
			return malformed(f, "%d events in %d bytes: every event takes bytes", o.GetEvents(), o.GetBytes())
		}
	}
	return nil
}

// validateClaims bounds every field of a token's claims.
func validateClaims(c *evidencepb.CheckpointClaims) error {
	if c == nil {
		return malformed("checkpoint", "no claims")
	}
	if c.GetFormat() != CheckpointFormat {
		return malformed("checkpoint.format", "%d, this build reads %d", c.GetFormat(), CheckpointFormat)
	}
	if n := len(c.GetAgentId()); n == 0 || n > maxCheckpointAgentID {
		return malformed("checkpoint.agent_id", "%d bytes, want 1..%d", n, maxCheckpointAgentID)
	}
	if !validTEE(c.GetTee()) {
		return malformed("checkpoint.tee", "%q is not one of tdx, tpm, azure_tdx, sim", truncate(c.GetTee()))
	}
	if c.GetExpiresAt() <= c.GetIssuedAt() {
		return malformed("checkpoint.expires_at", "%d is not after issued_at %d", c.GetExpiresAt(), c.GetIssuedAt())
	}
	if n := len(c.GetRegisters()); n > maxCheckpointRegisters {
		return malformed("checkpoint.registers", "%d entries, more than %d", n, maxCheckpointRegisters)
	}
	for i, r := range c.GetRegisters() {
		if n := len(r.GetValue()); n == 0 || n > maxPCRValue {
			return malformed(fmt.Sprintf("checkpoint.registers[%d].value", i), "%d bytes, want 1..%d", n, maxPCRValue)
		}
	}
	if err := validateOffsets("checkpoint.offsets", c.GetOffsets()); err != nil {
		return err
	}
	if fw := c.GetFirmware(); fw != nil {
		if n := len(fw.GetKernelCmdline()); n > maxCheckpointCmdline {
			return malformed("checkpoint.firmware.kernel_cmdline", "%d bytes, more than %d", n, maxCheckpointCmdline)
		}
		if n := len(fw.GetBootloader()); n > maxCheckpointString {
			return malformed("checkpoint.firmware.bootloader", "%d bytes, more than %d", n, maxCheckpointString)
		}
	}
	if n := len(c.GetWorkloads()); n > MaxCheckpointWorkloads {
		return malformed("checkpoint.workloads", "%d entries, more than %d", n, MaxCheckpointWorkloads)
	}
	for i, w := range c.GetWorkloads() {
		if len(w.GetExeSha256()) != sha256.Size {
			return malformed(fmt.Sprintf("checkpoint.workloads[%d].exe_sha256", i), "%d bytes, want %d", len(w.GetExeSha256()), sha256.Size)
		}
		if n := len(w.GetContainerId()); n > maxCheckpointString {
			return malformed(fmt.Sprintf("checkpoint.workloads[%d].container_id", i), "%d bytes, more than %d", n, maxCheckpointString)
		}
	}
	return validateIMAVerdicts(c.GetImaVerdicts())
}

// validateIMAVerdicts bounds the IMA policy verdicts of a token; what a
// verdict says is checked by eventlog/ima/imapolicy.UnmarshalVerdict.
func validateIMAVerdicts(vs []*evidencepb.IMAVerdict) error {
	if n := len(vs); n > MaxCheckpointIMAVerdicts {
		return malformed("checkpoint.ima_verdicts", "%d entries, more than %d", n, MaxCheckpointIMAVerdicts)
	}
	seen := make(map[string]bool, len(vs))
	for i, v := range vs {
		f := fmt.Sprintf("checkpoint.ima_verdicts[%d]", i)
		if n := len(v.GetPolicy()); n == 0 || n > maxCheckpointString {
			return malformed(f+".policy", "%d bytes, want 1..%d", n, maxCheckpointString)
		}
		if seen[v.GetPolicy()] {
			return malformed(f+".policy", "%q appears twice", truncate(v.GetPolicy()))
		}
		seen[v.GetPolicy()] = true
		if len(v.GetVerdict()) == 0 {
			return malformed(f+".verdict", "empty")
		}
	}
	return nil
}

// NewCheckpointChallenge wraps a checkpoint issuance: the token and offsets
// the agent stores and presents in its next hello.
func NewCheckpointChallenge(token []byte, offsets []*evidencepb.LogOffset) *evidencepb.Payload {
	return NewChallenge(&evidencepb.Challenge{Checkpoint: &evidencepb.Checkpoint{Token: token, Offsets: offsets}})
}

// OffsetOf returns the offset of log kind k in offs, or nil.
func OffsetOf(offs []*evidencepb.LogOffset, k evidencepb.LogKind) *evidencepb.LogOffset {
	for _, o := range offs {
		if o.GetKind() == k {
			return o
		}
	}
	return nil
}

// SameOffsets reports whether a and b list the same offsets, in any order.
func SameOffsets(a, b []*evidencepb.LogOffset) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		y := OffsetOf(b, x.GetKind())
		if y == nil || y.GetEvents() != x.GetEvents() || y.GetBytes() != x.GetBytes() {
			return false
		}
	}
	return true
}
