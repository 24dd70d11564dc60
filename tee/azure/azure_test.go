package azure_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/azure"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/azuresim"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
)

func open(t *testing.T, p *azuresim.Paravisor) (*azure.Provider, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prov, err := azure.Open(ctx, azure.Options{TPM: tpm.Options{Device: p.Device()}, IMDS: azure.IMDSOptions{URL: p.IMDSURL()}})
	if err == nil {
		t.Cleanup(func() { prov.Close() })
	}
	return prov, err
}

// Against the simulated paravisor: the provider quotes with the HCL AK over
// all 24 SHA-256 PCRs, and its HCL evidence is the NV index's bytes and a
// TD quote that azuretdx.Verify accepts with the vTPM quote.
func TestProviderEvidence(t *testing.T) {
	p := azuresim.Start(t, azuresim.Options{})
	prov, err := open(t, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if prov.TEE() != cctrusted.TEEAzureTDX || prov.AttestationKeyHandle() != azure.AKHandle {
		t.Fatalf("TEE %q, AK handle 0x%x", prov.TEE(), prov.AttestationKeyHandle())
	}
	nonce := bytes.Repeat([]byte{7}, 32)
	rep, err := prov.Report(ctx, nonce, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.TEE != cctrusted.TEEAzureTDX || len(rep.Registers) != 24 {
		t.Fatalf("report TEE %q over %d PCRs", rep.TEE, len(rep.Registers))
	}
	start := time.Now()
	hcl, q, err := prov.HCLEvidence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HCL report read and TD quote fetched in %v (%d + %d bytes)", time.Since(start), len(hcl), len(q))
	if !bytes.Equal(hcl, p.HCLReport()) {
		t.Error("the HCL evidence is not the NV index's bytes")
	}
	verify, err := p.TDQuoteVerifier()
	if err != nil {
		t.Fatal(err)
	}
	ev := &azuretdx.Evidence{HCLReport: hcl, TDQuote: q, TPMQuote: azuretdx.TPMQuote{Message: rep.Quote, Signature: rawRSASSA(t, rep.Signature)}}
	for i := range cctrusted.NumPCRs {
		v, _ := rep.Registers.Get(cctrusted.PCR(i).IMR(), cctrusted.AlgSHA256)
		ev.TPMQuote.PCRs = append(ev.TPMQuote.PCRs, v)
	}
	if _, err := azuretdx.Verify(ctx, ev, rep.ReportData, azuretdx.Options{VerifyTDQuote: verify}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// A paravisor whose HCL report names another key than the one at
// 0x81000003 is refused when the provider opens, naming both.
func TestOpenRefusesOtherAK(t *testing.T) {
	p := azuresim.Start(t, azuresim.Options{})
	other := azuresim.Start(t, azuresim.Options{})
	if err := p.WriteHCLReport(context.Background(), other.HCLReport()); err != nil {
		t.Fatal(err)
	}
	_, err := open(t, p)
	if err == nil || !strings.Contains(err.Error(), "is not the key at persistent handle 0x81000003") {
		t.Fatalf("Open = %v", err)
	}
}

// Without a key at 0x81000003 the provider never creates one.
func TestOpenNeedsTheParavisorAK(t *testing.T) {
	sw := swtpm.StartT(t)
	p := azuresim.Start(t, azuresim.Options{})
	if err := sw.WriteNV(context.Background(), azure.HCLReportNVIndex, p.HCLReport()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err := azure.Open(ctx, azure.Options{TPM: tpm.Options{Device: sw.Addr()}})
	if err == nil || !strings.Contains(err.Error(), "no key at persistent handle 0x81000003") {
		t.Fatalf("Open = %v", err)
	}
}

// TestAttackIMDSQuoteOfAnotherReport: a metadata service (or whoever
// answers at its address) hands back a genuine TD quote, but of another TD
// report; the agent refuses it instead of sending mismatched evidence.
func TestAttackIMDSQuoteOfAnotherReport(t *testing.T) {
	p := azuresim.Start(t, azuresim.Options{})
	ctx := context.Background()
	var rd [64]byte
	copy(rd[:], "another report")
	tdr, err := p.TD().TDReport(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := p.TD().QuoteTDReport(ctx, tdr[:])
	if err != nil {
		t.Fatal(err)
	}
	p.SetIMDSHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"quote":"` + b64url(foreign) + `"}`))
	}))
	prov, err := open(t, p)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = prov.HCLEvidence(ctx)
	var ie *azure.IMDSError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "report_data") || !strings.Contains(err.Error(), "not for this report") {
		t.Fatalf("HCLEvidence = %v", err)
	}

	// A quote of a later report of the same TD with the same REPORTDATA
	// (RTMR3 extended since): every body field counts, not only
	// REPORTDATA and MRTD, or the server would refuse it as a verdict
	// the agent does not retry.
	hcl, err := azuretdx.ParseHCLReport(p.HCLReport())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.TD().ExtendRTMR(ctx, 3, [48]byte{1}); err != nil {
		t.Fatal(err)
	}
	later, err := p.TD().TDReport(ctx, hcl.TDReport.ReportData)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := p.TD().QuoteTDReport(ctx, later[:])
	if err != nil {
		t.Fatal(err)
	}
	p.SetIMDSHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"quote":"` + b64url(stale) + `"}`))
	}))
	_, _, err = prov.HCLEvidence(ctx)
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "rtmr3") {
		t.Fatalf("HCLEvidence with a quote of a later report = %v", err)
	}
}

// The simulated service refuses a TD report the TD did not make, as a
// quoting enclave fails its MAC; the client reports the 400 and the body.
func TestIMDSRefusesForeignReport(t *testing.T) {
	p := azuresim.Start(t, azuresim.Options{})
	c, err := azure.NewIMDSClient(azure.IMDSOptions{URL: p.IMDSURL()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := azuretdx.ParseHCLReport(p.HCLReport())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TDQuote(context.Background(), r.TDReportRaw); err != nil {
		t.Fatalf("the genuine report: %v", err)
	}
	forged := bytes.Clone(r.TDReportRaw)
	forged[0x210] ^= 1 // MRTD
	_, err = c.TDQuote(context.Background(), forged)
	var ie *azure.IMDSError
	if !errors.As(err, &ie) || ie.Status != http.StatusBadRequest || !strings.Contains(err.Error(), "not a TD report of this TD") {
		t.Fatalf("forged report: %v", err)
	}
}
