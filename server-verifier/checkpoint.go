package serververifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// CheckCheckpoint names rejections of incremental evidence that no
// fallback can fix: offsets other than those asked for, suffixes where whole
// logs were asked for, a missing acknowledgement of a new checkpoint.
const CheckCheckpoint = "checkpoint"

// Incremental re-attestation (issue 7). At the end of a verified
// attestation the server signs what it established (register values, log
// ends, firmware facts, workloads) into a token the agent stores; at the
// next one the agent presents it in its hello, the server asks only for
// what the logs gained since, replays that from the recorded register
// values and compares with the new quote. The token is the only state: every
// server holding the trust domain's checkpoint key accepts it.
//
// Soundness: the new quote is verified in full (signature, collateral, TCB,
// binding). A suffix that replays from the recorded value to the newly
// signed value proves, by the hash chain, that the register saw exactly the
// recorded history and then the suffix, so the recorded facts still hold.
// Registers a checkpoint stands for without a log (RTMR0/1 on TDX, whose
// firmware log is not resent) must be unchanged. Anything else falls back to
// a full replay.

// fallbackError ends an incremental round: the server asks again for full
// logs in a fresh round.
type fallbackError struct{ reason string }

func (e *fallbackError) Error() string { return "checkpoint not usable: " + e.reason }

func fallback(format string, args ...any) error {
	return &fallbackError{reason: fmt.Sprintf(format, args...)}
}

// incremental is an accepted checkpoint.
type incremental struct {
	claims *evidencepb.CheckpointClaims
}

// loadCheckpointKey reads the checkpoint key files of a configuration.
func (p *Plugin) loadCheckpointKey(cfg *conf.ServerVerifier) (*evidence.CheckpointKey, error) {
	read := func(key, path string) ([]byte, error) {
		b, err := p.readFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		k, err := evidence.ParseCheckpointKeyFile(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", key, path, err)
		}
		return k, nil
	}
	primary, err := read("checkpoint_key_file", cfg.CheckpointKeyFile)
	if err != nil {
		return nil, err
	}
	var previous [][]byte
	if cfg.CheckpointPreviousKeyFile != "" {
		k, err := read("checkpoint_previous_key_file", cfg.CheckpointPreviousKeyFile)
		if err != nil {
			return nil, err
		}
		previous = append(previous, k)
	}
	return evidence.NewCheckpointKey(primary, previous...)
}

// agentIDOf renders the agent ID of node id, whose verified quote has the
// fields q (nil on TPM, and before a quote is verified), under this
// configuration. A field the node's quote cannot give is PermissionDenied:
// the agent cannot fix it by retrying.
func (a *attestation) agentIDOf(id string, q *conf.AgentPathQuote) (string, error) {
	path, err := a.st.cfg.AgentPath(conf.AgentPathData{TEE: a.tee, ID: id, Quote: q})
	if err != nil {
		code := codes.InvalidArgument
		var fe *conf.AgentPathFieldError
		if errors.As(err, &fe) {
			code = codes.PermissionDenied
		}
		return "", reject(code, CheckAgentID, err)
	}
	return "spiffe://" + a.st.trustDomain + path, nil
}

// needsQuote reports whether the agent path template reads a quote field,
// so the agent ID is known only once the quote verified.
func (a *attestation) needsQuote(id string) bool {
	_, err := a.agentIDOf(id, nil)
	var fe *conf.AgentPathFieldError
	return errors.As(err, &fe)
}

// openCheckpoint returns the hello's checkpoint when this server can use
// it, nil otherwise (the attestation is then a full one; a.fellBack says
// why the token was not used).
func (a *attestation) openCheckpoint(hello *evidencepb.Hello) *incremental {
	ck := hello.GetCheckpoint()
	if ck == nil {
		return nil
	}
	if a.st.ckpt == nil {
		a.fellBack = "this server has no checkpoint_key_file"
		return nil
	}
	claims, err := a.st.ckpt.Open(ck.GetToken(), a.p.now())
	if err != nil {
		a.fellBack = err.Error()
		var ce *evidence.CheckpointError
		if errors.As(err, &ce) && ce.Reason == "forged" {
			// Expiry is routine; a token that does not verify is another
			// trust domain's key, a rotation gone wrong, or an attack.
			a.log.Warn("checkpoint token does not verify; full replay", "tee", a.tee, "instance_id", hello.GetInstanceId(), "error", err)
		}
		return nil
	}
	if claims.GetTee() != a.tee {
		a.fellBack = fmt.Sprintf("the token is for tee %q, the hello says %q", claims.GetTee(), a.tee)
		return nil
	}
	// The token must cover exactly the growing logs this agent sends now.
	var grow []evidencepb.LogKind
	for _, k := range wantLogs(conf.TEE(a.tee), hello.GetCaps()) {
		if k == evidencepb.LogKind_LOG_KIND_IMA || k == evidencepb.LogKind_LOG_KIND_RUNTIME {
			grow = append(grow, k)
		}
	}
	if len(grow) != len(claims.GetOffsets()) || slices.ContainsFunc(grow, func(k evidencepb.LogKind) bool {
		return evidence.OffsetOf(claims.GetOffsets(), k) == nil
	}) {
		a.fellBack = "the token covers other logs than the ones this agent sends"
		return nil
	}
	inc := &incremental{claims: claims}
	if conf.TEE(a.tee) != conf.TEETPM {
		// TDX and the simulator name themselves in the hello, so a token
		// of another node is told before any evidence is asked for; a TPM
		// node's ID (its EK) is checked in verifyTPM. An agent ID built from
		// quote fields is checked in verifyTDX, once the quote verified.
		if a.needsQuote(hello.GetInstanceId()) {
			return inc
		}
		if err := inc.checkAgent(a, hello.GetInstanceId(), nil); err != nil {
			a.fellBack = err.(*fallbackError).reason
			return nil
		}
	}
	return inc
}

// checkAgent falls back unless the token was issued to node id with the
// verified quote fields q.
func (inc *incremental) checkAgent(a *attestation, id string, q *conf.AgentPathQuote) error {
	got, err := a.agentIDOf(id, q)
	if err != nil {
		return fallback("%v", err)
	}
	if got != inc.claims.GetAgentId() {
		return fallback("the token was issued to %s, this node is %s", inc.claims.GetAgentId(), got)
	}
	return nil
}

// incrementalWant is what an incremental challenge asks for: on TDX (and
// the simulator) the firmware log is not resent, because the checkpoint
// stands for it and RTMR0/1 must not have moved; a TPM's firmware log is
// resent (bounded, cached decompression) because its PCRs are checked
// against it.
func incrementalWant(tee conf.TEE, full []evidencepb.LogKind) []evidencepb.LogKind {
	if tee == conf.TEETPM {
		return full
	}
	return slices.DeleteFunc(slices.Clone(full), func(k evidencepb.LogKind) bool { return k == evidencepb.LogKind_LOG_KIND_CCEL })
}

// checkEcho compares the offsets the evidence says its logs start at with
// those the challenge asked for.
func checkEcho(ch *evidencepb.Challenge, ev *evidencepb.Evidence) error {
	asked, got := ch.GetCheckpoint(), ev.GetCheckpoint()
	switch {
	case asked == nil && got == nil:
		return nil
	case asked == nil:
		return rejectf(codes.InvalidArgument, CheckCheckpoint, "the evidence says its logs are suffixes, but this server asked for whole logs")
	case got == nil:
		return rejectf(codes.InvalidArgument, CheckCheckpoint, "the evidence carries whole logs, but this server asked for suffixes")
	case !evidence.SameOffsets(asked.GetOffsets(), got.GetOffsets()):
		return rejectf(codes.PermissionDenied, CheckCheckpoint, "the evidence says its logs start at %s, but this server asked for %s",
			offsetsString(got.GetOffsets()), offsetsString(asked.GetOffsets()))
	}
	return nil
}

func offsetsString(offs []*evidencepb.LogOffset) string {
	parts := make([]string, 0, len(offs))
	for _, o := range offs {
		parts = append(parts, fmt.Sprintf("%s@%d events/%d bytes", o.GetKind(), o.GetEvents(), o.GetBytes()))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// register returns the recorded value of imr in bank alg, or nil.
func (inc *incremental) register(imr cctrusted.IMR, alg cctrusted.Algorithm) []byte {
	for _, r := range inc.claims.GetRegisters() {
		if r.GetSpace() == uint32(imr.Space) && r.GetIndex() == imr.Index && r.GetAlg() == uint32(alg) {
			return r.GetValue()
		}
	}
	return nil
}

// firmware turns the recorded firmware facts back into what the selectors
// and policies read.
func (inc *incremental) firmware() *eventlog.Facts {
	fw := inc.claims.GetFirmware()
	if fw == nil {
		return nil
	}
	return &eventlog.Facts{
		SecureBoot: fw.GetSecureBoot(), SecureBootKnown: fw.GetSecureBootKnown(),
		KernelCmdline: fw.GetKernelCmdline(), KernelCmdlineKnown: fw.GetKernelCmdlineKnown(),
		Bootloader: fw.GetBootloader(),
	}
}

// verifyTDX checks incremental TDX evidence against the quote body: RTMR0
// and RTMR1 unchanged, RTMR2 = the recorded value extended with the IMA
// suffix, RTMR3 = the recorded value extended with the runtime suffix.
func (inc *incremental) verifyTDX(body *tdxquote.Body, logs *evidence.Logs, next *checkpointState) (*eventlog.Facts, imaResult, *runtimeResult, error) {
	for i := range 2 {
		rec := inc.register(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384)
		if !bytes.Equal(rec, body.RTMR[i][:]) {
			return nil, imaResult{}, nil, fallback("rtmr%d is %x, the checkpoint recorded %x (rebooted?)", i, body.RTMR[i], rec)
		}
	}
	suffix, err := inc.ima(logs.IMA, cctrusted.RTMR(2).IMR(), cctrusted.AlgSHA384, body.RTMR[2][:], next)
	if err != nil {
		return nil, imaResult{}, nil, err
	}
	rt, err := inc.runtime(logs.Runtime, cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384, body.RTMR[3][:], next)
	if err != nil {
		return nil, imaResult{}, nil, err
	}
	for i := range body.RTMR {
		next.register(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384, body.RTMR[i][:])
	}
	return inc.firmware(), inc.imaWith(suffix), rt, nil
}

// imaWith is the IMA result of the whole list: what the checkpoint
// recorded for the prefix and what the suffix added. Violations add up, so a
// suffix without any cannot clear those of the prefix.
func (inc *incremental) imaWith(suffix imaSuffix) imaResult {
	return imaResult{
		verified:   inc.claims.GetImaVerified() || suffix.entries > 0,
		violations: int(inc.claims.GetImaViolations()) + suffix.violations,
	}
}

// imaSuffix is what an IMA suffix added to the checkpoint's list.
type imaSuffix struct{ entries, violations int }

// verifyTPM checks incremental TPM evidence: PCR10 = the recorded value
// extended with the IMA suffix, the runtime PCR likewise with the runtime
// suffix. reserved is the server's tpm.runtime_pcr (zero: unset); what the
// runtime record proves is decided after, as for a full replay.
func (inc *incremental) verifyTPM(pcrs cctrusted.Registers, logs *evidence.Logs, next *checkpointState, reserved cctrusted.PCR) (imaResult, *runtimeResult, error) {
	var suffix imaSuffix
	if evidence.OffsetOf(inc.claims.GetOffsets(), evidencepb.LogKind_LOG_KIND_IMA) != nil {
		signed, ok := pcrs.Get(imaPCR.IMR(), cctrusted.AlgSHA256)
		if !ok {
			return imaResult{}, nil, fallback("the quote does not cover pcr10 in the sha256 bank")
		}
		var err error
		if suffix, err = inc.ima(logs.IMA, imaPCR.IMR(), cctrusted.AlgSHA256, signed, next); err != nil {
			return imaResult{}, nil, err
		}
		next.register(imaPCR.IMR(), cctrusted.AlgSHA256, signed)
	}
	imr, alg := inc.runtimePCR(reserved)
	if p := cctrusted.PCR(imr.Index); conf.RuntimePCRProtected(p) && p != reserved {
		// tpm.runtime_pcr changed since the token was issued.
		return imaResult{}, nil, fallback("the checkpoint recorded the runtime log on %v, this server's tpm.runtime_pcr is %d", imr, reserved)
	}
	signed, ok := pcrs.Get(imr, alg)
	if !ok {
		return imaResult{}, nil, fallback("the quote does not cover the runtime register %v in the %v bank", imr, alg)
	}
	rt, err := inc.runtime(logs.Runtime, imr, alg, signed, next)
	if err != nil {
		return imaResult{}, nil, err
	}
	next.register(imr, alg, signed)
	return inc.imaWith(suffix), rt, nil
}

// runtimePCR is the PCR (11..23) the checkpoint recorded for the runtime
// log; when it recorded none, the server's tpm.runtime_pcr (reserved) or
// PCR23, in sha256.
func (inc *incremental) runtimePCR(reserved cctrusted.PCR) (cctrusted.IMR, cctrusted.Algorithm) {
	for _, r := range inc.claims.GetRegisters() {
		if cctrusted.Space(r.GetSpace()) == cctrusted.SpacePCR && r.GetIndex() >= conf.MinRuntimePCR && r.GetIndex() < cctrusted.NumPCRs {
			return cctrusted.PCR(r.GetIndex()).IMR(), cctrusted.Algorithm(r.GetAlg())
		}
	}
	return noLogRuntimePCR(reserved).IMR(), cctrusted.AlgSHA256
}

// noLogRuntimePCR is the runtime register a checkpoint records for a node
// that sent no runtime log: the server's tpm.runtime_pcr, whose value is
// then known to be zero, or PCR23 without one.
func noLogRuntimePCR(reserved cctrusted.PCR) cctrusted.PCR {
	if reserved != 0 {
		return reserved
	}
	return conf.DefaultRuntimePCR
}

// ima replays an IMA suffix from the recorded value of imr to signed and
// returns its number of entries and of violations.
func (inc *incremental) ima(raw []byte, imr cctrusted.IMR, alg cctrusted.Algorithm, signed []byte, next *checkpointState) (imaSuffix, error) {
	off := evidence.OffsetOf(inc.claims.GetOffsets(), evidencepb.LogKind_LOG_KIND_IMA)
	start := inc.register(imr, alg)
	if start == nil {
		return imaSuffix{}, fallback("the checkpoint records no %v value in the %v bank", imr, alg)
	}
	if off == nil {
		// IMA is not sent: the register must not have moved.
		if !bytes.Equal(start, signed) {
			return imaSuffix{}, fallback("%v moved since the checkpoint, and no IMA log is sent", imr)
		}
		return imaSuffix{}, nil
	}
	var suffix imaSuffix
	if len(raw) == 0 {
		if !bytes.Equal(start, signed) {
			return imaSuffix{}, fallback("%v moved since the checkpoint, but the IMA suffix is empty", imr)
		}
	} else {
		l, err := ima.Parse(raw, ima.Options{})
		if err != nil {
			return imaSuffix{}, fallback("the IMA suffix does not parse: %v", err)
		}
		if err := verifyIMASuffix(l, imr, alg, signed, start); err != nil {
			return imaSuffix{}, fallback("the checkpoint's %v and the IMA suffix (%d entries from entry %d) do not replay to the signed value: %v", imr, len(l.Entries), off.GetEvents(), err)
		}
		suffix = imaSuffix{entries: len(l.Entries), violations: l.Violations()}
	}
	next.offset(evidencepb.LogKind_LOG_KIND_IMA, off.GetEvents()+uint64(suffix.entries), off.GetBytes()+uint64(len(raw)))
	return suffix, nil
}

// verifyIMASuffix replays an IMA suffix as a full attestation replays the
// whole list: on RTMR2 through ima.Log.VerifyRTMR2 (every entry, on the one
// register field the suffix uses), on a PCR through ima.Log.Verify.
func verifyIMASuffix(l *ima.Log, imr cctrusted.IMR, alg cctrusted.Algorithm, signed, start []byte) error {
	if imr == cctrusted.RTMR(2).IMR() && alg == cctrusted.AlgSHA384 {
		_, err := l.VerifyRTMR2(signed, start)
		return err
	}
	return l.Verify(alg, imr, signed, start)
}

// runtime replays a runtime log suffix from the recorded value of imr to
// signed; the workloads are the recorded ones and the suffix's.
func (inc *incremental) runtime(raw []byte, imr cctrusted.IMR, alg cctrusted.Algorithm, signed []byte, next *checkpointState) (*runtimeResult, error) {
	off := evidence.OffsetOf(inc.claims.GetOffsets(), evidencepb.LogKind_LOG_KIND_RUNTIME)
	if off == nil {
		// Not sent, as in a full attestation without the log.
		return &runtimeResult{known: allZero(signed)}, nil
	}
	start := inc.register(imr, alg)
	if start == nil {
		return nil, fallback("the checkpoint records no %v value in the %v bank", imr, alg)
	}
	rt := &runtimeResult{known: inc.claims.GetWorkloadsKnown(), imr: imr, alg: alg}
	for _, w := range inc.claims.GetWorkloads() {
		rt.workloads = append(rt.workloads, runtimelog.Workload{ExeSHA256: w.GetExeSha256(), ContainerID: w.GetContainerId()})
	}
	if len(raw) == 0 {
		if !bytes.Equal(start, signed) {
			return nil, fallback("%v moved since the checkpoint, but the runtime suffix is empty", imr)
		}
		next.offset(evidencepb.LogKind_LOG_KIND_RUNTIME, off.GetEvents(), off.GetBytes())
		return rt, nil
	}
	rebased, err := rebaseRuntimeRecords(raw, off.GetEvents())
	if err != nil {
		return nil, fallback("runtime suffix: %v", err)
	}
	l, err := runtimelog.Decode(rebased, runtimelog.DefaultLimits())
	if err != nil {
		return nil, fallback("runtime suffix: %v", err)
	}
	got := l.IMR()
	if t, err := got.TDX(); err == nil && imr.Space == cctrusted.SpaceRTMR {
		got = t
	}
	if got != imr || l.Algorithm() != alg {
		return nil, fallback("the runtime suffix extends %v in the %v bank, the checkpoint recorded %v in %v", l.IMR(), l.Algorithm(), imr, alg)
	}
	cur, err := extendFrom(alg, start, l.Events())
	if err != nil {
		return nil, fallback("runtime suffix: %v", err)
	}
	if !bytes.Equal(cur, signed) {
		return nil, fallback("the checkpoint's %v and the runtime suffix (%d records from record %d) replay to %x, the quote signed %x", imr, l.Len(), off.GetEvents(), cur, signed)
	}
	rt.workloads = append(rt.workloads, l.Workloads()...)
	rt.noticesFrom(l, int(off.GetEvents()))
	rt.records = int(off.GetEvents()) + l.Len()
	next.offset(evidencepb.LogKind_LOG_KIND_RUNTIME, off.GetEvents()+uint64(l.Len()), off.GetBytes()+uint64(len(raw)))
	return rt, nil
}

// extendFrom folds the events' alg digests into start: v = H(v || d).
func extendFrom(alg cctrusted.Algorithm, start []byte, evs []cctrusted.Event) ([]byte, error) {
	var h hash.Hash
	switch alg {
	case cctrusted.AlgSHA256:
		h = sha256.New()
	case cctrusted.AlgSHA384:
		h = sha512.New384()
	default:
		return nil, fmt.Errorf("bank %v", alg)
	}
	if len(start) != h.Size() {
		return nil, fmt.Errorf("recorded value of %d bytes for %v", len(start), alg)
	}
	cur := bytes.Clone(start)
	for i := range evs {
		d, ok := evs[i].Digest(alg)
		if !ok {
			return nil, fmt.Errorf("record %d has no %v digest", i, alg)
		}
		h.Reset()
		h.Write(cur)
		h.Write(d)
		cur = h.Sum(cur[:0])
	}
	return cur, nil
}

// Runtime log framing (package runtimelog): every record is four TLVs
// (u8 type, u32 big-endian length, value), the first the record number as a
// u64 big-endian value.
const (
	tlvHeader       = 5
	tlvsPerRecord   = 4
	recnumType      = 0
	recnumValueSize = 8
)

// rebaseRuntimeRecords returns a copy of a runtime log suffix whose first
// record is number first, renumbered from zero, so runtimelog.Decode (which
// wants a log from its start) can check it. The record numbers are not
// measured (a record's digest covers its content only); they must still run
// on from first without a gap, or the suffix is refused.
func rebaseRuntimeRecords(raw []byte, first uint64) ([]byte, error) {
	out := bytes.Clone(raw)
	for off, i := 0, uint64(0); off < len(out); i++ {
		for f := range tlvsPerRecord {
			if len(out)-off < tlvHeader {
				return nil, fmt.Errorf("record %d: truncated header at offset %d", first+i, off)
			}
			size := binary.BigEndian.Uint32(out[off+1:])
			if uint64(size) > uint64(len(out)-off-tlvHeader) {
				return nil, fmt.Errorf("record %d: field of %d bytes runs past the end at offset %d", first+i, size, off)
			}
			if f == 0 {
				if out[off] != recnumType || size != recnumValueSize {
					return nil, fmt.Errorf("record %d at offset %d does not start with a record number", first+i, off)
				}
				v := out[off+tlvHeader : off+tlvHeader+recnumValueSize]
				if got := binary.BigEndian.Uint64(v); got != first+i {
					return nil, fmt.Errorf("record at offset %d is number %d, want %d (the suffix does not start at the checkpoint)", off, got, first+i)
				}
				binary.BigEndian.PutUint64(v, i)
			}
			off += tlvHeader + int(size)
		}
	}
	return out, nil
}

// countIMAEntries counts the entries of an IMA list without parsing their
// fields (the appraisal already replayed it): lines of an ascii list,
// framing of a little-endian binary one. The count is for operators and
// the checkpoint's bookkeeping; the byte offset is what cuts the log. -1
// when the framing does not add up.
func countIMAEntries(raw []byte) int {
	format, ok := ima.Sniff(raw)
	if !ok {
		return -1
	}
	if format == ima.FormatASCII {
		n := bytes.Count(raw, []byte{'\n'})
		if len(raw) > 0 && raw[len(raw)-1] != '\n' {
			n++
		}
		return n
	}
	n := 0
	for off := 0; off < len(raw); n++ {
		// u32 PCR, 20-byte template hash, u32 name length, name.
		if len(raw)-off < 28 {
			return -1
		}
		nameLen := int(binary.LittleEndian.Uint32(raw[off+24:]))
		off += 28
		if nameLen > len(raw)-off {
			return -1
		}
		name := raw[off : off+nameLen]
		off += nameLen
		if string(name) == "ima" {
			// Legacy: a 20-byte digest, then u32 length and the file name.
			if len(raw)-off < 24 {
				return -1
			}
			l := int(binary.LittleEndian.Uint32(raw[off+20:]))
			off += 24
			if l > len(raw)-off {
				return -1
			}
			off += l
			continue
		}
		if len(raw)-off < 4 {
			return -1
		}
		l := int(binary.LittleEndian.Uint32(raw[off:]))
		off += 4
		if l > len(raw)-off {
			return -1
		}
		off += l
	}
	return n
}

// checkpointState is what a checkpoint issued after this attestation
// records.
type checkpointState struct {
	registers      []*evidencepb.RegisterValue
	offsets        []*evidencepb.LogOffset
	firmware       *evidencepb.FirmwareFacts
	ima            imaResult
	workloads      []*evidencepb.WorkloadFact
	workloadsKnown bool
	// unusable says why no checkpoint can be issued (too many workloads,
	// an unparsable log size...); empty when one can.
	unusable string
}

// newCheckpointState returns where this attestation records what a
// checkpoint would carry, or nil when none will be issued (no key, or an
// agent without the capability): every method is nil-safe, so full
// attestations of other agents pay nothing for it.
func (a *attestation) newCheckpointState() *checkpointState {
	if a.st.ckpt == nil || !a.checkpointCap {
		return nil
	}
	return &checkpointState{}
}

func (s *checkpointState) register(imr cctrusted.IMR, alg cctrusted.Algorithm, v []byte) {
	if s == nil {
		return
	}
	s.registers = append(s.registers, &evidencepb.RegisterValue{Space: uint32(imr.Space), Index: imr.Index, Alg: uint32(alg), Value: bytes.Clone(v)})
}

func (s *checkpointState) offset(k evidencepb.LogKind, events, size uint64) {
	if s == nil {
		return
	}
	s.offsets = append(s.offsets, &evidencepb.LogOffset{Kind: k, Events: events, Bytes: size})
}

// fullTDX records a fully replayed TDX attestation: the four RTMRs and the
// ends of the growing logs that were asked for (0 for one that was asked
// for and not sent: the next suffix starts at its beginning).
func (s *checkpointState) fullTDX(body *tdxquote.Body, logs *evidence.Logs, rl *runtimelog.Log, want []evidencepb.LogKind) {
	if s == nil {
		return
	}
	for i := range body.RTMR {
		s.register(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384, body.RTMR[i][:])
	}
	records := 0
	if rl != nil {
		records = rl.Len()
	}
	s.growingLogs(logs, -1, records, want)
}

// growingLogs records the ends of the IMA and runtime logs that were asked
// for; imaEntries < 0 counts them.
func (s *checkpointState) growingLogs(logs *evidence.Logs, imaEntries, runtimeRecords int, want []evidencepb.LogKind) {
	if slices.Contains(want, evidencepb.LogKind_LOG_KIND_IMA) {
		n := imaEntries
		if n < 0 {
			n = 0
			if len(logs.IMA) > 0 {
				if n = countIMAEntries(logs.IMA); n < 0 {
					s.unusable = "the IMA log's entries could not be counted"
					return
				}
			}
		}
		s.offset(evidencepb.LogKind_LOG_KIND_IMA, uint64(n), uint64(len(logs.IMA)))
	}
	if slices.Contains(want, evidencepb.LogKind_LOG_KIND_RUNTIME) {
		s.offset(evidencepb.LogKind_LOG_KIND_RUNTIME, uint64(runtimeRecords), uint64(len(logs.Runtime)))
	}
}

// fullTPM records a fully replayed TPM attestation: PCR10 and the runtime
// PCR (for a node without a runtime log, the server's tpm.runtime_pcr,
// reserved, when set), and the ends of the growing logs.
func (s *checkpointState) fullTPM(pcrs cctrusted.Registers, logs *evidence.Logs, imaEntries int, rt *runtimeResult, want []evidencepb.LogKind, reserved cctrusted.PCR) {
	if s == nil {
		return
	}
	if v, ok := pcrs.Get(imaPCR.IMR(), cctrusted.AlgSHA256); ok {
		s.register(imaPCR.IMR(), cctrusted.AlgSHA256, v)
	}
	imr, alg := rt.imr, rt.alg
	if rt.records == 0 {
		imr, alg = noLogRuntimePCR(reserved).IMR(), cctrusted.AlgSHA256
	}
	if v, ok := pcrs.Get(imr, alg); ok {
		s.register(imr, alg, v)
	}
	s.growingLogs(logs, imaEntries, rt.records, want)
}

// facts records the firmware facts, IMA and the workloads.
func (s *checkpointState) facts(fw *eventlog.Facts, ir imaResult, rt *runtimeResult) {
	if s == nil {
		return
	}
	if fw != nil {
		s.firmware = &evidencepb.FirmwareFacts{
			SecureBootKnown: fw.SecureBootKnown, SecureBoot: fw.SecureBoot,
			KernelCmdlineKnown: fw.KernelCmdlineKnown, KernelCmdline: fw.KernelCmdline,
			Bootloader: fw.Bootloader,
		}
	}
	s.ima = ir
	s.workloadsKnown = rt.known
	if rt.incomplete != nil {
		// A checkpoint carries no notices: without one, every later
		// attestation replays the notice again and keeps the fact.
		s.unusable = fmt.Sprintf("the runtime log is incomplete from record %d (%v)", rt.incomplete.Record, rt.incomplete.Kind)
		return
	}
	type pair struct{ exe, container string }
	seen := map[pair]bool{}
	for _, w := range rt.workloads {
		k := pair{string(w.ExeSHA256), w.ContainerID}
		if seen[k] {
			continue
		}
		seen[k] = true
		s.workloads = append(s.workloads, &evidencepb.WorkloadFact{ExeSha256: bytes.Clone(w.ExeSHA256), ContainerId: w.ContainerID})
	}
	slices.SortFunc(s.workloads, func(a, b *evidencepb.WorkloadFact) int {
		if c := bytes.Compare(a.GetExeSha256(), b.GetExeSha256()); c != 0 {
			return c
		}
		return strings.Compare(a.GetContainerId(), b.GetContainerId())
	})
	if len(s.workloads) > evidence.MaxCheckpointWorkloads {
		s.unusable = fmt.Sprintf("%d distinct workloads, more than a checkpoint carries (%d)", len(s.workloads), evidence.MaxCheckpointWorkloads)
	}
}

// issueCheckpoint signs what this attestation established and hands it to
// the agent, when both sides do checkpoints. A checkpoint that cannot be
// issued (too large) is logged, not fatal: the next attestation is full.
func (a *attestation) issueCheckpoint(ctx context.Context, hello *evidencepb.Hello, v *verified) error {
	if a.st.ckpt == nil || v.next == nil || !slices.Contains(hello.GetCaps(), evidence.CapCheckpoint) {
		return nil
	}
	s := v.next
	if s.unusable != "" {
		a.log.Debug("no checkpoint issued", "agent_id", a.agentID, "reason", s.unusable)
		return nil
	}
	now := a.p.now()
	claims := &evidencepb.CheckpointClaims{
		Format:         evidence.CheckpointFormat,
		AgentId:        a.agentID,
		Tee:            a.tee,
		IssuedAt:       now.Unix(),
		ExpiresAt:      now.Add(a.st.cfg.CheckpointTTL).Unix(),
		Registers:      s.registers,
		Offsets:        s.offsets,
		Firmware:       s.firmware,
		ImaVerified:    s.ima.verified,
		Workloads:      s.workloads,
		WorkloadsKnown: s.workloadsKnown,
		ImaViolations:  uint32(s.ima.violations),
	}
	tok, err := a.st.ckpt.Seal(claims)
	if err != nil {
		a.log.Debug("no checkpoint issued", "agent_id", a.agentID, "reason", err)
		return nil
	}
	if err := a.sendChallenge(&evidencepb.Challenge{Checkpoint: &evidencepb.Checkpoint{Token: tok, Offsets: claims.GetOffsets()}}); err != nil {
		return err
	}
	resp, err := a.recv(ctx, "checkpoint acknowledgement")
	if err != nil {
		return err
	}
	if err := evidence.DecodeAck(resp.GetChallengeResponse(), a.limits); err != nil {
		return reject(codes.InvalidArgument, CheckCheckpoint, fmt.Errorf("the answer to the checkpoint challenge: %w", err))
	}
	return nil
}
