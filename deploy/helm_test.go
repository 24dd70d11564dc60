package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/printer"
	"go.yaml.in/yaml/v3"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tools/image"
)

// chartDir is the SPIRE chart the values are written for, vendored in the
// workspace's shared folder (not in this repository).
const chartDir = "../../shared/vendor/helm-charts-hardened-spire-0.27.1/spire"

// kubeVersion is what helm template assumes (the chart wants >= 1.21).
const kubeVersion = "1.34.3"

func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("CCNP_HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	t.Skip("no helm: set CCNP_HELM or put helm on PATH (make unit builds helm.sh/helm/v3 into .bin/tools)")
	return ""
}

func needChart(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
		t.Skipf("the vendored SPIRE chart is absent (%s): this clone is outside the workspace with ../shared", chartDir)
	}
}

// object is one rendered Kubernetes object.
type object = map[string]any

// render runs helm template on the chart with the given values files.
func render(t *testing.T, values ...string) []object {
	t.Helper()
	helm := helmBinary(t)
	needChart(t)
	args := []string{"template", "spire", chartDir, "--namespace", "spire", "--kube-version", kubeVersion}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	start := time.Now()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("helm template took %v", time.Since(start).Round(time.Millisecond))
	return decodeAll(t, "helm template", stdout.Bytes())
}

func decodeAll(t *testing.T, what string, b []byte) []object {
	t.Helper()
	var out []object
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if o != nil {
			out = append(out, o)
		}
	}
}

// checksumValues writes the values file ccnp-image writes, for the
// binaries make build left (CCNP_STATIC_BIN) or for stand-ins.
func checksumValues(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CCNP_STATIC_BIN")
	if bin == "" {
		bin = t.TempDir()
		for _, n := range image.Binaries {
			if err := os.WriteFile(filepath.Join(bin, n), []byte("stand-in for "+n), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := image.HelmChecksums(bin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "checksums.yaml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func get(o any, keys ...string) any {
	for _, k := range keys {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[k]
	}
	return o
}

func find(objs []object, kind, name string) object {
	for _, o := range objs {
		if o["kind"] == kind && get(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

// plugin is one external plugin of a rendered SPIRE config.
type plugin struct {
	cmd, checksum string
	data          string // plugin_data as HCL text, as SPIRE hands it over
}

// spirePlugins reads the SPIRE config (JSON, as the chart renders it) and
// returns the plugin_data of each `<kind> "ccnp"` and the names of every
// plugin of each kind.
func spirePlugins(t *testing.T, cfgJSON string) (map[string]plugin, map[string][]string) {
	t.Helper()
	var cfg struct {
		Plugins map[string][]map[string]struct {
			PluginCmd      string         `json:"plugin_cmd"`
			PluginChecksum string         `json:"plugin_checksum"`
			PluginData     map[string]any `json:"plugin_data"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatalf("SPIRE config: %v", err)
	}
	ccnp := map[string]plugin{}
	names := map[string][]string{}
	for kind, list := range cfg.Plugins {
		for _, entry := range list {
			for name, p := range entry {
				names[kind] = append(names[kind], name)
				if name != "ccnp" {
					continue
				}
				// SPIRE reads JSON configs with the HCL parser and hands
				// plugin_data to the plugin printed back as HCL: do the same.
				raw, _ := json.Marshal(p.PluginData)
				f, err := hcl.ParseBytes(raw)
				if err != nil {
					t.Fatalf("%s ccnp plugin_data: %v", kind, err)
				}
				var b bytes.Buffer
				if err := printer.Fprint(&b, f.Node); err != nil {
					t.Fatal(err)
				}
				ccnp[kind] = plugin{cmd: p.PluginCmd, checksum: p.PluginChecksum, data: b.String()}
			}
		}
	}
	return ccnp, names
}

// mount is a container's view of one volume.
type mount struct {
	path     string
	readOnly bool
	volume   map[string]any
}

// podMounts returns the mounts of the named container of a workload, and
// fails the test for any mount (of any container) naming no volume.
func podMounts(t *testing.T, o object, container string) []mount {
	t.Helper()
	spec := get(o, "spec", "template", "spec").(map[string]any)
	vols := map[string]map[string]any{}
	for _, v := range spec["volumes"].([]any) {
		vm := v.(map[string]any)
		vols[vm["name"].(string)] = vm
	}
	var cs []any
	cs = append(cs, spec["containers"].([]any)...)
	if ic, ok := spec["initContainers"].([]any); ok {
		cs = append(cs, ic...)
	}
	// A StatefulSet's claim templates are volumes of its pods too.
	claims, _ := get(o, "spec", "volumeClaimTemplates").([]any)
	for _, c := range claims {
		name := get(c, "metadata", "name").(string)
		vols[name] = map[string]any{"name": name, "persistentVolumeClaim": map[string]any{"claimName": name}}
	}
	var out []mount
	found := false
	for _, c := range cs {
		cm := c.(map[string]any)
		mounts, _ := cm["volumeMounts"].([]any)
		for _, m := range mounts {
			mm := m.(map[string]any)
			v, ok := vols[mm["name"].(string)]
			if !ok {
				t.Errorf("%s container %s: volume mount %q names no volume", get(o, "metadata", "name"), cm["name"], mm["name"])
				continue
			}
			if cm["name"] == container {
				ro, _ := mm["readOnly"].(bool)
				out = append(out, mount{path: mm["mountPath"].(string), readOnly: ro, volume: v})
			}
		}
		if cm["name"] == container {
			found = true
		}
	}
	if !found {
		t.Fatalf("%s has no container %s", get(o, "metadata", "name"), container)
	}
	return out
}

// within reports whether p is at or below dir.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// needPath checks that the container sees p through a mount (writable when
// write is set) and, for a path under hostRoot, that the mount is a hostPath
// volume of the same host path: what the plugin reads at /host/X must be
// the host's X.
func needPath(t *testing.T, who string, mounts []mount, hostRoot, p string, write bool) {
	t.Helper()
	var best *mount
	for i, m := range mounts {
		if within(p, m.path) && (best == nil || len(m.path) > len(best.path)) {
			best = &mounts[i]
		}
	}
	if best == nil {
		t.Errorf("%s reads %s, which no volume mount provides", who, p)
		return
	}
	if write && best.readOnly {
		t.Errorf("%s writes %s, but its mount %s is read-only", who, p, best.path)
	}
	if hostRoot != "" && within(p, hostRoot) {
		hp, _ := get(best.volume, "hostPath", "path").(string)
		want := "/" + strings.TrimPrefix(strings.TrimPrefix(best.path, hostRoot), "/")
		if hp != want {
			t.Errorf("%s reads %s through %s, which is hostPath %q, want the host's %s", who, p, best.path, hp, want)
		}
	}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestHelmValuesRender renders deploy/helm/values-ccnp.yaml (with the
// checksums file make image writes) against the vendored SPIRE chart and
// checks what SPIRE would run: every ccnp plugin_data parses with the
// plugins' own parsers, every volume mount names a volume, every path the
// plugins read or write is mounted (writable where they write, the host's
// own path under host_root), the TDX and TPM agents land on different nodes
// with different state, and workload entries hang off a node alias that a
// policy of deploy/ccnp-policies.hcl grants.
func TestHelmValuesRender(t *testing.T) {
	objs := render(t, "helm/values-ccnp.yaml", checksumValues(t))
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o["kind"].(string)+"/"+get(o, "metadata", "name").(string))
	}
	t.Logf("rendered %d objects: %s", len(objs), strings.Join(kinds, " "))

	// The server.
	cm := find(objs, "ConfigMap", "spire-server")
	sts := find(objs, "StatefulSet", "spire-server")
	if cm == nil || sts == nil {
		t.Fatal("no spire-server ConfigMap or StatefulSet rendered")
	}
	srv, _ := spirePlugins(t, get(cm, "data", "server.conf").(string))
	na, ok := srv["NodeAttestor"]
	if !ok {
		t.Fatal("server.conf has no NodeAttestor \"ccnp\"")
	}
	mounts := podMounts(t, sts, "spire-server")
	policyFile := ""
	sv, err := conf.ParseServerVerifier(na.data, func(p string) ([]byte, error) {
		policyFile = p
		return os.ReadFile("ccnp-policies.hcl")
	})
	if err != nil {
		t.Fatalf("server plugin_data:\n%s\n%v", na.data, err)
	}
	if !sha256Hex.MatchString(na.checksum) {
		t.Errorf("server plugin_checksum %q is not 64 lower-case hex", na.checksum)
	}
	needPath(t, "spire-server", mounts, "", na.cmd, false)
	needPath(t, "the server plugin (policy_file)", mounts, "", policyFile, false)
	needPath(t, "the server plugin (checkpoint_key_file)", mounts, "", sv.CheckpointKeyFile, false)
	if sv.TPM != nil {
		for _, f := range sv.TPM.EKCAFiles {
			needPath(t, "the server plugin (tpm.ek_ca_files)", mounts, "", f, false)
		}
	}
	if sv.TDX != nil && sv.TDX.Collateral.CacheDir != "" {
		needPath(t, "the server plugin (collateral cache_dir)", mounts, "", sv.TDX.Collateral.CacheDir, true)
	}

	// The agents: the TDX one (default) and the TPM one.
	states := map[string]string{}
	for _, a := range []struct{ name string }{{"spire-agent"}, {"spire-agent-tpm"}} {
		ds := find(objs, "DaemonSet", a.name)
		acm := find(objs, "ConfigMap", a.name)
		if ds == nil || acm == nil {
			t.Fatalf("no %s DaemonSet or ConfigMap rendered", a.name)
		}
		if get(ds, "spec", "template", "spec", "hostPID") != true {
			t.Errorf("%s: hostPID is not true (the workload attestors read /proc/<pid> of callers)", a.name)
		}
		plugins, names := spirePlugins(t, get(acm, "data", "agent.conf").(string))
		if !slices.Equal(names["NodeAttestor"], []string{"ccnp"}) {
			t.Errorf("%s: node attestors %v, want exactly ccnp", a.name, names["NodeAttestor"])
		}
		if !slices.Contains(names["WorkloadAttestor"], "k8s") || !slices.Contains(names["WorkloadAttestor"], "ccnp") {
			t.Errorf("%s: workload attestors %v, want k8s and ccnp", a.name, names["WorkloadAttestor"])
		}
		mounts := podMounts(t, ds, "spire-agent")
		node, wl := plugins["NodeAttestor"], plugins["WorkloadAttestor"]
		for _, p := range []plugin{node, wl} {
			if !sha256Hex.MatchString(p.checksum) {
				t.Errorf("%s: plugin_checksum %q is not 64 lower-case hex", a.name, p.checksum)
			}
			needPath(t, a.name, mounts, "", p.cmd, false)
		}
		nc, err := conf.ParseAgentNodeAttestor(node.data)
		if err != nil {
			t.Fatalf("%s node attestor plugin_data:\n%s\n%v", a.name, node.data, err)
		}
		wc, err := conf.ParseWorkloadAttestor(wl.data)
		if err != nil {
			t.Fatalf("%s workload attestor plugin_data:\n%s\n%v", a.name, wl.data, err)
		}
		if nc.TEE != wc.TEE {
			t.Errorf("%s: node attestor tee %q, workload attestor tee %q", a.name, nc.TEE, wc.TEE)
		}
		who := a.name + " (" + string(nc.TEE) + ")"
		hr := nc.HostRoot
		needPath(t, who, mounts, "", nc.InstanceIDPath, true)
		needPath(t, who, mounts, "", nc.RuntimeLogPath, true)
		needPath(t, who, mounts, "", wc.RuntimeLogPath, true)
		needPath(t, who, mounts, hr, path.Join(wc.HostRoot, "proc"), false)
		needPath(t, who, mounts, hr, path.Join(wc.HostRoot, "sys/fs/cgroup"), false)
		switch nc.TEE {
		case cctrusted.TEETDX:
			needPath(t, who, mounts, hr, nc.HostPath(nc.TDX.ConfigfsTSMPath), true)
			needPath(t, who, mounts, hr, nc.HostPath(nc.TDX.DevicePath), true)
			needPath(t, who, mounts, hr, nc.HostPath(nc.TDX.CCELPath), false)
			needPath(t, who, mounts, hr, nc.HostPath(nc.TDX.CCELTablePath), false)
			needPath(t, who, mounts, hr, nc.HostPath(orIMA(nc.TDX.IMAPath)), false)
			// RTMR3 extension: configfs-tsm rtmrs or the tsm-mr sysfs files.
			needPath(t, who, mounts, hr, nc.HostPath("/sys/kernel/config/tsm/rtmrs"), true)
			needPath(t, who, mounts, hr, nc.HostPath("/sys/class/misc/tdx_guest/measurements"), true)
			if get(ds, "spec", "template", "spec", "nodeSelector", "cloud.google.com/gke-confidential-nodes-instance-type") != "TDX" {
				t.Errorf("%s: no GKE confidential TDX node selector", a.name)
			}
		case cctrusted.TEETPM:
			needPath(t, who, mounts, hr, nc.HostPath(nc.TPM.Device), true)
			needPath(t, who, mounts, hr, nc.HostPath("/sys/kernel/security/tpm0/binary_bios_measurements"), false)
			if get(ds, "spec", "template", "spec", "nodeSelector", "cloud.google.com/gke-confidential-nodes-instance-type") != nil {
				t.Errorf("%s: the TPM agent selects TDX nodes", a.name)
			}
		default:
			t.Errorf("%s: tee %q, want tdx or tpm", a.name, nc.TEE)
		}
		for _, m := range mounts {
			if m.path == "/var/lib/ccnp-spire" {
				states[a.name], _ = get(m.volume, "hostPath", "path").(string)
			}
		}
	}
	if states["spire-agent"] == "" || states["spire-agent"] == states["spire-agent-tpm"] {
		t.Errorf("agent state directories on the host: %v; want one of its own for each agent kind", states)
	}

	// Node alias and the controller manager's parent ID.
	cmc := find(objs, "ConfigMap", "spire-controller-manager")
	if cmc == nil {
		t.Fatal("no controller manager config rendered")
	}
	var cmcfg struct {
		ParentIDTemplate string `yaml:"parentIDTemplate"`
		TrustDomain      string `yaml:"trustDomain"`
	}
	if err := yaml.Unmarshal([]byte(get(cmc, "data", "controller-manager-config.yaml").(string)), &cmcfg); err != nil {
		t.Fatal(err)
	}
	parent := strings.ReplaceAll(cmcfg.ParentIDTemplate, "{{ .TrustDomain }}", cmcfg.TrustDomain)
	var alias object
	for _, o := range objs {
		if o["kind"] == "ClusterStaticEntry" && get(o, "spec", "spiffeID") == parent {
			alias = o
		}
	}
	if alias == nil {
		t.Fatalf("parentIDTemplate %q names no node alias (ClusterStaticEntry)", cmcfg.ParentIDTemplate)
	}
	if want := "spiffe://" + cmcfg.TrustDomain + "/spire/server"; get(alias, "spec", "parentID") != want {
		t.Errorf("node alias parentID %v, want %s", get(alias, "spec", "parentID"), want)
	}
	granted := false
	for _, s := range get(alias, "spec", "selectors").([]any) {
		for _, p := range sv.Policies {
			if s == "ccnp:policy:"+p.Name && p.Enforce {
				granted = true
			}
		}
	}
	if !granted {
		t.Errorf("node alias selectors %v name no enforced policy of ccnp-policies.hcl", get(alias, "spec", "selectors"))
	}
}

func orIMA(p string) string {
	if p != "" {
		return p
	}
	return "/sys/kernel/security/ima/binary_runtime_measurements"
}

// TestHelmValuesWithoutChecksums renders the values alone: the placeholders
// must not pass for checksums, so a forgotten checksums file fails loudly
// in SPIRE (which refuses anything but 64 hex digits) rather than running
// an unchecked binary.
func TestHelmValuesWithoutChecksums(t *testing.T) {
	objs := render(t, "helm/values-ccnp.yaml")
	cm := find(objs, "ConfigMap", "spire-agent")
	if cm == nil {
		t.Fatal("no spire-agent ConfigMap")
	}
	plugins, _ := spirePlugins(t, get(cm, "data", "agent.conf").(string))
	for kind, p := range plugins {
		if sha256Hex.MatchString(p.checksum) {
			t.Errorf("%s: the values file alone carries a checksum (%s): it would go stale with every build", kind, p.checksum)
		}
	}
}
