package conf_test

import (
	"os"
	"reflect"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTestdata keeps the full example files (also fuzz seeds) valid.
func TestTestdata(t *testing.T) {
	c, err := conf.ParseServerVerifier(readTestdata(t, "server.hcl"), func(name string) ([]byte, error) {
		return os.ReadFile("testdata/" + name)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Policies) != 3 || c.TDX == nil || c.TPM == nil || c.Sim == nil {
		t.Errorf("server.hcl: %+v", c)
	}
	if _, err := conf.ParseAgentNodeAttestor(readTestdata(t, "agent.hcl")); err != nil {
		t.Error(err)
	}
	if _, err := conf.ParseWorkloadAttestor(readTestdata(t, "workload.hcl")); err != nil {
		t.Error(err)
	}
}

// checkRoundTrip asserts the properties every accepted policy has: it
// renders to HCL that parses back to the same policy and digest.
func checkRoundTrip(t *testing.T, ps []conf.Policy) {
	for _, p := range ps {
		back, err := conf.ParsePolicies(p.HCL(), "rendered")
		if err != nil {
			t.Fatalf("policy %q does not re-parse: %v\n%s", p.Name, err, p.HCL())
		}
		got := back[0]
		got.Source = p.Source
		if !reflect.DeepEqual(got, p) || got.Digest() != p.Digest() {
			t.Fatalf("policy %q changed in round trip\n%s", p.Name, p.HCL())
		}
	}
}

func FuzzParseServerVerifier(f *testing.F) {
	server := readTestdata(f, "server.hcl")
	policies := readTestdata(f, "policies.hcl")
	f.Add(server, policies)
	f.Add("tdx {}\n"+fullPolicy, "")
	f.Add("tdx collateral { offline_dir = \"/c\" }\npolicy_file = \"policies.hcl\"", fullPolicy)
	f.Add("tpm { ek_hash_allow_list = [\"AB\"] }", "policy \"x\" {")
	f.Add("policy = { a = { mrtd = [] } }", "")
	f.Add("tdx { accepted_tcb_statuses = [\"Revoked\"] }\nagent_path_template = \"{{ .X }}\"", "")
	f.Add("host_root = \"${abc\"", "\"\\x\"")
	f.Fuzz(func(t *testing.T, pluginData, policyFile string) {
		c, err := conf.ParseServerVerifier(pluginData, func(string) ([]byte, error) { return []byte(policyFile), nil })
		if err != nil {
			if c != nil {
				t.Fatal("config and error both returned")
			}
			return
		}
		checkRoundTrip(t, c.Policies)
		if _, err := c.AgentPath(conf.AgentPathData{TEE: "tdx", ID: "00ff"}); err != nil {
			t.Fatalf("accepted template fails on sample data: %v", err)
		}
	})
}

func FuzzParsePolicies(f *testing.F) {
	f.Add(readTestdata(f, "policies.hcl"))
	f.Add(fullPolicy)
	f.Add("policy \"a\" { kernel_cmdline = [\"${x} $ \\\" \\\\ \\u2028\"] }")
	f.Add("policy \"a\" { pcr \"7\" { sha1 = [\"" + hex20 + "\"] } }")
	f.Fuzz(func(t *testing.T, src string) {
		ps, err := conf.ParsePolicies(src, "fuzz.hcl")
		if err != nil {
			return
		}
		checkRoundTrip(t, ps)
	})
}

func FuzzParseAgentNodeAttestor(f *testing.F) {
	f.Add(readTestdata(f, "agent.hcl"))
	f.Add("tee = \"sim\"\nsim { dir = \"/x\" }")
	f.Fuzz(func(t *testing.T, src string) {
		if c, err := conf.ParseAgentNodeAttestor(src); err == nil && c.TPM.Device == "" {
			t.Fatal("accepted config without a TPM device default")
		}
	})
}

func FuzzParseWorkloadAttestor(f *testing.F) {
	f.Add(readTestdata(f, "workload.hcl"))
	f.Fuzz(func(t *testing.T, src string) {
		if c, err := conf.ParseWorkloadAttestor(src); err == nil && c.RuntimeLogPath == "" {
			t.Fatal("accepted config without a runtime log path")
		}
	})
}
