package tdx

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExtendSysfs(t *testing.T) {
	root := t.TempDir()
	dir := mkdir(t, root, "sys/class/misc/tdx_guest/measurements")
	for _, f := range []string{"mrtd:sha384", "rtmr0:sha384", "rtmr1:sha384", "rtmr2:sha384", "rtmr3:sha384"} {
		writeFile(t, dir, f, nil)
	}
	p := mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{}})
	for _, idx := range []int{2, 3} {
		d := sha512.Sum384([]byte{byte(idx)})
		if err := p.ExtendRTMR(context.Background(), idx, d); err != nil {
			t.Fatal(err)
		}
		// The kernel takes the raw 48-byte digest in a single write.
		if got := readFile(t, filepath.Join(dir, "rtmr"+string(rune('0'+idx))+":sha384")); !bytes.Equal(got, d[:]) {
			t.Fatalf("rtmr%d:sha384 got %x, want %x", idx, got, d)
		}
	}
	for _, f := range []string{"rtmr0:sha384", "rtmr1:sha384"} {
		if b := readFile(t, filepath.Join(dir, f)); len(b) != 0 {
			t.Errorf("%s was written", f)
		}
	}
}

func TestExtendSysfsMissingRegister(t *testing.T) {
	root := t.TempDir()
	dir := mkdir(t, root, "sys/class/misc/tdx_guest/measurements")
	p := mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{}})
	err := p.ExtendRTMR(context.Background(), 3, [48]byte{1})
	want := filepath.Join(dir, "rtmr3:sha384")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want it to name %s", err, want)
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("extend created %s", want)
	}
}

func TestExtendConfigfs(t *testing.T) {
	root := t.TempDir()
	rtmrs := mkdir(t, root, "sys/kernel/config/tsm/rtmrs")
	p := mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{}})
	d1, d2 := sha512.Sum384([]byte("one")), sha512.Sum384([]byte("two"))
	for _, d := range [][48]byte{d1, d2} {
		if err := p.ExtendRTMR(context.Background(), 3, d); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(rtmrs)
		if err != nil {
			t.Fatal(err)
		}
		// One entry per register, reused: configfs allows one per index.
		if len(entries) != 1 {
			t.Fatalf("%d entries under %s, want 1", len(entries), rtmrs)
		}
		entry := filepath.Join(rtmrs, entries[0].Name())
		if idx := readFile(t, filepath.Join(entry, "index")); string(idx) != "3" {
			t.Fatalf("entry index = %q, want 3", idx)
		}
		if got := readFile(t, filepath.Join(entry, "digest")); !bytes.Equal(got, d[:]) {
			t.Fatalf("digest written %x, want %x", got, d)
		}
	}
}

func TestExtendErrors(t *testing.T) {
	root := t.TempDir()
	p := mustOpen(t, Options{HostRoot: root, Device: &fakeDevice{}})
	err := p.ExtendRTMR(context.Background(), 2, [48]byte{})
	for _, want := range []string{
		filepath.Join(root, "sys/class/misc/tdx_guest/measurements"),
		filepath.Join(root, "sys/kernel/config/tsm/rtmrs"),
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to name %s", err, want)
		}
	}

	rec := &recordingExtender{}
	p = mustOpen(t, Options{Device: &fakeDevice{}, Extender: rec})
	for _, idx := range []int{-1, 0, 1, 4} {
		err := p.ExtendRTMR(context.Background(), idx, [48]byte{})
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("extend RTMR%d: error = %v, want refusal", idx, err)
		}
	}
	if len(rec.calls) != 0 {
		t.Fatalf("extender called for refused registers: %v", rec.calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.ExtendRTMR(ctx, 2, [48]byte{}); !errors.Is(err, context.Canceled) || len(rec.calls) != 0 {
		t.Fatalf("canceled extend: %v, %d calls", err, len(rec.calls))
	}
	rec.err = errors.New("EPERM")
	if err := p.ExtendRTMR(context.Background(), 2, [48]byte{7}); err == nil || !strings.Contains(err.Error(), "RTMR2: EPERM") {
		t.Fatalf("error = %v, want the extender's, naming RTMR2", err)
	}
	if len(rec.calls) != 1 || rec.calls[0].index != 2 || rec.calls[0].digest[0] != 7 {
		t.Fatalf("extender calls = %v", rec.calls)
	}
}

type recordingExtender struct {
	err   error
	calls []struct {
		index  int
		digest [48]byte
	}
}

func (r *recordingExtender) ExtendRTMR(_ context.Context, index int, digest [48]byte) error {
	r.calls = append(r.calls, struct {
		index  int
		digest [48]byte
	}{index, digest})
	return r.err
}
