package tdx

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// fakeDevice builds TDREPORTs at the offsets of the TDX module ABI, written
// here as literals (REPORTDATA 0x80, MRTD 0x210, RTMR0..3 0x2D0 + 48*i) so a
// wrong constant in the code under test fails.
type fakeDevice struct {
	mrtd  []byte
	rtmrs [][]byte
	// stale returns a report for other REPORTDATA.
	stale bool
	err   error
	calls int
}

func (d *fakeDevice) Report(_ context.Context, rd [64]byte) ([1024]byte, error) {
	d.calls++
	var rep [1024]byte
	if d.err != nil {
		return rep, d.err
	}
	rep[0] = 0x81 // REPORTTYPE.TYPE: TDX
	if !d.stale {
		copy(rep[0x80:], rd[:])
	}
	copy(rep[0x210:], d.mrtd)
	for i, r := range d.rtmrs {
		copy(rep[0x2D0+48*i:], r)
	}
	return rep, nil
}

// cosDevice reports the registers of the real COS 113 quote, as read by
// go-tdx-guest.
func cosDevice(t testing.TB) *fakeDevice {
	body := quoteBody(t, readFile(t, cosQuoteFile))
	return &fakeDevice{mrtd: body.GetMrTd(), rtmrs: body.GetRtmrs()}
}

func TestMeasurements(t *testing.T) {
	dev := cosDevice(t)
	p := mustOpen(t, Options{Device: dev})
	mrtd, rtmr, err := p.Measurements(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mrtd[:], dev.mrtd) {
		t.Errorf("MRTD = %x, want %x", mrtd, dev.mrtd)
	}
	for i := range rtmr {
		if !bytes.Equal(rtmr[i][:], dev.rtmrs[i]) {
			t.Errorf("RTMR%d = %x, want %x", i, rtmr[i], dev.rtmrs[i])
		}
	}
}

func TestMeasurement(t *testing.T) {
	dev := cosDevice(t)
	p := mustOpen(t, Options{Device: dev})
	rtmr := func(i int) []byte { return dev.rtmrs[i] }
	tests := []struct {
		imr  cctrusted.IMR
		want []byte
	}{
		{cctrusted.MRTD, dev.mrtd},
		{cctrusted.RTMR(0).IMR(), rtmr(0)},
		{cctrusted.RTMR(3).IMR(), rtmr(3)},
		{cctrusted.CCMR(0).IMR(), dev.mrtd},
		{cctrusted.CCMR(1).IMR(), rtmr(0)},
		{cctrusted.CCMR(4).IMR(), rtmr(3)},
		{cctrusted.PCR(0).IMR(), dev.mrtd},
		{cctrusted.PCR(7).IMR(), rtmr(0)},
		{cctrusted.PCR(4).IMR(), rtmr(1)},
		{cctrusted.PCR(10).IMR(), rtmr(2)},
	}
	for _, tc := range tests {
		t.Run(tc.imr.String(), func(t *testing.T) {
			d, err := p.Measurement(context.Background(), tc.imr, cctrusted.AlgSHA384)
			if err != nil {
				t.Fatal(err)
			}
			if d.Alg != cctrusted.AlgSHA384 || !bytes.Equal(d.Value, tc.want) {
				t.Fatalf("%v = %v, want sha384:%x", tc.imr, d, tc.want)
			}
		})
	}
}

func TestMeasurementErrors(t *testing.T) {
	tests := []struct {
		name    string
		dev     *fakeDevice
		imr     cctrusted.IMR
		alg     cctrusted.Algorithm
		wantErr string
		calls   int
	}{
		{"sha256 bank", &fakeDevice{}, cctrusted.RTMR(0).IMR(), cctrusted.AlgSHA256, "sha256", 0},
		{"sha1 bank", &fakeDevice{}, cctrusted.MRTD, cctrusted.AlgSHA1, "sha1", 0},
		{"rtmr4", &fakeDevice{}, cctrusted.IMR{Space: cctrusted.SpaceRTMR, Index: 4}, cctrusted.AlgSHA384, "rtmr4", 0},
		{"pcr23", &fakeDevice{}, cctrusted.PCR(23).IMR(), cctrusted.AlgSHA384, "pcr23", 0},
		{"stale report", &fakeDevice{stale: true}, cctrusted.MRTD, cctrusted.AlgSHA384, "stale", 1},
		{"device error", &fakeDevice{err: errors.New("EIO")}, cctrusted.MRTD, cctrusted.AlgSHA384, "EIO", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustOpen(t, Options{Device: tc.dev})
			_, err := p.Measurement(context.Background(), tc.imr, tc.alg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.dev.calls != tc.calls {
				t.Errorf("device called %d times, want %d", tc.dev.calls, tc.calls)
			}
		})
	}
}

func TestMeasurementWithoutDevice(t *testing.T) {
	p := mustOpen(t, Options{TSM: (&fakeQuoter{}).client()})
	_, _, err := p.Measurements(context.Background())
	if err == nil || !strings.Contains(err.Error(), "dev/tdx_guest") {
		t.Fatalf("error = %v, want it to name dev/tdx_guest", err)
	}
}

func TestProviderConstants(t *testing.T) {
	p := mustOpen(t, Options{Device: &fakeDevice{}})
	ctx := context.Background()
	if p.TEE() != cctrusted.TEETDX {
		t.Errorf("TEE = %q", p.TEE())
	}
	if alg, err := p.DefaultAlgorithm(ctx); err != nil || alg != cctrusted.AlgSHA384 {
		t.Errorf("DefaultAlgorithm = %v, %v", alg, err)
	}
	if n, err := p.MeasurementCount(ctx); err != nil || n != 4 {
		t.Errorf("MeasurementCount = %d, %v", n, err)
	}
}
