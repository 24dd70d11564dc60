// Package serververifier is the server side of ccnp node attestation: a SPIRE
// server NodeAttestor plugin (plugin name "ccnp") that challenges an agent
// with a one-time nonce, verifies the evidence it answers with (TDX quotes
// through package appraisal, TPM quotes, credential activation, and the
// replay of every event log against the signed registers), evaluates the
// configured golden-value policies and answers SPIRE with the agent's SPIFFE
// ID and selectors. DESIGN.md §3-§5 define the protocol, the checks and the
// selectors; docs/selectors.md and docs/configuration.md document them for
// operators.
//
// Every attestation ends in one audit log line ("attestation", with
// result=accepted or rejected); a rejection is a gRPC status whose message
// names the failed check.
package serververifier

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/verify/trust"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/collateral"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// PluginName is the name SPIRE configurations give this plugin. SPIRE never
// tells a plugin its configured name, so agent ID paths hard-code it.
const PluginName = "ccnp"

var (
	_ pluginsdk.NeedsLogger             = (*Plugin)(nil)
	_ pluginsdk.NeedsHostServices       = (*Plugin)(nil)
	_ nodeattestorv1.NodeAttestorServer = (*Plugin)(nil)
	_ configv1.ConfigServer             = (*Plugin)(nil)
)

// Plugin is the server NodeAttestor. The zero value is not usable: call New.
// Its methods are safe for concurrent use; Configure swaps the whole
// configuration at once, so an attestation runs under one configuration
// from start to end.
type Plugin struct {
	nodeattestorv1.UnimplementedNodeAttestorServer
	configv1.UnimplementedConfigServer

	mu     sync.RWMutex
	state  *state
	logger hclog.Logger

	// cache holds verification results of immutable inputs. Its entries
	// are bound to the root pool they were established under, so it
	// survives reconfiguration safely.
	cache *appraisal.Cache
	// logs remembers what compressed firmware logs inflate to.
	logs *evidence.LogCache
	// slots bounds how many attestations decode and verify evidence at
	// once, and budget the evidence bytes held meanwhile (admission.go).
	slots  verifySlots
	budget evidenceBudget
	// metrics sends to SPIRE's Metrics host service; nil when SPIRE
	// offered none (and in VerifyOffline). Set once, before Configure.
	metrics *metrics

	// setMemoryLimit makes Configure set the process's soft memory limit
	// (limits.go). The plugin binary sets it; plugins built in a test or
	// in another process (VerifyOffline, the CLI) leave the runtime alone.
	setMemoryLimit bool

	// Hooks for tests; production uses the defaults New sets.
	now      func() time.Time
	newNonce func() ([]byte, error)
	readFile func(string) ([]byte, error)
}

// state is one configuration, immutable once built.
type state struct {
	cfg         *conf.ServerVerifier
	trustDomain string
	// tdxRoots and simRoots are the PCK roots of each TEE kind; nil when
	// the kind is not accepted. They never share a certificate.
	tdxRoots, simRoots *x509.CertPool
	// getter fetches (and caches) collateral; nil verifies offline.
	getter trust.HTTPSGetter
	// ekRoots (nil: no EK CA configured), ekAllow and akRoots are TPM trust.
	ekRoots *x509.CertPool
	ekAllow map[string]bool
	akRoots *x509.CertPool
	// ckpt signs and verifies checkpoint tokens; nil: no checkpoints.
	ckpt *evidence.CheckpointKey
	// metrics records this configuration's attestations; nil without
	// the Metrics host service.
	metrics *metrics
	// imaPolicies are the policies' IMA runtime policies, compiled once.
	imaPolicies []appraisal.IMAPolicy
	// paravisorMRTDs are azure_tdx.paravisor_mrtds, decoded.
	paravisorMRTDs [][]byte
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return NewWithClock(time.Now)
}

// NewWithClock returns an unconfigured plugin that reads the time from now:
// nonce and checkpoint expiry, certificate and collateral validity, and the
// collateral cache all use it. It lets tests move a whole server across a
// collateral nextUpdate; production uses New.
func NewWithClock(now func() time.Time) *Plugin {
	return &Plugin{
		logger:   hclog.NewNullLogger(),
		cache:    appraisal.NewCache(appraisal.DefaultCacheEntries),
		logs:     evidence.NewLogCache(),
		slots:    newVerifySlots(0),
		now:      now,
		newNonce: evidence.NewNonce,
		readFile: os.ReadFile,
	}
}

// OwnProcess tells the plugin that it runs in a process of its own (the
// plugin binary SPIRE starts), so Configure may set the process-wide soft
// memory limit the evidence budget implies (see memoryLimit). Plugins
// served inside another program leave its runtime alone.
func (p *Plugin) OwnProcess() { p.setMemoryLimit = true }

// SetLogger is called by the plugin framework with SPIRE's logger.
func (p *Plugin) SetLogger(l hclog.Logger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logger = l
}

// BrokerHostServices is called by the plugin framework before Configure
// with the host services SPIRE offers. Metrics go through SPIRE's Metrics
// host service, so they reach whatever telemetry sinks the SPIRE server is
// configured with; without it the plugin attests as usual and emits none.
func (p *Plugin) BrokerHostServices(broker pluginsdk.ServiceBroker) error {
	client := new(metricsv1.MetricsServiceClient)
	if !broker.BrokerClient(client) {
		p.log().Warn("SPIRE offers no Metrics host service: this plugin emits no metrics")
		return nil
	}
	p.brokerMetrics(client, p.log())
	return nil
}

// Close is called by the plugin framework when SPIRE unloads the plugin:
// it stops the metrics emitter.
func (p *Plugin) Close() error {
	p.mu.RLock()
	m := p.metrics
	p.mu.RUnlock()
	m.close()
	return nil
}

func (p *Plugin) log() hclog.Logger {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logger
}

func (p *Plugin) current() (*state, hclog.Logger, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.state == nil {
		return nil, p.logger, status.Error(codes.FailedPrecondition, "not configured")
	}
	return p.state, p.logger, nil
}

// Configure parses plugin_data, loads every file it names and swaps the new
// configuration in. A failure leaves the previous configuration in place.
func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	td := req.GetCoreConfiguration().GetTrustDomain()
	if td == "" {
		return nil, status.Error(codes.InvalidArgument, "core configuration has no trust domain")
	}
	if err := checkTrustDomain(td); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "trust domain %q: %v", td, err)
	}
	cfg, err := conf.ParseServerVerifier(req.GetHclConfiguration(), p.readFile)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	st, err := p.build(cfg, td)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	p.mu.Lock()
	p.state = st
	logger := p.logger
	p.mu.Unlock()
	if p.setMemoryLimit {
		limit, set := applyMemoryLimit(cfg.MaxEvidenceBytesInFlight)
		logger.Debug("Go runtime soft memory limit", "bytes", limit, "from", map[bool]string{true: "max_evidence_bytes_in_flight + 192 MiB", false: "GOMEMLIMIT"}[set])
	}
	if t, ok := st.getter.(collateral.Timed); ok {
		// The collateral cache statistics follow the configuration in
		// force (not one Validate built).
		if c, ok := t.Next.(*collateral.Cache); ok {
			st.metrics.collateral.Store(c)
		}
	}

	if cfg.Sim != nil {
		logger.Warn("Simulated TEE accepted: the sim block makes this server trust quotes signed under a simulated root; never configure it in production",
			"trusted_root_file", cfg.Sim.TrustedRootFile)
	}
	if cfg.AgentPathLegacy {
		logger.Warn("agent_path_template includes /spire/agent: this form is deprecated; write the path after it, as for SPIRE's own attestors (e.g. \"/{{ .PluginName }}/{{ .TEE }}/{{ .ID }}\")",
			"agent_path_template", cfg.AgentPathTemplate)
	}
	warnTPMRuntimePolicies(cfg, logger)
	if cfg.RequirePolicy {
		enforced := 0
		for i := range cfg.Policies {
			if cfg.Policies[i].Enforce {
				enforced++
			}
		}
		if enforced == 0 {
			logger.Warn("Policy requirement cannot be met: require_policy is true but every policy is warn-only: every node will be rejected")
		}
	}
	logger.Info("Configured", "trust_domain", td, "tdx", cfg.TDX != nil, "tpm", cfg.TPM != nil, "azure_tdx", cfg.AzureTDX != nil, "sim", cfg.Sim != nil,
		"policies", len(cfg.Policies), "require_policy", cfg.RequirePolicy)
	return &configv1.ConfigureResponse{}, nil
}

// Validate checks a configuration without applying it.
func (p *Plugin) Validate(ctx context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	td := req.GetCoreConfiguration().GetTrustDomain()
	var notes []string
	cfg, err := conf.ParseServerVerifier(req.GetHclConfiguration(), p.readFile)
	if err == nil {
		_, err = p.build(cfg, td)
	}
	if err == nil && td == "" {
		err = errors.New("core configuration has no trust domain")
	}
	if err == nil {
		if terr := checkTrustDomain(td); terr != nil {
			err = fmt.Errorf("trust domain %q: %w", td, terr)
		}
	}
	if err != nil {
		notes = append(notes, err.Error())
	}
	return &configv1.ValidateResponse{Valid: err == nil, Notes: notes}, nil
}

// checkTrustDomain checks a trust domain name as SPIRE does, through
// go-spiffe, so every agent ID this plugin renders parses as a SPIFFE ID.
func checkTrustDomain(td string) error {
	_, err := spiffeid.TrustDomainFromString(td)
	return err
}

// build loads the files a configuration names.
func (p *Plugin) build(cfg *conf.ServerVerifier, td string) (*state, error) {
	st := &state{cfg: cfg, trustDomain: td}
	var (
		err      error
		tdxCerts []*x509.Certificate
	)
	if cfg.TDX != nil {
		if cfg.TDX.TrustedRootsFile == "" {
			st.tdxRoots = appraisal.IntelRoots()
		} else if st.tdxRoots, tdxCerts, err = p.loadCerts("tdx.trusted_roots_file", []string{cfg.TDX.TrustedRootsFile}); err != nil {
			return nil, err
		}
		if st.getter, err = p.collateralGetter(&cfg.TDX.Collateral, cfg.TDX.MinTCBEvaluationDataNumber); err != nil {
			return nil, err
		}
	}
	if cfg.Sim != nil {
		var simCerts []*x509.Certificate
		if st.simRoots, simCerts, err = p.loadCerts("sim.trusted_root_file", []string{cfg.Sim.TrustedRootFile}); err != nil {
			return nil, err
		}
		// A simulated root among the TDX roots would let a simulation pass
		// as hardware.
		for _, s := range simCerts {
			for _, t := range tdxCerts {
				if s.Equal(t) {
					return nil, fmt.Errorf("sim.trusted_root_file: %q is also a TDX trusted root; a simulated root must never be trusted as TDX", s.Subject)
				}
			}
		}
	}
	if cfg.TPM != nil {
		if len(cfg.TPM.EKCAFiles) > 0 {
			if st.ekRoots, _, err = p.loadCerts("tpm.ek_ca_files", cfg.TPM.EKCAFiles); err != nil {
				return nil, err
			}
		}
		if len(cfg.TPM.AKCAFiles) > 0 {
			if st.akRoots, _, err = p.loadCerts("tpm.ak_ca_files", cfg.TPM.AKCAFiles); err != nil {
				return nil, err
			}
		}
		st.ekAllow = make(map[string]bool, len(cfg.TPM.EKHashAllowList))
		for _, h := range cfg.TPM.EKHashAllowList {
			st.ekAllow[strings.ToLower(h)] = true
		}
	}
	if cfg.AzureTDX != nil {
		for i, m := range cfg.AzureTDX.ParavisorMRTDs {
			b, err := hex.DecodeString(m)
			if err != nil {
				// conf validated it: a defect, not a configuration.
				return nil, fmt.Errorf("azure_tdx.paravisor_mrtds[%d]: %w", i, err)
			}
			st.paravisorMRTDs = append(st.paravisorMRTDs, b)
		}
	}
	if cfg.CheckpointKeyFile != "" {
		if st.ckpt, err = p.loadCheckpointKey(cfg); err != nil {
			return nil, err
		}
	}
	// build has no caller's context (Configure's, Validate's and
	// VerifyOffline's share it); compiling reads only local files.
	if st.imaPolicies, err = p.imaPolicies(context.Background(), cfg); err != nil {
		return nil, err
	}
	p.mu.RLock()
	st.metrics = p.metrics
	p.mu.RUnlock()
	if st.metrics != nil {
		if st.getter != nil {
			st.getter = collateral.Timed{Next: st.getter}
		}
	}
	return st, nil
}

// loadCerts reads PEM certificates from every path into one pool. Every
// block must be a certificate: a stray key or a typo'd file is an error
// rather than a silently smaller trust set.
func (p *Plugin) loadCerts(key string, paths []string) (*x509.CertPool, []*x509.Certificate, error) {
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for _, path := range paths {
		b, err := p.readFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", key, err)
		}
		n := 0
		for rest := b; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				return nil, nil, fmt.Errorf("%s: %s: PEM block %d is a %s, want CERTIFICATE", key, path, n, blk.Type)
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s: certificate %d: %w", key, path, n, err)
			}
			pool.AddCert(c)
			certs = append(certs, c)
			n++
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("%s: %s holds no PEM certificate", key, path)
		}
	}
	return pool, certs, nil
}

// collateralGetter builds the collateral source of a tdx block: a cache
// (in memory, and on disk with cache_dir) in front of the configured PCS,
// PCCS or offline directory, shared by every attestation under this
// configuration. With a minimum evaluation data number the cache refuses
// to keep older TCB info and QE identity, so a stale PCCS is asked again
// until it serves the current issue.
func (p *Plugin) collateralGetter(c *conf.Collateral, minEvaluation uint32) (trust.HTTPSGetter, error) {
	g, err := collateral.New(*c, collateral.Options{
		Now:  p.now,
		Warn: func(msg string, args ...any) { p.log().Warn(msg, args...) },

		MinTCBEvaluationDataNumber: minEvaluation,
	})
	if err != nil {
		return nil, fmt.Errorf("tdx.collateral: %w", err)
	}
	return g, nil
}

// warnTPMRuntimePolicies says, once per configuration, which TPM nodes a
// runtime policy constraint can never match: those whose runtime log is on
// a PCR that root can reset, which proves nothing (see tpmRuntimeProof).
func warnTPMRuntimePolicies(cfg *conf.ServerVerifier, logger hclog.Logger) {
	if cfg.TPM == nil {
		return
	}
	var names []string
	for i := range cfg.Policies {
		p := &cfg.Policies[i]
		if (p.Runtime.AllowedExeSHA256 != nil || p.Runtime.AllowedContainers != nil) && (p.TEE == nil || slices.Contains(p.TEE, cctrusted.TEETPM)) {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	if cfg.TPM.RuntimePCR == 0 {
		logger.Warn("Runtime policy constraints never match on TPM nodes: the tpm block sets no runtime_pcr, and a runtime log on PCR 16..23 (the agents' default is 23) can be reset without a reboot; set tpm.runtime_pcr here and the agents' tpm.runtime_pcr and the workload attestors' runtime_pcr to one PCR in 11..15 that nothing else on the nodes extends (e.g. 15)",
			"policies", names)
		return
	}
	logger.Warn(fmt.Sprintf("Runtime policy constraints match on TPM nodes only when their runtime log is on PCR %d (tpm.runtime_pcr): they never match on nodes whose runtime PCR is resettable (16..23; the agents' tpm.runtime_pcr and the workload attestors' runtime_pcr default to 23)", cfg.TPM.RuntimePCR),
		"policies", names, "runtime_pcr", cfg.TPM.RuntimePCR)
}
