package tdx

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func ccelRoot(t *testing.T, log []byte) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root, "sys/firmware/acpi/tables/CCEL", readFile(t, ccelTableFile))
	if log != nil {
		writeFile(t, root, "sys/firmware/acpi/tables/data/CCEL", log)
	}
	return root
}

// The CCEL events replay to the RTMR0..2 that the same TD's quote carries
// (read by go-tdx-guest), and paging follows cctrusted.Page.
func TestEventLog(t *testing.T) {
	p := mustOpen(t, Options{HostRoot: ccelRoot(t, readFile(t, ccelLogFile)), Device: &fakeDevice{}})
	ctx := context.Background()
	all, err := p.EventLog(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 10 {
		t.Fatalf("%d events, want a real boot's worth", len(all))
	}
	regs, err := cctrusted.Replay(all)
	if err != nil {
		t.Fatal(err)
	}
	quoted := quoteBody(t, readFile(t, cosQuoteFile)).GetRtmrs()
	for i := range 3 {
		got, _ := regs.Get(cctrusted.CCMR(i+1).IMR(), cctrusted.AlgSHA384)
		if !bytes.Equal(got, quoted[i]) {
			t.Errorf("replayed RTMR%d = %x, quote says %x", i, got, quoted[i])
		}
	}

	page, err := p.EventLog(ctx, 2, 3)
	if err != nil || len(page) != 3 || page[0].Type != all[2].Type || !bytes.Equal(page[2].Data, all[4].Data) {
		t.Fatalf("EventLog(2, 3) = %d events, %v", len(page), err)
	}
	if tail, err := p.EventLog(ctx, len(all), 0); err != nil || len(tail) != 0 {
		t.Fatalf("EventLog(len, 0) = %d events, %v; want none", len(tail), err)
	}
	var pe *cctrusted.PageError
	if _, err := p.EventLog(ctx, len(all)+1, 0); !errors.As(err, &pe) {
		t.Fatalf("EventLog(len+1) error = %v, want a PageError", err)
	}
}

func TestEventLogErrors(t *testing.T) {
	log := readFile(t, ccelLogFile)
	tests := []struct {
		name    string
		log     []byte
		wantErr string
	}{
		{"missing log", nil, "sys/firmware/acpi/tables/data/CCEL"},
		{"garbage", bytes.Repeat([]byte{0x5a}, 4096), "sys/firmware/acpi/tables/data/CCEL"},
		{"truncated", log[:300], "sys/firmware/acpi/tables/data/CCEL"},
		{"empty", []byte{}, "sys/firmware/acpi/tables/data/CCEL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustOpen(t, Options{HostRoot: ccelRoot(t, tc.log), Device: &fakeDevice{}})
			_, err := p.EventLog(context.Background(), 0, 0)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to name %s", err, tc.wantErr)
			}
		})
	}
}
