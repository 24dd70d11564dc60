package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// k8sModule is the Kubernetes release whose OpenAPI document
// (api/openapi-spec/swagger.json, shipped in the k8s.io/kubernetes module)
// the manifests are validated against: the network here reaches the Go
// module proxy, not the schema sites validators download from.
const k8sModule = "k8s.io/kubernetes@v" + kubeVersion

// k8sSchemas compiles Kubernetes' definitions once per test run, made
// strict as kubeconform -strict makes them (an unknown field is an error:
// a typo such as "readOnly: true" under the wrong key must not pass).
type k8sSchemas struct {
	byGVK map[string]*jsonschema.Schema // "apps/v1 DaemonSet"
}

var (
	schemasOnce sync.Once
	schemas     *k8sSchemas
	schemasErr  error
)

func openAPISpec(t *testing.T) []byte {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to fetch " + k8sModule)
	}
	start := time.Now()
	cmd := exec.Command(goCmd, "mod", "download", "-json", k8sModule)
	cmd.Dir = t.TempDir() // outside this module: go.mod stays untouched
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot fetch %s from the Go module proxy (offline?): %v", k8sModule, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %s", k8sModule, out)
	}
	b, err := os.ReadFile(filepath.Join(mod.Dir, "api/openapi-spec/swagger.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s OpenAPI document: %d bytes, fetched in %v", k8sModule, len(b), time.Since(start).Round(time.Millisecond))
	return b
}

func loadSchemas(t *testing.T) *k8sSchemas {
	t.Helper()
	schemasOnce.Do(func() {
		raw := openAPISpec(t)
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			schemasErr = err
			return
		}
		defs := doc["definitions"].(map[string]any)
		for name, d := range defs {
			dm := d.(map[string]any)
			if _, ok := dm["properties"]; ok {
				if _, ok := dm["additionalProperties"]; !ok {
					dm["additionalProperties"] = false
				}
			}
			// Both are strings in the document but accept numbers in YAML.
			switch name {
			case "io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity":
				defs[name] = map[string]any{"type": []any{"string", "integer", "number"}}
			}
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft4)
		if err := c.AddResource("k8s.json", map[string]any{"definitions": defs}); err != nil {
			schemasErr = err
			return
		}
		s := &k8sSchemas{byGVK: map[string]*jsonschema.Schema{}}
		for name, d := range defs {
			gvks, _ := d.(map[string]any)["x-kubernetes-group-version-kind"].([]any)
			for _, g := range gvks {
				gm := g.(map[string]any)
				if gm["group"] == "" && gm["kind"] == "Status" {
					continue
				}
				apiVersion := gm["version"].(string)
				if grp := gm["group"].(string); grp != "" {
					apiVersion = grp + "/" + apiVersion
				}
				key := apiVersion + " " + gm["kind"].(string)
				if _, seen := s.byGVK[key]; seen {
					continue
				}
				sch, err := c.Compile("k8s.json#/definitions/" + strings.ReplaceAll(name, "/", "~1"))
				if err != nil {
					schemasErr = fmt.Errorf("compiling %s: %w", name, err)
					return
				}
				s.byGVK[key] = sch
			}
		}
		schemas = s
	})
	if schemasErr != nil {
		t.Fatal(schemasErr)
	}
	return schemas
}

// validate checks one object against its kind's schema; kinds Kubernetes
// does not define (the SPIRE controller manager's CRDs) are left out and
// counted.
func (s *k8sSchemas) validate(o object) (bool, error) {
	key := fmt.Sprint(o["apiVersion"], " ", o["kind"])
	sch, ok := s.byGVK[key]
	if !ok {
		return false, nil
	}
	// Round-trip through JSON: the validator wants JSON types. The API
	// server decodes an explicit null as an absent field (the chart
	// renders "env: null" for an empty list): so does this.
	b, err := json.Marshal(dropNulls(o))
	if err != nil {
		return true, err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return true, err
	}
	return true, sch.Validate(v)
}

func dropNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if e != nil {
				out[k] = dropNulls(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = dropNulls(e)
		}
		return out
	}
	return v
}

// TestManifestsValidateAgainstOpenAPI validates every object of deploy/k8s
// against Kubernetes' own OpenAPI schemas (strict: no unknown fields).
func TestManifestsValidateAgainstOpenAPI(t *testing.T) {
	s := loadSchemas(t)
	files, _ := filepath.Glob("k8s/*.yaml")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range decodeAll(t, f, b) {
			known, err := s.validate(o)
			if !known {
				t.Errorf("%s document %d: %v %v is not a Kubernetes %s kind", f, i+1, o["apiVersion"], o["kind"], kubeVersion)
				continue
			}
			if err != nil {
				t.Errorf("%s document %d (%v %v): %v", f, i+1, o["kind"], get(o, "metadata", "name"), err)
			}
			n++
		}
	}
	t.Logf("%d objects of %d files valid against Kubernetes %s", n, len(files), kubeVersion)
	if n < 5 {
		t.Errorf("validated %d objects, want the ConfigMaps, DaemonSets and Pod of deploy/k8s", n)
	}
}

// TestHelmRenderValidatesAgainstOpenAPI validates what the chart renders
// with the ccnp values: the extra volumes, mounts and init containers the
// values add must be valid Kubernetes.
func TestHelmRenderValidatesAgainstOpenAPI(t *testing.T) {
	objs := render(t, "helm/values-ccnp.yaml", checksumValues(t))
	s := loadSchemas(t)
	n, other := 0, 0
	for _, o := range objs {
		known, err := s.validate(o)
		if !known {
			other++
			continue
		}
		if err != nil {
			t.Errorf("rendered %v %v: %v", o["kind"], get(o, "metadata", "name"), err)
		}
		n++
	}
	t.Logf("%d rendered objects valid against Kubernetes %s; %d of custom kinds not checked", n, kubeVersion, other)
}

// TestOpenAPIStrictness proves the validator rejects what it should: a
// DaemonSet with a misplaced field and one missing a required field.
func TestOpenAPIStrictness(t *testing.T) {
	s := loadSchemas(t)
	bad := map[string]string{
		"unknown field": `{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"x"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i","volumeMounts":[{"name":"v","mountPath":"/m","readonly":true}]}]}}}}`,
		"missing field": `{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"x"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"image":"i"}]}}}}`,
		"wrong type":    `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}`,
	}
	for name, js := range bad {
		var o object
		if err := json.Unmarshal([]byte(js), &o); err != nil {
			t.Fatal(err)
		}
		if known, err := s.validate(o); !known || err == nil {
			t.Errorf("%s: accepted (known kind %v)", name, known)
		}
	}
}
