package conf

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// TEEAuto is the agent's choice to detect its TEE (TDX, then TPM, never the
// simulator). TEE kinds are cctrusted.TEE, the one type that names them in
// configs, policies, the evidence and selectors ("tee:tdx"); TEEAuto is valid
// only where an agent-side plugin chooses a provider.
const TEEAuto cctrusted.TEE = "auto"

// TCBStatus is an Intel TCB status as found in TDX TCB info collateral.
type TCBStatus string

// Intel's TCB statuses. Revoked exists so that it can be named in errors:
// no configuration may accept it.
const (
	TCBUpToDate                          TCBStatus = "UpToDate"
	TCBSWHardeningNeeded                 TCBStatus = "SWHardeningNeeded"
	TCBConfigurationNeeded               TCBStatus = "ConfigurationNeeded"
	TCBConfigurationAndSWHardeningNeeded TCBStatus = "ConfigurationAndSWHardeningNeeded"
	TCBOutOfDate                         TCBStatus = "OutOfDate"
	TCBOutOfDateConfigurationNeeded      TCBStatus = "OutOfDateConfigurationNeeded"
	TCBRevoked                           TCBStatus = "Revoked"
)

// acceptableTCB lists the statuses a config may accept, in Intel's order.
var acceptableTCB = []TCBStatus{
	TCBUpToDate, TCBSWHardeningNeeded, TCBConfigurationNeeded,
	TCBConfigurationAndSWHardeningNeeded, TCBOutOfDate, TCBOutOfDateConfigurationNeeded,
}

// advisoryIDRE is the shape of the advisory IDs Intel lists in TCB levels:
// INTEL-SA-00837 for security advisories, INTEL-DOC-10000 for servicing
// notes.
var advisoryIDRE = regexp.MustCompile(`^INTEL-(SA|DOC)-[0-9]{5}$`)

// ValidAdvisoryID reports whether id has the shape of an Intel advisory ID
// (INTEL-SA-NNNNN or INTEL-DOC-NNNNN). Policies name advisories with it, and
// the TDX appraisal refuses collateral listing anything else, since the IDs
// become selectors and deny-list decisions.
func ValidAdvisoryID(id string) bool { return advisoryIDRE.MatchString(id) }

// AdvisoryIDPattern is the pattern ValidAdvisoryID matches, for messages.
const AdvisoryIDPattern = `INTEL-(SA|DOC)-NNNNN`

// evaluationNumber validates a tcbEvaluationDataNumber minimum.
func evaluationNumber(d *doc, key, disp string, v int) uint32 {
	if v < 1 || v > math.MaxUint32 {
		d.errLine(d.line(key), "%s: %d is outside 1..%d (remove the key for no minimum)", disp, v, uint32(math.MaxUint32))
		return 0
	}
	return uint32(v)
}

// Compression names how the agent compresses event logs on the wire.
type Compression string

// The compressions the evidence format supports.
const (
	CompressionNone Compression = "none"
	CompressionZstd Compression = "zstd"
	CompressionGzip Compression = "gzip"
)

// LogKind names an event log the agent can send.
type LogKind string

// The event logs.
const (
	LogCCEL    LogKind = "ccel"
	LogTPM     LogKind = "tpm"
	LogIMA     LogKind = "ima"
	LogRuntime LogKind = "runtime"
)

// MeasureMode says when the workload attestor extends the runtime register.
type MeasureMode string

// The measure modes.
const (
	MeasureOff       MeasureMode = "off"
	MeasureFirstSeen MeasureMode = "first_seen"
)

// Defaults shared by more than one plugin. The node attestor sends the
// runtime log the workload attestor writes, so both default to one path.
const (
	DefaultTPMDevice      = "/dev/tpmrm0"
	DefaultRuntimePCR     = 23
	DefaultRuntimeLogPath = "/var/lib/ccnp-spire/runtime.cel"
	DefaultInstanceIDPath = "/var/lib/ccnp-spire/instance_id"
)

// oneOf checks an enumerated string and names the accepted values.
func oneOf[T ~string](d *doc, key, v string, allowed ...T) (T, bool) {
	for _, a := range allowed {
		if string(a) == v {
			return a, true
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = strconv.Quote(string(a))
	}
	d.errf(key, "%q is not one of %s", v, strings.Join(names, ", "))
	return "", false
}

// duration parses a Go duration string ("60s", "1h") within [lo, hi].
func duration(d *doc, key, s string, def, lo, hi time.Duration) time.Duration {
	if !d.has(key) {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errf(key, "%q is not a duration (write e.g. \"60s\" or \"1h\")", s)
		return def
	}
	if v < lo || v > hi {
		d.errf(key, "%s is outside [%s, %s]", v, lo, hi)
		return def
	}
	return v
}

// absPath requires an absolute, clean-able path when the key was written.
func absPath(d *doc, key, p string) string {
	if !d.has(key) {
		return ""
	}
	if p == "" || !path.IsAbs(p) {
		d.errf(key, "%q is not an absolute path", p)
		return ""
	}
	return path.Clean(p)
}

// tpmDevice accepts a device path or tcp://host:port (swtpm, simulators).
func tpmDevice(d *doc, key, v string) string {
	if !d.has(key) {
		return DefaultTPMDevice
	}
	if strings.HasPrefix(v, "tcp://") {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
			d.errf(key, "%q: want tcp://host:port", v)
			return DefaultTPMDevice
		}
		host, port, err := net.SplitHostPort(u.Host)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			d.errf(key, "%q: want tcp://host:port with a port in 1..65535", v)
			return DefaultTPMDevice
		}
		return "tcp://" + u.Host
	}
	if !path.IsAbs(v) {
		d.errf(key, "%q: want an absolute device path or tcp://host:port", v)
		return DefaultTPMDevice
	}
	return path.Clean(v)
}

// runtimePCR keeps the agent's runtime register away from PCRs 0..10,
// which firmware, boot loader and IMA own: extending one of them would
// break the replay of their logs. 11..15 (reserved for the OS, reset only
// by a reboot) give the runtime log rollback protection; 16..23 are the
// default's range, which root can reset (see RuntimePCRProtected).
func runtimePCR(d *doc, key string, v int) int {
	if !d.has(key) {
		return DefaultRuntimePCR
	}
	if v < MinRuntimePCR || v > 23 {
		d.errf(key, "%d: want a PCR in 11..23 (0..10 belong to firmware, boot loader and IMA; 11..15 cannot be reset without a reboot)", v)
		return DefaultRuntimePCR
	}
	return v
}

// MinRuntimePCR is the lowest PCR a runtime log may extend: PCRs 0..10
// belong to firmware, boot loader and IMA.
const MinRuntimePCR = 11

// RuntimePCRProtected reports whether a runtime log on p is protected
// against rollback: PCRs 11..15, which the PC Client platform profile
// leaves to the OS, are cleared only by a TPM reset (a reboot). PCR 16
// (debug) and 23 (application) can be reset at locality 0 by anyone who
// can send TPM commands (root), and 17..22 by a dynamic launch, so a
// runtime record there can be wiped without a trace.
func RuntimePCRProtected(p cctrusted.PCR) bool {
	return p >= MinRuntimePCR && p <= MaxProtectedRuntimePCR
}

// MaxProtectedRuntimePCR is the highest PCR that no TPM command short of a
// reset clears.
const MaxProtectedRuntimePCR = 15

// tcbStatuses validates a list of TCB statuses against Intel's list.
func tcbStatuses(d *doc, key, disp string, vals []string) []TCBStatus {
	if len(vals) == 0 {
		d.errLine(d.line(key), "%s: empty list accepts no TDX node; remove the key for the default", disp)
		return nil
	}
	out := make([]TCBStatus, 0, len(vals))
	for i, v := range vals {
		ek := fmt.Sprintf("%s[%d]", key, i)
		ed := fmt.Sprintf("%s[%d]", disp, i)
		switch {
		case TCBStatus(v) == TCBRevoked:
			d.errLine(d.line(ek), "%s: %q is never acceptable", ed, v)
		case !slices.Contains(acceptableTCB, TCBStatus(v)):
			names := make([]string, len(acceptableTCB))
			for j, s := range acceptableTCB {
				names[j] = string(s)
			}
			d.errLine(d.line(ek), "%s: %q is not an Intel TCB status (want one of %s)", ed, v, strings.Join(names, ", "))
		case slices.Contains(out, TCBStatus(v)):
			d.errLine(d.line(ek), "%s: %q is listed twice", ed, v)
		default:
			out = append(out, TCBStatus(v))
		}
	}
	return out
}
