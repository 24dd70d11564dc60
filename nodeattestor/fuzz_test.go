package nodeattestor

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
)

// scriptedStream plays a server that sends fixed challenge bytes.
type scriptedStream struct {
	challenges [][]byte
	sent       []*nodeattestorv1.PayloadOrChallengeResponse
}

func (s *scriptedStream) Send(m *nodeattestorv1.PayloadOrChallengeResponse) error {
	s.sent = append(s.sent, m)
	return nil
}

func (s *scriptedStream) Recv() (*nodeattestorv1.Challenge, error) {
	if len(s.challenges) == 0 {
		return nil, io.EOF
	}
	c := s.challenges[0]
	s.challenges = s.challenges[1:]
	return &nodeattestorv1.Challenge{Challenge: c}, nil
}

// quoteOnly is a TPM-less provider that signs nothing: enough for the agent
// to go through the protocol.
type quoteOnly struct{ tee cctrusted.TEE }

func (q quoteOnly) TEE() cctrusted.TEE { return q.tee }
func (quoteOnly) DefaultAlgorithm(context.Context) (cctrusted.Algorithm, error) {
	return cctrusted.AlgSHA384, nil
}
func (quoteOnly) MeasurementCount(context.Context) (int, error) { return 4, nil }
func (quoteOnly) Measurement(context.Context, cctrusted.IMR, cctrusted.Algorithm) (cctrusted.Digest, error) {
	return cctrusted.Digest{}, errors.New("none")
}
func (quoteOnly) EventLog(context.Context, int, int) ([]cctrusted.Event, error) { return nil, nil }
func (q quoteOnly) Report(_ context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	rd := cctrusted.ReportData(nonce, userData)
	return &cctrusted.Report{TEE: q.tee, ReportData: rd[:], Quote: []byte{1}}, nil
}

// FuzzAttest feeds arbitrary server messages to the agent's side of the
// protocol: it must never panic, and it only answers a well-formed nonce
// challenge.
func FuzzAttest(f *testing.F) {
	enc := func(p *evidencepb.Payload) []byte {
		b, err := evidence.Encode(p)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	nonce := make([]byte, evidence.NonceSize)
	good := enc(evidence.NewChallenge(&evidencepb.Challenge{Nonce: nonce, Want: []evidencepb.LogKind{1, 2, 3, 4}}))
	act := enc(evidence.NewChallenge(&evidencepb.Challenge{CredentialBlob: []byte{1}, EncryptedSecret: []byte{2}}))
	f.Add(good, act)
	f.Add(act, good)
	f.Add(good[:len(good)-1], []byte{})
	f.Add([]byte{}, []byte{})
	f.Add(enc(evidence.NewHello(&evidencepb.Hello{Tee: "tdx"})), good)

	dir := f.TempDir()
	cfg, err := conf.ParseAgentNodeAttestor(`tee = "tpm"
instance_id_path = "` + filepath.Join(dir, "id") + `"
runtime_log_path = "` + filepath.Join(dir, "runtime.cel") + `"`)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		for _, tee := range []cctrusted.TEE{cctrusted.TEETDX, cctrusted.TEETPM} {
			s := &scriptedStream{challenges: [][]byte{first, second}}
			err := attest(context.Background(), s, quoteOnly{tee}, cfg)
			if len(s.sent) > 1 {
				ch, derr := evidence.DecodeChallenge(first, challengeLimits())
				if derr != nil || len(ch.GetNonce()) != evidence.NonceSize {
					t.Fatalf("answered a challenge that is not a nonce challenge (%v)", derr)
				}
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %T %v does not carry a code", err, err)
				}
			}
		}
	})
}
