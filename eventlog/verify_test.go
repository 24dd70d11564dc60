package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

func TestVerifyCCEL(t *testing.T) {
	table := readFile(t, ccelDir, "cos-113-intel-tdx.table.bin")
	tests := []struct {
		file       string
		table      []byte
		rtmr       [3][]byte
		secureBoot bool
		cmdline    string // a substring the kernel command line must hold
	}{
		{"cos-113-intel-tdx.bin", table, quoteRTMRs(t), false, "/syslinux/vmlinuz.A init=/usr/lib/systemd/systemd"},
		{"cos-113-intel-tdx.bin", nil, quoteRTMRs(t), false, "/syslinux/vmlinuz.A"},
		// The command lines are readable in the raw logs ("kernel_cmdline: ..." events).
		{"ubuntu-2404-intel-tdx.bin", nil, expectedRTMRs(t, "ubuntu-2404-intel-tdx.bin"), false, "/vmlinuz-6.17.0-1008-gcp root=PARTUUID=55cc24dc"},
		{"gdc-tdx.bin", nil, expectedRTMRs(t, "gdc-tdx.bin"), false, "/vmlinuz-6.11.0-21-generic root=/dev/mapper/ubuntu--vg-ubuntu--lv"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/table=%v", tt.file, tt.table != nil), func(t *testing.T) {
			f, err := VerifyCCEL(tt.table, readFile(t, ccelDir, tt.file), tt.rtmr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.VerifiedRegisters, []string{"rtmr0", "rtmr1", "rtmr2"}) || f.Format != FormatCCEL || f.Hash != "sha384" {
				t.Errorf("facts header = %v %v %v", f.Format, f.Hash, f.VerifiedRegisters)
			}
			if !f.SecureBootKnown || f.SecureBoot != tt.secureBoot {
				t.Errorf("secure boot = %v (known %v), want %v; warnings %q", f.SecureBoot, f.SecureBootKnown, tt.secureBoot, f.Warnings)
			}
			if tt.cmdline != "" && (!f.KernelCmdlineKnown || !strings.Contains(f.KernelCmdline, tt.cmdline)) {
				t.Errorf("kernel cmdline = %q (known %v)", f.KernelCmdline, f.KernelCmdlineKnown)
			}
			if tt.cmdline != "" && (f.Bootloader != "grub" || len(f.EFIApps) == 0) {
				t.Errorf("bootloader %q, %d EFI apps", f.Bootloader, len(f.EFIApps))
			}
			b, err := json.Marshal(f)
			if err != nil || !bytes.Contains(b, []byte(`"secure_boot_known":true`)) || !bytes.Contains(b, []byte(`"kernel_cmdline"`)) {
				t.Errorf("json %s, %v", b, err)
			}
		})
	}
}

// mismatch asserts err wraps a MismatchError on imr whose message names the
// register and an event.
func mismatch(t *testing.T, err error, imr cctrusted.IMR) *cctrusted.MismatchError {
	t.Helper()
	var me *cctrusted.MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want a MismatchError", err)
	}
	if me.IMR != imr {
		t.Fatalf("mismatch on %v, want %v: %v", me.IMR, imr, err)
	}
	if !strings.Contains(err.Error(), imr.String()) || !strings.Contains(err.Error(), fmt.Sprintf("event %d", me.LastEvent)) {
		t.Fatalf("message %q does not name %v and event %d", err, imr, me.LastEvent)
	}
	return me
}

func TestVerifyCCELRejects(t *testing.T) {
	raw := readFile(t, ccelDir, "cos-113-intel-tdx.bin")
	table := readFile(t, ccelDir, "cos-113-intel-tdx.table.bin")
	rtmr := quoteRTMRs(t)
	sp := spans(t, raw)

	// The events of each RTMR, by the test's own walk.
	byRTMR := map[int][]int{}
	for i, s := range sp {
		if s.typ != 3 && s.index >= 1 && s.index <= 3 {
			byRTMR[int(s.index)-1] = append(byRTMR[int(s.index)-1], i)
		}
	}
	for r := range 3 {
		evs := byRTMR[r]
		if len(evs) < 2 {
			t.Fatalf("rtmr%d has %d events", r, len(evs))
		}
		// One digest byte flipped in the first event of each RTMR.
		t.Run(fmt.Sprintf("flipped digest rtmr%d", r), func(t *testing.T) {
			bad := bytes.Clone(raw)
			bad[sp[evs[0]].sha384+7] ^= 0x01
			_, err := VerifyCCEL(table, bad, rtmr)
			me := mismatch(t, err, cctrusted.RTMR(r).IMR())
			if me.LastEvent != evs[len(evs)-1] || me.Events != len(evs) {
				t.Errorf("last event %d of %d, want %d of %d", me.LastEvent, me.Events, evs[len(evs)-1], len(evs))
			}
			if !bytes.Equal(me.Expected, rtmr[r]) || bytes.Equal(me.Replayed, rtmr[r]) {
				t.Errorf("expected/replayed wrong: %x / %x", me.Expected, me.Replayed)
			}
		})
		t.Run(fmt.Sprintf("flipped signed rtmr%d", r), func(t *testing.T) {
			bad := rtmr
			bad[r] = bytes.Clone(rtmr[r])
			bad[r][47] ^= 0x80
			_, err := VerifyCCEL(table, raw, bad)
			mismatch(t, err, cctrusted.RTMR(r).IMR())
		})
	}

	// Event removed: drop the second RTMR1 event.
	t.Run("event removed", func(t *testing.T) {
		e := sp[byRTMR[1][1]]
		bad := append(bytes.Clone(raw[:e.start]), raw[e.end:]...)
		bad = append(bad, bytes.Repeat([]byte{0xff}, e.end-e.start)...)
		_, err := VerifyCCEL(table, bad, rtmr)
		mismatch(t, err, cctrusted.RTMR(1).IMR())
	})
	// Two adjacent RTMR2 events swapped.
	t.Run("events reordered", func(t *testing.T) {
		// The first adjacent pair with different digests (events 19 and 20
		// measure the same thing, so swapping them changes nothing).
		var a, b span
		for i := 1; i < len(sp); i++ {
			x, y := sp[i-1], sp[i]
			if x.index == 3 && y.index == 3 && x.typ != 3 && y.typ != 3 &&
				!bytes.Equal(raw[x.sha384:x.sha384+48], raw[y.sha384:y.sha384+48]) {
				a, b = x, y
				break
			}
		}
		if a.end == 0 {
			t.Fatal("no adjacent rtmr2 events with different digests")
		}
		bad := bytes.Clone(raw)
		n := copy(bad[a.start:], raw[b.start:b.end])
		copy(bad[a.start+n:], raw[a.start:a.end])
		_, err := VerifyCCEL(table, bad, rtmr)
		mismatch(t, err, cctrusted.RTMR(2).IMR())
	})
	// Truncated at an event boundary: parses, but RTMR2's tail is missing.
	t.Run("truncated at event boundary", func(t *testing.T) {
		_, err := VerifyCCEL(nil, raw[:sp[len(sp)-3].end], rtmr)
		var me *cctrusted.MismatchError
		if !errors.As(err, &me) {
			t.Fatalf("err = %v", err)
		}
	})

	other := readFile(t, ccelDir, "gdc-tdx.bin")
	for _, tt := range []struct {
		name  string
		table []byte
		log   []byte
		rtmr  [3][]byte
		want  string
	}{
		{"truncated mid-event", table, raw[:sp[10].start+30], rtmr, "event 10"},
		{"garbage", table, bytes.Repeat([]byte{0x42}, 4096), rtmr, "Spec ID"},
		{"empty", table, nil, rtmr, "empty"},
		{"oversized", nil, make([]byte, DefaultMaxLogSize+1), rtmr, "limit"},
		{"log larger than the table's area", table, append(bytes.Clone(raw), 0xff), rtmr, "log area"},
		{"bad table", raw[:56], raw, rtmr, "signature"},
		{"another VM's log", table, other, rtmr, "replay mismatch"},
		{"short RTMR", table, raw, [3][]byte{rtmr[0], rtmr[1][:47], rtmr[2]}, "rtmr1 is 47 bytes"},
		{"TPM log as CCEL", nil, readFile(t, tpmDir, "ubuntu-2404-intel-tdx.bin"), rtmr, "register index"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := VerifyCCEL(tt.table, tt.log, tt.rtmr)
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestVerifyTPM(t *testing.T) {
	want := map[string]struct {
		secureBoot bool
		hash       string
		grub       bool
	}{
		"rhel8-uefi.bin":                    {true, "sha256", true},
		"ubuntu-2104-no-secure-boot.bin":    {false, "sha256", true},
		"ubuntu-2404-amd-sevsnp.bin":        {false, "sha256", true},
		"ubuntu-2404-intel-tdx.bin":         {false, "sha384", true},
		"cos-125-intel-tdx-secure-boot.bin": {true, "sha384", true},
	}
	for file, regs := range tpmExpected(t) {
		t.Run(file, func(t *testing.T) {
			w, ok := want[file]
			if !ok {
				t.Fatalf("no expectations for %s", file)
			}
			f, err := VerifyTPM(readFile(t, tpmDir, file), regs)
			if err != nil {
				t.Fatal(err)
			}
			if f.Hash != w.hash || !f.SecureBootKnown || f.SecureBoot != w.secureBoot {
				t.Errorf("hash %s secure boot %v (known %v), want %s %v; warnings %q", f.Hash, f.SecureBoot, f.SecureBootKnown, w.hash, w.secureBoot, f.Warnings)
			}
			if w.grub && (f.Bootloader != "grub" || !f.KernelCmdlineKnown || f.KernelCmdline == "") {
				t.Errorf("bootloader %q cmdline %q (known %v); warnings %q", f.Bootloader, f.KernelCmdline, f.KernelCmdlineKnown, f.Warnings)
			}
			for _, r := range f.VerifiedRegisters {
				if strings.HasPrefix(r, "pcr10:") || strings.HasPrefix(r, "pcr17:") {
					t.Errorf("%s verified though the firmware log does not own it", r)
				}
			}
		})
	}
}

func TestVerifyTPMRejects(t *testing.T) {
	const file = "rhel8-uefi.bin"
	raw := readFile(t, tpmDir, file)
	regs := tpmExpected(t)[file]
	clone := func() cctrusted.Registers {
		out := make(cctrusted.Registers)
		for m, b := range regs {
			for a, v := range b {
				out.Set(m, a, v)
			}
		}
		return out
	}
	pcr7 := cctrusted.PCR(7).IMR()

	t.Run("flipped signed pcr7 sha1", func(t *testing.T) {
		bad := clone()
		bad[pcr7][cctrusted.AlgSHA1][0] ^= 1
		_, err := VerifyTPM(raw, bad)
		me := mismatch(t, err, pcr7)
		if me.Alg != cctrusted.AlgSHA1 {
			t.Errorf("bank %v", me.Alg)
		}
	})
	t.Run("flipped log digest", func(t *testing.T) {
		l, err := ParseTPM(raw)
		if err != nil {
			t.Fatal(err)
		}
		// Find the first PCR4 event's SHA-256 digest in the raw bytes.
		var d []byte
		for _, e := range l.Events {
			if e.IMR == cctrusted.PCR(4).IMR() && e.Type != cctrusted.EventNoAction {
				d, _ = e.Digest(cctrusted.AlgSHA256)
				break
			}
		}
		i := bytes.Index(raw, d)
		if d == nil || i < 0 {
			t.Fatal("no pcr4 digest")
		}
		bad := bytes.Clone(raw)
		bad[i+3] ^= 0x10
		_, err = VerifyTPM(bad, regs)
		me := mismatch(t, err, cctrusted.PCR(4).IMR())
		if me.Alg != cctrusted.AlgSHA256 {
			t.Errorf("bank %v", me.Alg)
		}
	})
	for _, tt := range []struct {
		name string
		log  []byte
		pcrs cctrusted.Registers
		want string
	}{
		{"only sha1 signed", raw, cctrusted.Registers{pcr7: {cctrusted.AlgSHA1: regs[pcr7][cctrusted.AlgSHA1]}}, "no signed SHA-256 or SHA-384"},
		{"only pcr23 signed", raw, cctrusted.Registers{cctrusted.PCR(23).IMR(): {cctrusted.AlgSHA256: make([]byte, 32)}}, "none of the signed PCRs"},
		{"not a PCR", raw, cctrusted.Registers{cctrusted.RTMR(0).IMR(): {cctrusted.AlgSHA384: make([]byte, 48)}}, "not a TPM PCR"},
		{"short PCR value", raw, cctrusted.Registers{pcr7: {cctrusted.AlgSHA256: make([]byte, 31)}}, "31 bytes"},
		{"CCEL as TPM log", readFile(t, ccelDir, "gdc-tdx.bin"), regs, "end-of-log marker"},
		{"truncated", raw[:len(raw)-9], regs, "runs past the end"},
		{"garbage", []byte(strings.Repeat("x", 300)), regs, "Spec ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyTPM(tt.log, tt.pcrs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}

	// Without PCR7 signed, secure boot is unknown rather than "off".
	partial := clone()
	delete(partial, pcr7)
	f, err := VerifyTPM(raw, partial)
	if err != nil {
		t.Fatal(err)
	}
	if f.SecureBootKnown || f.SecureBoot {
		t.Errorf("secure boot known=%v on=%v without pcr7", f.SecureBootKnown, f.SecureBoot)
	}
}

// TestVerifyTPMRuntimePCR: a PCR of the firmware range reserved for the
// runtime log is left to the runtime log's replay, and a firmware event on
// it is refused.
func TestVerifyTPMRuntimePCR(t *testing.T) {
	const file = "rhel8-uefi.bin"
	raw := readFile(t, tpmDir, file)
	regs := tpmExpected(t)[file]
	l, err := ParseTPM(raw)
	if err != nil {
		t.Fatal(err)
	}
	on := map[cctrusted.IMR]bool{}
	for _, e := range l.Events {
		if e.Type != cctrusted.EventNoAction {
			on[e.IMR] = true
		}
	}
	pcr14, pcr15 := cctrusted.PCR(14).IMR(), cctrusted.PCR(15).IMR()
	if !on[pcr14] || on[pcr15] {
		t.Fatalf("fixture: firmware events on pcr14 %v, on pcr15 %v; want on 14 (shim's MOK lists) only", on[pcr14], on[pcr15])
	}
	// PCR15 as a runtime log leaves it: extended after boot.
	withRuntime := make(cctrusted.Registers)
	for m, b := range regs {
		for a, v := range b {
			withRuntime.Set(m, a, v)
		}
	}
	for a := range withRuntime[cctrusted.PCR(0).IMR()] {
		v := make([]byte, a.Size())
		v[0] = 0x5a
		withRuntime.Set(pcr15, a, v)
	}

	t.Run("runtime extends on the reserved pcr15", func(t *testing.T) {
		if _, err := VerifyTPMWith(raw, withRuntime, TPMOptions{RuntimePCR: 15}); err != nil {
			t.Fatal(err)
		}
		// Without the reservation PCR15 is the firmware's and must replay.
		_, err := VerifyTPM(raw, withRuntime)
		var me *cctrusted.MismatchError
		if !errors.As(err, &me) || me.IMR != pcr15 {
			t.Fatalf("err %v, want a mismatch on pcr15", err)
		}
	})
	t.Run("firmware event on the reserved pcr14", func(t *testing.T) {
		_, err := VerifyTPMWith(raw, regs, TPMOptions{RuntimePCR: 14})
		if !errors.Is(err, ErrRuntimePCRExtended) || !strings.Contains(err.Error(), "pcr14") {
			t.Fatalf("err %v, want ErrRuntimePCRExtended naming pcr14", err)
		}
	})
}
