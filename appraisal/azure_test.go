package appraisal

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// azureMRTD is the paravisor build of the real Azure evidence.
const azureMRTD = "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b"

// realAzure is trustee's evidence of a real Azure TDX VM, made for the
// nonce "challenge", as AzureEvidence: its vTPM quotes the SHA-256 PCRs
// 0-23, in that order. It carries no event log.
func realAzure(t testing.TB) AzureEvidence {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "trustee-az-tdx-vtpm", "evidence-v0.json"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := azuretdx.ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := cctrusted.Registers{}
	for i, v := range ev.TPMQuote.PCRs {
		pcrs.Set(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256, v)
	}
	return AzureEvidence{
		HCLReport: ev.HCLReport, TDQuote: ev.TDQuote,
		Quote: ev.TPMQuote.Message, Signature: ev.TPMQuote.Signature, PCRs: pcrs,
		ExtraData: []byte("challenge"),
	}
}

func realAzureOptions(t testing.TB) AzureOptions {
	m, err := hex.DecodeString(azureMRTD)
	if err != nil {
		t.Fatal(err)
	}
	// Offline: no Intel collateral for this FMSPC is kept here.
	return AzureOptions{TDX: TDXOptions{Now: pinnedNow}, ParavisorMRTDs: [][]byte{m}}
}

func TestAzureTDXRealEvidence(t *testing.T) {
	begin := time.Now()
	res, err := AzureTDX(context.Background(), realAzure(t), realAzureOptions(t))
	t.Logf("appraised in %v", time.Since(begin))
	for _, c := range res.Checks {
		t.Logf("%-28s ok=%-5v skipped=%-5v %s", c.Name, c.OK, c.Skipped, c.Detail)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Simulated {
		t.Error("Intel-signed evidence reported as simulated")
	}
	sels := res.Node.Selectors
	for _, want := range []string{
		"tee:azure_tdx", "tdx:mrtd:" + azureMRTD, "tdx:debug:false", "tdx:fmspc:00806f050000",
		"azure:paravisor:true", "azure:vm_secure_boot:true", "azure:ak_hash:" + res.AKHash,
		"tpm:runtime_rollback_protected:false",
	} {
		if !slices.Contains(sels, want) {
			t.Errorf("selector %s missing from %q", want, sels)
		}
	}
	var pcrs int
	for _, s := range sels {
		switch {
		case strings.HasPrefix(s, "tpm:pcr:sha256:"):
			pcrs++
		case strings.HasPrefix(s, "boot:"), strings.HasPrefix(s, "ima:verified"), strings.HasPrefix(s, "tpm:ek_"):
			t.Errorf("selector %s: nothing in this evidence proves it", s)
		}
	}
	if pcrs != 24 {
		t.Errorf("%d tpm:pcr:sha256: selectors, want 24", pcrs)
	}
	if len(res.AKHash) != 64 {
		t.Errorf("AK hash %q", res.AKHash)
	}
	f := res.Node.Facts
	if f.TEE != cctrusted.TEEAzureTDX || hex.EncodeToString(f.MRTD) != azureMRTD || len(f.PCRs) != 24 || f.SecureBoot != nil {
		t.Errorf("facts: tee %s, mrtd %x, %d PCRs, secure boot %v", f.TEE, f.MRTD, len(f.PCRs), f.SecureBoot)
	}
	if c, ok := find(res.Checks, CheckTPMLogReplay); !ok || !c.Skipped {
		t.Errorf("tpm_log_replay %+v, want skipped (no log in the evidence)", c)
	}
	if c, ok := find(res.Checks, CheckParavisorMRTD); !ok || !c.OK {
		t.Errorf("paravisor_mrtd %+v", c)
	}
	if res.Node.Next.Unusable == "" {
		t.Error("an Azure node's appraisal offers a checkpoint start")
	}
}

func find(cs []Check, name string) (Check, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// TestAzureTDXRealEvidenceRejected: each change alone to the real evidence
// is refused by the check that covers it, as a rejection.
func TestAzureTDXRealEvidenceRejected(t *testing.T) {
	otherQuote, err := os.ReadFile(filepath.Join("..", "testdata", "tdx", "cos-113-tdx-quote.dat"))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := newTestPKI(t).rootPool()
	for _, tc := range []struct {
		name   string
		mutate func(*AzureEvidence, *AzureOptions)
		check  string
		code   Code
		parts  []string
	}{
		{"another nonce", func(e *AzureEvidence, _ *AzureOptions) { e.ExtraData = []byte("challengf") }, azuretdx.CheckTPMNonce, CodeRejected, nil},
		{"a changed PCR", func(e *AzureEvidence, _ *AzureOptions) {
			v, _ := e.PCRs.Get(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256)
			v = slices.Clone(v)
			v[0] ^= 1
			e.PCRs.Set(cctrusted.PCR(7).IMR(), cctrusted.AlgSHA256, v)
		}, azuretdx.CheckPCRDigest, CodeRejected, nil},
		{"a changed runtime data byte", func(e *AzureEvidence, _ *AzureOptions) {
			e.HCLReport = slices.Clone(e.HCLReport)
			i := strings.Index(string(e.HCLReport), `"secure-boot":true`)
			if i < 0 {
				panic("no secure-boot in the runtime data")
			}
			copy(e.HCLReport[i:], `"secure-boot":fals`)
		}, azuretdx.CheckRuntimeData, CodeRejected, []string{"REPORTDATA"}},
		{"a TD quote from another TD", func(e *AzureEvidence, _ *AzureOptions) { e.TDQuote = otherQuote }, azuretdx.CheckTDReportMatch, CodeRejected, []string{"not for this report"}},
		{"a paravisor build not trusted", func(_ *AzureEvidence, o *AzureOptions) {
			o.ParavisorMRTDs = [][]byte{make([]byte, 48)}
		}, CheckParavisorMRTD, CodeRejected, []string{azureMRTD, "paravisor_mrtds"}},
		{"ak_public of another key", func(e *AzureEvidence, _ *AzureOptions) { e.AKPublic = rsaPublicArea(&otherKey.PublicKey) }, CheckAzureAK, CodeRejected, []string{"HCLAkPub"}},
		{"a TD quote under another root", func(_ *AzureEvidence, o *AzureOptions) { o.TDX.TrustedRoots = otherRoots }, "td_quote." + CheckPCKChain, CodeRejected, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, opts := realAzure(t), realAzureOptions(t)
			tc.mutate(&ev, &opts)
			res, err := AzureTDX(context.Background(), ev, opts)
			e, ok := AsError(err)
			if !ok || e.Check != tc.check || e.Code != tc.code {
				t.Fatalf("error %v, want check %s (%v)", err, tc.check, tc.code)
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
			if c, ok := res.Failed(); !ok || c.Name != tc.check {
				t.Errorf("first failed check %+v, want %s", c, tc.check)
			}
			if res.Node != nil {
				t.Error("a rejected appraisal describes a node")
			}
		})
	}
}

// TestAzureTDXAKPublicForms: the node's ak_public may be a TPMT_PUBLIC or a
// TPM2B_PUBLIC, and the vTPM quote's signature a TPMT_SIGNATURE or the bare
// RSA signature: the same key and signature either way.
func TestAzureTDXAKPublicForms(t *testing.T) {
	ev := realAzure(t)
	res, err := AzureTDX(context.Background(), ev, realAzureOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	area := rsaPublicArea(res.Azure.Runtime.AK)
	for name, pub := range map[string][]byte{
		"TPMT_PUBLIC":  area,
		"TPM2B_PUBLIC": append([]byte{byte(len(area) >> 8), byte(len(area))}, area...),
	} {
		e := ev
		e.AKPublic = pub
		e.Signature = tpm2.Marshal(tpm2.TPMTSignature{
			SigAlg: tpm2.TPMAlgRSASSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
				Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: ev.Signature},
			}),
		})
		res, err := AzureTDX(context.Background(), e, realAzureOptions(t))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c, _ := find(res.Checks, CheckAzureAK); !c.OK {
			t.Errorf("%s: ak_public %+v", name, c)
		}
	}
}

// rsaPublicArea is the TPMT_PUBLIC of a restricted RSASSA-SHA256 key.
func rsaPublicArea(k *rsa.PublicKey) []byte {
	return tpm2.Marshal(tpm2.TPMTPublic{
		Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, Restricted: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()}),
	})
}
