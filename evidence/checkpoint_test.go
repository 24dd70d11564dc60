package evidence

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func sampleClaims() *evidencepb.CheckpointClaims {
	return &evidencepb.CheckpointClaims{
		Format:    CheckpointFormat,
		AgentId:   "spiffe://example.org/spire/agent/ccnp/sim/0123",
		Tee:       "sim",
		IssuedAt:  testNow.Unix(),
		ExpiresAt: testNow.Add(time.Hour).Unix(),
		Registers: []*evidencepb.RegisterValue{{Space: 3, Index: 2, Alg: 0x0C, Value: seq(48, 7)}},
		Offsets: []*evidencepb.LogOffset{
			{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 100, Bytes: 9000},
			{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Events: 2, Bytes: 400},
		},
		Firmware:       &evidencepb.FirmwareFacts{SecureBootKnown: true, KernelCmdlineKnown: true, KernelCmdline: "console=ttyS0"},
		ImaVerified:    true,
		Workloads:      []*evidencepb.WorkloadFact{{ExeSha256: seq(32, 1), ContainerId: "c1"}},
		WorkloadsKnown: true,
	}
}

func testKey(t testing.TB, b byte) *CheckpointKey {
	t.Helper()
	k, err := NewCheckpointKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckpointSealOpen(t *testing.T) {
	k := testKey(t, 1)
	tok, err := k.Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Open(tok, testNow.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, sampleClaims()) {
		t.Fatalf("claims changed on the way: %v", got)
	}

	// The MAC is HMAC-SHA-256(key, "ccnp-checkpoint-v1" || 0 || claims),
	// recomputed here with crypto/hmac directly rather than through Seal.
	var sc evidencepb.SignedCheckpoint
	if err := proto.Unmarshal(tok, &sc); err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, bytes.Repeat([]byte{1}, 32))
	m.Write(append([]byte("ccnp-checkpoint-v1\x00"), sc.GetClaims()...))
	if !bytes.Equal(m.Sum(nil), sc.GetMac()) {
		t.Fatal("MAC is not HMAC-SHA-256 over the context string and the claims")
	}
}

func TestCheckpointOpenRejects(t *testing.T) {
	k := testKey(t, 1)
	seal := func(edit func(*evidencepb.CheckpointClaims)) []byte {
		c := sampleClaims()
		if edit != nil {
			edit(c)
		}
		// Signed as a server would, bypassing Seal's own checks so that
		// Open's are what is tested.
		claims, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := proto.Marshal(&evidencepb.SignedCheckpoint{Claims: claims, Mac: k.mac(k.keys[0], claims)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := seal(nil)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	var sc evidencepb.SignedCheckpoint
	if err := proto.Unmarshal(good, &sc); err != nil {
		t.Fatal(err)
	}
	editedClaims := bytes.Clone(sc.GetClaims())
	editedClaims[len(editedClaims)-1] ^= 1
	edited, _ := proto.Marshal(&evidencepb.SignedCheckpoint{Claims: editedClaims, Mac: sc.GetMac()})
	otherKey, err := testKey(t, 2).Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		tok    []byte
		now    time.Time
		reason string
	}{
		{"empty", nil, testNow, "malformed"},
		{"oversized", make([]byte, MaxCheckpointTokenBytes+1), testNow, "malformed"},
		{"garbage", []byte{0xff, 0xff, 0xff}, testNow, "malformed"},
		{"flipped mac", flipped, testNow, "forged"},
		{"edited claims", edited, testNow, "forged"},
		{"other key", otherKey, testNow, "forged"},
		{"no mac", func() []byte { b, _ := proto.Marshal(&evidencepb.SignedCheckpoint{Claims: sc.GetClaims()}); return b }(), testNow, "forged"},
		{"expired", good, testNow.Add(time.Hour), "expired"},
		{"issued in the future", good, testNow.Add(-10 * time.Minute), "not yet valid"},
		{"format 1 (no ima_violations)", seal(func(c *evidencepb.CheckpointClaims) { c.Format = 1 }), testNow, "malformed"},
		{"format 3", seal(func(c *evidencepb.CheckpointClaims) { c.Format = 3 }), testNow, "malformed"},
		{"no agent id", seal(func(c *evidencepb.CheckpointClaims) { c.AgentId = "" }), testNow, "malformed"},
		{"bad tee", seal(func(c *evidencepb.CheckpointClaims) { c.Tee = "sev" }), testNow, "malformed"},
		{"expiry before issue", seal(func(c *evidencepb.CheckpointClaims) { c.ExpiresAt = c.IssuedAt }), testNow, "malformed"},
		{"register too long", seal(func(c *evidencepb.CheckpointClaims) { c.Registers[0].Value = seq(65, 0) }), testNow, "malformed"},
		{"ccel offset", seal(func(c *evidencepb.CheckpointClaims) { c.Offsets[0].Kind = evidencepb.LogKind_LOG_KIND_CCEL }), testNow, "malformed"},
		{"short exe digest", seal(func(c *evidencepb.CheckpointClaims) { c.Workloads[0].ExeSha256 = seq(31, 0) }), testNow, "malformed"},
		{"too many workloads", seal(func(c *evidencepb.CheckpointClaims) {
			for range MaxCheckpointWorkloads {
				c.Workloads = append(c.Workloads, c.Workloads[0])
			}
		}), testNow, "malformed"},
		{"long cmdline", seal(func(c *evidencepb.CheckpointClaims) { c.Firmware.KernelCmdline = strings.Repeat("a", 4097) }), testNow, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.Open(tt.tok, tt.now)
			var ce *CheckpointError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("err = %v, want a CheckpointError", err)
			}
			if ce.Reason != tt.reason {
				t.Fatalf("reason %q, want %q (%v)", ce.Reason, tt.reason, err)
			}
		})
	}
}

func TestCheckpointKeyRotation(t *testing.T) {
	oldKey := bytes.Repeat([]byte{1}, 32)
	newKey := bytes.Repeat([]byte{2}, 40)
	tok, err := testKey(t, 1).Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewCheckpointKey(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rotated.Open(tok, testNow); err != nil {
		t.Fatalf("a token of the previous key is refused after rotation: %v", err)
	}
	fresh, err := rotated.Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testKey(t, 1).Open(fresh, testNow); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("the rotated key still signs with the old one: %v", err)
	}
}

func TestCheckpointKeyBounds(t *testing.T) {
	if _, err := NewCheckpointKey(make([]byte, 31)); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
	if _, err := NewCheckpointKey(make([]byte, 32), make([]byte, 8)); err == nil {
		t.Fatal("a short previous key was accepted")
	}
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{strings.Repeat("ab", 32) + "\n", strings.Repeat("ab", 32), true},
		{strings.Repeat("x", 32) + " \r\n\t", strings.Repeat("x", 32), true},
		{strings.Repeat("x", 31) + "\n\n", "", false},
		{"", "", false},
	} {
		got, err := ParseCheckpointKeyFile([]byte(tt.in))
		if (err == nil) != tt.ok || string(got) != tt.want {
			t.Errorf("ParseCheckpointKeyFile(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestCheckpointSealTooLarge(t *testing.T) {
	c := sampleClaims()
	c.Firmware.KernelCmdline = strings.Repeat("a", 4096)
	for i := range MaxCheckpointWorkloads - 1 {
		c.Workloads = append(c.Workloads, &evidencepb.WorkloadFact{ExeSha256: seq(32, byte(i)), ContainerId: strings.Repeat("c", 200)})
	}
	_, err := testKey(t, 1).Seal(c)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestChallengeCheckpointRules(t *testing.T) {
	ima := []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 1, Bytes: 10}}
	tests := []struct {
		name  string
		c     *evidencepb.Challenge
		field string
	}{
		{"issuance with nonce", &evidencepb.Challenge{Nonce: seq(NonceSize, 0), Checkpoint: &evidencepb.Checkpoint{Token: []byte{1}}}, "checkpoint challenge"},
		{"issuance with want", &evidencepb.Challenge{Want: []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_IMA}, Checkpoint: &evidencepb.Checkpoint{Token: []byte{1}}}, "checkpoint challenge"},
		{"offset for a log not wanted", &evidencepb.Challenge{Nonce: seq(NonceSize, 0), Checkpoint: &evidencepb.Checkpoint{Offsets: ima}}, "challenge.checkpoint.offsets[0]"},
		{"activation with offsets", &evidencepb.Challenge{CredentialBlob: []byte{1}, EncryptedSecret: []byte{1}, Checkpoint: &evidencepb.Checkpoint{Offsets: ima}}, "no checkpoint"},
		{"oversized token", &evidencepb.Challenge{Checkpoint: &evidencepb.Checkpoint{Token: make([]byte, MaxCheckpointTokenBytes+1)}}, "challenge.checkpoint.token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(NewChallenge(tt.c))
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want one naming %q", err, tt.field)
			}
		})
	}
}

func TestHelloCheckpointRules(t *testing.T) {
	for _, tt := range []struct {
		name  string
		c     *evidencepb.Checkpoint
		field string
	}{
		{"no token", &evidencepb.Checkpoint{}, "hello.checkpoint.token"},
		{"oversized token", &evidencepb.Checkpoint{Token: make([]byte, MaxCheckpointTokenBytes+1)}, "hello.checkpoint.token"},
		{"tpm log offset", &evidencepb.Checkpoint{Token: []byte{1}, Offsets: []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_TPM}}}, "hello.checkpoint.offsets[0].kind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(NewHello(&evidencepb.Hello{Tee: "sim", InstanceId: "a", Checkpoint: tt.c}))
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want one naming %q", err, tt.field)
			}
		})
	}
	ok := &evidencepb.Checkpoint{Token: []byte{1}, Offsets: []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 1, Bytes: 2}}}
	if _, err := Encode(NewHello(&evidencepb.Hello{Tee: "sim", InstanceId: "a", Checkpoint: ok})); err != nil {
		t.Fatal(err)
	}
}

func TestSameOffsets(t *testing.T) {
	a := []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: 1, Bytes: 2}, {Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Events: 3, Bytes: 4}}
	b := []*evidencepb.LogOffset{a[1], a[0]}
	if !SameOffsets(a, b) {
		t.Fatal("order matters")
	}
	c := []*evidencepb.LogOffset{a[0], {Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Events: 3, Bytes: 5}}
	if SameOffsets(a, c) || SameOffsets(a, a[:1]) {
		t.Fatal("different offsets compare equal")
	}
}

// FuzzOpenCheckpoint feeds arbitrary tokens to Open: it must never panic,
// and anything it accepts must carry the key's MAC.
func FuzzOpenCheckpoint(f *testing.F) {
	k := testKey(f, 1)
	tok, err := k.Seal(sampleClaims())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := k.Open(b, testNow)
		if err != nil {
			return
		}
		if _, err := k.Seal(c); err != nil {
			t.Fatalf("Open accepted claims Seal refuses: %v", err)
		}
	})
}
