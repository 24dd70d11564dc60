package serververifier

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/policy"
)

// factsFromFirmware copies what a verified firmware log established into
// the policy facts; nil facts (no log) leave them unknown.
func factsFromFirmware(f *policy.Facts, fw *eventlog.Facts) {
	if fw == nil {
		return
	}
	if fw.SecureBootKnown {
		sb := fw.SecureBoot
		f.SecureBoot = &sb
	}
	if fw.KernelCmdlineKnown {
		cmd := fw.KernelCmdline
		f.KernelCmdline = &cmd
	}
}

// bootSelectors are the selectors of the facts a firmware log proved.
func bootSelectors(f *policy.Facts, fw *eventlog.Facts) []string {
	var s []string
	if f.SecureBoot != nil {
		s = append(s, "boot:secure_boot:"+boolString(*f.SecureBoot))
	}
	if f.KernelCmdline != nil {
		sum := sha256.Sum256([]byte(*f.KernelCmdline))
		s = append(s, "boot:cmdline_sha256:"+hex.EncodeToString(sum[:]))
	}
	if fw != nil && fw.Bootloader != "" && isSelectorToken(fw.Bootloader) {
		s = append(s, "boot:bootloader:"+fw.Bootloader)
	}
	return s
}

// isSelectorToken keeps values derived from log contents short and plain.
func isSelectorToken(v string) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// runtimeResult is what the runtime log established.
type runtimeResult struct {
	workloads []runtimelog.Workload
	// known is true when the log replayed to the signed register, or when
	// there was no log and the register is still at its reset value (the
	// node ran nothing it recorded).
	known bool
	// records is the size of the verified log (0 without one); imr and
	// alg the register it extends, when there was a log.
	records int
	imr     cctrusted.IMR
	alg     cctrusted.Algorithm
	// incomplete is the log's first notice (a caller over its quota, or
	// the log full): from that record on the log does not name every
	// workload the node ran. full is the log-full notice.
	incomplete, full *runtimelog.Notice
}

// selectors are runtime:exe:sha256:<hex>, one per distinct executable, and
// runtime:incomplete:true / runtime:log_full:true when the log says so.
func (r *runtimeResult) selectors() []string {
	var s []string
	for _, w := range r.workloads {
		s = append(s, "runtime:exe:sha256:"+hex.EncodeToString(w.ExeSHA256))
	}
	slices.Sort(s)
	s = slices.Compact(s)
	if r.incomplete != nil {
		s = append(s, "runtime:incomplete:true")
	}
	if r.full != nil {
		s = append(s, "runtime:log_full:true")
	}
	return s
}

// noticesFrom records the first notice and the first log-full notice of
// l, whose record 0 is record first of the node's log.
func (r *runtimeResult) noticesFrom(l *runtimelog.Log, first int) {
	if n, ok := l.Incomplete(); ok && r.incomplete == nil {
		n.Record += first
		r.incomplete = &n
	}
	if n, ok := l.Full(); ok && r.full == nil {
		n.Record += first
		r.full = &n
	}
}

// decodeRuntimeLog decodes a runtime log; nil for an absent one.
func decodeRuntimeLog(raw []byte) (*runtimelog.Log, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	l, err := runtimelog.Decode(raw, runtimelog.DefaultLimits())
	if err != nil {
		return nil, reject(codes.InvalidArgument, CheckRuntimeReplay, fmt.Errorf("runtime log: %w", err))
	}
	return l, nil
}

// verifyRuntimeLog replays the runtime log l (nil: none sent) against the
// signed value of the register it must extend (RTMR3 on TDX, the runtime
// PCR on TPM) in bank alg.
func verifyRuntimeLog(l *runtimelog.Log, want cctrusted.IMR, alg cctrusted.Algorithm, signed []byte) (*runtimeResult, error) {
	if l == nil {
		return &runtimeResult{known: allZero(signed)}, nil
	}
	got := l.IMR()
	if t, err := got.TDX(); err == nil && want.Space == cctrusted.SpaceRTMR {
		got = t // CC MR 4 and RTMR3 are one register
	}
	if got != want {
		return nil, rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log extends %v, this node's runtime register is %v", l.IMR(), want)
	}
	if l.Algorithm() != alg {
		return nil, rejectf(codes.PermissionDenied, CheckRuntimeReplay, "runtime log is in the %v bank, want %v", l.Algorithm(), alg)
	}
	if err := l.Verify(signed); err != nil {
		var me *cctrusted.MismatchError
		if errors.As(err, &me) {
			return nil, reject(codes.PermissionDenied, CheckRuntimeReplay, fmt.Errorf("runtime log does not replay to the signed %v: %w", want, err))
		}
		return nil, reject(codes.InvalidArgument, CheckRuntimeReplay, fmt.Errorf("runtime log: %w", err))
	}
	rt := &runtimeResult{workloads: l.Workloads(), known: true, records: l.Len(), imr: want, alg: alg}
	rt.noticesFrom(l, 0)
	return rt, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
