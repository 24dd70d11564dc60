package tdx

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-configfs-tsm/report"
)

// fakeQuoter is a faketsm report subsystem whose outblob is a real TDX quote
// with the written inblob spliced in at REPORTDATA (offset 568 of a v4
// quote, per the Intel DCAP quote layout), as the QE would produce it.
type fakeQuoter struct {
	quote []byte
	// splice puts the inblob into the quote; false returns the quote as is.
	splice bool
	// races says, per outblob read (0-based), whether another writer bumps
	// the entry's generation while we read.
	races func(n int) bool
	// fail makes every outblob read fail.
	fail error

	mu      sync.Mutex
	reads   int
	inblobs [][]byte
}

func (f *fakeQuoter) client() *faketsm.Client {
	rs := faketsm.Report611(0)
	base := rs.ReadAttr
	rs.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		if attr != "outblob" {
			return base(e, attr)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		n := f.reads
		f.reads++
		if f.fail != nil {
			return nil, f.fail
		}
		in := bytes.Clone(e.InAttrs["inblob"].Value)
		f.inblobs = append(f.inblobs, in)
		if f.races != nil && f.races(n) {
			// Another process writes to our entry between our write and
			// read: the kernel bumps the generation.
			e.WriteGeneration++
		}
		q := bytes.Clone(f.quote)
		if f.splice {
			copy(q[568:632], in)
		}
		return q, nil
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": rs}}
}

func TestReport(t *testing.T) {
	real := readFile(t, cosQuoteFile)
	nonce := []byte("server nonce 0123456789abcdef!!")
	user := []byte("hello digest")
	// Expected REPORTDATA computed directly, not through cctrusted.ReportData.
	want := sha512.Sum512(append(append([]byte{}, nonce...), user...))

	fq := &fakeQuoter{quote: real, splice: true}
	p := mustOpen(t, Options{TSM: fq.client()})
	rep, err := p.Report(context.Background(), nonce, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(fq.inblobs) != 1 || !bytes.Equal(fq.inblobs[0], want[:]) {
		t.Fatalf("inblob written = %x, want SHA-512(nonce||userData) = %x", fq.inblobs, want)
	}
	if rep.TEE != cctrusted.TEETDX || !bytes.Equal(rep.ReportData, want[:]) {
		t.Fatalf("report TEE %q data %x, want tdx %x", rep.TEE, rep.ReportData, want)
	}
	if got := quoteBody(t, rep.Quote).GetReportData(); !bytes.Equal(got, want[:]) {
		t.Fatalf("go-tdx-guest reads REPORTDATA %x from the returned quote, want %x", got, want)
	}
	if !bytes.Equal(rep.Quote[:568], real[:568]) || !bytes.Equal(rep.Quote[632:], real[632:]) {
		t.Fatal("returned quote differs from the device's outside REPORTDATA")
	}
}

func TestReportErrors(t *testing.T) {
	real := readFile(t, cosQuoteFile)
	tests := []struct {
		name      string
		fq        *fakeQuoter
		wantErr   string
		wantReads int
		wantGen   bool
	}{
		{
			name:      "quote for another REPORTDATA",
			fq:        &fakeQuoter{quote: real},
			wantErr:   "does not match the requested",
			wantReads: 1,
		},
		{
			name:      "generation race on every attempt",
			fq:        &fakeQuoter{quote: real, splice: true, races: func(int) bool { return true }},
			wantErr:   "changed under us on each of 3 attempts",
			wantReads: 3,
			wantGen:   true,
		},
		{
			name:      "provider error",
			fq:        &fakeQuoter{quote: real, fail: errors.New("quote service unreachable")},
			wantErr:   "quote service unreachable",
			wantReads: 1,
		},
		{
			name:      "not a TDX quote",
			fq:        &fakeQuoter{quote: append([]byte{4, 0, 2, 0, 0, 0, 0, 0}, real[8:]...), splice: true},
			wantErr:   "TEE type is 0x0",
			wantReads: 1,
		},
		{
			name:      "truncated quote",
			fq:        &fakeQuoter{quote: real[:600]},
			wantErr:   "truncated before REPORTDATA",
			wantReads: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustOpen(t, Options{TSM: tc.fq.client()})
			_, err := p.Report(context.Background(), []byte("n"), nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Report error = %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.fq.reads != tc.wantReads {
				t.Errorf("outblob read %d times, want %d", tc.fq.reads, tc.wantReads)
			}
			var ge *report.GenerationErr
			if got := errors.As(err, &ge); got != tc.wantGen {
				t.Errorf("error carries a GenerationErr: %v, want %v (%v)", got, tc.wantGen, err)
			}
		})
	}
}

// A single race is retried on a fresh entry, and the retry's quote is the
// one returned.
func TestReportRetriesGenerationRace(t *testing.T) {
	fq := &fakeQuoter{quote: readFile(t, cosQuoteFile), splice: true, races: func(n int) bool { return n == 0 }}
	p := mustOpen(t, Options{TSM: fq.client()})
	rep, err := p.Report(context.Background(), []byte("nonce"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if fq.reads != 2 {
		t.Fatalf("outblob read %d times, want 2 (one race, one retry)", fq.reads)
	}
	if err := cctrusted.CheckReportData(rep.ReportData, []byte("nonce"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestReportWithoutTSM(t *testing.T) {
	p := mustOpen(t, Options{Device: &fakeDevice{}})
	_, err := p.Report(context.Background(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "sys/kernel/config/tsm/report") {
		t.Fatalf("Report error = %v, want it to name the configfs-tsm path", err)
	}
}

func TestReportCanceled(t *testing.T) {
	fq := &fakeQuoter{quote: readFile(t, cosQuoteFile), splice: true}
	p := mustOpen(t, Options{TSM: fq.client()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Report(ctx, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Report error = %v, want context.Canceled", err)
	}
	if fq.reads != 0 {
		t.Fatalf("canceled Report still read %d quotes", fq.reads)
	}
}

// v5 quotes are built here from the v4 body: a v5 quote inserts a body type
// (u16) and size (u32) after the 48-byte header.
func v5Quote(v4 []byte, bodyType uint16, bodySize uint32) []byte {
	q := append([]byte{}, v4[:48]...)
	binary.LittleEndian.PutUint16(q[0:], 5)
	q = binary.LittleEndian.AppendUint16(q, bodyType)
	q = binary.LittleEndian.AppendUint32(q, bodySize)
	return append(q, v4[48:]...)
}

func TestQuoteReportData(t *testing.T) {
	cos := readFile(t, cosQuoteFile)
	spr := readFile(t, sprQuoteFile)
	tests := []struct {
		name    string
		quote   []byte
		want    []byte // nil: error
		wantErr string
	}{
		{"cos v4", cos, quoteBody(t, cos).GetReportData(), ""},
		{"spr v4", spr, quoteBody(t, spr).GetReportData(), ""},
		{"exact v4 header and body", cos[:632], quoteBody(t, cos).GetReportData(), ""},
		{"v5 td1.0", v5Quote(cos, 2, 584), quoteBody(t, cos).GetReportData(), ""},
		{"v5 td1.5", v5Quote(cos, 3, 648), quoteBody(t, cos).GetReportData(), ""},
		{"empty", nil, nil, "shorter than its 48-byte header"},
		{"header only", cos[:48], nil, "truncated before REPORTDATA"},
		{"v4 one byte short", cos[:631], nil, "truncated before REPORTDATA"},
		{"version 3", append([]byte{3, 0}, cos[2:]...), nil, "version 3 is not supported"},
		{"sgx tee type", append(append([]byte{}, cos[:4]...), append([]byte{0, 0, 0, 0}, cos[8:]...)...), nil, "TEE type"},
		{"v5 body type 1 (sgx)", v5Quote(cos, 1, 584), nil, "not a TD report"},
		{"v5 body too small", v5Quote(cos, 2, 100), nil, "does not fit"},
		{"v5 body larger than quote", v5Quote(cos[:632], 2, 4000), nil, "does not fit"},
		{"v5 without descriptor", v5Quote(cos, 2, 584)[:50], nil, "truncated before its body descriptor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := quoteReportData(tc.quote)
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("REPORTDATA = %x, want %x", got, tc.want)
			}
		})
	}
}

func FuzzQuoteReportData(f *testing.F) {
	cos := readFile(f, cosQuoteFile)
	f.Add(cos)
	f.Add(readFile(f, sprQuoteFile))
	f.Add(v5Quote(cos, 3, 648))
	f.Add(cos[:100])
	f.Fuzz(func(t *testing.T, q []byte) {
		rd, err := quoteReportData(q)
		if err != nil {
			return
		}
		if len(rd) != 64 || cap(rd) != 64 {
			t.Fatalf("REPORTDATA len %d cap %d", len(rd), cap(rd))
		}
	})
}
