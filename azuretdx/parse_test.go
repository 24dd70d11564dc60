package azuretdx_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
)

func TestParseHCLReportReal(t *testing.T) {
	r, err := azuretdx.ParseHCLReport(realEvidence(t).HCLReport)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 2 || r.ReportSize != 2437 || r.Status != 0 || r.HashType != azuretdx.HashSHA256 || len(r.RuntimeData) != 1201 {
		t.Errorf("header %+v, %v, %d bytes runtime data", r, r.HashType, len(r.RuntimeData))
	}
	if r.TDReport.ReportType[0] != 0x81 || len(r.TDReportRaw) != azuretdx.TDReportSize {
		t.Errorf("TD report type %x", r.TDReport.ReportType)
	}
	rd, err := azuretdx.ParseRuntimeData(r.RuntimeData)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rd.KeyIDs, ",") != "HCLAkPub,HCLEkPub" || len(rd.UserData) != 64 || rd.VMConfiguration.VMUniqueID == "" {
		t.Errorf("runtime data %+v", rd)
	}
}

// TestParseHCLReportRejects: every header field that would change how the
// rest is read is checked, with a message naming it.
func TestParseHCLReportRejects(t *testing.T) {
	real := realEvidence(t).HCLReport
	put := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	}
	const req = 32 + 1184
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"empty", func([]byte) []byte { return nil }, "not an HCL report"},
		{"header only", func(b []byte) []byte { return b[:40] }, "shorter than its fixed part"},
		{"too large", func(b []byte) []byte { return append(b, make([]byte, azuretdx.MaxHCLReportSize)...) }, "more than the"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, `not "HCLA"`},
		{"version", put(4, 3), "header version 3"},
		{"status", put(16, 1), "status is 0x1"},
		{"request data version", put(req+4, 2), "request data version 2"},
		{"snp", put(req+8, 2), "SEV-SNP"},
		{"report type", put(req+8, 7), "report type 7"},
		{"hash type", put(req+12, 0), "hash type 0"},
		{"runtime size past end", put(req+16, 1<<31), "runs past"},
		{"data size", put(req, 1222), "request data size 1222"},
		{"report size", put(8, 2438), "header size 2438"},
		{"no runtime data", func(b []byte) []byte { put(req, 20)(b); put(8, req+20)(b); return put(req+16, 0)(b) }, "no runtime data"},
		{"not a TDX report", func(b []byte) []byte { b[32] = 0; return b }, "REPORTTYPE.TYPE is 0x00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := azuretdx.ParseHCLReport(c.edit(bytes.Clone(real)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestParseRuntimeDataRejects(t *testing.T) {
	const n = "yJsXggAApem3jnAqQlvmgBIYzq1yR1W1ZQnfdb3DV-5nPKxEEyUwt15NmB_LfZ0YKXZ7n4xNG4w_Io7GmxytrOxh6zpNv-Ci-kSOLjx9q1PQFwMAmQf4GJVFNa9EPqoI_Ysh7dpIKzZKzvrMs7yeBCsf9fTiNfiMzyCGjUOC3gId9XyM82j8qMu3k8jWnV6ewdo_UQL0FZKZHxZFF2Q1jsaNaPAFWabmxAMfYHbhIvkhNaATZDQTWo-eSu19R1SAJ2-5w3CDv-Jln3Qx8xQx9OzjrvQwaQNHMVh4DdEpntQTHNoIZAd-uf7OpERWXFokejUbMn3iX3wIef--D6Xq2w"
	key := func(fields string) string { return `{"keys":[{"kid":"HCLAkPub",` + fields + `}]}` }
	good := key(`"kty":"RSA","e":"AQAB","n":"` + n + `"`)
	if _, err := azuretdx.ParseRuntimeData([]byte(good)); err != nil {
		t.Fatalf("the real key: %v", err)
	}
	for _, c := range []struct{ name, doc, want string }{
		{"not JSON", `{"keys":`, "not the expected JSON"},
		{"trailing", good + `{}`, "after its JSON document"},
		{"no AK", `{"keys":[{"kid":"HCLEkPub","kty":"RSA","e":"AQAB","n":"` + n + `"}]}`, "no key with kid"},
		{"two AKs", `{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"` + n + `"},{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"` + n + `"}]}`, "more than one key"},
		{"EC", key(`"kty":"EC","e":"AQAB","n":"` + n + `"`), `key type "EC"`},
		{"small", key(`"kty":"RSA","e":"AQAB","n":"` + n[:171] + `"`), "bits"},
		{"padded n", key(`"kty":"RSA","e":"AQAB","n":"` + n + `=="`), "not base64url"},
		{"leading zero", key(`"kty":"RSA","e":"AQAB","n":"AA` + n[2:] + `"`), "leading zero"},
		{"even exponent", key(`"kty":"RSA","e":"AQAA","n":"` + n + `"`), "not an odd number"},
		{"exponent 1", key(`"kty":"RSA","e":"AQ","n":"` + n + `"`), "not an odd number"},
		{"long exponent", key(`"kty":"RSA","e":"AQABAQAB","n":"` + n + `"`), "1 to 4"},
		{"user-data", `{"user-data":"xyz","keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"` + n + `"}]}`, "user-data is not hex"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := azuretdx.ParseRuntimeData([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestParseEvidenceRejects(t *testing.T) {
	v0 := string(testdata(t, "trustee-az-tdx-vtpm", "evidence-v0.json"))
	ev, err := azuretdx.ParseEvidence([]byte(v0))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ev.MarshalV1()
	if err != nil {
		t.Fatal(err)
	}
	v1 := string(b)
	for _, c := range []struct{ name, doc, want string }{
		{"not JSON", "HCLA", "not trustee's Azure TDX JSON"},
		{"too large", strings.Repeat(" ", azuretdx.MaxEvidenceJSON+1), "more than the"},
		{"unknown field v0", strings.Replace(v0, `"td_quote"`, `"td_quote2"`, 1), `unknown field "td_quote2"`},
		{"unknown field v1", strings.Replace(v1, `"td_quote"`, `"vcek"`, 1), `unknown field "vcek"`},
		{"version 2", strings.Replace(v1, `"version":1`, `"version":2`, 1), "evidence version 2"},
		{"version null", `{"version":null,` + v0[1:], "evidence version null"},
		{"trailing", v0 + `{}`, "after the JSON document"},
		{"byte over 255", strings.Replace(v0, `"hcl_report":[72,`, `"hcl_report":[328,`, 1), "element 0 is 328"},
		{"negative byte", strings.Replace(v0, `"hcl_report":[72,`, `"hcl_report":[-1,`, 1), "hcl_report: want a list of byte values"},
		{"v1 without version", strings.Replace(v1, `"version":1,`, ``, 1), "hcl_report: want a list of byte values"},
		{"no TD quote", strings.Replace(v1, `"td_quote":"`, `"td_quote":null,"x":"`, 1), `unknown field "x"`},
		{"empty TD quote", `{"version":1,"tpm_quote":{"signature":"00","message":"00","pcrs":["` + strings.Repeat("00", 32) + `"]},"hcl_report":"AA","td_quote":""}`, "td_quote is missing or empty"},
		{"hex", strings.Replace(v1, `"message":"ff`, `"message":"zz`, 1), "not hex"},
		{"base64", strings.Replace(v1, `"hcl_report":"`, `"hcl_report":"*`, 1), "not base64url"},
		{"short PCR", strings.Replace(v1, `"pcrs":["`, `"pcrs":["00","`, 1), "tpm_quote.pcrs[0] is 1 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := azuretdx.ParseEvidence([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}
