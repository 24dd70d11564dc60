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
)

// v5Sample is go-tdx-guest's TDX 1.5 quote (see testdata/tdx/README.md).
const v5Sample = "quote_v5_sample.dat"

func readFile(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hclTDReportOffset is where the TDREPORT sits in an Azure HCL report: after
// the 32-byte "HCLA" header.
const hclTDReportOffset = 32

type azureEvidence struct{ hcl, tpmQuote, tdQuote []byte }

// readAzure reads the real Azure TDX CVM evidence (byte arrays as JSON
// lists of numbers).
func readAzure(t testing.TB) azureEvidence {
	t.Helper()
	var doc struct {
		TPMQuote struct {
			Message []int `json:"message"`
		} `json:"tpm_quote"`
		HCLReport []int `json:"hcl_report"`
		TDQuote   []int `json:"td_quote"`
	}
	if err := json.Unmarshal(readFile(t, "trustee-az-tdx-vtpm", "evidence-v0.json"), &doc); err != nil {
		t.Fatal(err)
	}
	bs := func(v []int) []byte {
		b := make([]byte, len(v))
		for i, x := range v {
			b[i] = byte(x)
		}
		return b
	}
	return azureEvidence{hcl: bs(doc.HCLReport), tpmQuote: bs(doc.TPMQuote.Message), tdQuote: bs(doc.TDQuote)}
}

// asV5TDX10 rewrites a v4 quote as v5 with body type 2: the same body after
// a body descriptor. The signature no longer verifies; the layout parses.
func asV5TDX10(v4 []byte) []byte {
	out := bytes.Clone(v4[:HeaderSize])
	binary.LittleEndian.PutUint16(out, Version5)
	out = binary.LittleEndian.AppendUint16(out, BodyTypeTDX10)
	out = binary.LittleEndian.AppendUint32(out, BodySize)
	return append(out, v4[HeaderSize:]...)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseV5TDX15 parses the real TDX 1.5 quote: the values are those at
// the offsets Intel's quote format gives (header 48, body descriptor 6,
// TDX 1.5 body 648), read from the file independently of this parser.
func TestParseV5TDX15(t *testing.T) {
	raw := readQuote(t, v5Sample)
	q, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if q.Header.Version != Version5 || q.BodyType != BodyTypeTDX15 || !q.TDX15() {
		t.Fatalf("version %d body type %d", q.Header.Version, q.BodyType)
	}
	if q.BodyOffset != 54 || q.SignedDataOffset != 706 || q.SignedDataSize != 4300 || q.TrailingBytes != 0 {
		t.Errorf("body at %d, signature data at %d (%d bytes), %d trailing", q.BodyOffset, q.SignedDataOffset, q.SignedDataSize, q.TrailingBytes)
	}
	if !bytes.Equal(q.SignedBytes(), raw[:702]) {
		t.Error("signed bytes are not header || body descriptor || body")
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"tee_tcb_svn", q.Body.TEETCBSVN[:], mustHex(t, "0b010400000000000000000000000000")},
		{"tee_tcb_svn2", q.Body.TEETCBSVN2[:], mustHex(t, "0d010400000000000000000000000000")},
		{"mrservicetd", q.Body.MRServiceTD[:], make([]byte, 48)},
		{"mrtd", q.Body.MRTD[:], mustHex(t, "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876")},
		{"report_data", q.Body.ReportData[:], mustHex(t, "945eaacf5abc1f719d8666a942fda03d1edcb4490277396093dc5a5289ab9f1e094aed63060cd4a4933a4dd537ed1255c9c79ecb3ed82cd1b486233e31c25c3a")},
		{"fmspc", q.PCK.FMSPC[:], mustHex(t, "90c06f000000")},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
		}
	}
	in := q.Inspect()
	if in.BodyType != 3 || in.TEETCBSVN2 != "0d010400000000000000000000000000" || in.MRServiceTD != strings.Repeat("0", 96) {
		t.Errorf("inspect: body type %d, tee_tcb_svn2 %q, mrservicetd %q", in.BodyType, in.TEETCBSVN2, in.MRServiceTD)
	}
	// A v4 quote shows neither TDX 1.5 field.
	v4, err := Parse(readQuote(t, realQuotes[0]))
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := json.Marshal(v4.Inspect()); bytes.Contains(j, []byte("tee_tcb_svn2")) || bytes.Contains(j, []byte("mrservicetd")) || v4.BodyType != BodyTypeTDX10 {
		t.Errorf("v4 inspection shows TDX 1.5 fields: %s", j)
	}
}

// TestParseV5TDX10 checks body type 2: the v4 body after a descriptor,
// every field where the v4 quote has it.
func TestParseV5TDX10(t *testing.T) {
	v4raw := readQuote(t, realQuotes[0])
	v4, err := Parse(v4raw)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(asV5TDX10(v4raw))
	if err != nil {
		t.Fatal(err)
	}
	if q.TDX15() || q.BodyType != BodyTypeTDX10 || q.BodyOffset != 54 {
		t.Fatalf("body type %d at %d", q.BodyType, q.BodyOffset)
	}
	if q.Body != v4.Body || q.Signature != v4.Signature || !bytes.Equal(q.PCKChainPEM, v4.PCKChainPEM) || q.TrailingBytes != v4.TrailingBytes {
		t.Error("v5 body type 2 parses differently from the same v4 quote")
	}
}

// TestParseV5Rejects changes one field of the real v5 quote at a time: each
// is refused naming the field and its offset.
func TestParseV5Rejects(t *testing.T) {
	raw := readQuote(t, v5Sample)
	tests := []struct {
		name   string
		in     []byte
		want   error
		field  string
		offset int
	}{
		{"body type 4", put16(raw, 48, 4), ErrBodyType, "body_descriptor.type", 48},
		{"body type 1 (SGX report)", put16(raw, 48, 1), ErrBodyType, "body_descriptor.type", 48},
		{"body type 2 with the TDX 1.5 size", put16(raw, 48, BodyTypeTDX10), ErrLength, "body_descriptor.size", 50},
		{"body size 649", put32(raw, 50, BodySizeTDX15+1), ErrLength, "body_descriptor.size", 50},
		{"body size 584", put32(raw, 50, BodySize), ErrLength, "body_descriptor.size", 50},
		{"descriptor cut", raw[:52], ErrTruncated, "body_descriptor.size", 50},
		{"body cut", raw[:54+600], ErrTruncated, "body", 54},
		{"no length", raw[:703], ErrTruncated, "signature data length", 702},
		{"length past end", put32(raw, 702, 4301), ErrLength, "signature data length", 702},
		{"cert type", put16(raw, 706+128, 5), ErrCertDataType, "certification_data.type", 706 + 128},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Offset != tc.offset {
				t.Errorf("%v: want field %q at %d", err, tc.field, tc.offset)
			}
		})
	}
}

// TestParseNamesWrongEvidence gives the parser real evidence of other
// kinds: each gets one line saying what it looks like.
func TestParseNamesWrongEvidence(t *testing.T) {
	az := readAzure(t)
	sgx := readFile(t, "dcap-qvl", "sgx_quote")
	tdreport := az.hcl[hclTDReportOffset : hclTDReportOffset+TDReportSize]
	tpm2b := binary.BigEndian.AppendUint16(nil, uint16(len(az.tpmQuote)))
	tpm2b = append(tpm2b, az.tpmQuote...)
	for _, tc := range []struct {
		name  string
		in    []byte
		want  error
		parts []string
	}{
		{"SGX quote v3", sgx, ErrTEEType, []string{"SGX quote, not TDX", "version 3"}},
		{"SGX quote as v4", put16(sgx, 0, 4), ErrTEEType, []string{"SGX quote, not TDX", "version 4"}},
		{"TDREPORT", tdreport, ErrWrongEvidence, []string{"TDREPORT", "1024 bytes", "a quote is needed"}},
		{"TPM quote (TPMS_ATTEST)", az.tpmQuote, ErrWrongEvidence, []string{"TPM quote", "TPMS_ATTEST"}},
		{"TPM quote (TPM2B_ATTEST)", tpm2b, ErrWrongEvidence, []string{"TPM quote", "TPMS_ATTEST"}},
		{"Azure HCL report", az.hcl, ErrWrongEvidence, []string{"Azure HCL report", "TD quote"}},
		{"Azure evidence JSON", readFile(t, "trustee-az-tdx-vtpm", "evidence-v0.json"), ErrWrongEvidence, []string{"JSON text"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("message is not one line: %q", msg)
			}
			for _, p := range tc.parts {
				if !strings.Contains(msg, p) {
					t.Errorf("%q does not say %q", msg, p)
				}
			}
		})
	}
	// The TD quote beside them is a quote.
	if _, err := Parse(az.tdQuote); err != nil {
		t.Errorf("the Azure TD quote: %v", err)
	}
}
