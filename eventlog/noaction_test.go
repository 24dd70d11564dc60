package eventlog

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// insertEvent puts ev after the event at span i of raw.
func insertEvent(raw []byte, sp []span, i int, ev []byte) []byte {
	out := bytes.Clone(raw[:sp[i].end])
	out = append(out, ev...)
	return append(out, raw[sp[i].end:]...)
}

// agileEvent encodes a crypto-agile event with one digest of alg.
func agileEvent(index, typ uint32, alg uint16, digest, data []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, index)
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint16(b, alg)
	b = append(b, digest...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// TestNoActionRules: an EV_NO_ACTION event is never extended, so TCG
// requires its digests to be zero; one with a digest, or a second Spec ID
// event, is refused in CCELs and TPM logs. Zero-digest EV_NO_ACTION events
// (StartupLocality, vendor data) stay accepted.
func TestNoActionRules(t *testing.T) {
	ccelRaw := readFile(t, ccelDir, "cos-113-intel-tdx.bin")
	tpmRaw := readFile(t, tpmDir, "rhel8-uefi.bin")
	spec := func(raw []byte) []byte { return raw[32 : 32+int(binary.LittleEndian.Uint32(raw[28:]))] }
	for _, tc := range []struct {
		name   string
		parse  func([]byte) (*Log, error)
		raw    []byte
		index  uint32
		alg    uint16
		size   int
		digest byte
		data   []byte
		want   string
	}{
		{"ccel digest", ParseCCEL, ccelRaw, 2, 0x0c, 48, 0xab, []byte("x"), "non-zero"},
		{"ccel second spec id", ParseCCEL, ccelRaw, 0, 0x0c, 48, 0, spec(ccelRaw), "second Spec ID"},
		{"ccel zero digest", ParseCCEL, ccelRaw, 2, 0x0c, 48, 0, []byte("vendor data"), ""},
		{"tpm digest", ParseTPM, tpmRaw, 7, 0x0b, 32, 0x01, []byte("x"), "non-zero"},
		{"tpm second spec id", ParseTPM, tpmRaw, 0, 0x0b, 32, 0, spec(tpmRaw), "second Spec ID"},
		{"tpm zero digest", ParseTPM, tpmRaw, 0, 0x0b, 32, 0, []byte("StartupLocality\x00\x03"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.parse(tc.raw); err != nil {
				t.Fatalf("unedited log: %v", err)
			}
			ev := agileEvent(tc.index, cctrusted.EventNoAction, tc.alg, bytes.Repeat([]byte{tc.digest}, tc.size), tc.data)
			_, err := tc.parse(insertEvent(tc.raw, spans(t, tc.raw), 3, ev))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
