package adversarial

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// imaEntry encodes one binary IMA entry as the kernel does (little endian,
// ima_canonical_fmt): u32 PCR, the SHA-1 template hash over the template
// data, u32 template name length, the name, u32 template data length and
// the data, each field prefixed by its u32 length.
func imaEntry(pcr uint32, template string, fields ...[]byte) []byte {
	var data []byte
	for _, f := range fields {
		data = binary.LittleEndian.AppendUint32(data, uint32(len(f)))
		data = append(data, f...)
	}
	th := sha1.Sum(data)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, pcr)
	b = append(b, th[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(template)))
	b = append(b, template...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// dng is an ima-ng file digest field: "sha256:", NUL, the digest.
func dng(content string) []byte {
	d := sha256.Sum256([]byte(content))
	return append([]byte("sha256:\x00"), d[:]...)
}

// nng is a NUL-terminated name field.
func nng(name string) []byte { return append([]byte(name), 0) }

// imaList sends a binary IMA list whose every entry the simulated kernel
// extended into RTMR2, so that only the list's content is at fault.
func imaList(entries ...[]byte) func(t *testing.T, n *simNode, a *agent) {
	return func(t *testing.T, n *simNode, a *agent) {
		list := bytes.Join(entries, nil)
		n.ExtendIMA(t, list)
		a.Mutate = func(e *evidencepb.Evidence) { e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, list) }
	}
}

// TestIMABaseline: a well-formed list, extended into RTMR2, is accepted
// even with ".." in a file name (the kernel records the path as opened),
// so each case of TestIMAEntries fails for its own edit.
func TestIMABaseline(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{})
	a := n.agent(t)
	imaList(imaEntry(10, "ima-ng", dng("boot"), nng("boot_aggregate")),
		imaEntry(10, "ima-ng", dng("a"), nng("/usr/bin/../bin/a")),
		imaEntry(10, "ima-cgpath", nng("containerd"), nng("/kubepods/pod1"), dng("b"), nng("/bin/sh")))(t, n, a)
	attrs, err := newServer(t, n.serverConfig("")).attest(a)
	if err != nil {
		t.Fatalf("well-formed IMA list rejected: %v", err)
	}
	if !slices.Contains(attrs.GetSelectorValues(), "sim:ima:verified:true") {
		t.Fatalf("no sim:ima:verified:true among %v", attrs.GetSelectorValues())
	}
}

// TestIMAEntries: IMA entries whose names, templates or fields carry NULs
// and path separators where the kernel never writes them, and lists that
// do not replay to RTMR2.
func TestIMAEntries(t *testing.T) {
	boot := imaEntry(10, "ima-ng", dng("boot"), nng("boot_aggregate"))
	runSimCases(t, []simCase{
		{
			name:  "file name with an embedded NUL",
			setup: imaList(boot, imaEntry(10, "ima-ng", dng("a"), nng("/usr/bin/a\x00/etc/shadow"))),
			want:  reject(codes.InvalidArgument, "ima_replay", "embedded NUL"),
		},
		{
			name:  "file name not NUL-terminated",
			setup: imaList(boot, imaEntry(10, "ima-ng", dng("a"), []byte("/usr/bin/a"))),
			want:  reject(codes.InvalidArgument, "ima_replay", "NUL-terminated"),
		},
		{
			name:  "cgroup path with an embedded NUL",
			setup: imaList(boot, imaEntry(10, "ima-cgpath", nng("containerd"), nng("/kubepods/pod1\x00/../pod2"), dng("a"), nng("/bin/sh"))),
			want:  reject(codes.InvalidArgument, "ima_replay", "embedded NUL"),
		},
		{
			name:  "template name with path separators",
			setup: imaList(boot, imaEntry(10, "ima-ng/../ima-sig", dng("a"), nng("/bin/sh"))),
			want:  reject(codes.InvalidArgument, "ima_replay", "template"),
		},
		{
			name:  "template name with a NUL",
			setup: imaList(boot, imaEntry(10, "ima-ng\x00", dng("a"), nng("/bin/sh"))),
			want:  reject(codes.InvalidArgument, "ima_replay", "template"),
		},
		{
			name:  "digest field without its NUL separator",
			setup: imaList(boot, imaEntry(10, "ima-ng", []byte("sha256:/etc/passwd"), nng("/bin/sh"))),
			want:  reject(codes.InvalidArgument, "ima_replay", "d-ng"),
		},
		{
			name: "template hash that is not SHA-1 of the template data",
			setup: func(t *testing.T, n *simNode, a *agent) {
				e := imaEntry(10, "ima-ng", dng("a"), nng("/bin/sh"))
				e[4] ^= 1
				imaList(boot, e)(t, n, a)
			},
			want: reject(codes.InvalidArgument, "ima_replay", "template hash"),
		},
		{
			name: "entry in the list the kernel never extended",
			setup: func(t *testing.T, n *simNode, a *agent) {
				n.ExtendIMA(t, boot)
				list := append(bytes.Clone(boot), imaEntry(10, "ima-ng", dng("x"), nng("/tmp/x"))...)
				a.Mutate = func(e *evidencepb.Evidence) { e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, list) }
			},
			want: reject(codes.PermissionDenied, "ima_replay"),
		},
		{
			name: "extended entry left out of the list",
			setup: func(t *testing.T, n *simNode, a *agent) {
				hidden := imaEntry(10, "ima-ng", dng("x"), nng("/tmp/rootkit"))
				n.ExtendIMA(t, append(bytes.Clone(boot), hidden...))
				a.Mutate = func(e *evidencepb.Evidence) { e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, boot) }
			},
			want: reject(codes.PermissionDenied, "ima_replay"),
		},
		{
			name:  "entry on PCR 24, outside the bank",
			setup: imaList(boot, imaEntry(24, "ima-ng", dng("a"), nng("/bin/sh"))),
			want:  reject(codes.InvalidArgument, "ima_replay", "PCR"),
		},
		{
			name: "list truncated inside an entry",
			setup: func(t *testing.T, n *simNode, a *agent) {
				list := append(bytes.Clone(boot), imaEntry(10, "ima-ng", dng("a"), nng("/bin/sh"))...)
				n.ExtendIMA(t, list)
				a.Mutate = func(e *evidencepb.Evidence) {
					e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, list[:len(list)-5])
				}
			},
			want: reject(codes.InvalidArgument, "ima_replay"),
		},
	})
}
