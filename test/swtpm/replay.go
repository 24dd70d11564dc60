package swtpm

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrStartupLocality says that a log records a TPM2_Startup from a locality
// other than 0. Such a log's PCR0 starts at 00..0L instead of zero, which a
// TPM started by swtpm (locality 0) cannot reproduce: choose another log.
var ErrStartupLocality = errors.New("swtpm: event log starts the TPM from a non-zero locality")

var startupLocality = []byte("StartupLocality\x00")

// maxLogSize bounds the logs ReplayLog accepts; real firmware logs are tens
// of KiB.
const maxLogSize = 16 << 20

// ReplayLog extends every measured event of a TCG PC Client event log (SHA-1
// or crypto-agile format) into the TPM's PCRs, each digest into its own bank
// with one TPM2_PCR_Extend per event, so that afterwards the log replays to
// the PCR values. Banks the log has no digests for stay untouched.
// EV_NO_ACTION events are skipped, as replay does. It returns the number of
// events extended.
//
// Run it on a freshly started TPM: the PCRs must be at their reset value.
func ReplayLog(ctx context.Context, t *TPM, log []byte) (int, error) {
	if len(log) > maxLogSize {
		return 0, fmt.Errorf("swtpm: event log of %d bytes exceeds %d", len(log), maxLogSize)
	}
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{AllowPadding: true})
	if err != nil {
		return 0, fmt.Errorf("swtpm: parsing event log: %w", err)
	}
	banks := make([][]tcg.Event, len(el.Algs))
	for i, alg := range el.Algs {
		banks[i] = el.Events(alg)
	}
	if len(banks) == 0 || len(banks[0]) == 0 {
		return 0, errors.New("swtpm: event log has no events")
	}

	rw, err := t.Dial(ctx)
	if err != nil {
		return 0, err
	}
	defer rw.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = rw.(*framedConn).SetDeadline(d)
	}
	tpm := transport.FromReadWriter(rw)

	n := 0
	for i, ev := range banks[0] {
		if ev.Type == tcg.NoAction {
			if bytes.HasPrefix(ev.Data, startupLocality) && len(ev.Data) > len(startupLocality) &&
				ev.Data[len(startupLocality)] != 0 {
				return n, fmt.Errorf("%w (event %d: locality %d)", ErrStartupLocality, i, ev.Data[len(startupLocality)])
			}
			continue
		}
		if ev.Index < 0 || ev.Index > 23 {
			return n, fmt.Errorf("swtpm: event %d extends PCR %d, outside 0..23", i, ev.Index)
		}
		var digests []tpm2.TPMTHA
		for b, alg := range el.Algs {
			d := banks[b][i].Digest
			if len(d) == 0 {
				continue
			}
			digests = append(digests, tpm2.TPMTHA{HashAlg: tpmAlg(alg), Digest: d})
		}
		if len(digests) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(ev.Index), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: digests},
		}.Execute(tpm)
		if err != nil {
			return n, fmt.Errorf("swtpm: extending event %d into PCR %d: %w", i, ev.Index, err)
		}
		n++
	}
	return n, nil
}

func tpmAlg(h register.HashAlg) tpm2.TPMIAlgHash {
	switch h {
	case register.HashSHA1:
		return tpm2.TPMAlgSHA1
	case register.HashSHA256:
		return tpm2.TPMAlgSHA256
	default:
		return tpm2.TPMAlgSHA384
	}
}
