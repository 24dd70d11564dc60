package conf

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// ServerVerifier is the server-side verifier's plugin_data. A TEE kind is
// accepted only when its block is present; at least one must be.
type ServerVerifier struct {
	// TDX, TPM and Sim are nil when the block is absent.
	TDX *TDXVerifier
	TPM *TPMVerifier
	Sim *SimVerifier
	// AzureTDX accepts Azure TDX confidential VMs; it needs TDX, whose
	// roots, collateral and TCB rules verify their TD quotes.
	AzureTDX *AzureTDXVerifier
	// NonceTTL is how long a challenge nonce stays usable: evidence must
	// arrive within NonceTTL of the challenge that carried the nonce.
	NonceTTL time.Duration
	// MaxPayloadBytes bounds a payload after decompression.
	MaxPayloadBytes int64
	// ChallengeTimeout bounds how long the server waits for each answer;
	// zero (not configured) means the per-TEE default: see AnswerTimeout.
	ChallengeTimeout time.Duration
	// MaxEvidenceBytesInFlight bounds the evidence bytes the server holds
	// at once: received and waiting for, or under, verification.
	MaxEvidenceBytesInFlight int64
	// AgentPathTemplate is the source of the agent ID path template; use
	// AgentPath to render it. Like SPIRE's own attestors' templates it
	// renders the path after /spire/agent; a source that starts with
	// /spire/agent/ is the deprecated full-path form (AgentPathLegacy).
	AgentPathTemplate string
	agentPath         *template.Template
	// AgentPathLegacy says the template is of the deprecated form that
	// includes /spire/agent; the plugin warns about it.
	AgentPathLegacy bool
	// Policies are the inline policy blocks followed by those of
	// PolicyFile; names are unique across both.
	Policies   []Policy
	PolicyFile string
	// RequirePolicy rejects nodes that match none of Policies; how a
	// warn-only policy counts is the evaluator's rule.
	RequirePolicy bool
	// CheckpointKeyFile holds the secret that signs checkpoint tokens
	// (incremental re-attestation). Every server of a trust domain uses the
	// same one. Empty: no checkpoints, every attestation replays full logs.
	CheckpointKeyFile string
	// CheckpointPreviousKeyFile is the key before a rotation: tokens it
	// signed are still accepted, new ones are signed with CheckpointKeyFile.
	CheckpointPreviousKeyFile string
	// CheckpointTTL is how long a checkpoint token is accepted.
	CheckpointTTL time.Duration
	// AllowIMAViolations lets a node whose IMA list has violation entries
	// (ToMToU, open-writers: files the kernel did not measure) still get
	// ima:verified:true. Off by default: such a list replays, yet it does
	// not say what those files held.
	AllowIMAViolations bool
}

// TDXVerifier configures TDX quote verification.
type TDXVerifier struct {
	// TrustedRootsFile is a PEM file of roots; empty means the Intel SGX
	// Root CA embedded in go-tdx-guest.
	TrustedRootsFile string
	Collateral       Collateral
	// AcceptedTCBStatuses never contains Revoked.
	AcceptedTCBStatuses []TCBStatus
	AllowDebug          bool
	// MinTCBEvaluationDataNumber refuses TCB info and QE identity with a
	// lower tcbEvaluationDataNumber (collateral from before a TCB
	// recovery); 0 sets no minimum.
	MinTCBEvaluationDataNumber uint32
}

// CollateralSource says where TDX collateral comes from.
type CollateralSource string

// The collateral sources.
const (
	CollateralPCS     CollateralSource = "pcs"
	CollateralPCCS    CollateralSource = "pccs"
	CollateralOffline CollateralSource = "offline"
)

// DefaultPCSURL is Intel's TDX PCS v4 base URL.
const DefaultPCSURL = "https://api.trustedservices.intel.com/tdx/certification/v4"

// Collateral configures TDX collateral fetching.
type Collateral struct {
	Source CollateralSource
	// URL is the PCS or PCCS base URL (empty for offline).
	URL string
	// OfflineDir holds collateral files when Source is offline.
	OfflineDir string
	// CacheDir persists fetched collateral; empty keeps it in memory only.
	CacheDir string
	// Refresh is the longest time fetched collateral is used before it is
	// fetched again, even when its nextUpdate is later.
	Refresh time.Duration
	// FetchTimeout bounds one request to the PCS or PCCS. An attestation
	// that has no usable collateral waits at most this long for it; while
	// the service keeps failing, later ones are refused at once.
	FetchTimeout time.Duration
}

// TPMVerifier configures TPM trust. At least one of EKCAFiles and
// EKHashAllowList is set.
type TPMVerifier struct {
	EKCAFiles []string
	// EKHashAllowList holds lower-case hex SHA-256 digests of EK public keys.
	EKHashAllowList []string
	AKCAFiles       []string
	// RuntimePCR is the PCR (11..15) every TPM node of the trust domain
	// keeps its runtime log on; zero when unset. Only a runtime log on it
	// is evidence of what a node ran: on any other PCR the record could
	// have been reset, or moved off a PCR that still holds it.
	RuntimePCR cctrusted.PCR
}

// AzureTDXVerifier configures the acceptance of Azure TDX confidential VMs
// (tee azure_tdx). Their TD quotes are verified under the tdx block.
type AzureTDXVerifier struct {
	// ParavisorMRTDs are the MRTDs (lower-case hex, 48 bytes) of the
	// paravisor builds trusted to run an honest vTPM: any other TD could
	// play paravisor and vouch for whatever PCR values it likes.
	ParavisorMRTDs []string
	// RuntimePCR is as TPMVerifier.RuntimePCR, for the vTPMs of Azure
	// nodes; zero when unset.
	RuntimePCR cctrusted.PCR
}

// SimVerifier makes the server accept the simulated TEE signed under
// TrustedRootFile. Never configure it in production.
type SimVerifier struct {
	TrustedRootFile string
}

// AgentPathData is what the agent path template sees: .PluginName, .TEE,
// .ID and, on TDX and sim nodes, .MRConfigID, .MROwner and .MROwnerConfig.
type AgentPathData struct {
	// TEE is "tdx", "tpm", "azure_tdx" or "sim" (also for a simulated
	// paravisor's azure_tdx node).
	TEE string
	// ID is the node's identifier: SHA-256 of the EK public key on TPM,
	// of HCLAkPub on Azure TDX, the instance ID on TDX (hex).
	ID string
	// Quote holds the VMM-set fields of the node's verified (TD) quote;
	// nil on a TPM node. Fill it only from a quote whose signature chain verified.
	Quote *AgentPathQuote
}

// AgentPathQuote holds the quote body fields a TD cannot choose: the VMM
// sets them at TD creation and the quote signs them. Clouds that put an
// instance identity there give a TD an agent ID it cannot change by
// choosing another instance ID.
type AgentPathQuote struct {
	MRConfigID, MROwner, MROwnerConfig []byte
}

// AgentPathFieldError says why a template field has no value for a node.
// Retrying cannot change it: the node's evidence does not carry the field.
type AgentPathFieldError struct {
	Field  string
	Reason string
}

func (e *AgentPathFieldError) Error() string { return "." + e.Field + " " + e.Reason }

// PluginName is the plugin's name, "ccnp", as SPIRE's own attestors offer
// theirs to templates. SPIRE never tells a plugin the name it is configured
// under, and agent IDs must sit under /spire/agent/<name>/, so it is fixed.
func (AgentPathData) PluginName() string { return AgentPluginName }

// AgentPluginName is the plugin name agent IDs are under:
// /spire/agent/ccnp/.
const AgentPluginName = "ccnp"

// agentIDPrefix is where SPIRE puts every agent ID; templates render what
// follows it.
const agentIDPrefix = "/spire/agent"

// MRConfigID is the lower-case hex MRCONFIGID of the node's quote.
func (d AgentPathData) MRConfigID() (string, error) {
	return d.quoteField("MRConfigID", func(q *AgentPathQuote) []byte { return q.MRConfigID })
}

// MROwner is the lower-case hex MROWNER of the node's quote.
func (d AgentPathData) MROwner() (string, error) {
	return d.quoteField("MROwner", func(q *AgentPathQuote) []byte { return q.MROwner })
}

// MROwnerConfig is the lower-case hex MROWNERCONFIG of the node's quote.
func (d AgentPathData) MROwnerConfig() (string, error) {
	return d.quoteField("MROwnerConfig", func(q *AgentPathQuote) []byte { return q.MROwnerConfig })
}

// quoteField refuses rather than renders an empty or all-zero field: a
// VMM that sets nothing leaves zeros, and every such TD would share one
// agent ID.
func (d AgentPathData) quoteField(name string, get func(*AgentPathQuote) []byte) (string, error) {
	if d.Quote == nil {
		return "", &AgentPathFieldError{Field: name, Reason: fmt.Sprintf("is set only for tdx and sim nodes, from their signed quote; this node is %s", d.TEE)}
	}
	v := get(d.Quote)
	if len(v) == 0 || !slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
		return "", &AgentPathFieldError{Field: name, Reason: "is all zero in this node's quote: the VMM set no identity there, and every such TD would share one agent ID"}
	}
	return hex.EncodeToString(v), nil
}

// Defaults of the server.
const (
	DefaultNonceTTL          = 60 * time.Second
	DefaultMaxPayloadBytes   = 16 << 20
	DefaultAgentPathTemplate = "/{{ .PluginName }}/{{ .TEE }}/{{ .ID }}"
	DefaultCollateralRefresh = 24 * time.Hour
	// DefaultCollateralFetchTimeout bounds one request to the PCS or PCCS.
	DefaultCollateralFetchTimeout = 30 * time.Second
	DefaultCheckpointTTL          = 24 * time.Hour
	maxMaxPayloadBytes            = 1 << 30
)

// Deadlines for an agent's answer when challenge_timeout is not set. They
// are what an honest agent needs with a wide margin, not what a slow one
// might take: a TDX quote is generated in milliseconds (tens to hundreds
// with a busy quote generation service); a TPM quote takes up to about a
// second on slow parts, and the first answer of an agent whose RSA EK is
// not persisted derives it from its template (a prime search: seconds on
// slow discrete TPMs); collecting and compressing logs of a few MiB and
// sending them through the SPIRE server take well under a second more. The
// simulator quotes in software, in tests and demos on the same cores as the
// server, so it keeps a generous deadline. A longer deadline costs the
// server only a parked stream (waiting holds no CPU slot and no evidence
// budget), but lets a client that never answers keep it parked longer.
const (
	DefaultTDXAnswerTimeout = 5 * time.Second
	DefaultTPMAnswerTimeout = 15 * time.Second
	DefaultSimAnswerTimeout = 30 * time.Second
)

// DefaultMaxEvidenceBytesInFlight is the evidence the server holds at once
// when max_evidence_bytes_in_flight is not set (raised to
// max_payload_bytes when that is larger). Evidence waits only for a CPU
// slot, so this is many honest attestations' worth (a typical one is tens of
// KiB, a large one a few MiB) while bounding the memory a burst can take.
const (
	DefaultMaxEvidenceBytesInFlight = 256 << 20
	minMaxEvidenceBytesInFlight     = 1 << 20
	maxMaxEvidenceBytesInFlight     = 64 << 30
)

// AnswerTimeout is how long the server waits for an agent's message in an
// attestation of tee: challenge_timeout when configured, else the TEE's
// default. Before the hello names the TEE (tee == ""), the longest default:
// SPIRE forwards the hello as it opens the stream, so it is not waited for.
func (c *ServerVerifier) AnswerTimeout(tee cctrusted.TEE) time.Duration {
	switch {
	case c.ChallengeTimeout > 0:
		return c.ChallengeTimeout
	case tee == cctrusted.TEETDX:
		return DefaultTDXAnswerTimeout
	case tee == cctrusted.TEETPM, tee == cctrusted.TEEAzureTDX:
		// An Azure node's answer adds a TD quote from the instance
		// metadata service, on the same host, to a vTPM quote.
		return DefaultTPMAnswerTimeout
	}
	return DefaultSimAnswerTimeout
}

// AgentPath renders the agent ID path for a node: /spire/agent followed
// by what the template renders (or, for a legacy template, what it
// renders), checked to be a valid SPIFFE ID path (go-spiffe's
// spiffeid.ValidatePath) under /spire/agent/ccnp/.
func (c *ServerVerifier) AgentPath(data AgentPathData) (string, error) {
	t, legacy := c.agentPath, c.AgentPathLegacy
	if t == nil {
		var err error
		if t, err = parseAgentPath(DefaultAgentPathTemplate); err != nil {
			return "", err
		}
		legacy = false
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("agent_path_template: %w", err)
	}
	p := b.String()
	if !legacy {
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("agent_path_template rendered %q: the path after %s must start with \"/\" (e.g. \"/{{ .PluginName }}/...\")", p, agentIDPrefix)
		}
		p = agentIDPrefix + p
	}
	if err := checkAgentPath(p); err != nil {
		return "", fmt.Errorf("agent_path_template rendered %q: %w", p, err)
	}
	// Whatever the template, a simulated node's agent ID has a path
	// segment that is or starts with "sim" (then a separator), and a
	// hardware node's has none, so no simulated node can be given (or take
	// over the entries of) a hardware node's ID.
	if sim := slices.ContainsFunc(strings.Split(p, "/"), simSegment); sim != (data.TEE == string(cctrusted.TEESim)) {
		return "", fmt.Errorf("agent_path_template rendered %q for a %s node: a sim node's agent ID must have a path segment %q (or starting with \"sim-\") and a hardware node's none (start a segment with {{ .TEE }})", p, data.TEE, cctrusted.TEESim)
	}
	return p, nil
}

// simSegment reports whether an agent path segment names a simulated node:
// "sim", or "sim" followed by a separator ("sim-<id>").
func simSegment(seg string) bool {
	rest, ok := strings.CutPrefix(seg, string(cctrusted.TEESim))
	return ok && (rest == "" || strings.ContainsRune("-_.:", rune(rest[0])))
}

func parseAgentPath(s string) (*template.Template, error) {
	return template.New("agent_path_template").Option("missingkey=error").Parse(s)
}

// checkAgentPath enforces SPIFFE's path rules (through go-spiffe, as SPIRE
// does) and SPIRE's rule that a node attestor's agent IDs live in its own
// namespace, /spire/agent/<plugin name>/. SPIRE 1.13 only warns about an ID
// outside it; this plugin refuses one, so no template can give its nodes
// another attestor's agent IDs (or an ID with no node part at all).
func checkAgentPath(p string) error {
	if err := spiffeid.ValidatePath(p); err != nil {
		return err
	}
	ns := agentIDPrefix + "/" + AgentPluginName + "/"
	if !strings.HasPrefix(p, ns) {
		return fmt.Errorf("agent IDs of this plugin must be under %s (SPIRE's namespace for the %q node attestor)", ns, AgentPluginName)
	}
	return nil
}

type rawServer struct {
	TDX               rawServerTDX   `hcl:"tdx"`
	TPM               rawServerTPM   `hcl:"tpm"`
	Sim               rawServerSim   `hcl:"sim"`
	AzureTDX          rawServerAzure `hcl:"azure_tdx"`
	NonceTTL          string         `hcl:"nonce_ttl"`
	MaxPayloadBytes   int            `hcl:"max_payload_bytes"`
	ChallengeTimeout  string         `hcl:"challenge_timeout"`
	AgentPathTemplate string         `hcl:"agent_path_template"`
	Policies          []rawPolicy    `hcl:"policy"`
	PolicyFile        string         `hcl:"policy_file"`
	RequirePolicy     bool           `hcl:"require_policy"`

	CheckpointKeyFile         string `hcl:"checkpoint_key_file"`
	CheckpointPreviousKeyFile string `hcl:"checkpoint_previous_key_file"`
	CheckpointTTL             string `hcl:"checkpoint_ttl"`
	// MetricsAddress is parsed only to refuse it with its replacement.
	MetricsAddress     string `hcl:"metrics_address"`
	AllowIMAViolations bool   `hcl:"allow_ima_violations"`

	// An int like max_payload_bytes: HCL integers are 64-bit on the
	// platforms SPIRE supports.
	MaxEvidenceBytesInFlight int `hcl:"max_evidence_bytes_in_flight"`
}

type rawServerTDX struct {
	TrustedRootsFile    string        `hcl:"trusted_roots_file"`
	Collateral          rawCollateral `hcl:"collateral"`
	AcceptedTCBStatuses []string      `hcl:"accepted_tcb_statuses"`
	AllowDebug          bool          `hcl:"allow_debug"`

	MinTCBEvaluationDataNumber int `hcl:"min_tcb_evaluation_data_number"`
}

type rawCollateral struct {
	PCCSURL      string `hcl:"pccs_url"`
	PCSURL       string `hcl:"pcs_url"`
	OfflineDir   string `hcl:"offline_dir"`
	CacheDir     string `hcl:"cache_dir"`
	Refresh      string `hcl:"refresh"`
	FetchTimeout string `hcl:"fetch_timeout"`
}

type rawServerTPM struct {
	EKCAFiles       []string `hcl:"ek_ca_files"`
	EKHashAllowList []string `hcl:"ek_hash_allow_list"`
	AKCAFiles       []string `hcl:"ak_ca_files"`
	RuntimePCR      int      `hcl:"runtime_pcr"`
}

type rawServerSim struct {
	TrustedRootFile string `hcl:"trusted_root_file"`
}

type rawServerAzure struct {
	ParavisorMRTDs []string `hcl:"paravisor_mrtds"`
	RuntimePCR     int      `hcl:"runtime_pcr"`
}

// ParseServerVerifier parses, defaults and validates the server verifier's
// plugin_data. policy_file, when set, is read through readFile (so tests
// and callers choose how files are reached); readFile may be nil when no
// policy_file is configured.
func ParseServerVerifier(src string, readFile func(string) ([]byte, error)) (*ServerVerifier, error) {
	var errs errList
	d := newDoc("plugin_data", &errs)
	var r rawServer
	if !parseDoc(d, src, MaxConfigBytes, &r) {
		return nil, errs.err()
	}
	c := &ServerVerifier{
		NonceTTL:           duration(d, "nonce_ttl", r.NonceTTL, DefaultNonceTTL, time.Second, time.Hour),
		MaxPayloadBytes:    DefaultMaxPayloadBytes,
		ChallengeTimeout:   duration(d, "challenge_timeout", r.ChallengeTimeout, 0, time.Second, time.Hour),
		AgentPathTemplate:  DefaultAgentPathTemplate,
		RequirePolicy:      r.RequirePolicy,
		AllowIMAViolations: r.AllowIMAViolations,
	}
	if d.has("tdx") {
		c.TDX = serverTDX(d, r.TDX)
	}
	if d.has("tpm") {
		c.TPM = serverTPM(d, r.TPM)
	}
	if d.has("sim") {
		c.Sim = &SimVerifier{TrustedRootFile: r.Sim.TrustedRootFile}
		if !d.has("sim.trusted_root_file") || r.Sim.TrustedRootFile == "" {
			d.errf("sim", "needs trusted_root_file: the simulated root the server accepts")
		}
	}
	if d.has("azure_tdx") {
		c.AzureTDX = serverAzure(d, r.AzureTDX, c.TDX != nil)
	}
	if c.TDX == nil && c.TPM == nil && c.Sim == nil && c.AzureTDX == nil && errs.empty() {
		d.errLine(0, "no TEE is accepted: add a tdx, tpm, azure_tdx or sim block")
	}
	if d.has("max_payload_bytes") {
		if r.MaxPayloadBytes < 1024 || r.MaxPayloadBytes > maxMaxPayloadBytes {
			d.errf("max_payload_bytes", "%d is outside 1024..%d", r.MaxPayloadBytes, maxMaxPayloadBytes)
		} else {
			c.MaxPayloadBytes = int64(r.MaxPayloadBytes)
		}
	}
	c.evidenceInFlight(d, r)
	if d.has("agent_path_template") {
		c.AgentPathTemplate = r.AgentPathTemplate
		c.AgentPathLegacy = strings.HasPrefix(r.AgentPathTemplate, agentIDPrefix+"/")
	}
	t, err := parseAgentPath(c.AgentPathTemplate)
	if err != nil {
		d.errf("agent_path_template", "%v", err)
	} else {
		c.agentPath = t
		c.checkTemplate(d)
	}
	c.Policies = policies(d, r.Policies)
	if d.has("policy_file") {
		c.PolicyFile = r.PolicyFile
		c.Policies = append(c.Policies, readPolicyFile(d, r.PolicyFile, readFile)...)
	}
	if len(c.Policies) > MaxPolicies {
		d.errLine(0, "%d policies is more than the limit of %d", len(c.Policies), MaxPolicies)
	}
	c.checkpointAndMetrics(d, r)
	if c.RequirePolicy && len(c.Policies) == 0 && errs.empty() {
		d.errf("require_policy", "is true but no policy is configured: every node would be rejected")
	}
	if !errs.empty() {
		return nil, errs.err()
	}
	return c, nil
}

// evidenceInFlight reads max_evidence_bytes_in_flight, after
// max_payload_bytes: a budget smaller than one payload would refuse the
// largest evidence the challenge allows even on an idle server.
func (c *ServerVerifier) evidenceInFlight(d *doc, r rawServer) {
	c.MaxEvidenceBytesInFlight = max(DefaultMaxEvidenceBytesInFlight, c.MaxPayloadBytes)
	if !d.has("max_evidence_bytes_in_flight") {
		return
	}
	v := int64(r.MaxEvidenceBytesInFlight)
	switch {
	case v < minMaxEvidenceBytesInFlight || v > maxMaxEvidenceBytesInFlight:
		d.errf("max_evidence_bytes_in_flight", "%d is outside %d..%d", v, int64(minMaxEvidenceBytesInFlight), int64(maxMaxEvidenceBytesInFlight))
	case v < c.MaxPayloadBytes:
		d.errf("max_evidence_bytes_in_flight", "%d is less than max_payload_bytes (%d): evidence of the size the challenge allows could never be verified", v, c.MaxPayloadBytes)
	default:
		c.MaxEvidenceBytesInFlight = v
	}
}

// checkpointAndMetrics reads the incremental re-attestation keys and
// refuses the removed metrics_address.
func (c *ServerVerifier) checkpointAndMetrics(d *doc, r rawServer) {
	c.CheckpointKeyFile = absPath(d, "checkpoint_key_file", r.CheckpointKeyFile)
	c.CheckpointPreviousKeyFile = absPath(d, "checkpoint_previous_key_file", r.CheckpointPreviousKeyFile)
	if c.CheckpointPreviousKeyFile != "" && !d.has("checkpoint_key_file") {
		d.errf("checkpoint_previous_key_file", "needs checkpoint_key_file: the previous key only verifies, the current one signs")
	}
	c.CheckpointTTL = duration(d, "checkpoint_ttl", r.CheckpointTTL, DefaultCheckpointTTL, time.Minute, 30*24*time.Hour)
	if d.has("checkpoint_ttl") && !d.has("checkpoint_key_file") {
		d.errf("checkpoint_ttl", "has no effect without checkpoint_key_file")
	}
	if d.has("metrics_address") {
		// Removed, not ignored: a server that silently stopped serving the
		// endpoint an operator's scraper and alerts rely on would look
		// healthy while its monitoring went blind.
		d.errf("metrics_address", "was removed: the plugin's metrics now go to the SPIRE server's own telemetry (the server config's telemetry block, e.g. Prometheus { host = \"127.0.0.1\" port = 9988 }), under names starting spire_server_ccnp_ (docs/operations.md, \"Metrics\"); delete this key")
	}
}

// checkTemplate renders the template on sample data of every TEE kind the
// server accepts, so a reference to an unknown field, a quote field on TPM
// nodes, or a path SPIRE would refuse fails at configure time, not at the
// first attestation (including a template that gives a sim node no "sim"
// segment, or a hardware node one).
func (c *ServerVerifier) checkTemplate(d *doc) {
	sample := func(tee cctrusted.TEE) AgentPathData {
		s := AgentPathData{TEE: string(tee), ID: strings.Repeat("0f", 32)}
		if tee != cctrusted.TEETPM {
			f := slices.Repeat([]byte{0x5a}, 48)
			s.Quote = &AgentPathQuote{MRConfigID: f, MROwner: f, MROwnerConfig: f}
		}
		return s
	}
	// AgentPath itself keeps sim and hardware agent IDs apart (a "sim"
	// segment for sim nodes only), at every attestation: this sample only
	// reports a template that can never work as early as possible.
	accepted := map[cctrusted.TEE]bool{cctrusted.TEETDX: c.TDX != nil, cctrusted.TEETPM: c.TPM != nil, cctrusted.TEESim: c.Sim != nil, cctrusted.TEEAzureTDX: c.AzureTDX != nil}
	// Node IDs of different kinds come from different places (a TDX node
	// names its own instance ID; a TPM's EK hash and an Azure VM's AK hash
	// are public in selectors and logs), so a template that gives two
	// kinds the same path for the same ID would let a node of one kind
	// claim another kind's agent ID, and its entries.
	rendered := map[string]cctrusted.TEE{}
	for _, tee := range []cctrusted.TEE{cctrusted.TEETDX, cctrusted.TEETPM, cctrusted.TEESim, cctrusted.TEEAzureTDX} {
		if !accepted[tee] {
			continue
		}
		p, err := c.AgentPath(sample(tee))
		if err != nil {
			d.errf("agent_path_template", "for %s nodes: %v", tee, unwrapTemplateErr(err))
			return
		}
		if other, dup := rendered[p]; dup {
			d.errf("agent_path_template", "gives %s and %s nodes with the same ID the same agent ID (%s): a node of one kind could take the other's agent ID and entries; put {{ .TEE }} in the template", other, tee, p)
			return
		}
		rendered[p] = tee
	}
}

func unwrapTemplateErr(err error) string {
	return strings.TrimPrefix(err.Error(), "agent_path_template: ")
}

func serverTDX(d *doc, r rawServerTDX) *TDXVerifier {
	t := &TDXVerifier{
		TrustedRootsFile:    r.TrustedRootsFile,
		AcceptedTCBStatuses: []TCBStatus{TCBUpToDate},
		AllowDebug:          r.AllowDebug,
	}
	if d.has("tdx.trusted_roots_file") && r.TrustedRootsFile == "" {
		d.errf("tdx.trusted_roots_file", "empty path: remove the key to use the embedded Intel SGX Root CA")
	}
	if d.has("tdx.accepted_tcb_statuses") {
		t.AcceptedTCBStatuses = tcbStatuses(d, "tdx.accepted_tcb_statuses", "tdx.accepted_tcb_statuses", r.AcceptedTCBStatuses)
	}
	if d.has("tdx.min_tcb_evaluation_data_number") {
		t.MinTCBEvaluationDataNumber = evaluationNumber(d, "tdx.min_tcb_evaluation_data_number", "tdx.min_tcb_evaluation_data_number", r.MinTCBEvaluationDataNumber)
	}
	t.Collateral = collateral(d, r.Collateral)
	return t
}

func collateral(d *doc, r rawCollateral) Collateral {
	c := Collateral{
		Source:   CollateralPCS,
		URL:      DefaultPCSURL,
		CacheDir: r.CacheDir,
		Refresh:  duration(d, "tdx.collateral.refresh", r.Refresh, DefaultCollateralRefresh, time.Minute, 90*24*time.Hour),
		FetchTimeout: duration(d, "tdx.collateral.fetch_timeout", r.FetchTimeout, DefaultCollateralFetchTimeout,
			time.Second, 5*time.Minute),
	}
	var set []string
	for _, k := range []string{"pccs_url", "pcs_url", "offline_dir"} {
		if d.has("tdx.collateral." + k) {
			set = append(set, k)
		}
	}
	if len(set) > 1 {
		d.errf("tdx.collateral."+set[1], "cannot be combined with %s: choose one collateral source", set[0])
		return c
	}
	switch {
	case d.has("tdx.collateral.pccs_url"):
		c.Source, c.URL = CollateralPCCS, httpURL(d, "tdx.collateral.pccs_url", r.PCCSURL)
	case d.has("tdx.collateral.pcs_url"):
		c.URL = httpURL(d, "tdx.collateral.pcs_url", r.PCSURL)
	case d.has("tdx.collateral.offline_dir"):
		c.Source, c.URL = CollateralOffline, ""
		c.OfflineDir = r.OfflineDir
		if r.OfflineDir == "" {
			d.errf("tdx.collateral.offline_dir", "empty path")
		}
	}
	if d.has("tdx.collateral.cache_dir") && r.CacheDir == "" {
		d.errf("tdx.collateral.cache_dir", "empty path: remove the key to cache in memory only")
	}
	return c
}

// httpURL accepts http and https base URLs. Collateral is signed by Intel,
// so plain HTTP (a loopback PCCS, a test PCS) costs no trust.
func httpURL(d *doc, key, s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		d.errf(key, "%q: want an http(s) base URL without credentials, query or fragment", s)
		return ""
	}
	return strings.TrimRight(s, "/")
}

// serverAzure reads the azure_tdx block. Its TD quotes are verified with
// the tdx block's roots, collateral and TCB rules, so it needs one.
func serverAzure(d *doc, r rawServerAzure, tdx bool) *AzureTDXVerifier {
	a := &AzureTDXVerifier{}
	if !tdx {
		d.errf("azure_tdx", "needs a tdx block: an Azure node's TD quote is verified with its trusted roots, collateral and accepted_tcb_statuses")
	}
	if !d.has("azure_tdx.paravisor_mrtds") {
		d.errf("azure_tdx", "needs paravisor_mrtds: the MRTDs of the paravisor builds trusted to run an honest vTPM (without them any TD could play paravisor and vouch for any PCR value)")
	} else {
		c := &policyCheck{d: d, path: "azure_tdx", sep: ".", ok: true}
		a.ParavisorMRTDs = c.hexList("paravisor_mrtds", r.ParavisorMRTDs, 48)
	}
	a.RuntimePCR = serverRuntimePCR(d, "azure_tdx.runtime_pcr", r.RuntimePCR)
	return a
}

// serverRuntimePCR reads a server runtime_pcr key: a PCR in 11..15, or zero when unset.
func serverRuntimePCR(d *doc, key string, v int) cctrusted.PCR {
	if !d.has(key) {
		return 0
	}
	if p := cctrusted.PCR(v); v < 0 || !RuntimePCRProtected(p) {
		d.errf(key, "%d: want a PCR in %d..%d (PCRs 16..23 can be reset without a reboot, so a runtime log there proves nothing; 0..10 belong to firmware, boot loader and IMA)", v, MinRuntimePCR, MaxProtectedRuntimePCR)
		return 0
	}
	return cctrusted.PCR(v)
}

func serverTPM(d *doc, r rawServerTPM) *TPMVerifier {
	t := &TPMVerifier{}
	t.EKCAFiles = fileList(d, "tpm.ek_ca_files", r.EKCAFiles)
	t.AKCAFiles = fileList(d, "tpm.ak_ca_files", r.AKCAFiles)
	if d.has("tpm.ek_hash_allow_list") {
		c := &policyCheck{d: d, path: "tpm", sep: ".", ok: true}
		t.EKHashAllowList = c.hexList("ek_hash_allow_list", r.EKHashAllowList, 32)
	}
	t.RuntimePCR = serverRuntimePCR(d, "tpm.runtime_pcr", r.RuntimePCR)
	if t.EKCAFiles == nil && t.EKHashAllowList == nil && !d.has("tpm.ek_ca_files") && !d.has("tpm.ek_hash_allow_list") {
		d.errf("tpm", "needs ek_ca_files or ek_hash_allow_list: nothing else makes an EK trusted")
	}
	return t
}

func fileList(d *doc, key string, vals []string) []string {
	if !d.has(key) {
		return nil
	}
	if len(vals) == 0 {
		d.errf(key, "empty list: remove the key instead")
		return nil
	}
	for i, v := range vals {
		if v == "" {
			d.errf(fmt.Sprintf("%s[%d]", key, i), "empty path")
		}
	}
	return vals
}

// readPolicyFile reads and parses policy_file and refuses a policy name
// that plugin_data already defines.
func readPolicyFile(d *doc, name string, readFile func(string) ([]byte, error)) []Policy {
	if name == "" {
		d.errf("policy_file", "empty path")
		return nil
	}
	if readFile == nil {
		d.errf("policy_file", "no file reader was given to read %q", name)
		return nil
	}
	b, err := readFile(name)
	if err != nil {
		d.errf("policy_file", "%v", err)
		return nil
	}
	if len(b) > MaxPolicyFileBytes {
		d.errf("policy_file", "%s is %d bytes, more than the limit of %d", name, len(b), MaxPolicyFileBytes)
		return nil
	}
	fd := newDoc(name, d.errs)
	ps := parsePolicyFile(fd, string(b))
	var out []Policy
	for _, p := range ps {
		if prev := d.pos[fmt.Sprintf("policy %q", p.Name)]; prev.Line > 0 {
			fd.errLine(fd.line(fmt.Sprintf("policy %q", p.Name)),
				"policy %q is defined twice: plugin_data line %d and %s line %d",
				p.Name, prev.Line, name, fd.line(fmt.Sprintf("policy %q", p.Name)))
			continue
		}
		out = append(out, p)
	}
	return out
}
