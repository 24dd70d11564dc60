package spirelab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Sim is a simulated TD in the lab and the PCS serving its collateral.
type Sim struct {
	Dir    string
	PCSURL string
}

// InitSim runs `ccnp sim init` into Dir/name with extra flags, and starts
// `ccnp sim pcs` for it on a free loopback port.
func (l *Lab) InitSim(ctx context.Context, name string, flags ...string) (*Sim, error) {
	dir := filepath.Join(l.Dir, name)
	l.say("simulated TDX %s: ccnp sim init %s (RTMR0..2 from a real CCEL)", name, strings.Join(flags, " "))
	if _, err := l.Run(ctx, "ccnp", append([]string{"sim", "init", "--dir", dir}, flags...)...); err != nil {
		return nil, err
	}
	p, err := l.Start(name+"-pcs", "ccnp", "sim", "pcs", "--dir", dir, "--listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile(`listening on (http://\S+)`)
	var url string
	err = waitFor(ctx, "simulated PCS", p, func() error {
		b, _ := os.ReadFile(p.Log)
		if m := re.FindSubmatch(b); m != nil {
			url = string(m[1])
			return nil
		}
		return errNotReady
	})
	if err != nil {
		return nil, err
	}
	l.say("simulated Intel PCS for %s at %s (real HTTP, Intel's URL paths)", name, url)
	return &Sim{Dir: dir, PCSURL: url}, nil
}

// GeneratePolicy runs `ccnp policy generate --from-node` on the simulator and
// returns the policy file's path.
func (l *Lab) GeneratePolicy(ctx context.Context, s *Sim, name string, flags ...string) (string, error) {
	path := filepath.Join(l.Dir, "policy-"+name+".hcl")
	args := append([]string{"--tee", "sim", "--sim-dir", s.Dir, "policy", "generate", "--from-node", "--name", name, "-o", path}, flags...)
	if _, err := l.Run(ctx, "ccnp", args...); err != nil {
		return "", err
	}
	l.say("golden policy %q from the node: ccnp policy generate --from-node -> %s", name, path)
	return path, nil
}

// ServerConfig is what the lab's spire-server is configured with.
type ServerConfig struct {
	// SimRoot is the simulated root the server trusts (sim block); empty: none.
	SimRoot string
	// PCSURL is the collateral service of the tdx block; empty: no tdx block.
	PCSURL string
	// PolicyFile and RequirePolicy as in the plugin's plugin_data.
	PolicyFile    string
	RequirePolicy bool
	// TPM is a tpm block's body (e.g. ek_ca_files = [...]); empty: none.
	TPM string
	// AzureTDX is an azure_tdx block's body (paravisor_mrtds = [...]);
	// empty: none.
	AzureTDX string
	// AgentTTL is the agent SVID lifetime; re-attestation happens at about
	// half of it. Zero: SPIRE's default.
	AgentTTL time.Duration
	// JoinToken adds SPIRE's join_token node attestor (the baseline the
	// ccnp attestor is compared with).
	JoinToken bool
	// X509PoPCABundle, when set, adds SPIRE's x509pop node attestor
	// trusting the CA certificates in that PEM file (the anchor of the
	// end-to-end load benchmark).
	X509PoPCABundle string
	// NoAttestationRateLimit switches off SPIRE's limit of one node
	// attestation per second per client IP (ratelimit { attestation }),
	// which a load driver on loopback would otherwise hit at once.
	NoAttestationRateLimit bool
	// LogLevel of the server; empty: DEBUG. A load run uses WARN so that
	// the server spends its CPU on attestations, not on its log.
	LogLevel string
	// ProfilingPort, when set, switches on spire-server's profiling
	// (profiling_enabled, profiling_port): net/http/pprof on
	// localhost:<port>, for CPU profiles of the server under load.
	ProfilingPort int
	// CheckpointKeyFile, when set, is the ccnp plugin's
	// checkpoint_key_file: verified attestations end with a checkpoint and
	// re-attestations send log suffixes only.
	CheckpointKeyFile string
	// PrometheusPort, when set, adds a telemetry block with a Prometheus
	// endpoint on 127.0.0.1:<port>/metrics; its datastore call counters
	// (spire_server_datastore_*) count the server's datastore operations.
	PrometheusPort int
}

var serverConf = template.Must(template.New("server").Parse(`server {
  bind_address = "127.0.0.1"
  bind_port    = "{{.Port}}"
  trust_domain = "{{.TD}}"
  data_dir     = "{{.Dir}}/server"
  socket_path  = "{{.Socket}}"
  log_level    = "{{.LogLevel}}"
{{- if .AgentTTL}}
  agent_ttl    = "{{.AgentTTL}}"
{{- end}}
{{- if .NoAttestationRateLimit}}
  ratelimit {
    attestation = false
  }
{{- end}}
{{- if .ProfilingPort}}
  profiling_enabled = true
  profiling_port    = {{.ProfilingPort}}
{{- end}}
}
{{- if .PrometheusPort}}
telemetry {
  Prometheus {
    host = "127.0.0.1"
    port = {{.PrometheusPort}}
  }
}
{{- end}}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type     = "sqlite3"
      connection_string = "{{.Dir}}/server/datastore.sqlite3"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
{{- if .JoinToken}}
  NodeAttestor "join_token" {
    plugin_data {}
  }
{{- end}}
{{- if .X509PoPCABundle}}
  NodeAttestor "x509pop" {
    plugin_data {
      ca_bundle_path = "{{.X509PoPCABundle}}"
    }
  }
{{- end}}
  NodeAttestor "ccnp" {
    plugin_cmd      = "{{.Plugin}}"
    plugin_checksum = "{{.Checksum}}"
    plugin_data {
{{- if .SimRoot}}
      sim { trusted_root_file = "{{.SimRoot}}" }
{{- end}}
{{- if .PCSURL}}
      tdx {
        collateral { pcs_url = "{{.PCSURL}}" }
        accepted_tcb_statuses = ["UpToDate"]
      }
{{- end}}
{{- if .TPM}}
      tpm {
        {{.TPM}}
      }
{{- end}}
{{- if .AzureTDX}}
      azure_tdx {
        {{.AzureTDX}}
      }
{{- end}}
{{- if .PolicyFile}}
      policy_file    = "{{.PolicyFile}}"
{{- end}}
{{- if .CheckpointKeyFile}}
      checkpoint_key_file = "{{.CheckpointKeyFile}}"
{{- end}}
      require_policy = {{.RequirePolicy}}
    }
  }
}
`))

// Server is a running spire-server.
type Server struct {
	*Proc
	lab    *Lab
	Port   int
	Socket string
}

// StartServer writes Dir/server.conf and runs spire-server until it answers
// its health check.
func (l *Lab) StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	plugin := filepath.Join(l.Bin, "ccnp-server-nodeattestor")
	sum, err := Checksum(plugin)
	if err != nil {
		return nil, err
	}
	s := &Server{lab: l, Port: port, Socket: filepath.Join(l.Dir, "server", "api.sock")}
	if err := os.MkdirAll(filepath.Join(l.Dir, "server"), 0o755); err != nil {
		return nil, err
	}
	logLevel := cfg.LogLevel
	if logLevel == "" {
		logLevel = "DEBUG"
	}
	var ttl string
	if cfg.AgentTTL > 0 {
		ttl = cfg.AgentTTL.String()
	}
	data := map[string]any{"Port": port, "TD": l.TrustDomain, "Dir": l.Dir, "Socket": s.Socket, "Plugin": plugin,
		"Checksum": sum, "SimRoot": cfg.SimRoot, "PCSURL": cfg.PCSURL, "TPM": cfg.TPM, "AzureTDX": cfg.AzureTDX, "PolicyFile": cfg.PolicyFile,
		"RequirePolicy": cfg.RequirePolicy, "AgentTTL": ttl, "JoinToken": cfg.JoinToken,
		"X509PoPCABundle": cfg.X509PoPCABundle, "NoAttestationRateLimit": cfg.NoAttestationRateLimit, "LogLevel": logLevel,
		"ProfilingPort": cfg.ProfilingPort, "PrometheusPort": cfg.PrometheusPort, "CheckpointKeyFile": cfg.CheckpointKeyFile}
	conf := filepath.Join(l.Dir, "server.conf")
	if err := writeTemplate(conf, serverConf, data); err != nil {
		return nil, err
	}
	l.say("spire-server on 127.0.0.1:%d with NodeAttestor \"ccnp\" (%s)", port, conf)
	if s.Proc, err = l.Start("server", filepath.Join(l.Bin, "spire-server"), "run", "-config", conf); err != nil {
		return nil, err
	}
	err = waitFor(ctx, "spire-server", s.Proc, func() error {
		_, err := l.Run(ctx, "spire-server", "healthcheck", "-socketPath", s.Socket)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Exec runs a spire-server subcommand against this server's socket.
func (s *Server) Exec(ctx context.Context, sub string, args ...string) (string, error) {
	parts := strings.Fields(sub)
	return s.lab.Run(ctx, "spire-server", append(append(parts, "-socketPath", s.Socket), args...)...)
}

// CreateEntry runs `spire-server entry create` with args.
func (s *Server) CreateEntry(ctx context.Context, args ...string) error {
	_, err := s.Exec(ctx, "entry create", args...)
	return err
}

// Agents returns the SPIFFE IDs of the attested agents.
func (s *Server) Agents(ctx context.Context) ([]string, error) {
	out, err := s.Exec(ctx, "agent list")
	if err != nil {
		return nil, err
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "SPIFFE ID" {
			ids = append(ids, strings.TrimSpace(v))
		}
	}
	return ids, nil
}

// AgentSelectors returns the selectors of an attested agent (agent show).
func (s *Server) AgentSelectors(ctx context.Context, id string) ([]string, error) {
	out, err := s.Exec(ctx, "agent show", "-spiffeID", id)
	if err != nil {
		return nil, err
	}
	var sel []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "Selectors" {
			sel = append(sel, strings.TrimSpace(v))
		} else if strings.HasPrefix(strings.TrimSpace(sc.Text()), "ccnp:") || strings.HasPrefix(strings.TrimSpace(sc.Text()), "type:") {
			sel = append(sel, strings.TrimSpace(sc.Text()))
		}
	}
	return sel, nil
}

// JoinToken creates a join token for an agent (spire-server token generate).
func (s *Server) JoinToken(ctx context.Context, spiffeID string) (string, error) {
	out, err := s.Exec(ctx, "token generate", "-spiffeID", spiffeID)
	if err != nil {
		return "", err
	}
	_, tok, ok := strings.Cut(strings.TrimSpace(out), "Token:")
	if !ok {
		return "", fmt.Errorf("unexpected token generate output %q", out)
	}
	return strings.TrimSpace(tok), nil
}

// AgentConfig is what the lab's spire-agent is configured with.
type AgentConfig struct {
	// TEE is sim, tpm or azure_tdx.
	TEE string
	// SimDir for TEE sim; TPM (tcp://...) for TEE tpm and azure_tdx.
	SimDir string
	TPM    string
	// For TEE azure_tdx: the metadata service's TD quote URL and the host
	// root the vTPM's event logs are read under.
	IMDSURL  string
	HostRoot string
	// Measure is the workload attestor's measure mode (default first_seen).
	Measure string
	// JoinToken, when set, attests with SPIRE's join_token attestor
	// instead of ccnp (the baseline of bench/time-to-svid).
	JoinToken string
}

var agentConf = template.Must(template.New("agent").Parse(`agent {
  data_dir           = "{{.Dir}}/agent"
  log_level          = "DEBUG"
  server_address     = "127.0.0.1"
  server_port        = "{{.Port}}"
  socket_path        = "{{.Socket}}"
  trust_domain       = "{{.TD}}"
  insecure_bootstrap = true
}
plugins {
  KeyManager "memory" {
    plugin_data {}
  }
{{- if .JoinToken}}
  NodeAttestor "join_token" {
    plugin_data {}
  }
{{- else}}
  NodeAttestor "ccnp" {
    plugin_cmd      = "{{.NA}}"
    plugin_checksum = "{{.NASum}}"
    plugin_data {
      tee              = "{{.TEE}}"
{{- if eq .TEE "sim"}}
      sim { dir = "{{.SimDir}}" }
{{- end}}
{{- if eq .TEE "tpm"}}
      tpm { device = "{{.TPM}}" }
{{- end}}
{{- if eq .TEE "azure_tdx"}}
      tpm { device = "{{.TPM}}" }
      azure_tdx { imds_url = "{{.IMDSURL}}" }
      host_root = "{{.HostRoot}}"
{{- end}}
      instance_id_path = "{{.Dir}}/agent/instance_id"
      runtime_log_path = "{{.Dir}}/agent/runtime.cel"
    }
  }
{{- end}}
  WorkloadAttestor "ccnp" {
    plugin_cmd      = "{{.WA}}"
    plugin_checksum = "{{.WASum}}"
    plugin_data {
      tee              = "{{.TEE}}"
{{- if eq .TEE "sim"}}
      sim_dir          = "{{.SimDir}}"
{{- end}}
{{- if or (eq .TEE "tpm") (eq .TEE "azure_tdx")}}
      tpm_device       = "{{.TPM}}"
{{- end}}
      measure          = "{{.Measure}}"
      runtime_log_path = "{{.Dir}}/agent/runtime.cel"
    }
  }
}
`))

// Agent is a running spire-agent.
type Agent struct {
	*Proc
	lab    *Lab
	Socket string
}

// StartAgent writes Dir/agent.conf and runs spire-agent against s. It does
// not wait: attestation may be meant to fail; use WaitReady.
func (l *Lab) StartAgent(ctx context.Context, s *Server, cfg AgentConfig) (*Agent, error) {
	if cfg.Measure == "" {
		cfg.Measure = "first_seen"
	}
	agentBin := l.Bin
	if cfg.TEE == "sim" {
		agentBin = filepath.Join(l.Bin, SimBinDir)
	}
	na, wa := filepath.Join(agentBin, "ccnp-agent-nodeattestor"), filepath.Join(agentBin, "ccnp-agent-workloadattestor")
	naSum, err := Checksum(na)
	if err != nil {
		return nil, err
	}
	waSum, err := Checksum(wa)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(l.Dir, "agent"), 0o755); err != nil {
		return nil, err
	}
	a := &Agent{lab: l, Socket: filepath.Join(l.Dir, "agent", "api.sock")}
	data := map[string]any{"Dir": l.Dir, "Port": strconv.Itoa(s.Port), "Socket": a.Socket, "TD": l.TrustDomain,
		"NA": na, "NASum": naSum, "WA": wa, "WASum": waSum, "TEE": cfg.TEE, "SimDir": cfg.SimDir, "TPM": cfg.TPM,
		"IMDSURL": cfg.IMDSURL, "HostRoot": cfg.HostRoot,
		"Measure": cfg.Measure, "JoinToken": cfg.JoinToken}
	conf := filepath.Join(l.Dir, "agent.conf")
	if err := writeTemplate(conf, agentConf, data); err != nil {
		return nil, err
	}
	l.say("spire-agent with the ccnp NodeAttestor and WorkloadAttestor (%s)", conf)
	args := []string{"run", "-config", conf}
	if cfg.JoinToken != "" {
		args = append(args, "-joinToken", cfg.JoinToken)
	}
	if a.Proc, err = l.Start("agent", filepath.Join(l.Bin, "spire-agent"), args...); err != nil {
		return nil, err
	}
	return a, nil
}

// WaitReady waits until the agent answers its health check (it has
// attested and synced).
func (a *Agent) WaitReady(ctx context.Context) error {
	return waitFor(ctx, "spire-agent", a.Proc, func() error {
		_, err := a.lab.Run(ctx, "spire-agent", "healthcheck", "-socketPath", a.Socket)
		return err
	})
}

// FetchSVID runs the demo workload (bin/ccnp-demo-workload, or another
// binary path) and returns its output: the SPIFFE ID it was issued.
func (a *Agent) FetchSVID(ctx context.Context, workload string, timeout time.Duration) (string, error) {
	if workload == "" {
		workload = filepath.Join(a.lab.Bin, "ccnp-demo-workload")
	}
	cmd := execCommand(ctx, workload, "-socket", "unix://"+a.Socket, "-timeout", timeout.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("workload %s: %w: %s", filepath.Base(workload), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func writeTemplate(path string, t *template.Template, data any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := t.Execute(f, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
