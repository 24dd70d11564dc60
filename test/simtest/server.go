package simtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TrustDomain is the trust domain every suite configures its plugins
// with, so that expected SPIFFE IDs agree across suites.
const TrustDomain = "example.org"

// LogBuffer collects a plugin's log output; the plugin writes from the
// transport's goroutines while the test reads.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything logged so far.
func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Audit returns the server plugin's audit lines, one per attestation
// ("Attestation accepted" or "Attestation rejected", with a result field).
func (s *LogBuffer) Audit(t testing.TB) []map[string]any {
	t.Helper()
	return append(s.Lines(t, "Attestation accepted"), s.Lines(t, "Attestation rejected")...)
}

// Lines returns the JSON log lines whose message is msg, for asserting
// on the fields of audit lines rather than on their text.
func (s *LogBuffer) Lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(s.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["@message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// ServePlugin serves a plugin (server, with its config service config)
// over the SDK's real plugin transport for the test, so that requests and
// errors cross the same gRPC boundary as under SPIRE. It connects client
// to the plugin and returns the config service's client. hostServices are
// offered to the plugin as SPIRE offers its host services (Metrics...).
func ServePlugin(t *testing.T, server pluginsdk.PluginServer, client pluginsdk.PluginClient, config configv1.ConfigServer, log hclog.Logger, hostServices ...pluginsdk.ServiceServer) *configv1.ConfigServiceClient {
	t.Helper()
	cfg := new(configv1.ConfigServiceClient)
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   server,
		PluginClient:   client,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(config)},
		ServiceClients: []pluginsdk.ServiceClient{cfg},
		Logger:         log,

		HostServiceServers: hostServices,
	})
	return cfg
}

// Configure configures a plugin as SPIRE does, in TrustDomain.
func Configure(c *configv1.ConfigServiceClient, hcl string) error {
	_, err := c.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: TrustDomain},
		HclConfiguration:  hcl,
	})
	return err
}

// MustConfigure is Configure for configurations the test means to be
// valid: a refusal fails the test, showing the configuration.
func MustConfigure(t testing.TB, c *configv1.ConfigServiceClient, hcl string) {
	t.Helper()
	if err := Configure(c, hcl); err != nil {
		t.Fatalf("Configure: %v\n%s", err, hcl)
	}
}

// ServerPlugin is the server node attestor plugin as the transport needs
// it. The suites pass server-verifier's Plugin; taking an interface keeps
// this package free of server-verifier, whose own tests import it.
type ServerPlugin interface {
	nodeattestorv1.NodeAttestorServer
	configv1.ConfigServer
}

// ServeServer serves a server node attestor plugin, logging JSON at level
// to logs (the audit lines are what tests read), and returns its node
// attestor and config clients. hostServices are offered to the plugin.
func ServeServer(t *testing.T, p ServerPlugin, logs io.Writer, level hclog.Level, hostServices ...pluginsdk.ServiceServer) (*nodeattestorv1.NodeAttestorPluginClient, *configv1.ConfigServiceClient) {
	t.Helper()
	client := new(nodeattestorv1.NodeAttestorPluginClient)
	cfg := ServePlugin(t, nodeattestorv1.NodeAttestorPluginServer(p), client, p,
		hclog.New(&hclog.LoggerOptions{Output: logs, Level: level, JSONFormat: true}), hostServices...)
	return client, cfg
}

// ServeConfigured is ServeServer and MustConfigure with hcl, for tests
// that need a working server and nothing else of its setup.
func ServeConfigured(t *testing.T, p ServerPlugin, hcl string, logs io.Writer, level hclog.Level) *nodeattestorv1.NodeAttestorPluginClient {
	t.Helper()
	client, cfg := ServeServer(t, p, logs, level)
	MustConfigure(t, cfg, hcl)
	return client
}

// WantRejection asserts that err is the server's rejection with code by
// check: the message names the check ("ccnp: <check>:") and holds every
// part. Whether the audit log agrees is for the caller, whose logs differ.
func WantRejection(t testing.TB, err error, code codes.Code, check string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("attestation accepted, want %v from check %s", code, check)
	}
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code %v, want %v: %s", st.Code(), code, st.Message())
	}
	// SPIRE puts "nodeattestor(ccnp): " in front; the message starts with
	// the check.
	if !strings.HasPrefix(st.Message(), check+": ") {
		t.Errorf("message %q does not start with %q", st.Message(), check+": ")
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("message %q lacks %q", st.Message(), p)
		}
	}
}
