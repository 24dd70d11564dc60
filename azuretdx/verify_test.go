package azuretdx_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// pinnedNow lies inside the validity of both real quotes' PCK chains used
// here: the Azure TD quote's leaf (2023-09-13..2030-09-13) and cos-113's
// (2024-07-02..2031-07-02).
var pinnedNow = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

// challenge is the nonce trustee's Azure evidence was made for.
var challenge = []byte("challenge")

func testdata(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// realEvidence is trustee's evidence from a real Azure TDX VM.
func realEvidence(t testing.TB) *azuretdx.Evidence {
	t.Helper()
	ev, err := azuretdx.ParseEvidence(testdata(t, "trustee-az-tdx-vtpm", "evidence-v0.json"))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// appraiseTDQuote is the TD quote verifier the server and the CLI use:
// appraisal.TDX offline against Intel's root at pinnedNow (no collateral
// bundle for the Azure quote's FMSPC exists here, so its checks say
// skipped).
func appraiseTDQuote(ctx context.Context, quote []byte) (*tdxquote.Quote, []azuretdx.Check, error) {
	res, err := appraisal.TDX(ctx, appraisal.TDXEvidence{Quote: quote}, appraisal.TDXOptions{Now: pinnedNow})
	var checks []azuretdx.Check
	for _, c := range res.Checks {
		checks = append(checks, azuretdx.Check{Name: c.Name, OK: c.OK, Skipped: c.Skipped, Detail: c.Detail})
	}
	return res.Quote, checks, err
}

var opts = azuretdx.Options{VerifyTDQuote: appraiseTDQuote}

// wantFailure asserts err is an *azuretdx.Error of check and kind, whose
// message mentions every part, and that the result records it as the
// first failure.
func wantFailure(t *testing.T, res *azuretdx.Result, err error, check string, kind azuretdx.Kind, parts ...string) {
	t.Helper()
	var e *azuretdx.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *azuretdx.Error", err)
	}
	if e.Check != check || e.Kind != kind {
		t.Fatalf("failed check %s (%v), want %s (%v): %v", e.Check, e.Kind, check, kind, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
	if c, ok := res.Failed(); !ok || c.Name != check && !strings.HasPrefix(c.Name, check+".") {
		t.Errorf("result's first failure is %+v, want %s", c, check)
	}
	if res.PCRs != nil {
		t.Error("a rejected result carries PCR values")
	}
}

func TestAzureRealEvidenceAccepted(t *testing.T) {
	start := time.Now()
	res, err := azuretdx.Verify(context.Background(), realEvidence(t), challenge, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verified in %v", time.Since(start))
	for _, c := range res.Checks {
		t.Logf("%-28s ok=%-5v skipped=%-5v %s", c.Name, c.OK, c.Skipped, c.Detail)
	}
	got := map[string]azuretdx.Check{}
	for _, c := range res.Checks {
		got[c.Name] = c
	}
	for _, name := range []string{
		azuretdx.CheckEvidenceFormat, "td_quote.quote_format", "td_quote.pck_chain", "td_quote.quote_signature", "td_quote.debug",
		azuretdx.CheckTDQuote, azuretdx.CheckTDReportMatch, azuretdx.CheckRuntimeData, azuretdx.CheckHCLAK,
		azuretdx.CheckTPMSignature, azuretdx.CheckTPMAttest, azuretdx.CheckTPMNonce, azuretdx.CheckPCRSelection, azuretdx.CheckPCRDigest,
	} {
		if c, ok := got[name]; !ok || !c.OK {
			t.Errorf("check %s: %+v, want passed", name, c)
		}
	}
	// No Intel collateral for this FMSPC here: said, not hidden.
	if c := got["td_quote.collateral"]; !c.Skipped {
		t.Errorf("collateral check %+v, want skipped", c)
	}
	const mrtd = "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b"
	if got := hex.EncodeToString(res.TDQuote.Body.MRTD[:]); got != mrtd {
		t.Errorf("MRTD %s", got)
	}
	t.Logf("MRTD %x, FMSPC %s", res.TDQuote.Body.MRTD, res.TDQuote.FMSPC())
	if n := len(res.PCRs); n != 24 {
		t.Errorf("%d PCRs verified, want 24", n)
	}
	if _, ok := res.PCRs.Get(cctrusted.PCR(23).IMR(), cctrusted.AlgSHA256); !ok {
		t.Error("PCR 23 (SHA-256) not among the verified values")
	}
	if res.Runtime.AK.N.BitLen() != 2048 || res.Runtime.AK.E != 65537 {
		t.Errorf("AK RSA-%d e=%d, want RSA-2048 e=65537", res.Runtime.AK.N.BitLen(), res.Runtime.AK.E)
	}
	if vc := res.Runtime.VMConfiguration; vc == nil || !vc.SecureBoot || !vc.TPMEnabled {
		t.Errorf("vm-configuration %+v", vc)
	}
	if !bytes.Equal(res.ExtraData, challenge) {
		t.Errorf("extraData %q", res.ExtraData)
	}
	if _, failed := res.Failed(); failed {
		t.Error("Failed() reports a failure on accepted evidence")
	}
}

// TestAzureEvidenceV1 checks that the v1 layout (hex and base64url strings)
// reads to the same evidence as v0 and verifies alike.
func TestAzureEvidenceV1(t *testing.T) {
	ev := realEvidence(t)
	b, err := ev.MarshalV1()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"version":1`)) || !bytes.Contains(b, []byte(`"message":"ff544347`)) {
		t.Fatalf("v1 layout: %.200s", b)
	}
	v1, err := azuretdx.ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Layout != azuretdx.LayoutV1 || ev.Layout != azuretdx.LayoutV0 {
		t.Errorf("layouts %s, %s", ev.Layout, v1.Layout)
	}
	if !bytes.Equal(v1.HCLReport, ev.HCLReport) || !bytes.Equal(v1.TDQuote, ev.TDQuote) || !bytes.Equal(v1.TPMQuote.Message, ev.TPMQuote.Message) ||
		!bytes.Equal(v1.TPMQuote.Signature, ev.TPMQuote.Signature) || len(v1.TPMQuote.PCRs) != len(ev.TPMQuote.PCRs) {
		t.Fatal("v1 evidence differs from v0")
	}
	if _, err := azuretdx.Verify(context.Background(), v1, challenge, opts); err != nil {
		t.Fatal(err)
	}
}

// TestAzureAttackOtherNonce replays the evidence against another challenge.
func TestAzureAttackOtherNonce(t *testing.T) {
	res, err := azuretdx.Verify(context.Background(), realEvidence(t), []byte("challengf"), opts)
	wantFailure(t, res, err, azuretdx.CheckTPMNonce, azuretdx.KindRejected, "extraData", hex.EncodeToString(challenge))
}

// TestAzureAttackChangedPCR hides a boot component by reporting another
// value for one PCR than the vTPM quoted.
func TestAzureAttackChangedPCR(t *testing.T) {
	for _, pcr := range []int{0, 7, 23} {
		ev := realEvidence(t)
		ev.TPMQuote.PCRs[pcr][5] ^= 1
		res, err := azuretdx.Verify(context.Background(), ev, challenge, opts)
		wantFailure(t, res, err, azuretdx.CheckPCRDigest, azuretdx.KindRejected, "a PCR value was changed")
	}
	// Values in another order, one left out, one added: each a
	// selection or digest failure, never an acceptance.
	ev := realEvidence(t)
	ev.TPMQuote.PCRs[1], ev.TPMQuote.PCRs[2] = ev.TPMQuote.PCRs[2], ev.TPMQuote.PCRs[1]
	res, err := azuretdx.Verify(context.Background(), ev, challenge, opts)
	wantFailure(t, res, err, azuretdx.CheckPCRDigest, azuretdx.KindRejected)
	ev = realEvidence(t)
	ev.TPMQuote.PCRs = ev.TPMQuote.PCRs[:23]
	res, err = azuretdx.Verify(context.Background(), ev, challenge, opts)
	wantFailure(t, res, err, azuretdx.CheckPCRSelection, azuretdx.KindInvalidEvidence, "23 PCR values given, the quote selects 24")
	ev = realEvidence(t)
	ev.TPMQuote.PCRs = append(ev.TPMQuote.PCRs, make([]byte, 32))
	res, err = azuretdx.Verify(context.Background(), ev, challenge, opts)
	wantFailure(t, res, err, azuretdx.CheckPCRSelection, azuretdx.KindInvalidEvidence, "25 PCR values given")
}

// runtimeDataOffset is where the runtime data starts in an HCL report.
const runtimeDataOffset = 32 + 1184 + 20

// TestAzureAttackChangedRuntimeData swaps bytes of the runtime data: the
// attestation key (the attacker's own key for a forged vTPM quote), the
// user data, the VM configuration.
func TestAzureAttackChangedRuntimeData(t *testing.T) {
	real := realEvidence(t)
	rt := real.HCLReport[runtimeDataOffset:]
	for _, what := range []string{`"n":"yJsX`, `"user-data":"0`, `"secure-boot":true`} {
		i := bytes.Index(rt, []byte(what))
		if i < 0 {
			t.Fatalf("%s not in the runtime data", what)
		}
		ev := realEvidence(t)
		ev.HCLReport[runtimeDataOffset+i+len(what)-1] ^= 0x01
		res, err := azuretdx.Verify(context.Background(), ev, challenge, opts)
		wantFailure(t, res, err, azuretdx.CheckRuntimeData, azuretdx.KindRejected, "is not what the TD attested")
		if res.Runtime != nil {
			t.Error("runtime data of a rejected report was handed out")
		}
	}
}

// TestAzureAttackQuoteFromAnotherTD pairs the HCL report with a genuine TD
// quote of another TD (cos-113 on Google Cloud): the quote verifies on its
// own, but it does not sign this report.
func TestAzureAttackQuoteFromAnotherTD(t *testing.T) {
	for _, other := range [][2]string{{"tdx", "cos-113-tdx-quote.dat"}, {"dcap-qvl", "tdx_quote"}} {
		ev := realEvidence(t)
		ev.TDQuote = testdata(t, other[0], other[1])
		res, err := azuretdx.Verify(context.Background(), ev, challenge, opts)
		wantFailure(t, res, err, azuretdx.CheckTDReportMatch, azuretdx.KindRejected, "the quote is not for this report")
		if c, ok := find(res.Checks, "td_quote.quote_signature"); !ok || !c.OK {
			t.Errorf("%s: the other TD's quote should verify on its own: %+v", other[1], c)
		}
	}
}

// TestAzureAttackHCLReportEdited changes a measurement in the HCL report's
// (unsigned) TD report to match a TD the attacker wants to pass for.
func TestAzureAttackHCLReportEdited(t *testing.T) {
	for field, off := range map[string]int{"mrtd": 512 + 16, "rtmr0": 512 + 208, "td_attributes": 512, "mrseam": 256 + 24} {
		ev := realEvidence(t)
		ev.HCLReport[32+off] ^= 0x80
		res, err := azuretdx.Verify(context.Background(), ev, challenge, opts)
		wantFailure(t, res, err, azuretdx.CheckTDReportMatch, azuretdx.KindRejected, "has "+field+" ")
	}
}

// TestAzureAttackTDQuoteEdited flips a byte of the TD quote's body.
func TestAzureAttackTDQuoteEdited(t *testing.T) {
	ev := realEvidence(t)
	ev.TDQuote[48+136] ^= 1 // MRTD
	res, err := azuretdx.Verify(context.Background(), ev, challenge, opts)
	wantFailure(t, res, err, azuretdx.CheckTDQuote, azuretdx.KindRejected, "quote signature does not verify")
	var ae *appraisal.Error
	if !errors.As(err, &ae) || ae.Check != appraisal.CheckQuoteSignature || ae.Code != appraisal.CodeRejected {
		t.Errorf("the TD quote verifier's own error is not in the chain: %v", err)
	}
}

// TestAzureAttackTPMQuoteFromAnotherKey presents a vTPM quote signed by a
// key other than the HCL report's HCLAkPub (a key the attacker holds).
func TestAzureAttackTPMQuoteFromAnotherKey(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ev := realEvidence(t)
	d := sha256.Sum256(ev.TPMQuote.Message)
	if ev.TPMQuote.Signature, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:]); err != nil {
		t.Fatal(err)
	}
	res, err := azuretdx.Verify(context.Background(), ev, challenge, opts)
	wantFailure(t, res, err, azuretdx.CheckTPMSignature, azuretdx.KindRejected, "does not verify with the AK")

	// The message edited (extraData changed to another challenge)
	// under the genuine signature.
	ev = realEvidence(t)
	i := bytes.Index(ev.TPMQuote.Message, challenge)
	ev.TPMQuote.Message[i] = 'C'
	res, err = azuretdx.Verify(context.Background(), ev, []byte("Challenge"), opts)
	wantFailure(t, res, err, azuretdx.CheckTPMSignature, azuretdx.KindRejected)
}

// TestAzureAttackReportDataTail: REPORTDATA bytes after the runtime data's
// hash are signed but bound to nothing; they must be zero. The TD quote
// verifier here returns the real quote with one such byte set and the HCL
// report's TD report edited to agree, as a TD could make them.
func TestAzureAttackReportDataTail(t *testing.T) {
	ev := realEvidence(t)
	ev.HCLReport[32+128+40] = 1
	tampered := func(ctx context.Context, quote []byte) (*tdxquote.Quote, []azuretdx.Check, error) {
		q, c, err := appraiseTDQuote(ctx, quote)
		if q != nil {
			q.Body.ReportData[40] = 1
		}
		return q, c, err
	}
	res, err := azuretdx.Verify(context.Background(), ev, challenge, azuretdx.Options{VerifyTDQuote: tampered})
	wantFailure(t, res, err, azuretdx.CheckRuntimeData, azuretdx.KindRejected, "not zero")
}

func TestAzureVerifyArguments(t *testing.T) {
	ev := realEvidence(t)
	for _, c := range []struct {
		name  string
		nonce []byte
		opts  azuretdx.Options
		check string
	}{
		{"no nonce", nil, opts, azuretdx.CheckTPMNonce},
		{"nonce too long", make([]byte, 65), opts, azuretdx.CheckTPMNonce},
		{"no verifier", challenge, azuretdx.Options{}, azuretdx.CheckTDQuote},
		{"verifier returns nothing", challenge, azuretdx.Options{VerifyTDQuote: func(context.Context, []byte) (*tdxquote.Quote, []azuretdx.Check, error) {
			return nil, nil, nil
		}}, azuretdx.CheckTDQuote},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := azuretdx.Verify(context.Background(), ev, c.nonce, c.opts)
			var e *azuretdx.Error
			if !errors.As(err, &e) || e.Check != c.check || e.Kind != azuretdx.KindConfig {
				t.Fatalf("error %v, want a %s config error", err, c.check)
			}
		})
	}
}

func find(cs []azuretdx.Check, name string) (azuretdx.Check, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return azuretdx.Check{}, false
}
