package tdxquote

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
)

var realQuotes = []string{"cos-113-tdx-quote.dat", "tdx_prod_quote_SPR_E4.dat"}

func readQuote(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "tdx", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseMatchesGoTdxGuest cross-checks every field against go-tdx-guest's
// abi package, an independent implementation of the same layout.
func TestParseMatchesGoTdxGuest(t *testing.T) {
	for _, name := range realQuotes {
		t.Run(name, func(t *testing.T) {
			raw := readQuote(t, name)
			q, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			anyQ, err := abi.QuoteToProto(raw)
			if err != nil {
				t.Fatal(err)
			}
			p := anyQ.(*pb.QuoteV4)
			h, b := p.GetHeader(), p.GetTdQuoteBody()
			eq := func(field string, got, want []byte) {
				t.Helper()
				if !bytes.Equal(got, want) {
					t.Errorf("%s = %x, go-tdx-guest says %x", field, got, want)
				}
			}
			if uint32(q.Header.Version) != h.GetVersion() || uint32(q.Header.AttestationKeyType) != h.GetAttestationKeyType() || q.Header.TEEType != h.GetTeeType() {
				t.Errorf("header ints %+v, go-tdx-guest %v", q.Header, h)
			}
			eq("header.reserved", q.Header.Reserved[:], append(append([]byte{}, h.GetPceSvn()...), h.GetQeSvn()...))
			eq("qe_vendor_id", q.Header.QEVendorID[:], h.GetQeVendorId())
			eq("user_data", q.Header.UserData[:], h.GetUserData())
			eq("tee_tcb_svn", q.Body.TEETCBSVN[:], b.GetTeeTcbSvn())
			eq("mrseam", q.Body.MRSEAM[:], b.GetMrSeam())
			eq("mrsignerseam", q.Body.MRSignerSEAM[:], b.GetMrSignerSeam())
			eq("seam_attributes", q.Body.SEAMAttributes[:], b.GetSeamAttributes())
			eq("td_attributes", q.Body.TDAttributes[:], b.GetTdAttributes())
			eq("xfam", q.Body.XFAM[:], b.GetXfam())
			eq("mrtd", q.Body.MRTD[:], b.GetMrTd())
			eq("mrconfigid", q.Body.MRConfigID[:], b.GetMrConfigId())
			eq("mrowner", q.Body.MROwner[:], b.GetMrOwner())
			eq("mrownerconfig", q.Body.MROwnerConfig[:], b.GetMrOwnerConfig())
			for i := range 4 {
				eq("rtmr", q.Body.RTMR[i][:], b.GetRtmrs()[i])
			}
			eq("report_data", q.Body.ReportData[:], b.GetReportData())
			sd := p.GetSignedData()
			if q.SignedDataSize != p.GetSignedDataSize() {
				t.Errorf("signed data size %d, go-tdx-guest %d", q.SignedDataSize, p.GetSignedDataSize())
			}
			eq("signature", q.Signature[:], sd.GetSignature())
			eq("attestation_key", q.AttestationKey[:], sd.GetEcdsaAttestationKey())
			qc := sd.GetCertificationData().GetQeReportCertificationData()
			qr := qc.GetQeReport()
			eq("qe cpusvn", q.QEReport.CPUSVN[:], qr.GetCpuSvn())
			eq("qe attributes", q.QEReport.Attributes[:], qr.GetAttributes())
			eq("qe mrenclave", q.QEReport.MREnclave[:], qr.GetMrEnclave())
			eq("qe mrsigner", q.QEReport.MRSigner[:], qr.GetMrSigner())
			eq("qe report data", q.QEReport.ReportData[:], qr.GetReportData())
			if q.QEReport.MiscSelect != qr.GetMiscSelect() || uint32(q.QEReport.ISVProdID) != qr.GetIsvProdId() || uint32(q.QEReport.ISVSVN) != qr.GetIsvSvn() {
				t.Errorf("qe report ints %d/%d/%d, go-tdx-guest %d/%d/%d", q.QEReport.MiscSelect, q.QEReport.ISVProdID, q.QEReport.ISVSVN, qr.GetMiscSelect(), qr.GetIsvProdId(), qr.GetIsvSvn())
			}
			rawRep, err := abi.EnclaveReportToAbiBytes(qr)
			if err != nil {
				t.Fatal(err)
			}
			eq("qe report raw", q.QEReport.Raw[:], rawRep)
			eq("qe report signature", q.QEReportSignature[:], qc.GetQeReportSignature())
			eq("qe auth data", q.QEAuthData, qc.GetQeAuthData().GetData())
			eq("pck chain", q.PCKChainPEM, qc.GetPckCertificateChainData().GetPckCertChain())
			eq("trailing", make([]byte, q.TrailingBytes), make([]byte, len(p.GetExtraBytes())))

			hdr, _ := abi.HeaderToAbiBytes(h)
			body, _ := abi.TdQuoteBodyToAbiBytes(b)
			eq("signed bytes", q.SignedBytes(), append(hdr, body...))
		})
	}
}

// sgxExtensionOctets finds an SGX extension sub-field by its DER-encoded OID
// in the raw leaf certificate and returns the OCTET STRING after it: a crude
// reader independent of the pcs package the parser uses.
func sgxExtensionOctets(t *testing.T, der []byte, oidHex string) string {
	t.Helper()
	oid, _ := hex.DecodeString(oidHex)
	i := bytes.Index(der, oid)
	if i < 0 || i+len(oid)+2 > len(der) || der[i+len(oid)] != 0x04 {
		t.Fatalf("OID %s not followed by an OCTET STRING", oidHex)
	}
	n := int(der[i+len(oid)+1])
	start := i + len(oid) + 2
	return hex.EncodeToString(der[start : start+n])
}

func TestPCKInfo(t *testing.T) {
	for _, name := range realQuotes {
		q, err := Parse(readQuote(t, name))
		if err != nil {
			t.Fatal(err)
		}
		leaf := q.PCKChain[0].Raw
		// 1.2.840.113741.1.13.1.4 (FMSPC) and .3 (PCEID), DER-encoded.
		if want := sgxExtensionOctets(t, leaf, "060a2a864886f84d010d0104"); q.FMSPC() != want {
			t.Errorf("%s: FMSPC %s, raw DER says %s", name, q.FMSPC(), want)
		}
		if want := sgxExtensionOctets(t, leaf, "060a2a864886f84d010d0103"); hex.EncodeToString(q.PCK.PCEID[:]) != want {
			t.Errorf("%s: PCEID %x, raw DER says %s", name, q.PCK.PCEID, want)
		}
		for i, want := range []string{"Intel SGX PCK Certificate", "Intel SGX PCK Platform CA", "Intel SGX Root CA"} {
			if got := q.PCKChain[i].Subject.CommonName; got != want {
				t.Errorf("%s: certificate %d CN %q, want %q", name, i, got, want)
			}
		}
	}
	// Read with openssl from the cos-113 leaf (see testdata/tdx/README.md).
	q, _ := Parse(readQuote(t, "cos-113-tdx-quote.dat"))
	if q.FMSPC() != "00806f050000" {
		t.Errorf("cos-113 FMSPC %s, openssl shows 00806f050000", q.FMSPC())
	}
}

func TestInspect(t *testing.T) {
	raw := readQuote(t, "cos-113-tdx-quote.dat")
	q, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(q.Inspect())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	// Expected values are byte ranges of the file taken at the offsets the
	// TDX quote v4 layout gives (FACTS.md), not the parser's output.
	want := map[string]string{
		"mrtd":          hex.EncodeToString(raw[184:232]),
		"rtmr0":         hex.EncodeToString(raw[376:424]),
		"rtmr1":         hex.EncodeToString(raw[424:472]),
		"rtmr2":         hex.EncodeToString(raw[472:520]),
		"rtmr3":         hex.EncodeToString(raw[520:568]),
		"report_data":   hex.EncodeToString(raw[568:632]),
		"td_attributes": "0000001000000000",
		"tee_tcb_svn":   "04010700000000000000000000000000",
		"xfam":          "e700060000000000",
		"fmspc":         "00806f050000",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %s", k, m[k], v)
		}
	}
	if m["debug"] != false {
		t.Errorf("debug = %v, want false", m["debug"])
	}
	flags, _ := json.Marshal(m["td_attribute_flags"])
	if string(flags) != `["SEPT_VE_DISABLE"]` {
		t.Errorf("td_attribute_flags = %s, want [\"SEPT_VE_DISABLE\"] (bit 28 of 0x10000000)", flags)
	}
	chain := m["pck_chain"].([]any)
	if len(chain) != 3 || !strings.HasPrefix(chain[0].(map[string]any)["subject"].(string), "CN=Intel SGX PCK Certificate") {
		t.Errorf("pck_chain = %v", chain)
	}
	if m["trailing_bytes"] != float64(8000-636-4299) {
		t.Errorf("trailing_bytes = %v", m["trailing_bytes"])
	}
	for k, v := range m {
		if s, ok := v.(string); ok && s != strings.ToLower(s) && k != "subject" {
			t.Errorf("%s is not lower case: %s", k, s)
		}
	}
}

func TestTDAttributes(t *testing.T) {
	tests := []struct {
		attrs [8]byte
		debug bool
		names string
	}{
		{[8]byte{}, false, ""},
		{[8]byte{0x01}, true, "DEBUG"},
		{[8]byte{0x01, 0, 0, 0x10}, true, "DEBUG,SEPT_VE_DISABLE"},
		{[8]byte{0, 0, 0, 0x40}, false, "PKS"},
		{[8]byte{0, 0, 0, 0xa0}, false, "MIGRATABLE,KL"},
		{[8]byte{0, 0, 0, 0, 0, 0, 0, 0x80}, false, "PERFMON"},
		{[8]byte{0x02, 0, 0, 0, 0x01}, false, "BIT1,BIT32"},
	}
	raw := readQuote(t, "cos-113-tdx-quote.dat")
	for _, tc := range tests {
		mod := bytes.Clone(raw)
		copy(mod[168:176], tc.attrs[:])
		q, err := Parse(mod)
		if err != nil {
			t.Fatal(err)
		}
		if q.Debug() != tc.debug {
			t.Errorf("%x: Debug() = %v", tc.attrs, q.Debug())
		}
		if got := strings.Join(q.Body.TDAttributesValue().Names(), ","); got != tc.names {
			t.Errorf("%x: names %q, want %q", tc.attrs, got, tc.names)
		}
		if q.Inspect().Debug != tc.debug {
			t.Errorf("%x: Inspect().Debug wrong", tc.attrs)
		}
	}
}

func put16(b []byte, off int, v uint16) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint16(b[off:], v)
	return b
}

func put32(b []byte, off int, v uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[off:], v)
	return b
}

func TestParseRejects(t *testing.T) {
	raw := readQuote(t, "cos-113-tdx-quote.dat")
	end := SignedDataOffset + 4299 // end of the signature data
	const certOff = SignedDataOffset + 128
	const authOff = certOff + 6 + 384 + 64
	const innerOff = authOff + 2 + 32
	chainOff := innerOff + 6
	chain := raw[chainOff:end]
	withChain := func(pemChain []byte) []byte {
		b := append(bytes.Clone(raw[:chainOff]), pemChain...)
		b = put32(b, innerOff+2, uint32(len(pemChain)))
		b = put32(b, certOff+2, uint32(len(b)-certOff-6))
		return put32(b, SignedDataLenOff, uint32(len(b)-SignedDataOffset))
	}
	firstCert := chain[:bytes.Index(chain, []byte("-----END CERTIFICATE-----"))+26]

	tests := []struct {
		name   string
		in     []byte
		want   error
		field  string
		offset int
	}{
		{"empty", nil, ErrTruncated, "header", 0},
		{"header cut", raw[:47], ErrTruncated, "header", 0},
		{"body cut", raw[:300], ErrTruncated, "body", 48},
		{"no length", raw[:633], ErrTruncated, "signature data length", 632},
		{"too large", make([]byte, MaxQuoteSize+1), ErrTooLarge, "quote", 0},
		{"version 6", put16(raw, 0, 6), ErrVersion, "header.version", 0},
		{"version 3", put16(raw, 0, 3), ErrVersion, "header.version", 0},
		{"key type", put16(raw, 2, 3), ErrAttestationKey, "header.attestation_key_type", 2},
		{"sgx tee", put32(raw, 4, 0), ErrTEEType, "header.tee_type", 4},
		{"length past end", put32(raw, SignedDataLenOff, uint32(len(raw))), ErrLength, "signature data length", 632},
		{"length huge", put32(raw, SignedDataLenOff, 0xFFFFFFFF), ErrLength, "signature data length", 632},
		{"signature data cut", raw[:SignedDataOffset+100], ErrLength, "signature data length", 632},
		{"length short", put32(raw, SignedDataLenOff, 100), ErrTruncated, "attestation_key", SignedDataOffset + 64},
		{"cert type", put16(raw, certOff, 5), ErrCertDataType, "certification_data.type", certOff},
		{"cert size big", put32(raw, certOff+2, 5000), ErrLength, "certification_data.size", certOff + 2},
		{"cert size small", put32(raw, certOff+2, 4000), ErrLength, "certification_data.size", certOff + 2},
		{"auth size", put16(raw, authOff, 0xFFFF), ErrLength, "qe_auth_data.size", authOff},
		{"inner type", put16(raw, innerOff, 6), ErrCertDataType, "pck_cert_chain.type", innerOff},
		{"inner size", put32(raw, innerOff+2, 10), ErrLength, "pck_cert_chain.size", innerOff + 2},
		{"one cert", withChain(firstCert), ErrPCKChain, "pck_cert_chain", chainOff},
		{"four certs", withChain(append(bytes.Clone(chain), firstCert...)), ErrPCKChain, "pck_cert_chain", chainOff},
		{"garbage after chain", withChain(append(bytes.Clone(chain), "junk"...)), ErrPCKChain, "pck_cert_chain", chainOff},
		{"garbage before chain", withChain(append([]byte("junk\n"), chain...)), ErrPCKChain, "pck_cert_chain", chainOff},
		{"not certificate", withChain(bytes.Replace(bytes.Clone(chain), []byte("BEGIN CERTIFICATE"), []byte("BEGIN CERTIFICATF"), 1)), ErrPCKChain, "pck_cert_chain", chainOff},
		{"bad DER", withChain(bytes.Replace(bytes.Clone(chain), []byte("MII"), []byte("AAA"), 1)), ErrPCKChain, "pck_cert_chain", chainOff},
	}
	// A cache warmed with the good chain changes no rejection, and keeps
	// no chain that failed.
	warm := newMapChains()
	if _, err := ParseWithOptions(raw, ParseOptions{PCKChains: warm}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("accepted: %+v", q.Header)
			}
			if _, werr := ParseWithOptions(tc.in, ParseOptions{PCKChains: warm}); werr == nil || werr.Error() != err.Error() {
				t.Errorf("with a warm chain cache: %v; without: %v", werr, err)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FormatError", err)
			}
			if fe.Field != tc.field || fe.Offset != tc.offset {
				t.Errorf("field %q offset %d, want %q %d (%v)", fe.Field, fe.Offset, tc.field, tc.offset, err)
			}
		})
	}
	if n, _, _ := warm.counts(); n != 1 {
		t.Errorf("%d chains cached, want only the good one", n)
	}
}

func TestParseAccepts(t *testing.T) {
	raw := readQuote(t, "cos-113-tdx-quote.dat")
	end := SignedDataOffset + 4299
	for name, in := range map[string][]byte{
		"exact":           raw[:end],
		"zero padded":     raw,
		"garbage trailer": append(bytes.Clone(raw[:end]), "unsigned trailer"...),
	} {
		q, err := Parse(in)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if q.TrailingBytes != len(in)-end {
			t.Errorf("%s: trailing %d, want %d", name, q.TrailingBytes, len(in)-end)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range realQuotes {
		f.Add(readQuote(f, name))
	}
	f.Add(readQuote(f, realQuotes[0])[:700])
	// TDX 1.5 (v5, body type 3), the same quote as v5 body type 2, and the
	// other kinds of evidence the parser names.
	v5 := readQuote(f, v5Sample)
	f.Add(v5)
	f.Add(v5[:800])
	f.Add(asV5TDX10(readQuote(f, realQuotes[0])))
	f.Add(readFile(f, "dcap-qvl", "sgx_quote"))
	f.Add(readFile(f, "dcap-qvl", "tdx_quote"))
	az := readAzure(f)
	f.Add(az.hcl)
	f.Add(az.hcl[hclTDReportOffset : hclTDReportOffset+TDReportSize])
	f.Add(az.tpmQuote)
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := Parse(raw)
		// A chain cache, missing and then hitting, changes nothing.
		cache := ParseOptions{PCKChains: newMapChains()}
		for _, pass := range []string{"miss", "hit"} {
			cq, cerr := ParseWithOptions(raw, cache)
			if (err == nil) != (cerr == nil) || (err != nil && err.Error() != cerr.Error()) {
				t.Fatalf("with a chain cache (%s): %v; without: %v", pass, cerr, err)
			}
			if err == nil {
				sameChain(t, pass, cq, q)
			}
		}
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FormatError: %v", err, err)
			}
			return
		}
		if !bytes.Equal(q.SignedBytes(), raw[:q.SignedDataOffset-4]) {
			t.Fatal("signed bytes differ from the input")
		}
		wantBody := q.BodyOffset + BodySize
		if q.TDX15() {
			wantBody = q.BodyOffset + BodySizeTDX15
		}
		if q.SignedDataOffset != wantBody+4 || (q.Header.Version == Version5) != (q.BodyOffset == HeaderSize+BodyDescriptorSize) {
			t.Fatalf("v%d body type %d: body at %d, signature data at %d", q.Header.Version, q.BodyType, q.BodyOffset, q.SignedDataOffset)
		}
		if _, err := json.Marshal(q.Inspect()); err != nil {
			t.Fatal(err)
		}
		// Whatever this parser accepts, the library the appraisal hands it to
		// must parse without panicking. The pinned library reads v4 only, and
		// the appraisal hands it nothing else.
		if q.Header.Version != Version4 {
			return
		}
		if _, err := abi.QuoteToProto(raw); err != nil {
			t.Fatalf("accepted a quote go-tdx-guest rejects: %v", err)
		}
	})
}
