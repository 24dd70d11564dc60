package appraisal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// pinnedNow lies inside the validity of every certificate in the cos-113
// quote's chain (PCK leaf 2024-07-02..2031-07-02, intermediate
// 2018-05-21..2033-05-21, root 2018-05-21..2049-12-31, read with openssl).
var pinnedNow = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "tdx", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type realEvidence struct{ quote, ccel, table []byte }

func cos113(t testing.TB) realEvidence {
	return realEvidence{
		quote: readTestdata(t, "cos-113-tdx-quote.dat"),
		ccel:  readTestdata(t, "ccel_data.dat"),
		table: readTestdata(t, "ccel_table.dat"),
	}
}

func wantCheck(t *testing.T, err error, check string, code Code, msgParts ...string) {
	t.Helper()
	e, ok := AsError(err)
	if !ok {
		t.Fatalf("error %v is not an *appraisal.Error", err)
	}
	if e.Check != check || e.Code != code {
		t.Fatalf("failed check %s (%v), want %s (%v): %v", e.Check, e.Code, check, code, err)
	}
	for _, p := range msgParts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestRealQuoteOffline(t *testing.T) {
	ev := cos113(t)
	res, err := TDX(context.Background(), TDXEvidence{Quote: ev.quote, CCEL: ev.ccel, CCELTable: ev.table}, TDXOptions{Now: pinnedNow})
	if err != nil {
		t.Fatal(err)
	}
	if res.Facts == nil || res.FMSPC != "00806f050000" || res.Debug || res.TCBStatus != "" {
		t.Errorf("result: facts %v fmspc %s debug %v tcb %q", res.Facts != nil, res.FMSPC, res.Debug, res.TCBStatus)
	}
	got := map[string]Check{}
	for _, c := range res.Checks {
		got[c.Name] = c
	}
	for name, skipped := range map[string]bool{
		CheckQuoteFormat: false, CheckPCKChain: false, CheckQuoteSignature: false,
		CheckCollateral: true, CheckTCBStatus: true, CheckDebug: false, CheckReportData: true, CheckCCELReplay: false,
	} {
		c, ok := got[name]
		if !ok || c.Skipped != skipped || c.OK == skipped {
			t.Errorf("check %s: %+v, want skipped=%v", name, c, skipped)
		}
	}
	if _, failed := res.Failed(); failed {
		t.Error("Failed() reports a failure")
	}

	// The SPR quote has no CCEL; its chain verifies at the same time.
	if _, err := TDX(context.Background(), TDXEvidence{Quote: readTestdata(t, "tdx_prod_quote_SPR_E4.dat")}, TDXOptions{Now: pinnedNow}); err != nil {
		t.Errorf("SPR quote: %v", err)
	}
}

func TestRealQuoteRejections(t *testing.T) {
	ev := cos113(t)
	flip := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		b[off] ^= 0x01
		return b
	}
	tests := []struct {
		name  string
		ev    TDXEvidence
		opts  TDXOptions
		check string
		code  Code
		parts []string
	}{
		{"garbage", TDXEvidence{Quote: []byte("not a quote")}, TDXOptions{}, CheckQuoteFormat, CodeInvalidEvidence, nil},
		{"truncated", TDXEvidence{Quote: ev.quote[:1000]}, TDXOptions{}, CheckQuoteFormat, CodeInvalidEvidence, []string{"offset"}},
		{"RTMR1 flipped", TDXEvidence{Quote: flip(ev.quote, 424 /* RTMR1 @48+376 */), CCEL: ev.ccel, CCELTable: ev.table}, TDXOptions{Now: pinnedNow}, CheckQuoteSignature, CodeRejected, []string{"quote signature"}},
		{"MRTD flipped", TDXEvidence{Quote: flip(ev.quote, 184)}, TDXOptions{Now: pinnedNow}, CheckQuoteSignature, CodeRejected, nil},
		{"header user data flipped", TDXEvidence{Quote: flip(ev.quote, 40)}, TDXOptions{Now: pinnedNow}, CheckQuoteSignature, CodeRejected, nil},
		{"QE report flipped", TDXEvidence{Quote: flip(ev.quote, tdxquote.SignedDataOffset+128+6+100)}, TDXOptions{Now: pinnedNow}, CheckQuoteSignature, CodeRejected, []string{"QE report"}},
		{"QE auth data flipped", TDXEvidence{Quote: flip(ev.quote, tdxquote.SignedDataOffset+128+6+384+64+2+5)}, TDXOptions{Now: pinnedNow}, CheckQuoteSignature, CodeRejected, []string{"bind"}},
		{"signature flipped", TDXEvidence{Quote: flip(ev.quote, tdxquote.SignedDataOffset+10)}, TDXOptions{Now: pinnedNow}, CheckQuoteSignature, CodeRejected, nil},
		{"another root", TDXEvidence{Quote: ev.quote}, TDXOptions{Now: pinnedNow, TrustedRoots: newTestPKI(t).rootPool()}, CheckPCKChain, CodeRejected, []string{"trusted root"}},
		{"after PCK expiry", TDXEvidence{Quote: ev.quote}, TDXOptions{Now: time.Date(2031, 7, 3, 0, 0, 0, 0, time.UTC)}, CheckPCKChain, CodeRejected, nil},
		{"before PCK validity", TDXEvidence{Quote: ev.quote}, TDXOptions{Now: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)}, CheckPCKChain, CodeRejected, nil},
		{"wrong REPORTDATA", TDXEvidence{Quote: ev.quote, ReportData: bytes.Repeat([]byte{0xAB}, 64)}, TDXOptions{Now: pinnedNow}, CheckReportData, CodeRejected, []string{"REPORTDATA"}},
		{"short REPORTDATA", TDXEvidence{Quote: ev.quote, ReportData: ev.quote[568:600]}, TDXOptions{Now: pinnedNow}, CheckReportData, CodeRejected, nil},
		{"CCEL digest flipped", TDXEvidence{Quote: ev.quote, CCEL: flipCCELDigest(t, ev.ccel), CCELTable: ev.table}, TDXOptions{Now: pinnedNow}, CheckCCELReplay, CodeRejected, []string{"rtmr", "event"}},
		{"CCEL garbage", TDXEvidence{Quote: ev.quote, CCEL: []byte("garbage"), CCELTable: ev.table}, TDXOptions{Now: pinnedNow}, CheckCCELReplay, CodeInvalidEvidence, nil},
		{"unknown accepted status", TDXEvidence{Quote: ev.quote}, TDXOptions{AcceptedTCBStatuses: []string{"Fine"}}, CheckTCBStatus, CodeConfig, []string{"Fine"}},
		{"revocations without getter", TDXEvidence{Quote: ev.quote}, TDXOptions{CheckRevocations: true}, CheckCollateral, CodeConfig, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := TDX(context.Background(), tc.ev, tc.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			wantCheck(t, err, tc.check, tc.code, tc.parts...)
			t.Log(err)
			if res == nil {
				t.Fatal("nil result")
			}
			if tc.code != CodeConfig {
				if c, ok := res.Failed(); !ok || c.Name != tc.check {
					t.Errorf("Failed() = %+v, %v", c, ok)
				}
			}
		})
	}
}

// flipCCELDigest flips one byte of the SHA-384 digest of the first event
// that extends RTMR1 (CC MR index 2), found by walking the log's structure
// here rather than with package eventlog.
func flipCCELDigest(t *testing.T, log []byte) []byte {
	t.Helper()
	out := bytes.Clone(log)
	// Spec ID event (TCG_PCClientPCREvent, SHA-1 format): 32 bytes then data.
	le32 := func(o int) int { return int(out[o]) | int(out[o+1])<<8 | int(out[o+2])<<16 | int(out[o+3])<<24 }
	off := 32 + le32(28)
	for off+12 < len(out) {
		mr, count := le32(off), le32(off+8)
		p := off + 12
		var sha384 int = -1
		for range count {
			alg := int(out[p]) | int(out[p+1])<<8
			p += 2
			size := map[int]int{0x04: 20, 0x0B: 32, 0x0C: 48, 0x0D: 64}[alg]
			if alg == 0x0C {
				sha384 = p
			}
			p += size
		}
		if mr == 2 && sha384 >= 0 {
			out[sha384+7] ^= 0xFF
			return out
		}
		off = p + 4 + le32(p)
	}
	t.Fatal("no RTMR1 event in the CCEL")
	return nil
}

func TestDebugBitOnRealQuoteIsSigned(t *testing.T) {
	// The real quote cannot be re-signed, so setting DEBUG in it must trip
	// the signature; minted quotes exercise the debug check itself in
	// TestMintedDebug.
	ev := cos113(t)
	q := bytes.Clone(ev.quote)
	q[168] |= 1
	_, err := TDX(context.Background(), TDXEvidence{Quote: q}, TDXOptions{Now: pinnedNow})
	// The flipped bit is signed, so the signature check stops it first.
	wantCheck(t, err, CheckQuoteSignature, CodeRejected)
}

func TestErrorKinds(t *testing.T) {
	e := &Error{Check: CheckCollateral, Code: CodeUnavailable, Err: errors.New("boom")}
	var wrapped error = e
	got, ok := AsError(errors.Join(errors.New("x"), wrapped))
	if !ok || got.Code != CodeUnavailable || got.Code.String() != "unavailable" {
		t.Errorf("AsError: %v %v", got, ok)
	}
	if !strings.Contains(e.Error(), "collateral check failed: boom") {
		t.Errorf("Error() = %q", e.Error())
	}
}
