package appraisal

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// A test PKI shaped like Intel's (FACTS.md): P-256 keys, the exact CNs,
// O=Intel Corporation, L=Santa Clara, ST=CA, C=US, the SGX extension on the
// PCK leaf (which must carry exactly 6 extensions). Quotes minted under it
// start from the real cos-113 header, body and QE report, re-signed.

const (
	testFMSPC  = "00806f050000"
	testPCEID  = "0000"
	testPCESVN = 13
	rootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
)

var testSGXComponents = [16]byte{5, 5, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0}

type testPKI struct {
	rootKey, interKey, leafKey, signKey *ecdsa.PrivateKey
	root, inter, leaf, signer           *x509.Certificate
}

func intelName(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"Intel Corporation"}, Locality: []string{"Santa Clara"}, Province: []string{"CA"}, Country: []string{"US"}}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type oidOctets struct {
	ID asn1.ObjectIdentifier
	V  []byte
}

type oidInt struct {
	ID asn1.ObjectIdentifier
	V  int
}

type oidSeq struct {
	ID asn1.ObjectIdentifier
	V  []asn1.RawValue
}

func raw(t testing.TB, v any) asn1.RawValue {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{FullBytes: b}
}

// sgxExtension encodes the PCK leaf's SGX extension: PPID, TCB (16 SGX
// component SVNs, PCESVN, CPUSVN), PCEID, FMSPC.
func sgxExtension(t testing.TB) pkix.Extension {
	sub := func(n ...int) asn1.ObjectIdentifier {
		return append(append(asn1.ObjectIdentifier{}, pcs.OidSgxExtension...), n...)
	}
	var tcb []asn1.RawValue
	for i, c := range testSGXComponents {
		tcb = append(tcb, raw(t, oidInt{sub(2, i+1), int(c)}))
	}
	tcb = append(tcb, raw(t, oidInt{sub(2, 17), testPCESVN}))
	tcb = append(tcb, raw(t, oidOctets{sub(2, 18), testSGXComponents[:]}))
	fmspc, _ := hex.DecodeString(testFMSPC)
	pceid, _ := hex.DecodeString(testPCEID)
	val, err := asn1.Marshal([]asn1.RawValue{
		raw(t, oidOctets{sub(1), bytes.Repeat([]byte{0x11}, 16)}),
		raw(t, oidSeq{sub(2), tcb}),
		raw(t, oidOctets{sub(3), pceid}),
		raw(t, oidOctets{sub(4), fmspc}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: pcs.OidSgxExtension, Value: val}
}

var (
	certNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	certNotAfter  = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newKey(t), interKey: newKey(t), leafKey: newKey(t), signKey: newKey(t)}
	ca := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: intelName(cn),
			NotBefore: certNotBefore, NotAfter: certNotAfter,
			IsCA: true, BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			SubjectKeyId:          []byte{byte(serial)},
			CRLDistributionPoints: []string{rootCRLURL},
		}
	}
	p.root = mustCert(t, ca(1, cnRoot), ca(1, cnRoot), &p.rootKey.PublicKey, p.rootKey)
	p.inter = mustCert(t, ca(2, cnPlatformCA), p.root, &p.interKey.PublicKey, p.rootKey)
	p.leaf = mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(0x1eaf), Subject: intelName(cnPCKLeaf),
		NotBefore: certNotBefore, NotAfter: certNotAfter,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		SubjectKeyId:          []byte{3},
		CRLDistributionPoints: []string{pcs.PckCrlURL("platform")},
		ExtraExtensions:       []pkix.Extension{sgxExtension(t)},
	}, p.inter, &p.leafKey.PublicKey, p.interKey)
	if n := len(p.leaf.Extensions); n != 6 {
		t.Fatalf("minted PCK leaf has %d extensions, the library wants 6", n)
	}
	p.signer = mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(4), Subject: intelName(cnTCBSigning),
		NotBefore: certNotBefore, NotAfter: certNotAfter,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		SubjectKeyId: []byte{4},
	}, p.root, &p.signKey.PublicKey, p.rootKey)
	return p
}

func (p *testPKI) rootPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	return pool
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func rawSign(t testing.TB, k *ecdsa.PrivateKey, msg []byte) []byte {
	d := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// mintQuote builds a quote v4 signed under p: the real cos-113 header and
// body (changed by mutate, which sees the 632 signed bytes), a fresh
// attestation key, the real QE report with its REPORTDATA rebound, signed by
// the PCK leaf key.
func (p *testPKI) mintQuote(t testing.TB, mutate func(signed []byte)) []byte {
	t.Helper()
	real, err := tdxquote.Parse(readTestdata(t, "cos-113-tdx-quote.dat"))
	if err != nil {
		t.Fatal(err)
	}
	signed := real.SignedBytes()
	if mutate != nil {
		mutate(signed)
	}
	ak := newKey(t)
	akPub, err := ak.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	akRaw := akPub[1:] // drop the 0x04 uncompressed-point prefix
	auth := bytes.Repeat([]byte{0xA5}, 32)
	rep := real.QEReport.Raw
	h := sha256.Sum256(append(bytes.Clone(akRaw), auth...))
	copy(rep[320:], h[:])
	clear(rep[352:384])
	chain := pemOf(p.leaf, p.inter, p.root)

	var cert []byte
	cert = append(cert, rep[:]...)
	cert = append(cert, rawSign(t, p.leafKey, rep[:])...)
	cert = binary.LittleEndian.AppendUint16(cert, uint16(len(auth)))
	cert = append(cert, auth...)
	cert = binary.LittleEndian.AppendUint16(cert, tdxquote.CertDataPCKChain)
	cert = binary.LittleEndian.AppendUint32(cert, uint32(len(chain)))
	cert = append(cert, chain...)

	var sd []byte
	sd = append(sd, rawSign(t, ak, signed)...)
	sd = append(sd, akRaw...)
	sd = binary.LittleEndian.AppendUint16(sd, tdxquote.CertDataQEReport)
	sd = binary.LittleEndian.AppendUint32(sd, uint32(len(cert)))
	sd = append(sd, cert...)

	out := append(signed, binary.LittleEndian.AppendUint32(nil, uint32(len(sd)))...)
	return append(out, sd...)
}

// Collateral served under the test PKI.

type collateralSpec struct {
	platformStatus string
	moduleStatus   string // "" omits tdxModuleIdentities
	qeStatus       string
	issueDate      time.Time
	nextUpdate     time.Time
	fmspc          string
	tdxSVN2        byte // tdxtcbcomponents[2] of the only level
	signer         *ecdsa.PrivateKey
	revokeLeaf     bool
	crlNextUpdate  time.Time
	// Evaluation data numbers of TCB info and QE identity (0: 17), and
	// the advisories of the platform, module and QE levels.
	tcbEvalNum, qeEvalNum                              int
	platformAdvisories, moduleAdvisories, qeAdvisories []string
}

func defaultSpec(p *testPKI) collateralSpec {
	return collateralSpec{
		platformStatus: "UpToDate", moduleStatus: "UpToDate", qeStatus: "UpToDate",
		issueDate: pinnedNow.Add(-24 * time.Hour), nextUpdate: pinnedNow.Add(30 * 24 * time.Hour),
		fmspc: testFMSPC, tdxSVN2: 7, signer: p.signKey, crlNextUpdate: pinnedNow.Add(30 * 24 * time.Hour),
	}
}

type fakeResponse struct {
	header map[string][]string
	body   []byte
	err    error
}

// fakePCS is an in-memory trust.HTTPSGetter keyed by the exact Intel PCS
// URLs go-tdx-guest builds.
type fakePCS struct {
	mu    sync.Mutex
	resp  map[string]fakeResponse
	calls map[string]int
}

func (f *fakePCS) Get(u string) (map[string][]string, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[u]++
	r, ok := f.resp[u]
	if !ok {
		return nil, nil, fmt.Errorf("404 %s", u)
	}
	return r.header, r.body, r.err
}

func chainHeader(name string, certs ...*x509.Certificate) map[string][]string {
	return map[string][]string{name: {url.QueryEscape(string(pemOf(certs...)))}}
}

func signedDoc(t testing.TB, member string, v any, key *ecdsa.PrivateKey) []byte {
	inner, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	sig := hex.EncodeToString(rawSign(t, key, inner))
	return []byte(fmt.Sprintf(`{"%s":%s,"signature":"%s"}`, member, inner, sig))
}

func level(status string, tcb map[string]any, advisories ...string) map[string]any {
	l := map[string]any{"tcb": tcb, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": status}
	if advisories != nil {
		l["advisoryIDs"] = advisories
	}
	return l
}

func orDefault(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

func components(svns ...byte) []map[string]any {
	out := make([]map[string]any, 16)
	for i := range out {
		out[i] = map[string]any{"svn": 0}
		if i < len(svns) {
			out[i]["svn"] = svns[i]
		}
	}
	return out
}

func (p *testPKI) pcs(t testing.TB, s collateralSpec) *fakePCS {
	t.Helper()
	real, err := tdxquote.Parse(readTestdata(t, "cos-113-tdx-quote.dat"))
	if err != nil {
		t.Fatal(err)
	}
	ts := func(tm time.Time) string { return tm.UTC().Format(time.RFC3339) }
	mrsigner := hex.EncodeToString(real.Body.MRSignerSEAM[:])
	module := map[string]any{"mrsigner": mrsigner, "attributes": "0000000000000000", "attributesMask": "ffffffffffffffff"}
	tcbInfo := map[string]any{
		"id": "TDX", "version": 3, "issueDate": ts(s.issueDate), "nextUpdate": ts(s.nextUpdate),
		"fmspc": s.fmspc, "pceId": testPCEID, "tcbType": 0, "tcbEvaluationDataNumber": orDefault(s.tcbEvalNum, 17),
		"tdxModule": module,
		"tcbLevels": []any{
			level(s.platformStatus, map[string]any{
				"sgxtcbcomponents": components(testSGXComponents[:]...), "pcesvn": testPCESVN,
				"tdxtcbcomponents": components(0, 0, s.tdxSVN2),
			}, s.platformAdvisories...),
		},
	}
	if s.moduleStatus != "" {
		id := map[string]any{"id": "TDX_01", "tcbLevels": []any{level(s.moduleStatus, map[string]any{"isvsvn": 4}, s.moduleAdvisories...)}}
		for k, v := range module {
			id[k] = v
		}
		tcbInfo["tdxModuleIdentities"] = []any{id}
	}
	qr := &real.QEReport
	misc := make([]byte, 4)
	binary.LittleEndian.PutUint32(misc, qr.MiscSelect)
	qe := map[string]any{
		"id": "TD_QE", "version": 2, "issueDate": ts(s.issueDate), "nextUpdate": ts(s.nextUpdate), "tcbEvaluationDataNumber": orDefault(s.qeEvalNum, 17),
		"miscselect": hex.EncodeToString(misc), "miscselectMask": "ffffffff",
		"attributes": hex.EncodeToString(qr.Attributes[:]), "attributesMask": strings.Repeat("ff", 16),
		"mrsigner": hex.EncodeToString(qr.MRSigner[:]), "isvprodid": qr.ISVProdID,
		"tcbLevels": []any{level(s.qeStatus, map[string]any{"isvsvn": qr.ISVSVN}, s.qeAdvisories...)},
	}

	crl := func(issuer *x509.Certificate, key *ecdsa.PrivateKey, revoked ...*x509.Certificate) []byte {
		var entries []x509.RevocationListEntry
		for _, c := range revoked {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: pinnedNow.Add(-time.Hour)})
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(1), ThisUpdate: s.issueDate, NextUpdate: s.crlNextUpdate,
			RevokedCertificateEntries: entries,
		}, issuer, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	var revokedLeaves []*x509.Certificate
	if s.revokeLeaf {
		revokedLeaves = append(revokedLeaves, p.leaf)
	}
	return &fakePCS{calls: map[string]int{}, resp: map[string]fakeResponse{
		pcs.TcbInfoURL(testFMSPC): {chainHeader(pcs.TcbInfoIssuerChainPhrase, p.signer, p.root), signedDoc(t, "tcbInfo", tcbInfo, s.signer), nil},
		pcs.QeIdentityURL():       {chainHeader(pcs.SgxQeIdentityIssuerChainPhrase, p.signer, p.root), signedDoc(t, "enclaveIdentity", qe, s.signer), nil},
		pcs.PckCrlURL("platform"): {chainHeader(pcs.SgxPckCrlIssuerChainPhrase, p.inter, p.root), crl(p.inter, p.interKey, revokedLeaves...), nil},
		rootCRLURL:                {nil, crl(p.root, p.rootKey), nil},
	}}
}

var errOutage = errors.New("connection refused")

func tcbURL() string    { return pcs.TcbInfoURL(testFMSPC) }
func tcbHeader() string { return pcs.TcbInfoIssuerChainPhrase }
