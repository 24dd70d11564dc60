// Package deploy holds example SPIRE configurations and Kubernetes manifests;
// its test keeps them true: every ccnp plugin_data block parses with the
// plugins' own config parser, and every manifest is well-formed YAML with the
// fields Kubernetes requires.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/printer"
	"go.yaml.in/yaml/v3"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// pluginData returns the plugin_data source of every `<kind> "ccnp"` block.
func pluginData(t *testing.T, src string) map[string]string {
	t.Helper()
	f, err := hcl.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	plugins := f.Node.(*ast.ObjectList).Filter("plugins")
	for _, p := range plugins.Items {
		for _, item := range p.Val.(*ast.ObjectType).List.Items {
			if len(item.Keys) != 2 || strings.Trim(item.Keys[1].Token.Text, `"`) != "ccnp" {
				continue
			}
			kind := item.Keys[0].Token.Text
			for _, inner := range item.Val.(*ast.ObjectType).List.Items {
				if inner.Keys[0].Token.Text != "plugin_data" {
					continue
				}
				var b bytes.Buffer
				if err := printer.Fprint(&b, inner.Val.(*ast.ObjectType).List); err != nil {
					t.Fatal(err)
				}
				out[kind] = b.String()
			}
		}
	}
	return out
}

// readPolicyFile stands in for the server's policy_file: the example policy.
func readPolicyFile(string) ([]byte, error) { return os.ReadFile("ccnp-policies.hcl") }

func checkPluginData(t *testing.T, name, src string) int {
	t.Helper()
	n := 0
	for kind, data := range pluginData(t, src) {
		var err error
		switch kind {
		case "NodeAttestor":
			if strings.Contains(name, "server") {
				_, err = conf.ParseServerVerifier(data, readPolicyFile)
			} else {
				_, err = conf.ParseAgentNodeAttestor(data)
			}
		case "WorkloadAttestor":
			_, err = conf.ParseWorkloadAttestor(data)
		default:
			t.Errorf("%s: unexpected ccnp plugin kind %s", name, kind)
		}
		if err != nil {
			t.Errorf("%s: %s plugin_data: %v", name, kind, err)
		}
		n++
	}
	return n
}

func TestSPIREConfigs(t *testing.T) {
	files, _ := filepath.Glob("*.conf")
	if len(files) < 3 {
		t.Fatalf("found %d example configs", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := checkPluginData(t, f, string(b)); n == 0 {
			t.Errorf("%s has no ccnp plugin", f)
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests")
	}
	states := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		configMaps := map[string]bool{"spire-bundle": true} // SPIRE's server publishes it
		var daemonSets []map[string]any
		dec := yaml.NewDecoder(bytes.NewReader(b))
		docs := 0
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			docs++
			for _, k := range []string{"apiVersion", "kind", "metadata"} {
				if obj[k] == nil {
					t.Errorf("%s document %d: no %s", f, docs, k)
				}
			}
			switch obj["kind"] {
			case "ConfigMap":
				configMaps[obj["metadata"].(map[string]any)["name"].(string)] = true
				data := obj["data"].(map[string]any)
				if n := checkPluginData(t, f, data["agent.conf"].(string)); n != 2 {
					t.Errorf("%s: agent.conf has %d ccnp plugins, want 2", f, n)
				}
			case "DaemonSet":
				checkDaemonSet(t, f, obj)
				daemonSets = append(daemonSets, obj)
			}
		}
		// Every ConfigMap a DaemonSet mounts is defined beside it; every
		// DaemonSet is pinned to nodes; the agents' state directories differ.
		for _, ds := range daemonSets {
			spec := ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			if spec["nodeSelector"] == nil && spec["affinity"] == nil {
				t.Errorf("%s: DaemonSet has no node selector or affinity", f)
			}
			for _, v := range spec["volumes"].([]any) {
				vm := v.(map[string]any)
				if cm, ok := vm["configMap"].(map[string]any); ok && !configMaps[cm["name"].(string)] {
					t.Errorf("%s: volume %s mounts ConfigMap %s, defined nowhere", f, vm["name"], cm["name"])
				}
				if vm["name"] == "ccnp-state" {
					states[f] = vm["hostPath"].(map[string]any)["path"].(string)
				}
			}
		}
	}
	if a, b := states["k8s/spire-agent-ccnp.yaml"], states["k8s/spire-agent-ccnp-tpm.yaml"]; a == "" || a == b {
		t.Errorf("TDX agent state %q, TPM agent state %q: want one directory each", a, b)
	}
}

// checkDaemonSet checks that every volume mount names a declared volume and
// the agent runs with the host's PID namespace (the workload attestor needs
// the callers' /proc entries).
func checkDaemonSet(t *testing.T, f string, obj map[string]any) {
	spec := obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	if spec["hostPID"] != true {
		t.Errorf("%s: hostPID is not true", f)
	}
	volumes := map[string]bool{}
	for _, v := range spec["volumes"].([]any) {
		volumes[v.(map[string]any)["name"].(string)] = true
	}
	var containers []any
	containers = append(containers, spec["containers"].([]any)...)
	if ic, ok := spec["initContainers"].([]any); ok {
		containers = append(containers, ic...)
	}
	for _, c := range containers {
		for _, m := range c.(map[string]any)["volumeMounts"].([]any) {
			name := m.(map[string]any)["name"].(string)
			if !volumes[name] {
				t.Errorf("%s: volume mount %q has no volume", f, name)
			}
		}
	}
}

func TestHelmValues(t *testing.T) {
	b, err := os.ReadFile("helm/values-ccnp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"spire-server", "spire-agent"} {
		if _, ok := v[side].(map[string]any)["customPlugins"]; !ok {
			t.Errorf("%s: no customPlugins", side)
		}
	}
}
