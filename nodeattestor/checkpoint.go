package nodeattestor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// CheckpointFile is the name of the file, next to the instance ID, where
// the agent keeps the checkpoint its last attestation ended with.
const CheckpointFile = "checkpoint"

// CheckpointPath is where an agent with configuration cfg keeps its
// checkpoint: in the directory of instance_id_path (the agent's data dir).
func CheckpointPath(cfg *conf.AgentNodeAttestor) string {
	return filepath.Join(filepath.Dir(cfg.InstanceIDPath), CheckpointFile)
}

// maxCheckpointFile bounds the stored checkpoint: the token plus a few
// offsets.
const maxCheckpointFile = evidence.MaxCheckpointTokenBytes + 1024

// loadCheckpoint reads the stored checkpoint; nil when there is none or it
// is unreadable (logged: the attestation is then a full one, which is always
// correct).
func loadCheckpoint(ctx context.Context, path string) *evidencepb.Checkpoint {
	b, err := smallfile.Read(path, maxCheckpointFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil && !errors.Is(err, smallfile.ErrTooLarge) {
		logger(ctx).Warn("Checkpoint not read; attesting with whole logs", "path", path, "error", err)
		return nil
	}
	ck := new(evidencepb.Checkpoint)
	if err == nil {
		err = proto.Unmarshal(b, ck)
	}
	if err == nil && len(ck.GetToken()) == 0 {
		err = errors.New("no token")
	}
	if err != nil {
		logger(ctx).Warn("Checkpoint unusable; attesting with whole logs", "path", path, "error", err)
		return nil
	}
	return ck
}

// keepCheckpoint stores a checkpoint the server issued, replacing the old
// one atomically (write, fsync, rename), so a crash leaves one or the other.
// A failure is logged only: the next attestation is then a full one.
func keepCheckpoint(ctx context.Context, cfg *conf.AgentNodeAttestor, ck *evidencepb.Checkpoint) {
	path := CheckpointPath(cfg)
	if err := writeCheckpoint(path, ck); err != nil {
		logger(ctx).Warn("Checkpoint not stored; the next attestation sends whole logs", "path", path, "error", err)
		return
	}
	logger(ctx).Debug("Stored the server's checkpoint", "path", path, "offsets", len(ck.GetOffsets()))
}

func writeCheckpoint(path string, ck *evidencepb.Checkpoint) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ck)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return smallfile.Write(path, b, 0o600)
}

// Answer returns the agent's answer to any server challenge: Evidence for a
// nonce challenge (Collect), an Ack for a checkpoint challenge (the
// checkpoint is stored first), the activated secret for a credential
// activation challenge (Activate). The plugin's stream loop and tests that
// drive the protocol without the transport share it.
func Answer(ctx context.Context, p cctrusted.Provider, cfg *conf.AgentNodeAttestor, helloBytes []byte, ch *evidencepb.Challenge) (*evidencepb.Payload, error) {
	switch {
	case len(ch.GetNonce()) > 0:
		return Collect(ctx, p, cfg, helloBytes, ch)
	case len(ch.GetCheckpoint().GetToken()) > 0:
		if cfg == nil {
			return nil, failf(codes.FailedPrecondition, "checkpoint", "no configuration")
		}
		keepCheckpoint(ctx, cfg, ch.GetCheckpoint())
		return evidence.NewAck(), nil
	}
	return Activate(ctx, p, ch)
}

// dropCheckpoint removes a stored checkpoint the agent cannot present.
func dropCheckpoint(ctx context.Context, path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		logger(ctx).Warn("Checkpoint not removed", "path", path, "error", err)
	}
}

// errCannotCut says a log is shorter than the offset the server asked to
// send it from (the node rebooted, or the log was rotated): the agent then
// sends whole logs and the server asks again.
var errCannotCut = errors.New("log shorter than the checkpoint offset")

// suffix returns raw from the offset the challenge gives for log kind k,
// and whether there was one.
func suffix(ch *evidencepb.Challenge, k evidencepb.LogKind, raw []byte) ([]byte, bool, error) {
	off := evidence.OffsetOf(ch.GetCheckpoint().GetOffsets(), k)
	if off == nil {
		return raw, false, nil
	}
	if off.GetBytes() > uint64(len(raw)) {
		return nil, true, fmt.Errorf("%w: the %s is %d bytes, the checkpoint is at byte %d", errCannotCut, logName(k), len(raw), off.GetBytes())
	}
	return raw[off.GetBytes():], true, nil
}
