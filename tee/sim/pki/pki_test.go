package pki

import (
	"bytes"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tdxpcs "github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
)

func newAuthority(t testing.TB) (*Authority, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	a, err := Create(dir, DefaultPlatform(), time.Now())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return a, dir
}

func testBody() TDQuoteBody {
	var b TDQuoteBody
	b.TDAttributes = [8]byte{0, 0, 0, 0x10}
	b.XFAM = [8]byte{0xe7, 0x02, 0x06}
	b.MRTD = sha512.Sum384([]byte("mrtd"))
	for i := range b.RTMR {
		b.RTMR[i] = sha512.Sum384([]byte{byte(i)})
	}
	return b
}

func rootPool(t testing.TB, pemBytes []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("root PEM holds no certificate")
	}
	return p
}

func nowSet(t time.Time) *verify.TimeSet {
	return &verify.TimeSet{PckCertChain: t, TcbInfo: t, QeIdentity: t, PckCrl: t, RootCaCrl: t}
}

func TestQuoteVerifiesOnlyUnderSimRoot(t *testing.T) {
	a, _ := newAuthority(t)
	other, _ := newAuthority(t)
	var rd [64]byte
	copy(rd[:], "report data")
	q, err := a.SignQuote(testBody(), rd)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	flipped := bytes.Clone(q)
	flipped[QuoteHeaderSize+376+5] ^= 1 // a byte of RTMR1
	rdFlipped := bytes.Clone(q)
	rdFlipped[QuoteHeaderSize+520] ^= 1 // first byte of REPORTDATA
	tests := []struct {
		name  string
		quote []byte
		roots *x509.CertPool
		at    time.Time
		ok    bool
	}{
		{"sim root", q, rootPool(t, a.RootPEM()), now, true},
		{"default Intel root", q, nil, now, false},
		{"another sim's root", q, rootPool(t, other.RootPEM()), now, false},
		{"flipped RTMR byte", flipped, rootPool(t, a.RootPEM()), now, false},
		{"flipped REPORTDATA byte", rdFlipped, rootPool(t, a.RootPEM()), now, false},
		{"leaf expired", q, rootPool(t, a.RootPEM()), a.PCK.NotAfter.Add(time.Hour), false},
		{"before validity", q, rootPool(t, a.RootPEM()), a.PCK.NotBefore.Add(-time.Hour), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verify.RawTdxQuote(tc.quote, &verify.Options{TrustedRoots: tc.roots, Now: nowSet(tc.at)})
			if (err == nil) != tc.ok {
				t.Fatalf("RawTdxQuote: err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestQuoteLayout parses the minted quote with go-tdx-guest's abi package (an
// independent parser) and compares every field with what went in.
func TestQuoteLayout(t *testing.T) {
	a, _ := newAuthority(t)
	body := testBody()
	var rd [64]byte
	for i := range rd {
		rd[i] = byte(i)
	}
	q, err := a.SignQuote(body, rd)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := abi.QuoteToProto(q)
	if err != nil {
		t.Fatalf("abi.QuoteToProto: %v", err)
	}
	v4 := parsed.(*pb.QuoteV4)
	p := a.Platform
	qb := v4.GetTdQuoteBody()
	for _, f := range []struct {
		name      string
		got, want []byte
	}{
		{"qe vendor id", v4.GetHeader().GetQeVendorId(), []byte(QEVendorID)},
		{"tee_tcb_svn", qb.GetTeeTcbSvn(), p.TeeTCBSVN},
		{"mrseam", qb.GetMrSeam(), p.MRSEAM},
		{"mrsignerseam", qb.GetMrSignerSeam(), p.MRSignerSeam},
		{"seam attributes", qb.GetSeamAttributes(), p.SeamAttributes},
		{"td attributes", qb.GetTdAttributes(), body.TDAttributes[:]},
		{"xfam", qb.GetXfam(), body.XFAM[:]},
		{"mrtd", qb.GetMrTd(), body.MRTD[:]},
		{"rtmr0", qb.GetRtmrs()[0], body.RTMR[0][:]},
		{"rtmr3", qb.GetRtmrs()[3], body.RTMR[3][:]},
		{"report data", qb.GetReportData(), rd[:]},
		{"qe mrsigner", v4.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport().GetMrSigner(), p.QEMRSigner},
	} {
		if !bytes.Equal(f.got, f.want) {
			t.Errorf("%s = %x, want %x", f.name, f.got, f.want)
		}
	}
	if got := qb.GetTeeTcbSvn()[1]; got != 0 {
		t.Errorf("tee_tcb_svn[1] = %d, want 0 (no tdxModuleIdentities in TCB info)", got)
	}
	// FACTS.md offsets: MRTD @184, RTMR0 @376, REPORTDATA @568 of the whole quote.
	if !bytes.Equal(q[184:232], body.MRTD[:]) || !bytes.Equal(q[376:424], body.RTMR[0][:]) || !bytes.Equal(q[568:632], rd[:]) {
		t.Error("fields are not at the offsets FACTS.md gives")
	}
}

func TestPCKCertificateShape(t *testing.T) {
	a, _ := newAuthority(t)
	if n := len(a.PCK.Extensions); n != 6 {
		t.Fatalf("PCK leaf has %d extensions, want 6", n)
	}
	ext, err := tdxpcs.PckCertificateExtensions(a.PCK)
	if err != nil {
		t.Fatalf("go-tdx-guest cannot read the SGX extension: %v", err)
	}
	p := a.Platform
	if ext.FMSPC != hex.EncodeToString(p.FMSPC) || ext.PCEID != hex.EncodeToString(p.PCEID) ||
		ext.PPID != hex.EncodeToString(p.PPID) || ext.TCB.PCESvn != p.PCESVN ||
		!bytes.Equal(ext.TCB.CPUSvn, p.CPUSVN) || !bytes.Equal(ext.TCB.CPUSvnComponents, p.CPUSVN) {
		t.Errorf("SGX extension = %+v, want platform %+v", ext, p)
	}
	for _, c := range []*x509.Certificate{a.Root, a.PlatformCA, a.PCK, a.TCBSigning} {
		s := c.Subject
		if len(s.OrganizationalUnit) != 1 || s.OrganizationalUnit[0] != SimulationOU {
			t.Errorf("%q lacks the simulation marker: %v", s.CommonName, s)
		}
		if s.Organization[0] != "Intel Corporation" || s.Locality[0] != "Santa Clara" || s.Province[0] != "CA" || s.Country[0] != "US" {
			t.Errorf("%q subject %v", s.CommonName, s)
		}
		if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("%q signed with %v", s.CommonName, c.SignatureAlgorithm)
		}
	}
	if got := a.Root.CRLDistributionPoints; len(got) != 1 || got[0] != RootCRLURL {
		t.Errorf("root CRL distribution points %v", got)
	}
}

func TestLoadRoundTrip(t *testing.T) {
	a, dir := newAuthority(t)
	b, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !bytes.Equal(a.RootPEM(), b.RootPEM()) || !bytes.Equal(a.PCKChainPEM(), b.PCKChainPEM()) {
		t.Fatal("loaded certificates differ")
	}
	var rd [64]byte
	q, err := b.SignQuote(testBody(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.RawTdxQuote(q, &verify.Options{TrustedRoots: rootPool(t, a.RootPEM()), Now: nowSet(time.Now())}); err != nil {
		t.Fatalf("quote from the loaded PKI: %v", err)
	}
	if _, err := Create(dir, DefaultPlatform(), time.Now()); err == nil {
		t.Fatal("Create over an existing PKI succeeded")
	}
	for _, f := range []string{"root.key", "pck.key", "attestation.key", "tcb-signing.key", "platform-ca.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

func TestLoadRejectsBrokenPKI(t *testing.T) {
	_, other := newAuthority(t)
	tests := []struct {
		name   string
		mutate func(dir string) error
		want   string
	}{
		{"missing key", func(d string) error { return os.Remove(filepath.Join(d, "pck.key")) }, "pck.key"},
		{"garbage cert", func(d string) error { return os.WriteFile(filepath.Join(d, PCKCertFile), []byte("garbage"), 0o644) }, PCKCertFile},
		{"truncated cert", func(d string) error {
			b, _ := os.ReadFile(filepath.Join(d, PCKCertFile))
			return os.WriteFile(filepath.Join(d, PCKCertFile), b[:len(b)/2], 0o644)
		}, PCKCertFile},
		{"oversized cert", func(d string) error {
			return os.WriteFile(filepath.Join(d, RootCertFile), bytes.Repeat([]byte("A"), maxPEMFile+1), 0o644)
		}, "larger than"},
		{"key from another PKI", func(d string) error {
			b, err := os.ReadFile(filepath.Join(other, "pck.key"))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(d, "pck.key"), b, 0o600)
		}, "does not match its private key"},
		{"cert from another PKI", func(d string) error {
			for _, f := range []string{PCKCertFile, "pck.key"} {
				b, err := os.ReadFile(filepath.Join(other, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), b, 0o600); err != nil {
					return err
				}
			}
			return nil
		}, "is not signed by"},
		{"bad platform", func(d string) error {
			return os.WriteFile(filepath.Join(d, PlatformFile), []byte(`{"fmspc":"00"}`), 0o644)
		}, "fmspc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, dir := newAuthority(t)
			if err := tc.mutate(dir); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: err = %v, want it to mention %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY-----\n") {
				t.Fatal("error leaks key material")
			}
		})
	}
}

func TestParsePlatform(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "platform.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePlatform(good); err != nil {
		t.Fatalf("good platform: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":      nil,
		"garbage":    []byte("\x00\x01garbage"),
		"truncated":  good[:len(good)/2],
		"oversized":  bytes.Repeat([]byte(" "), maxPlatformFile+1),
		"bad hex":    bytes.Replace(good, []byte(`"fmspc": "53494d000000"`), []byte(`"fmspc": "zz494d000000"`), 1),
		"short":      bytes.Replace(good, []byte(`"fmspc": "53494d000000"`), []byte(`"fmspc": "5349"`), 1),
		"wrong type": []byte(`{"fmspc": 5}`),
	} {
		if _, err := ParsePlatform(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParsePlatform(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "platform.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePlatform(b)
		if err == nil {
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted an invalid platform: %v", err)
			}
		}
	})
}

func TestCRLs(t *testing.T) {
	a, _ := newAuthority(t)
	now := time.Now()
	der, err := a.CreatePCKCRL([]*big.Int{a.PCK.SerialNumber}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(a.PlatformCA); err != nil {
		t.Fatalf("PCK CRL not signed by the platform CA: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(a.PCK.SerialNumber) != 0 {
		t.Fatalf("PCK CRL entries %v", crl.RevokedCertificateEntries)
	}
	if _, err := a.CreateRootCRL(nil, now, now); err == nil {
		t.Fatal("CRL with nextUpdate == thisUpdate accepted")
	}
}

// TestDefaultPlatform compares DefaultPlatform with testdata/platform.json, which was
// written by python3 (hashlib.sha384/sha256 over the same labels), not by this code.
func TestDefaultPlatform(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "platform.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParsePlatform(b)
	if err != nil {
		t.Fatal(err)
	}
	got := DefaultPlatform()
	gj, _ := json.Marshal(&got)
	wj, _ := json.Marshal(&want)
	if !bytes.Equal(gj, wj) {
		t.Fatalf("DefaultPlatform\n got %s\nwant %s", gj, wj)
	}
}
