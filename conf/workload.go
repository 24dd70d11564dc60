package conf

import (
	"fmt"
	"slices"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// WorkloadAttestor is the workload attestor's plugin_data.
type WorkloadAttestor struct {
	// HostRoot prefixes /proc and the other host paths read (empty: "/").
	HostRoot string
	Measure  MeasureMode
	// TEE is the provider whose runtime register is extended.
	TEE            cctrusted.TEE
	SimDir         string
	TPMDevice      string
	RuntimePCR     cctrusted.PCR
	RuntimeLogPath string
	// DigestCacheSize bounds the executable digest cache (entries).
	DigestCacheSize int
	// ExeDigestAlgs lists the executable digests to compute; nil means
	// the default of DigestAlgs.
	ExeDigestAlgs []cctrusted.Algorithm
	// IMALogPath is an ima-cgpath IMA log (under HostRoot) for per-container
	// IMRs; empty disables them.
	IMALogPath string
	// RuntimeLogMaxRecords is the runtime log's capacity in records, the
	// log-full notice included.
	RuntimeLogMaxRecords int
	// RuntimeLogQuotaPerUID and RuntimeLogQuotaPerContainer bound the new
	// records one user, and one container (or pod), can add.
	RuntimeLogQuotaPerUID       int
	RuntimeLogQuotaPerContainer int
}

// Runtime log capacity and quotas. The server turns every distinct
// executable in the log into a selector and refuses a node with more than
// 4,096 selectors (serververifier.MaxSelectors); the upper bound on the
// capacity (runtimelog.MaxCapacityRecords) leaves 512 for the rest, so no
// configuration lets workloads make their node unattestable.
const (
	DefaultRuntimeLogMaxRecords = 2048
	MaxRuntimeLogMaxRecords     = 3584
	minRuntimeLogMaxRecords     = 16
	DefaultRuntimeLogQuota      = 256
)

// DefaultDigestCacheSize is the default number of cached executable digests.
const DefaultDigestCacheSize = 4096

// maxDigestCacheSize keeps a typo from reserving unbounded memory.
const maxDigestCacheSize = 1 << 20

// DigestAlgs returns the executable digests to compute on tee: the
// configured list, or SHA-256 plus SHA-384 on TDX (its native bank).
func (c *WorkloadAttestor) DigestAlgs(tee cctrusted.TEE) []cctrusted.Algorithm {
	if c.ExeDigestAlgs != nil {
		return slices.Clone(c.ExeDigestAlgs)
	}
	if tee == cctrusted.TEETDX {
		return []cctrusted.Algorithm{cctrusted.AlgSHA256, cctrusted.AlgSHA384}
	}
	return []cctrusted.Algorithm{cctrusted.AlgSHA256}
}

type rawWorkload struct {
	HostRoot        string   `hcl:"host_root"`
	Measure         string   `hcl:"measure"`
	TEE             string   `hcl:"tee"`
	SimDir          string   `hcl:"sim_dir"`
	TPMDevice       string   `hcl:"tpm_device"`
	RuntimePCR      int      `hcl:"runtime_pcr"`
	RuntimeLogPath  string   `hcl:"runtime_log_path"`
	DigestCacheSize int      `hcl:"digest_cache_size"`
	ExeDigestAlgs   []string `hcl:"exe_digest_algs"`
	IMALogPath      string   `hcl:"ima_log_path"`

	RuntimeLogMaxRecords        int `hcl:"runtime_log_max_records"`
	RuntimeLogQuotaPerUID       int `hcl:"runtime_log_quota_per_uid"`
	RuntimeLogQuotaPerContainer int `hcl:"runtime_log_quota_per_container"`
}

// ParseWorkloadAttestor parses, defaults and validates the workload
// attestor's plugin_data.
func ParseWorkloadAttestor(src string) (*WorkloadAttestor, error) {
	var errs errList
	d := newDoc("plugin_data", &errs)
	var r rawWorkload
	if !parseDoc(d, src, MaxConfigBytes, &r) {
		return nil, errs.err()
	}
	c := &WorkloadAttestor{
		HostRoot:        absPath(d, "host_root", r.HostRoot),
		Measure:         MeasureFirstSeen,
		TEE:             TEEAuto,
		SimDir:          absPath(d, "sim_dir", r.SimDir),
		TPMDevice:       tpmDevice(d, "tpm_device", r.TPMDevice),
		RuntimePCR:      cctrusted.PCR(runtimePCR(d, "runtime_pcr", r.RuntimePCR)),
		RuntimeLogPath:  orDefault(absPath(d, "runtime_log_path", r.RuntimeLogPath), DefaultRuntimeLogPath),
		DigestCacheSize: DefaultDigestCacheSize,
		IMALogPath:      absPath(d, "ima_log_path", r.IMALogPath),

		RuntimeLogMaxRecords:        DefaultRuntimeLogMaxRecords,
		RuntimeLogQuotaPerUID:       DefaultRuntimeLogQuota,
		RuntimeLogQuotaPerContainer: DefaultRuntimeLogQuota,
	}
	if d.has("measure") {
		if r.Measure == "every" {
			d.errf("measure", `"every" is no longer supported: it added a runtime log record at every attestation, so one workload could fill the log; use "first_seen" (each new executable and container recorded once) or "off"`)
		} else {
			c.Measure, _ = oneOf(d, "measure", r.Measure, MeasureOff, MeasureFirstSeen)
		}
	}
	if d.has("runtime_log_max_records") {
		if v := r.RuntimeLogMaxRecords; v < minRuntimeLogMaxRecords || v > MaxRuntimeLogMaxRecords {
			d.errf("runtime_log_max_records", "%d is outside %d..%d (the server refuses a node with more than 4096 selectors, one per distinct executable in the log)", v, minRuntimeLogMaxRecords, MaxRuntimeLogMaxRecords)
		} else {
			c.RuntimeLogMaxRecords = v
		}
	}
	for _, q := range []struct {
		key string
		v   int
		dst *int
	}{
		{"runtime_log_quota_per_uid", r.RuntimeLogQuotaPerUID, &c.RuntimeLogQuotaPerUID},
		{"runtime_log_quota_per_container", r.RuntimeLogQuotaPerContainer, &c.RuntimeLogQuotaPerContainer},
	} {
		if !d.has(q.key) {
			continue
		}
		if q.v < 1 || q.v > c.RuntimeLogMaxRecords {
			d.errf(q.key, "%d is outside 1..%d (runtime_log_max_records)", q.v, c.RuntimeLogMaxRecords)
			continue
		}
		*q.dst = q.v
	}
	if d.has("tee") {
		c.TEE, _ = oneOf(d, "tee", r.TEE, TEEAuto, cctrusted.TEEAzureTDX, cctrusted.TEETDX, cctrusted.TEETPM, cctrusted.TEESim)
	}
	if c.TEE == cctrusted.TEESim && !d.has("sim_dir") {
		d.errLine(d.line("tee"), "tee = \"sim\" needs sim_dir")
	}
	if d.has("sim_dir") && c.TEE != cctrusted.TEESim {
		d.errf("sim_dir", "only used with tee = \"sim\" (auto never selects the simulator)")
	}
	if d.has("digest_cache_size") {
		if r.DigestCacheSize < 1 || r.DigestCacheSize > maxDigestCacheSize {
			d.errf("digest_cache_size", "%d is outside 1..%d", r.DigestCacheSize, maxDigestCacheSize)
		} else {
			c.DigestCacheSize = r.DigestCacheSize
		}
	}
	if d.has("exe_digest_algs") {
		c.ExeDigestAlgs = exeAlgs(d, r.ExeDigestAlgs)
	}
	if !errs.empty() {
		return nil, errs.err()
	}
	return c, nil
}

// exeAlgs accepts sha256, sha384 and sha512 and requires sha256, because
// runtime logs and policies identify executables by their SHA-256.
func exeAlgs(d *doc, vals []string) []cctrusted.Algorithm {
	var out []cctrusted.Algorithm
	for i, v := range vals {
		key := fmt.Sprintf("exe_digest_algs[%d]", i)
		a, ok := oneOf(d, key, v, "sha256", "sha384", "sha512")
		if !ok {
			continue
		}
		alg, _ := cctrusted.ParseAlgorithm(a)
		if slices.Contains(out, alg) {
			d.errf(key, "%q is listed twice", v)
			continue
		}
		out = append(out, alg)
	}
	if !slices.Contains(out, cctrusted.AlgSHA256) {
		d.errf("exe_digest_algs", "must include \"sha256\" (runtime logs and policies use it)")
	}
	return out
}
