package imapolicy

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// benchExcludes are ten exclusions of the kind Keylime's documentation
// suggests (directories of mutable files), one without a literal prefix.
var benchExcludes = []string{"/tmp/", "/var/tmp/", "/var/log/", "/var/lib/docker/", "/run/", "/proc/",
	"/sys/", "/home/[^/]+/\\.cache/", "/var/cache/", ".*\\.pyc$"}

// benchPolicyAndList builds a policy of nPaths files and an n-entry binary
// ima-ng list: boot_aggregate, then entries alternating between a policy
// path with its digest and an excluded path.
func benchPolicyAndList(tb testing.TB, n, nPaths int) (*Policy, []byte) {
	files := make(map[string][]string, nPaths)
	path := func(i int) string { return "/usr/lib/x86_64-linux-gnu/libexample-" + strconv.Itoa(i) + ".so.1" }
	for i := range nPaths {
		d := sha256.Sum256([]byte(path(i)))
		files[path(i)] = []string{hex.EncodeToString(d[:])}
	}
	p := compile(tb, &conf.IMAPolicy{Enforce: true, Exclude: benchExcludes, Files: files})
	bin := make([]byte, 0, n*140)
	le := binary.LittleEndian
	for i := range n {
		name := "boot_aggregate"
		switch {
		case i == 0:
		case i%2 == 1:
			name = path((i / 2) % nPaths)
		default:
			name = "/var/lib/docker/overlay2/l/" + strconv.Itoa(i) + "/bin/tool"
		}
		d := sha256.Sum256([]byte(name))
		var td []byte
		td = le.AppendUint32(td, uint32(8+len(d)))
		td = append(td, "sha256:\x00"...)
		td = append(td, d[:]...)
		td = le.AppendUint32(td, uint32(len(name)+1))
		td = append(append(td, name...), 0)
		th := sha1.Sum(td)
		bin = le.AppendUint32(bin, 10)
		bin = append(bin, th[:]...)
		bin = le.AppendUint32(bin, 6)
		bin = append(bin, "ima-ng"...)
		bin = le.AppendUint32(bin, uint32(len(td)))
		bin = append(bin, td...)
	}
	return p, bin
}

func bootOpts(bin []byte) Options {
	d := sha256.Sum256([]byte("boot_aggregate"))
	return Options{BootAggregates: [][]byte{d[:]}}
}

// BenchmarkAppraise100k measures, in one run, parse+replay of a 100k-entry
// list (the anchor: what a full attestation already pays) and
// parse+replay+appraisal against a 50k-path policy. Target: appraisal adds
// at most 20%.
func BenchmarkAppraise100k(b *testing.B) {
	p, bin := benchPolicyAndList(b, 100_000, 50_000)
	opts := bootOpts(bin)
	run := func(b *testing.B, appraiseToo bool) {
		b.ReportAllocs()
		for b.Loop() {
			l, err := ima.ParseBinary(bin, ima.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := l.Replay(cctrusted.AlgSHA256); err != nil {
				b.Fatal(err)
			}
			if appraiseToo {
				v, err := p.Appraise(p.Start(), 0, l.Entries, opts)
				if err != nil || !v.OK() {
					b.Fatalf("%v %+v %v", err, v.Counts, v.First)
				}
			}
		}
	}
	b.Run("parse+replay", func(b *testing.B) { run(b, false) })
	b.Run("parse+replay+appraise", func(b *testing.B) { run(b, true) })
	b.Run("appraise", func(b *testing.B) {
		l, err := ima.ParseBinary(bin, ima.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if v, _ := p.Appraise(p.Start(), 0, l.Entries, opts); !v.OK() {
				b.Fatal(v.First)
			}
		}
	})
}

// BenchmarkIncremental500k: a stored Verdict of 500k entries, decoded and
// resumed with 100 new entries. Target: within 2 ms.
func BenchmarkIncremental500k(b *testing.B) {
	p, bin := benchPolicyAndList(b, 500_100, 50_000)
	l, err := ima.ParseBinary(bin, ima.Options{})
	if err != nil {
		b.Fatal(err)
	}
	v, err := p.Appraise(p.Start(), 0, l.Entries[:500_000], bootOpts(bin))
	if err != nil {
		b.Fatal(err)
	}
	stored, _ := v.MarshalBinary()
	suffix := l.Entries[500_000:]
	b.ReportAllocs()
	for b.Loop() {
		prev, err := UnmarshalVerdict(stored)
		if err != nil {
			b.Fatal(err)
		}
		next, err := p.Appraise(prev, 500_000, suffix, Options{})
		if err != nil || next.Next != 500_100 || !next.OK() {
			b.Fatal(err, next.First)
		}
	}
}

// TestIncrementalCostIsTheSuffix: resuming a 50k-entry Verdict with 100
// entries costs what 100 entries cost, not what 200k do. The bound is
// loose (a loaded 2-core machine under -race): a tenth of the full pass.
func TestIncrementalCostIsTheSuffix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 50k-entry list")
	}
	p, bin := benchPolicyAndList(t, 50_100, 10_000)
	l, err := ima.ParseBinary(bin, ima.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	v, err := p.Appraise(p.Start(), 0, l.Entries[:50_000], bootOpts(bin))
	full := time.Since(t0)
	if err != nil || !v.OK() {
		t.Fatal(err, v.First)
	}
	stored, _ := v.MarshalBinary()
	t0 = time.Now()
	prev, err := UnmarshalVerdict(stored)
	if err != nil {
		t.Fatal(err)
	}
	next, err := p.Appraise(prev, 50_000, l.Entries[50_000:], Options{})
	inc := time.Since(t0)
	if err != nil || next.Next != 50_100 {
		t.Fatal(err)
	}
	t.Logf("full appraisal of 50k entries %v, resume with 100 entries %v (%d-byte verdict)", full, inc, len(stored))
	if inc > full/10 {
		t.Fatalf("resuming with 100 entries took %v, the full pass %v", inc, full)
	}
}
