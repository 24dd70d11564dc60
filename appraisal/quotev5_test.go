package appraisal

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// v5Now is inside the v5 sample's PCK leaf validity and its TCB info's
// issue..nextUpdate (testdata/tdx/README.md).
var v5Now = time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC)

// TestRealQuoteV5Offline verifies the real TDX 1.5 quote against the Intel
// SGX Root CA: chain and signatures over header, body descriptor and body.
// Changing one byte of a TDX 1.5 field or of the descriptor is refused.
func TestRealQuoteV5Offline(t *testing.T) {
	raw := readTestdata(t, "quote_v5_sample.dat")
	flip := func(b []byte, off int) []byte { c := bytes.Clone(b); c[off] ^= 1; return c }
	res, err := TDX(context.Background(), TDXEvidence{Quote: raw}, TDXOptions{Now: v5Now})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Quote.TDX15() || res.FMSPC != "90c06f000000" {
		t.Errorf("body type %d, FMSPC %s", res.Quote.BodyType, res.FMSPC)
	}
	for _, tc := range []struct {
		name  string
		off   int
		check string
		code  Code
		parts []string
	}{
		{"tee_tcb_svn2", 54 + 584, CheckQuoteSignature, CodeRejected, []string{"quote signature does not verify"}},
		{"mrservicetd", 54 + 600 + 7, CheckQuoteSignature, CodeRejected, []string{"quote signature does not verify"}},
		{"mrtd", 54 + 136, CheckQuoteSignature, CodeRejected, []string{"quote signature does not verify"}},
		{"body type 3 to 2", 48, CheckQuoteFormat, CodeInvalidEvidence, []string{"body_descriptor.size", "body type 2 is 584 bytes"}},
		{"body size", 50, CheckQuoteFormat, CodeInvalidEvidence, []string{"body_descriptor.size"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TDX(context.Background(), TDXEvidence{Quote: flip(raw, tc.off)}, TDXOptions{Now: v5Now})
			wantCheck(t, err, tc.check, tc.code, tc.parts...)
		})
	}
}

// realV5Collateral is the real TDX 1.5 TCB info (verified: its signature
// under the Intel SGX Root CA, through the TCB signing certificate Intel
// sends with every TCB info) and the real TD QE identity of dcap-qvl's
// collateral (for its levels only: it is not current in 2026).
func realV5Collateral(t *testing.T) (*pcs.TdxTcbInfo, *pcs.QeIdentity) {
	t.Helper()
	var bundle struct {
		TCBInfoIssuerChain string `json:"tcb_info_issuer_chain"`
		QEIdentity         string `json:"qe_identity"`
	}
	b, err := os.ReadFile(filepath.Join("..", "testdata", "dcap-qvl", "tdx_quote_collateral.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	doc := fetchedDoc{
		url:    pcs.TcbInfoURL("90c06f000000"),
		header: http.Header{pcs.TcbInfoIssuerChainPhrase: {url.QueryEscape(bundle.TCBInfoIssuerChain)}},
		body:   readTestdata(t, "sample_tcbinfo_response_v5"),
	}
	var ti pcs.TdxTcbInfo
	sc, err := parseSigned(doc, pcs.TcbInfoIssuerChainPhrase, "tcbInfo", &ti)
	if err != nil {
		t.Fatal(err)
	}
	// Trust comes from the embedded Intel root, not from the chain sent.
	blk, _ := pem.Decode(intelRootPEM)
	rootCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.verify(rootCert, v5Now); err != nil {
		t.Fatalf("the real v5 TCB info does not verify: %v", err)
	}
	var qe pcs.QeIdentity
	if err := json.Unmarshal([]byte(`{"enclaveIdentity":`+bundle.QEIdentity+`}`), &qe); err != nil {
		t.Fatal(err)
	}
	return &ti, &qe
}

// TestTDXModuleIdentityRealV5 evaluates the real TDX 1.5 quote against
// Intel's real TCB info v3 for its FMSPC: TEE_TCB_SVN[1] = 1 selects
// tdxModuleIdentities "TDX_01", whose level for module SVN 11 is UpToDate.
// Then the quote's module SVNs are changed (as a platform with another
// module would report them) and the evaluation follows Intel's levels.
func TestTDXModuleIdentityRealV5(t *testing.T) {
	ti, qe := realV5Collateral(t)
	q, err := tdxquote.Parse(readTestdata(t, "quote_v5_sample.dat"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := evaluateTCB(q, &ti.TcbInfo, &qe.EnclaveIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if st.status != "UpToDate" || st.module != "UpToDate" || st.platform != "UpToDate" {
		t.Errorf("status %s (%s)", st.status, st.describe())
	}

	// Module SVN 5: TDX_01's level isvsvn 4 is OutOfDate with two advisories.
	old := *q
	old.Body.TEETCBSVN[0] = 5
	st, err = evaluateTCB(&old, &ti.TcbInfo, &qe.EnclaveIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if st.status != "OutOfDate" || st.module != "OutOfDate" || !slices.Equal(st.advisories, []string{"INTEL-SA-01036", "INTEL-SA-01099"}) {
		t.Errorf("module SVN 5: %s (%s), advisories %v", st.status, st.describe(), st.advisories)
	}
	// Module SVN 1: below every TDX_01 level.
	old.Body.TEETCBSVN[0] = 1
	if _, err := evaluateTCB(&old, &ti.TcbInfo, &qe.EnclaveIdentity); err == nil || !strings.Contains(err.Error(), "TDX module identity TDX_01 has no TCB level for module SVN 1") {
		t.Errorf("module SVN 1: %v", err)
	}
	// Major version 2: the TCB info has no TDX_02.
	old = *q
	old.Body.TEETCBSVN[1] = 2
	if _, err := evaluateTCB(&old, &ti.TcbInfo, &qe.EnclaveIdentity); err == nil || !strings.Contains(err.Error(), "no TDX module identity TDX_02") {
		t.Errorf("major version 2: %v", err)
	}
	// TEE_TCB_SVN2 plays no part (Intel's QVL reads it only for the TD
	// relaunch advice): a lower one changes nothing.
	old = *q
	old.Body.TEETCBSVN2 = [16]byte{}
	if st, err := evaluateTCB(&old, &ti.TcbInfo, &qe.EnclaveIdentity); err != nil || st.status != "UpToDate" {
		t.Errorf("zero TEE_TCB_SVN2: %v %v", st, err)
	}
}

// TestTCBLevelOrderIsIntels lists the real TCB info's levels lowest first:
// the evaluation still picks the highest level the platform reaches, as
// Intel's QVL (which orders levels itself) does, not the first listed.
func TestTCBLevelOrderIsIntels(t *testing.T) {
	ti, qe := realV5Collateral(t)
	q, err := tdxquote.Parse(readTestdata(t, "quote_v5_sample.dat"))
	if err != nil {
		t.Fatal(err)
	}
	rev := ti.TcbInfo
	rev.TcbLevels = slices.Clone(rev.TcbLevels)
	slices.Reverse(rev.TcbLevels)
	rev.TdxModuleIdentities = slices.Clone(rev.TdxModuleIdentities)
	for i := range rev.TdxModuleIdentities {
		rev.TdxModuleIdentities[i].TcbLevels = slices.Clone(rev.TdxModuleIdentities[i].TcbLevels)
		slices.Reverse(rev.TdxModuleIdentities[i].TcbLevels)
	}
	st, err := evaluateTCB(q, &rev, &qe.EnclaveIdentity)
	if err != nil || st.status != "UpToDate" || st.module != "UpToDate" {
		t.Errorf("levels listed lowest first: %v (%v)", st, err)
	}
	if rev.TcbLevels[0].TcbStatus == ti.TcbInfo.TcbLevels[0].TcbStatus {
		t.Fatal("the test did not reorder the levels")
	}
}
