package appraisal

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify/trust"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// maxCollateralSize bounds each collateral response. Intel's TCB info is
// a few KiB and its CRLs well under 100 KiB.
const maxCollateralSize = 4 << 20

// Versions and IDs of the collateral this code evaluates (as the library).
const (
	tcbInfoID         = "TDX"
	tcbInfoVersion    = 3
	qeIdentityID      = "TD_QE"
	qeIdentityVersion = 2
)

// signedCollateral is one signed JSON document (TCB info or QE identity)
// with the issuer chain the PCS sent with it.
type signedCollateral struct {
	url       string
	raw       []byte // the exact bytes of the signed member
	signature string
	signer    *x509.Certificate
	issuer    *x509.Certificate // root as sent; trust comes from roots, not this
	valid     window            // of the verified signing chain, set by verify
}

type collateral struct {
	tcbInfo    pcs.TdxTcbInfo
	qeIdentity pcs.QeIdentity
	tcb, qe    signedCollateral

	// With revocation checks.
	pckCRL, rootCRL       *x509.RevocationList
	pckCRLURL, rootCRLURL string
}

// fetchedDoc is one collateral response as the getter returned it.
type fetchedDoc struct {
	url    string
	header map[string][]string
	body   []byte
}

// fetchedCollateral is every response one appraisal needs, not yet parsed.
type fetchedCollateral struct {
	tcbInfo, qeIdentity fetchedDoc
	// CRLs are fetched only with revocation checks.
	pckCRL, rootCRL *fetchedDoc
}

// fetchCollateral gets TCB info for the quote's FMSPC, the TD QE identity
// and, when asked, the PCK CRL of the leaf's issuing CA and the root CA CRL.
// Every error here is a fetch failure.
func fetchCollateral(ctx context.Context, g trust.HTTPSGetter, q *tdxquote.Quote, root *x509.Certificate, revocations bool, cache *Cache) (*fetchedCollateral, error) {
	f := &fetchedCollateral{}
	var err error
	if f.tcbInfo, err = fetch(ctx, g, pcs.TcbInfoURL(q.FMSPC())); err != nil {
		return nil, err
	}
	if f.qeIdentity, err = fetch(ctx, g, pcs.QeIdentityURL()); err != nil {
		return nil, err
	}
	if !revocations {
		return f, nil
	}
	ca := caParamPlatfom
	if q.PCKChain[1].Subject.CommonName == cnProcessorCA {
		ca = caParamProc
	}
	pck, err := fetch(ctx, g, pcs.PckCrlURL(ca))
	if err != nil {
		return nil, err
	}
	f.pckCRL = &pck
	// The root CRL's location comes from the trusted root the PCK chain
	// ends in, not from anything the PCS sent.
	dps := root.CRLDistributionPoints
	if len(dps) == 0 {
		return nil, errors.New("root CA certificate names no CRL distribution point")
	}
	var errs []error
	for _, u := range dps {
		d, err := fetch(ctx, g, u)
		if err == nil {
			// Only a response that is a CRL ends the search, as a
			// distribution point that answers with garbage is as good as
			// one that does not answer.
			if perr := cache.parsesAsCRL(d.body); perr == nil {
				f.rootCRL = &d
				return f, nil
			} else {
				err = fmt.Errorf("%s: CRL: %w", u, perr)
			}
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// digest identifies the fetched bytes that parsing reads, together with
// the certificates the documents are checked against.
func (f *fetchedCollateral) digest(inter, root *x509.Certificate) [32]byte {
	h := sha256.New()
	for _, d := range []*fetchedDoc{&f.tcbInfo, &f.qeIdentity, f.pckCRL, f.rootCRL} {
		if d == nil {
			writeBytes(h, nil)
			continue
		}
		writeString(h, d.url)
		for _, name := range []string{pcs.TcbInfoIssuerChainPhrase, pcs.SgxQeIdentityIssuerChainPhrase} {
			for _, v := range http.Header(d.header).Values(name) {
				writeString(h, v)
			}
		}
		writeBytes(h, d.body)
	}
	writeBytes(h, inter.Raw)
	writeBytes(h, root.Raw)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// parse decodes the fetched documents. Errors are decode failures of a
// response.
func (f *fetchedCollateral) parse() (*collateral, error) {
	c := &collateral{}
	var err error
	if c.tcb, err = parseSigned(f.tcbInfo, pcs.TcbInfoIssuerChainPhrase, "tcbInfo", &c.tcbInfo); err != nil {
		return nil, err
	}
	c.tcbInfo.Signature = c.tcb.signature
	if c.qe, err = parseSigned(f.qeIdentity, pcs.SgxQeIdentityIssuerChainPhrase, "enclaveIdentity", &c.qeIdentity); err != nil {
		return nil, err
	}
	if f.pckCRL == nil {
		return c, nil
	}
	c.pckCRLURL, c.rootCRLURL = f.pckCRL.url, f.rootCRL.url
	if c.pckCRL, err = parseCRL(*f.pckCRL); err != nil {
		return nil, err
	}
	if c.rootCRL, err = parseCRL(*f.rootCRL); err != nil {
		return nil, err
	}
	return c, nil
}

func fetch(ctx context.Context, g trust.HTTPSGetter, u string) (fetchedDoc, error) {
	d := fetchedDoc{url: u}
	if err := ctx.Err(); err != nil {
		return d, fmt.Errorf("fetching %s: %w", u, err)
	}
	h, body, err := trust.GetWith(ctx, g, u)
	if err != nil {
		return d, fmt.Errorf("fetching %s: %w", u, err)
	}
	if len(body) == 0 || len(body) > maxCollateralSize {
		return d, fmt.Errorf("fetching %s: response of %d bytes (limit %d)", u, len(body), maxCollateralSize)
	}
	d.header, d.body = h, body
	return d, nil
}

func parseSigned(d fetchedDoc, chainHeader, member string, out any) (signedCollateral, error) {
	u := d.url
	sc := signedCollateral{url: u}
	var err error
	if sc.signer, sc.issuer, err = issuerChain(d.header, chainHeader); err != nil {
		return sc, fmt.Errorf("%s: %w", u, err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(d.body, &doc); err != nil {
		return sc, fmt.Errorf("%s: not JSON: %w", u, err)
	}
	sc.raw = doc[member]
	if len(sc.raw) == 0 {
		return sc, fmt.Errorf("%s: no %q member", u, member)
	}
	if err := json.Unmarshal(doc["signature"], &sc.signature); err != nil {
		return sc, fmt.Errorf("%s: signature member: %w", u, err)
	}
	if err := json.Unmarshal(d.body, out); err != nil {
		return sc, fmt.Errorf("%s: %w", u, err)
	}
	return sc, nil
}

// issuerChain decodes a PCS issuer chain header: URL-escaped PEM of the
// signing certificate followed by the root.
func issuerChain(h map[string][]string, name string) (signer, root *x509.Certificate, err error) {
	vals := http.Header(h).Values(name)
	if len(vals) != 1 {
		return nil, nil, fmt.Errorf("header %s: %d values, want 1", name, len(vals))
	}
	s, err := url.QueryUnescape(vals[0])
	if err != nil {
		return nil, nil, fmt.Errorf("header %s: %w", name, err)
	}
	var certs []*x509.Certificate
	rest := []byte(s)
	for len(strings.TrimSpace(string(rest))) > 0 {
		if len(certs) == 2 {
			return nil, nil, fmt.Errorf("header %s: more than 2 certificates", name)
		}
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("header %s: certificate %d is not a PEM CERTIFICATE", name, len(certs))
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("header %s: certificate %d: %w", name, len(certs), err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 {
		return nil, nil, fmt.Errorf("header %s: %d certificates, want 2 (signer, root)", name, len(certs))
	}
	return certs[0], certs[1], nil
}

func parseCRL(d fetchedDoc) (*x509.RevocationList, error) {
	crl, err := x509.ParseRevocationList(d.body)
	if err != nil {
		return nil, fmt.Errorf("%s: CRL: %w", d.url, err)
	}
	return crl, nil
}

// verifyDocuments checks that each document is signed, over its exact
// bytes, by a "Intel SGX TCB Signing" certificate chaining to root, the
// trusted root the quote's PCK chain ends in (not merely to any trusted
// root: with several roots configured, collateral of one PKI must not rate
// platforms of another), is the
// kind and version this code evaluates, and is current at now. CRLs must be
// signed by the quote's intermediate (PCK CRL) and by the trusted root (root
// CRL) and be current. It depends only on the documents, the PCK
// intermediate, the root and the time: what a Cache may remember for the
// documents' validity window. matchQuote adds the per-quote checks.
func (c *collateral) verifyDocuments(inter, root *x509.Certificate, now time.Time) error {
	ti := &c.tcbInfo.TcbInfo
	if err := c.tcb.verify(root, now); err != nil {
		return fmt.Errorf("TCB info: %w", err)
	}
	if ti.ID != tcbInfoID || ti.Version != tcbInfoVersion {
		return fmt.Errorf("TCB info: id %q version %d, want %q version %d", ti.ID, ti.Version, tcbInfoID, tcbInfoVersion)
	}
	if ti.TcbType != 0 {
		// Type 0 is the only component comparison Intel defines.
		return fmt.Errorf("TCB info: tcbType %d, only 0 is defined", ti.TcbType)
	}
	if err := current("TCB info", ti.IssueDate, ti.NextUpdate, now); err != nil {
		return err
	}
	if err := evaluationNumber("TCB info", ti.TcbEvaluationDataNumber); err != nil {
		return err
	}
	if len(ti.TcbLevels) == 0 {
		return errors.New("TCB info has no TCB levels")
	}

	qi := &c.qeIdentity.EnclaveIdentity
	if err := c.qe.verify(root, now); err != nil {
		return fmt.Errorf("QE identity: %w", err)
	}
	if qi.ID != qeIdentityID || qi.Version != qeIdentityVersion {
		return fmt.Errorf("QE identity: id %q version %d, want %q version %d", qi.ID, qi.Version, qeIdentityID, qeIdentityVersion)
	}
	if err := current("QE identity", qi.IssueDate, qi.NextUpdate, now); err != nil {
		return err
	}
	if err := evaluationNumber("QE identity", qi.TcbEvaluationDataNumber); err != nil {
		return err
	}
	if len(qi.TcbLevels) == 0 {
		return errors.New("QE identity has no TCB levels")
	}

	if c.pckCRL != nil {
		if err := checkCRL("PCK CRL", c.pckCRL, inter, now); err != nil {
			return err
		}
	}
	if c.rootCRL != nil {
		if err := checkCRL("root CA CRL", c.rootCRL, root, now); err != nil {
			return err
		}
		for _, s := range []struct {
			name string
			cert *x509.Certificate
		}{{"TCB info signing certificate", c.tcb.signer}, {"QE identity signing certificate", c.qe.signer}} {
			if revoked(c.rootCRL, s.cert) {
				return fmt.Errorf("%s (serial %x) is revoked by the root CA CRL", s.name, s.cert.SerialNumber)
			}
		}
	}
	return nil
}

// matchQuote checks that the TCB info is for the quote's platform.
func (c *collateral) matchQuote(q *tdxquote.Quote) error {
	ti := &c.tcbInfo.TcbInfo
	if !strings.EqualFold(ti.Fmspc, q.FMSPC()) {
		return fmt.Errorf("TCB info is for FMSPC %s, the PCK certificate says %s", ti.Fmspc, q.FMSPC())
	}
	if !strings.EqualFold(ti.PceID, hex.EncodeToString(q.PCK.PCEID[:])) {
		return fmt.Errorf("TCB info is for PCEID %s, the PCK certificate says %x", ti.PceID, q.PCK.PCEID)
	}
	return nil
}

// window is when verifyDocuments' verdict holds: every document current and
// every signing chain valid. Call it only after verifyDocuments succeeded.
func (c *collateral) window() window {
	ti, qi := &c.tcbInfo.TcbInfo, &c.qeIdentity.EnclaveIdentity
	w := window{ti.IssueDate, ti.NextUpdate}.
		intersect(window{qi.IssueDate, qi.NextUpdate}).
		intersect(c.tcb.valid).
		intersect(c.qe.valid)
	for _, crl := range []*x509.RevocationList{c.pckCRL, c.rootCRL} {
		if crl != nil {
			w = w.intersect(window{crl.ThisUpdate, crl.NextUpdate})
		}
	}
	return w
}

// verify checks the document's signature and that its signer chains to
// root alone.
func (s *signedCollateral) verify(root *x509.Certificate, now time.Time) error {
	if s.signer.Subject.CommonName != cnTCBSigning {
		return fmt.Errorf("signed by %q, want %q", s.signer.Subject.CommonName, cnTCBSigning)
	}
	if err := checkP256(s.signer); err != nil {
		return fmt.Errorf("signing certificate: %w", err)
	}
	only := x509.NewCertPool()
	only.AddCert(root)
	chains, err := s.signer.Verify(x509.VerifyOptions{Roots: only, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("signing certificate (issuer %q) does not chain, at %s, to the root the PCK chain ends in (%q, serial %x): %w",
			s.signer.Issuer.CommonName, now.UTC().Format(time.RFC3339), root.Subject.CommonName, root.SerialNumber, err)
	}
	s.valid = certWindow(chains[0]...)
	sig, err := hex.DecodeString(s.signature)
	if err != nil || len(sig) != 64 {
		return fmt.Errorf("signature is not 64 bytes of hex")
	}
	digest := sha256.Sum256(s.raw)
	if !verifyRaw(s.signer.PublicKey.(*ecdsa.PublicKey), digest[:], sig) {
		return errors.New("signature does not verify over the document")
	}
	return nil
}

// evaluationNumber refuses a tcbEvaluationDataNumber Intel never issues, so
// that every number a result carries (and a selector shows) fits a uint32.
func evaluationNumber(what string, n int) error {
	if n < 0 || n > math.MaxUint32 {
		return fmt.Errorf("%s: tcbEvaluationDataNumber %d is outside 0..%d", what, n, uint32(math.MaxUint32))
	}
	return nil
}

// evaluationNumbers are the tcbEvaluationDataNumber of the TCB info and of
// the QE identity; verifyDocuments has checked their range.
func (c *collateral) evaluationNumbers() (tcbInfo, qeIdentity uint32) {
	return uint32(c.tcbInfo.TcbInfo.TcbEvaluationDataNumber), uint32(c.qeIdentity.EnclaveIdentity.TcbEvaluationDataNumber)
}

// checkMinEvaluation refuses collateral older than the TCB recovery whose
// evaluation data number is min: TCB info from before a recovery still rates
// platforms that the recovery made out of date as they were rated before it.
// Both documents must be at least min, as each carries its own number.
func (c *collateral) checkMinEvaluation(min uint32) error {
	ti, qi := c.evaluationNumbers()
	var low []string
	if ti < min {
		low = append(low, fmt.Sprintf("TCB info for FMSPC %s has tcbEvaluationDataNumber %d", c.tcbInfo.TcbInfo.Fmspc, ti))
	}
	if qi < min {
		low = append(low, fmt.Sprintf("QE identity has tcbEvaluationDataNumber %d", qi))
	}
	if len(low) == 0 {
		return nil
	}
	return fmt.Errorf("%s, below the minimum %d (tdx.min_tcb_evaluation_data_number): the collateral source serves TCB data from before a TCB recovery; update the PCCS or offline collateral to Intel's current issue",
		strings.Join(low, " and "), min)
}

func current(what string, issued, next, now time.Time) error {
	if now.Before(issued) {
		return fmt.Errorf("%s issued %s, after the verification time %s", what, issued.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(next) {
		return fmt.Errorf("%s expired: next update was due %s, verification time %s", what, next.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkCRL(what string, crl *x509.RevocationList, issuer *x509.Certificate, now time.Time) error {
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%s is not signed by %q: %w", what, issuer.Subject.CommonName, err)
	}
	if crl.NextUpdate.IsZero() {
		return fmt.Errorf("%s has no next update", what)
	}
	return current(what, crl.ThisUpdate, crl.NextUpdate, now)
}

func revoked(crl *x509.RevocationList, c *x509.Certificate) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// checkRevoked rejects a revoked PCK leaf (PCK CRL) or intermediate (root
// CRL).
func (c *collateral) checkRevoked(q *tdxquote.Quote) error {
	if revoked(c.pckCRL, q.PCKChain[0]) {
		return fmt.Errorf("PCK leaf certificate (serial %x) is revoked by the PCK CRL from %s", q.PCKChain[0].SerialNumber, c.pckCRLURL)
	}
	if revoked(c.rootCRL, q.PCKChain[1]) {
		return fmt.Errorf("PCK intermediate CA (serial %x) is revoked by the root CA CRL from %s", q.PCKChain[1].SerialNumber, c.rootCRLURL)
	}
	return nil
}

func (c *collateral) describe() string {
	ti, qi := &c.tcbInfo.TcbInfo, &c.qeIdentity.EnclaveIdentity
	s := fmt.Sprintf("TCB info for FMSPC %s (evaluation data %d, next update %s) and QE identity (next update %s) signed under a trusted root",
		ti.Fmspc, ti.TcbEvaluationDataNumber, ti.NextUpdate.UTC().Format(time.RFC3339), qi.NextUpdate.UTC().Format(time.RFC3339))
	if c.pckCRL != nil {
		s += "; PCK and root CRLs current"
	}
	return s
}

// memoGetter records the responses of one appraisal so the library's
// cross-check sees exactly the documents this package evaluated, without
// fetching them again.
type memoGetter struct {
	next trust.HTTPSGetter
	mu   sync.Mutex
	seen map[string]memoEntry
}

type memoEntry struct {
	header map[string][]string
	body   []byte
}

func newMemoGetter(next trust.HTTPSGetter) *memoGetter {
	return &memoGetter{next: next, seen: make(map[string]memoEntry)}
}

func (m *memoGetter) Get(u string) (map[string][]string, []byte, error) {
	return m.GetContext(context.Background(), u)
}

func (m *memoGetter) GetContext(ctx context.Context, u string) (map[string][]string, []byte, error) {
	h, b, err := trust.GetWith(ctx, m.next, u)
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	m.seen[u] = memoEntry{h, b}
	m.mu.Unlock()
	return h, b, nil
}

// replayOnly returns a getter that answers only with recorded responses.
func (m *memoGetter) replayOnly() trust.HTTPSGetter { return replayGetter{m} }

type replayGetter struct{ m *memoGetter }

func (r replayGetter) Get(u string) (map[string][]string, []byte, error) {
	r.m.mu.Lock()
	e, ok := r.m.seen[u]
	r.m.mu.Unlock()
	if !ok {
		return nil, nil, fmt.Errorf("%s was not fetched during this appraisal", u)
	}
	return e.header, e.body, nil
}
