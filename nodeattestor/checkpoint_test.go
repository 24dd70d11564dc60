package nodeattestor_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
)

func checkpointChallenge(offsets ...*evidencepb.LogOffset) *evidencepb.Challenge {
	return &evidencepb.Challenge{Checkpoint: &evidencepb.Checkpoint{Token: []byte("server-signed"), Offsets: offsets}}
}

func imaOffset(events, size uint64) *evidencepb.LogOffset {
	return &evidencepb.LogOffset{Kind: evidencepb.LogKind_LOG_KIND_IMA, Events: events, Bytes: size}
}

func TestCheckpointStoredAndPresented(t *testing.T) {
	ctx := context.Background()
	f := &fakeTDX{table: []byte("table"), ccel: []byte("ccel"), ima: []byte("0123456789")}
	cfg := tdxConfig(t, "")

	hb, err := nodeattestor.Hello(ctx, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := evidence.DecodeHello(hb, evidence.DefaultLimits())
	if h.GetCheckpoint() != nil || !slices.Contains(h.GetCaps(), evidence.CapCheckpoint) {
		t.Fatalf("first hello: checkpoint %v, caps %v", h.GetCheckpoint(), h.GetCaps())
	}

	ch := checkpointChallenge(imaOffset(2, 4))
	pl, err := nodeattestor.Answer(ctx, f, cfg, hb, ch)
	if err != nil || evidence.KindOf(pl) != evidence.KindAck {
		t.Fatalf("answer to a checkpoint: %v, %v", pl, err)
	}
	path := nodeattestor.CheckpointPath(cfg)
	if filepath.Dir(path) != filepath.Dir(cfg.InstanceIDPath) {
		t.Fatalf("checkpoint at %s, not next to the instance ID", path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored checkpoint: %v %v", fi, err)
	}

	hb, err = nodeattestor.Hello(ctx, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, _ = evidence.DecodeHello(hb, evidence.DefaultLimits())
	if !proto.Equal(h.GetCheckpoint(), ch.GetCheckpoint()) {
		t.Fatalf("hello presents %v, want the stored %v", h.GetCheckpoint(), ch.GetCheckpoint())
	}

	// The server asks for the IMA log from byte 4: the agent sends bytes
	// 4.. and echoes the offset; other logs whole.
	nc := nonceChallenge(t, allLogs...)
	nc.Checkpoint = &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{imaOffset(2, 4)}}
	pl, err = nodeattestor.Answer(ctx, f, cfg, hb, nc)
	if err != nil {
		t.Fatal(err)
	}
	ev := pl.GetEvidence()
	logs, err := evidence.DecompressLogs(ev, evidence.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if string(logs.IMA) != "456789" || !bytes.Equal(logs.CCEL, f.ccel) {
		t.Fatalf("sent ima %q ccel %q", logs.IMA, logs.CCEL)
	}
	if !evidence.SameOffsets(ev.GetCheckpoint().GetOffsets(), nc.GetCheckpoint().GetOffsets()) {
		t.Fatalf("echo %v", ev.GetCheckpoint())
	}

	// A log shorter than the offset (rebooted node): whole logs, no echo.
	nc.Checkpoint.Offsets[0].Bytes = 11
	pl, err = nodeattestor.Answer(ctx, f, cfg, hb, nc)
	if err != nil {
		t.Fatal(err)
	}
	if pl.GetEvidence().GetCheckpoint() != nil {
		t.Fatal("echoed offsets it could not honour")
	}
	logs, _ = evidence.DecompressLogs(pl.GetEvidence(), evidence.DefaultLimits())
	if !bytes.Equal(logs.IMA, f.ima) {
		t.Fatalf("sent ima %q, want the whole log", logs.IMA)
	}

	// The IMA log is gone entirely: whole logs too.
	f.ima, f.imaErr = nil, os.ErrNotExist
	nc.Checkpoint.Offsets[0].Bytes = 4
	pl, err = nodeattestor.Answer(ctx, f, cfg, hb, nc)
	if err != nil || pl.GetEvidence().GetCheckpoint() != nil {
		t.Fatalf("missing log with an offset: %v, echo %v", err, pl.GetEvidence().GetCheckpoint())
	}
	// ... unless its offset is 0: an empty suffix.
	nc.Checkpoint.Offsets[0] = imaOffset(0, 0)
	pl, err = nodeattestor.Answer(ctx, f, cfg, hb, nc)
	if err != nil || pl.GetEvidence().GetCheckpoint() == nil || pl.GetEvidence().GetImaLog() != nil {
		t.Fatalf("missing log at offset 0: %v, %v", err, pl.GetEvidence())
	}
}

func TestCheckpointStoredDamaged(t *testing.T) {
	ctx := context.Background()
	f := &fakeTDX{}
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}},
		{"no token", func() []byte {
			b, _ := proto.Marshal(&evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{imaOffset(1, 2)}})
			return b
		}()},
		{"too large", make([]byte, evidence.MaxCheckpointTokenBytes+2048)},
		{"invalid offsets", func() []byte {
			b, _ := proto.Marshal(&evidencepb.Checkpoint{Token: []byte{1}, Offsets: []*evidencepb.LogOffset{{Kind: evidencepb.LogKind_LOG_KIND_CCEL}}})
			return b
		}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tdxConfig(t, "")
			if err := os.WriteFile(nodeattestor.CheckpointPath(cfg), tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			hb, err := nodeattestor.Hello(ctx, f, cfg)
			if err != nil {
				t.Fatalf("a damaged checkpoint blocks the hello: %v", err)
			}
			h, _ := evidence.DecodeHello(hb, evidence.DefaultLimits())
			if h.GetCheckpoint() != nil {
				t.Fatalf("presented a damaged checkpoint: %v", h.GetCheckpoint())
			}
		})
	}
}

// TestAttestCheckpointRounds drives the plugin over its transport through
// every round a checkpointing server can add: a suffix challenge the plugin
// honours, a fallback nonce challenge for whole logs, and a new checkpoint
// it stores and presents at the next attestation.
func TestAttestCheckpointRounds(t *testing.T) {
	simDir, base := newSim(t), t.TempDir()
	rt := writeRuntimeLog(t, filepath.Join(base, "state", "runtime.cel"))
	l := load(t)
	l.configure(t, simConfig(simDir, base, ""))

	s := l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	// Suffix from the runtime log's end: an empty suffix, echoed.
	n, _ := evidence.NewNonce()
	s.nonce = n
	off := &evidencepb.LogOffset{Kind: evidencepb.LogKind_LOG_KIND_RUNTIME, Events: 1, Bytes: uint64(len(rt))}
	s.send(evidence.NewChallenge(&evidencepb.Challenge{Nonce: n, Want: []evidencepb.LogKind{evidencepb.LogKind_LOG_KIND_RUNTIME},
		Checkpoint: &evidencepb.Checkpoint{Offsets: []*evidencepb.LogOffset{off}}}))
	if err := s.recvEvidence(); err != nil {
		t.Fatal(err)
	}
	if s.ev.GetCheckpoint() == nil || len(s.logs.Runtime) != 0 {
		t.Fatalf("suffix round: echo %v, %d runtime bytes", s.ev.GetCheckpoint(), len(s.logs.Runtime))
	}
	// Fallback: whole logs.
	s.challenge(allLogs, 0)
	if err := s.recvEvidence(); err != nil {
		t.Fatal(err)
	}
	if s.ev.GetCheckpoint() != nil || !bytes.Equal(s.logs.Runtime, rt) || s.logs.CCEL == nil {
		t.Fatal("fallback round did not send whole logs")
	}
	// New checkpoint.
	s.send(evidence.NewChallenge(checkpointChallenge(off)))
	b, err := s.recvResponse()
	if err != nil {
		t.Fatal(err)
	}
	if err := evidence.DecodeAck(b, evidence.DefaultLimits()); err != nil {
		t.Fatalf("answer to the checkpoint: %v", err)
	}
	s.end()

	s = l.begin(t)
	if err := s.recvHello(); err != nil {
		t.Fatal(err)
	}
	if string(s.hello.GetCheckpoint().GetToken()) != "server-signed" {
		t.Fatalf("next hello presents %v", s.hello.GetCheckpoint())
	}
}

// FuzzStoredCheckpoint: whatever the checkpoint file holds, Hello never
// fails or panics because of it, and presents only what encodes.
func FuzzStoredCheckpoint(f *testing.F) {
	good, _ := proto.Marshal(&evidencepb.Checkpoint{Token: []byte("t"), Offsets: []*evidencepb.LogOffset{imaOffset(1, 2)}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := tdxConfig(t, "")
		if err := os.WriteFile(nodeattestor.CheckpointPath(cfg), b, 0o600); err != nil {
			t.Fatal(err)
		}
		hb, err := nodeattestor.Hello(context.Background(), &fakeTDX{}, cfg)
		if err != nil {
			t.Fatalf("Hello fails on a stored checkpoint: %v", err)
		}
		if _, err := evidence.DecodeHello(hb, evidence.DefaultLimits()); err != nil {
			t.Fatalf("Hello sent what does not decode: %v", err)
		}
	})
}
