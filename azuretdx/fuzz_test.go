package azuretdx_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
)

// FuzzParseHCLReport: any bytes parse or fail with an error, never a panic;
// what parses has a TDX report and runtime data inside the input.
func FuzzParseHCLReport(f *testing.F) {
	real := realEvidence(f).HCLReport
	f.Add(real)
	f.Add(real[:runtimeDataOffset])
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := azuretdx.ParseHCLReport(raw)
		if err != nil {
			return
		}
		if r.TDReport == nil || len(r.RuntimeData) == 0 || len(r.RuntimeData) > len(raw) || r.TDReport.ReportType[0] != 0x81 {
			t.Fatalf("accepted report: %d bytes runtime data of %d, TD report %v", len(r.RuntimeData), len(raw), r.TDReport != nil)
		}
		if !bytes.Equal(raw[runtimeDataOffset:runtimeDataOffset+len(r.RuntimeData)], r.RuntimeData) {
			t.Fatal("runtime data is not the input's bytes after the request data")
		}
	})
}

// FuzzParseRuntimeData: the JSON reader never panics, and an accepted
// document always yields an RSA key within the bounds.
func FuzzParseRuntimeData(f *testing.F) {
	hcl, err := azuretdx.ParseHCLReport(realEvidence(f).HCLReport)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hcl.RuntimeData)
	f.Add([]byte(`{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"AA"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd, err := azuretdx.ParseRuntimeData(b)
		if err != nil {
			return
		}
		if bits := rd.AK.N.BitLen(); bits < 2041 || bits > 4096 || rd.AK.E < 3 || rd.AK.E%2 == 0 {
			t.Fatalf("accepted AK RSA-%d e=%d", bits, rd.AK.E)
		}
	})
}

// FuzzParseEvidence: trustee's JSON in either layout; never a panic, and an
// accepted document has every part within its bound.
func FuzzParseEvidence(f *testing.F) {
	v0 := testdata(f, "trustee-az-tdx-vtpm", "evidence-v0.json")
	f.Add(v0)
	ev, err := azuretdx.ParseEvidence(v0)
	if err != nil {
		f.Fatal(err)
	}
	v1, err := ev.MarshalV1()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v1)
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := azuretdx.ParseEvidence(b)
		if err != nil {
			return
		}
		if len(ev.HCLReport) == 0 || len(ev.TDQuote) == 0 || len(ev.TPMQuote.Message) == 0 || len(ev.TPMQuote.Signature) == 0 ||
			len(ev.TPMQuote.PCRs) == 0 || len(ev.TPMQuote.PCRs) > azuretdx.MaxPCRs {
			t.Fatal("accepted evidence with a part missing or over its bound")
		}
	})
}

// FuzzVerify runs the whole chain on mutated HCL reports and vTPM quotes
// (the TD quote stays the real one): it never panics, fails with an
// *azuretdx.Error, and accepts nothing whose runtime data does not hash to
// the real quote's REPORTDATA.
func FuzzVerify(f *testing.F) {
	ev := realEvidence(f)
	pcrs := bytes.Join(ev.TPMQuote.PCRs, nil)
	f.Add(ev.HCLReport, ev.TPMQuote.Message, ev.TPMQuote.Signature, pcrs)
	f.Fuzz(func(t *testing.T, hcl, msg, sig, pcrBytes []byte) {
		in := &azuretdx.Evidence{HCLReport: hcl, TDQuote: ev.TDQuote, TPMQuote: azuretdx.TPMQuote{Message: msg, Signature: sig}}
		for len(pcrBytes) >= 32 {
			in.TPMQuote.PCRs, pcrBytes = append(in.TPMQuote.PCRs, pcrBytes[:32]), pcrBytes[32:]
		}
		res, err := azuretdx.Verify(context.Background(), in, challenge, opts)
		if res == nil {
			t.Fatal("nil result")
		}
		if err != nil {
			var e *azuretdx.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *azuretdx.Error: %v", err, err)
			}
			return
		}
		size := binary.LittleEndian.Uint32(hcl[runtimeDataOffset-4:])
		sum := sha256.Sum256(hcl[runtimeDataOffset : runtimeDataOffset+int(size)])
		if !bytes.Equal(sum[:], res.TDQuote.Body.ReportData[:32]) {
			t.Fatal("accepted runtime data the TD quote does not bind")
		}
	})
}
