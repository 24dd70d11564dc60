package appraisal

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCacheNeverTurnsRejectionIntoAcceptance warms a cache with an
// accepted appraisal, then presents evidence and conditions that must be
// rejected. Each must still be rejected with the cache warm, and rejected
// exactly as without a cache.
func TestCacheNeverTurnsRejectionIntoAcceptance(t *testing.T) {
	p := newTestPKI(t)
	ev := cos113(t)
	rd := bytes.Repeat([]byte{0x42}, 64)
	q := p.mintQuote(t, func(s []byte) { copy(s[568:632], rd) })
	f := p.pcs(t, defaultSpec(p))
	cache := NewCache(0)
	good := TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, ReportData: rd}
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: f, CheckRevocations: true, Cache: cache}
	first, err := TDX(context.Background(), good, opts)
	if err != nil {
		t.Fatal(err)
	}
	chains, col, lib, ccel := cache.Len()
	if chains != 1 || col != 1 || lib != 2 || ccel != 1 {
		t.Fatalf("cache after one appraisal: chains %d collateral %d library %d ccel %d", chains, col, lib, ccel)
	}
	// A hit gives the same result.
	again, err := TDX(context.Background(), good, opts)
	if err != nil || again.TCBStatus != first.TCBStatus || again.Facts != first.Facts || again.FMSPC != first.FMSPC {
		t.Fatalf("cached appraisal differs: %v", err)
	}

	flip := func(off int) []byte { b := bytes.Clone(q); b[off] ^= 1; return b }
	badCCEL := bytes.Clone(ev.ccel)
	badCCEL[len(badCCEL)/3] ^= 1 // inside an event's data or digest
	revoked := defaultSpec(p)
	revoked.revokeLeaf = true
	expired := defaultSpec(p)
	expired.nextUpdate = pinnedNow.Add(time.Hour)

	for _, tc := range []struct {
		name  string
		in    TDXEvidence
		mod   func(*TDXOptions)
		check string
	}{
		{"RTMR byte flipped (same library key)", TDXEvidence{Quote: flip(424), ReportData: rd}, nil, CheckQuoteSignature},
		// The QE report and its signature were verified once for q: one
		// changed byte of either must miss that verdict and fail our own
		// check, not the library's second opinion.
		{"QE report signature byte flipped (same chain)", TDXEvidence{Quote: flip(qeReportOffset + 384 + 5), ReportData: rd}, nil, CheckQuoteSignature},
		{"QE report byte flipped (same chain)", TDXEvidence{Quote: flip(qeReportOffset + 20), ReportData: rd}, nil, CheckQuoteSignature},
		{"REPORTDATA byte flipped", TDXEvidence{Quote: flip(600), ReportData: rd}, nil, CheckQuoteSignature},
		{"other expected REPORTDATA", TDXEvidence{Quote: q, ReportData: make([]byte, 64)}, nil, CheckReportData},
		{"other roots", good, func(o *TDXOptions) { o.TrustedRoots = newTestPKI(t).rootPool() }, CheckPCKChain},
		{"certificates expired", good, func(o *TDXOptions) { o.Now = certNotAfter.Add(time.Hour) }, CheckPCKChain},
		{"PCK revoked by a new CRL", good, func(o *TDXOptions) { o.Collateral = p.pcs(t, revoked) }, CheckPCKChain},
		{"collateral expired", good, func(o *TDXOptions) {
			o.Collateral = p.pcs(t, expired)
			o.Now = pinnedNow.Add(2 * time.Hour)
		}, CheckCollateral},
		{"collateral of the cache expired", good, func(o *TDXOptions) { o.Now = pinnedNow.Add(31 * 24 * time.Hour) }, CheckCollateral},
		{"CCEL byte flipped", TDXEvidence{Quote: q, CCEL: badCCEL, CCELTable: ev.table, ReportData: rd}, nil, CheckCCELReplay},
		{"CCEL of another quote", TDXEvidence{Quote: p.mintQuote(t, func(s []byte) { s[430] ^= 1 }), CCEL: ev.ccel, CCELTable: ev.table}, nil, CheckCCELReplay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			if tc.mod != nil {
				tc.mod(&o)
			}
			_, warm := TDX(context.Background(), tc.in, o)
			o.Cache = nil
			_, cold := TDX(context.Background(), tc.in, o)
			for _, err := range []error{warm, cold} {
				e, ok := AsError(err)
				if !ok || e.Check != tc.check {
					t.Fatalf("warm: %v; cold: %v; want check %s", warm, cold, tc.check)
				}
			}
			if warm.Error() != cold.Error() {
				t.Errorf("warm and cold rejections differ:\n%v\n%v", warm, cold)
			}
		})
	}
	// After all that, the good evidence is still accepted.
	if _, err := TDX(context.Background(), good, opts); err != nil {
		t.Fatal(err)
	}
}

// qeReportOffset is where a v4 quote's QE report starts: header and body
// (632), the signature data length (4), the quote signature and the
// attestation key (64 each), the certification data type and size (6).
const qeReportOffset = 632 + 4 + 64 + 64 + 6

func TestCacheBounded(t *testing.T) {
	c := NewCache(2)
	for i := range 5 {
		put(c, c.library, [32]byte{byte(i)}, libraryEntry{})
	}
	if _, _, n, _ := c.Len(); n != 2 {
		t.Fatalf("%d entries, bound 2", n)
	}
	ev := cos113(t)
	for i := range 4 {
		log := append(bytes.Clone(ev.ccel), bytes.Repeat([]byte{0xff}, i)...)
		if _, err := c.replayCCEL(nil, log); err != nil {
			t.Fatal(err)
		}
		// The cache holds copies: the caller's buffers may be reused.
		clear(log)
	}
	if _, _, _, n := c.Len(); n != 2 {
		t.Fatalf("%d CCEL entries, bound 2", n)
	}
	if e, err := c.replayCCEL(nil, append(bytes.Clone(ev.ccel), 0xff, 0xff, 0xff)); err != nil || !bytes.Equal(e.log[:len(ev.ccel)], ev.ccel) {
		t.Fatalf("cached entry: %v", err)
	}
	var nilCache *Cache
	if a, b, c, d := nilCache.Len(); a+b+c+d != 0 {
		t.Fatal("nil cache has entries")
	}
}

func TestCacheConcurrent(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	ev := cos113(t)
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, defaultSpec(p)), CheckRevocations: true, Cache: NewCache(0)}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table}, opts)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// imaRTMR2 extends start with every entry of a binary IMA list the way a
// CCNP kernel extends RTMR2: SHA-384 of the template data, all 0xFF for a
// violation (zero template hash). It walks the binary layout itself (u32
// PCR, 20-byte hash, u32 name length, name, u32 data length, data; little
// endian) so the expected value does not come from package ima.
func imaRTMR2(t *testing.T, list []byte, start []byte) []byte {
	t.Helper()
	cur := bytes.Clone(start)
	for off := 0; off < len(list); {
		u32 := func() int { v := binary.LittleEndian.Uint32(list[off:]); off += 4; return int(v) }
		pcr := u32()
		hash := list[off : off+20]
		off += 20
		off += u32() // name
		n := u32()
		data := list[off : off+n]
		off += n
		if pcr < 8 || pcr > 15 {
			t.Fatalf("fixture entry on PCR %d", pcr)
		}
		d := sha512.Sum384(data)
		digest := d[:]
		if bytes.Equal(hash, make([]byte, 20)) {
			digest = bytes.Repeat([]byte{0xff}, 48)
		}
		h := sha512.New384()
		h.Write(cur)
		h.Write(digest)
		cur = h.Sum(nil)
	}
	return cur
}

func TestIMAOnRTMR2(t *testing.T) {
	p := newTestPKI(t)
	ev := cos113(t)
	list, err := os.ReadFile(filepath.Join("..", "testdata", "ima", "cgpath.bin"))
	if err != nil {
		t.Fatal(err)
	}
	real := cos113(t).quote
	rtmr2 := imaRTMR2(t, list, real[472:520])
	q := p.mintQuote(t, func(s []byte) { copy(s[472:520], rtmr2) })
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Cache: NewCache(0)}
	in := TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: list}
	res, err := TDX(context.Background(), in, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Checks[len(res.Checks)-1]; c.Name != CheckIMAReplay || !c.OK {
		t.Errorf("last check %+v", c)
	}

	// Without the IMA log, RTMR2 no longer replays from the CCEL alone.
	_, err = TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table}, opts)
	wantCheck(t, err, CheckCCELReplay, CodeRejected, "rtmr2")

	// One altered IMA entry: the template hash no longer matches, so the
	// list is malformed; altering data and hash together fails the replay.
	altered := bytes.Clone(list)
	i := bytes.Index(altered, []byte("/usr/bin"))
	if i < 0 {
		t.Fatal("fixture has no /usr/bin path")
	}
	altered[i+1] = 'x'
	_, err = TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: altered}, opts)
	wantCheck(t, err, CheckIMAReplay, CodeInvalidEvidence, "template hash")

	// An entry dropped from the end: well-formed, but RTMR2 differs.
	ascii, err := os.ReadFile(filepath.Join("..", "testdata", "ima", "cgpath.ascii"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(ascii), "\n"), "\n")
	short := strings.Join(lines[:len(lines)-1], "")
	_, err = TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: []byte(short)}, opts)
	wantCheck(t, err, CheckIMAReplay, CodeRejected, "rtmr2")
	// And the ascii form of the whole list is accepted like the binary one.
	if _, err := TDX(context.Background(), TDXEvidence{Quote: q, CCEL: ev.ccel, CCELTable: ev.table, IMA: ascii}, opts); err != nil {
		t.Errorf("ascii list: %v", err)
	}

	_, err = TDX(context.Background(), TDXEvidence{Quote: q, IMA: list}, opts)
	wantCheck(t, err, CheckIMAReplay, CodeInvalidEvidence, "needs the CCEL")
}

// flipLeafSignature returns quote with one bit of the PCK leaf's signature
// (the last byte of its DER) flipped and re-encoded in place: one byte of
// the quote's PEM differs and the certificate still parses.
func flipLeafSignature(t *testing.T, quote []byte) []byte {
	t.Helper()
	begin := bytes.Index(quote, []byte("-----BEGIN CERTIFICATE-----"))
	blk, rest := pem.Decode(quote[begin:])
	if blk == nil {
		t.Fatal("no leaf PEM block")
	}
	blk.Bytes[len(blk.Bytes)-1] ^= 1
	out := bytes.Clone(quote)
	if n := copy(out[begin:], pem.EncodeToMemory(blk)); begin+n != len(quote)-len(rest) {
		t.Fatal("re-encoded leaf has another length")
	}
	diff := 0
	for i := range quote {
		if quote[i] != out[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("%d bytes differ, want 1", diff)
	}
	return out
}

// TestCachedPCKChainOnlyForIdenticalCertificates shows the parsed PCK
// chain a cache keeps is reused only for a quote carrying byte-identical
// certificates, that a chain one byte off is parsed and judged on its own,
// and that the validity of the cached certificates is still checked at
// the appraisal time.
func TestCachedPCKChainOnlyForIdenticalCertificates(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	cache := NewCache(0)
	opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Cache: cache}
	first, err := TDX(ctx, TDXEvidence{Quote: q}, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Another quote of the same platform (another attestation key and
	// body, the same chain) is given the parsed certificates.
	second, err := TDX(ctx, TDXEvidence{Quote: p.mintQuote(t, func(s []byte) { s[600] ^= 1 })}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if second.Quote.PCKChain[0] != first.Quote.PCKChain[0] {
		t.Fatal("the second quote of the platform parsed its chain again")
	}
	cachedLeaf := first.Quote.PCKChain[0]

	// The minted chain ends in a newline the PEM framing also accepts as
	// a space: the same certificates in other bytes around them.
	if q[len(q)-1] != '\n' {
		t.Fatalf("minted quote ends in %q", q[len(q)-1])
	}
	space := bytes.Clone(q)
	space[len(space)-1] = ' '
	notPEM := bytes.Replace(q, []byte("BEGIN CERTIFICATE"), []byte("BEGIN CERTIFICATF"), 1)

	for _, tc := range []struct {
		name   string
		quote  []byte
		now    time.Time
		check  string // "" for accepted
		code   Code
		cached bool // whether the cached certificates are the quote's
	}{
		{"leaf signature one bit off", flipLeafSignature(t, q), pinnedNow, CheckPCKChain, CodeRejected, false},
		{"PEM block type one byte off", notPEM, pinnedNow, CheckQuoteFormat, CodeInvalidEvidence, false},
		{"certificates expired", q, certNotAfter.Add(time.Second), CheckPCKChain, CodeRejected, true},
		{"certificates not yet valid", q, certNotBefore.Add(-time.Second), CheckPCKChain, CodeRejected, true},
		// Last: accepted, it takes the chain's entry over.
		{"same certificates, one whitespace byte off", space, pinnedNow, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.Now = tc.now
			warm, werr := TDX(ctx, TDXEvidence{Quote: tc.quote}, o)
			o.Cache = nil
			_, cerr := TDX(ctx, TDXEvidence{Quote: tc.quote}, o)
			if (werr == nil) != (cerr == nil) || (werr != nil && werr.Error() != cerr.Error()) {
				t.Fatalf("warm: %v; cold: %v", werr, cerr)
			}
			if tc.check == "" {
				if werr != nil {
					t.Fatalf("rejected: %v", werr)
				}
			} else {
				wantCheck(t, werr, tc.check, tc.code)
			}
			if warm.Quote != nil && (warm.Quote.PCKChain[0] == cachedLeaf) != tc.cached {
				t.Errorf("cached certificates used: %v, want %v", !tc.cached, tc.cached)
			}
		})
	}
	// Rejected chains are not kept, and other bytes of the same
	// certificates share one entry.
	if chains, _, _, _ := cache.Len(); chains != 1 {
		t.Errorf("%d chains cached, want 1", chains)
	}
	// The good quote is still accepted, and its chain cached again.
	again, err := TDX(ctx, TDXEvidence{Quote: q}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := TDX(ctx, TDXEvidence{Quote: q}, opts); err != nil || res.Quote.PCKChain[0] != again.Quote.PCKChain[0] {
		t.Fatalf("good quote after the rejections: %v", err)
	}
}

// TestCRLParseVerdictOnlyForExactBytes: the cache's "this body is a CRL"
// verdict, which picks the root CA's distribution point at every
// attestation, is the parse's verdict for every byte of a CRL changed,
// with the genuine CRL's verdict cached.
func TestCRLParseVerdictOnlyForExactBytes(t *testing.T) {
	p := newTestPKI(t)
	_, good, err := p.pcs(t, defaultSpec(p)).Get(rootCRLURL)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(0)
	for range 2 {
		if err := c.parsesAsCRL(good); err != nil {
			t.Fatalf("genuine CRL: %v", err)
		}
	}
	differ := 0
	for i := range good {
		for _, bit := range []byte{1, 0x80} {
			mut := bytes.Clone(good)
			mut[i] ^= bit
			_, want := x509.ParseRevocationList(mut)
			got := c.parsesAsCRL(mut)
			if (got == nil) != (want == nil) {
				t.Fatalf("byte %d ^ %#x: cache says %v, parse says %v", i, bit, got, want)
			}
			if want != nil {
				differ++
			}
		}
	}
	for _, mut := range [][]byte{good[:len(good)-1], append(bytes.Clone(good), 0), {}} {
		_, want := x509.ParseRevocationList(mut)
		if got := c.parsesAsCRL(mut); (got == nil) != (want == nil) {
			t.Errorf("%d-byte body: cache says %v, parse says %v", len(mut), got, want)
		}
	}
	t.Logf("%d of %d one-bit changes do not parse; every verdict was the parse's", differ, 2*len(good))
}
