// Package tpm is the TPM 2.0 provider of the CC Trusted API (physical TPMs,
// cloud vTPMs, swtpm): PCRs of every allocated bank, the firmware event log,
// quotes by an attestation key (AK) over a PCR selection with the report
// data as extraData, PCR extend for the runtime log, the EK and its
// certificate, and credential activation. The server-side counterparts
// (VerifyQuote, MakeCredential, AKName, VerifyEKCertificate) are package
// tpmquote's, which the provider uses to check its own quotes and AK.
package tpm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// Defaults and well-known locations.
const (
	DefaultDevice     = "/dev/tpmrm0"
	DefaultRuntimePCR = cctrusted.PCR(23)
	// EventLogPath is the firmware (TCG PC Client) log, relative to HostRoot.
	EventLogPath = "sys/kernel/security/tpm0/binary_bios_measurements"
	// IMALogPath is the IMA binary log, relative to HostRoot; some kernels
	// put it under IMALogPathAlt.
	IMALogPath    = "sys/kernel/security/ima/binary_runtime_measurements"
	IMALogPathAlt = "sys/kernel/security/integrity/ima/binary_runtime_measurements"
	// MaxLogSize bounds the logs read from securityfs.
	MaxLogSize = eventlog.DefaultMaxLogSize
)

// EK certificate NV indices (TCG EK Credential Profile 2.0, 2.2.1.4) and
// the persistent handles EKs are conventionally stored at.
const (
	EKCertNVIndexRSA uint32 = 0x01c00002
	EKCertNVIndexECC uint32 = 0x01c0000a
	EKHandleRSA      uint32 = 0x81010001
	EKHandleECC      uint32 = 0x81010002
)

// Options configures Open. The zero value opens /dev/tpmrm0 with an ECC AK.
type Options struct {
	// Device is a TPM character device ("/dev/tpmrm0" by default,
	// "/dev/tpm0") or "tcp://host:port" for a TPM that speaks the raw
	// command stream over TCP (swtpm's --server type=tcp).
	Device string
	// HostRoot prefixes the securityfs log paths, for agents that see the
	// host's /sys mounted elsewhere (default "/").
	HostRoot string
	// AKType is "ecc" (P-256, ECDSA-SHA256; default) or "rsa" (2048,
	// RSASSA-SHA256).
	AKType string
	// AKHandle, when not zero, is a persistent handle (0x81xxxxxx): an AK
	// there is used; if the handle is empty the AK is created and, with
	// PersistAK, stored there. A key there of another kind is an error,
	// never overwritten. With AKHandle zero the AK is a transient primary
	// key, re-derived identically at every Open from the owner seed.
	AKHandle  uint32
	PersistAK bool
	// AKMustExist: the AK at AKHandle is someone else's (an Azure
	// paravisor's HCL AK at 0x81000003): an empty handle is an error and
	// no AK is ever created.
	AKMustExist bool
	// EKType is "rsa" (default, the EK every TPM certifies) or "ecc".
	EKType string
	// EKNVIndex holds the EK certificate (default per EKType: 0x01c00002
	// for RSA, 0x01c0000a for ECC).
	EKNVIndex uint32
	// RuntimePCR is the PCR the runtime log extends (zero means 23: PCR0 is
	// firmware's and never a runtime register).
	RuntimePCR cctrusted.PCR
	// QuoteBanks are the banks Report quotes (default SHA-256 only).
	QuoteBanks []cctrusted.Algorithm
	// QuotePCRs are the PCRs Report quotes in each bank (default 0..23).
	QuotePCRs []cctrusted.PCR
}

func (o *Options) setDefaults() error {
	if o.Device == "" {
		o.Device = DefaultDevice
	}
	if o.HostRoot == "" {
		o.HostRoot = "/"
	}
	switch o.AKType = strings.ToLower(o.AKType); o.AKType {
	case "":
		o.AKType = "ecc"
	case "ecc", "rsa":
	default:
		return fmt.Errorf("tpm: ak_type %q: want ecc or rsa", o.AKType)
	}
	switch o.EKType = strings.ToLower(o.EKType); o.EKType {
	case "":
		o.EKType = "rsa"
	case "ecc", "rsa":
	default:
		return fmt.Errorf("tpm: ek_type %q: want rsa or ecc", o.EKType)
	}
	if o.EKNVIndex == 0 {
		o.EKNVIndex = EKCertNVIndexRSA
		if o.EKType == "ecc" {
			o.EKNVIndex = EKCertNVIndexECC
		}
	}
	if o.AKHandle != 0 && o.AKHandle>>24 != 0x81 {
		return fmt.Errorf("tpm: ak_handle 0x%08x is not a persistent handle (0x81xxxxxx)", o.AKHandle)
	}
	if o.PersistAK && o.AKHandle == 0 {
		return errors.New("tpm: persist_ak needs ak_handle")
	}
	if o.AKMustExist && (o.AKHandle == 0 || o.PersistAK) {
		return errors.New("tpm: an AK that must exist needs ak_handle and is never persisted")
	}
	if o.RuntimePCR == 0 {
		o.RuntimePCR = DefaultRuntimePCR
	}
	if !o.RuntimePCR.IMR().Valid() {
		return fmt.Errorf("tpm: runtime_pcr %d is outside 0..23", o.RuntimePCR)
	}
	if len(o.QuoteBanks) == 0 {
		o.QuoteBanks = []cctrusted.Algorithm{cctrusted.AlgSHA256}
	}
	for _, b := range o.QuoteBanks {
		if !b.Known() {
			return fmt.Errorf("tpm: quote bank %v is unknown", b)
		}
	}
	if len(o.QuotePCRs) == 0 {
		for i := range cctrusted.NumPCRs {
			o.QuotePCRs = append(o.QuotePCRs, cctrusted.PCR(i))
		}
	}
	for _, p := range o.QuotePCRs {
		if !p.IMR().Valid() {
			return fmt.Errorf("tpm: quote pcr %d is outside 0..23", p)
		}
	}
	return nil
}

// Provider is an open TPM. Its methods are safe for concurrent use: TPM
// commands are serialised.
type Provider struct {
	mu     sync.Mutex
	rwc    io.ReadWriteCloser
	tpm    transport.TPM
	broken error
	opts   Options
	banks  []cctrusted.Algorithm

	ak key  // always loaded
	ek *key // loaded on first use
}

// key is a loaded TPM object.
type key struct {
	handle    tpm2.TPMHandle
	name      tpm2.TPM2BName
	public    []byte // TPMT_PUBLIC
	transient bool   // flushed at Close
}

var _ cctrusted.Provider = (*Provider)(nil)

// Open opens the TPM named by opts.Device, lists its PCR banks and loads or
// creates the attestation key.
func Open(ctx context.Context, opts Options) (*Provider, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	rwc, err := openDevice(ctx, opts.Device)
	if err != nil {
		return nil, err
	}
	p, err := OpenTransport(ctx, rwc, opts)
	if err != nil {
		rwc.Close()
		return nil, err
	}
	return p, nil
}

// OpenTransport is Open over an already open TPM connection (for example
// go-tpm-tools' in-process simulator). The provider owns rwc and closes it
// in Close, but not when OpenTransport fails.
func OpenTransport(ctx context.Context, rwc io.ReadWriteCloser, opts Options) (*Provider, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	p := &Provider{rwc: rwc, tpm: transport.FromReadWriter(rwc), opts: opts}
	err := p.do(ctx, "open", func(t transport.TPM) error {
		banks, err := allocatedBanks(t)
		if err != nil {
			return err
		}
		p.banks = banks
		p.ak, err = loadAK(t, opts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: opening %s: %w", opts.Device, err)
	}
	return p, nil
}

// deadliner is a connection whose blocking calls a deadline can interrupt.
type deadliner interface{ SetDeadline(time.Time) error }

var errClosed = errors.New("tpm: provider is closed")

// do runs fn with the TPM to itself. A cancelled ctx interrupts a TCP
// connection's I/O; the stream is then out of step and the provider refuses
// further commands rather than read another command's response.
func (p *Provider) do(ctx context.Context, what string, fn func(transport.TPM) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rwc == nil {
		return errClosed
	}
	if p.broken != nil {
		return fmt.Errorf("tpm: %s: connection unusable after an interrupted command: %w", what, p.broken)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tpm: %s: %w", what, err)
	}
	if dl, ok := p.rwc.(deadliner); ok {
		if d, ok := ctx.Deadline(); ok {
			_ = dl.SetDeadline(d)
		}
		done := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = dl.SetDeadline(time.Unix(1, 0))
			close(done)
		})
		defer func() {
			if !stop() {
				<-done
			}
			_ = dl.SetDeadline(time.Time{})
		}()
	}
	err := fn(p.tpm)
	if err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		p.broken = err
	}
	return err
}

// Close flushes transient keys and closes the connection.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rwc == nil {
		return nil
	}
	var errs []error
	if p.broken == nil {
		for _, k := range []*key{&p.ak, p.ek} {
			if k != nil && k.transient && k.handle != 0 {
				if _, err := (tpm2.FlushContext{FlushHandle: k.handle}).Execute(p.tpm); err != nil {
					errs = append(errs, fmt.Errorf("tpm: flushing handle 0x%08x: %w", uint32(k.handle), err))
				}
			}
		}
	}
	if err := p.rwc.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tpm: closing %s: %w", p.opts.Device, err))
	}
	p.rwc = nil
	return errors.Join(errs...)
}

// TEE implements cctrusted.Provider.
func (p *Provider) TEE() cctrusted.TEE { return cctrusted.TEETPM }

// DefaultAlgorithm is SHA-256, provided the TPM allocates that bank.
func (p *Provider) DefaultAlgorithm(context.Context) (cctrusted.Algorithm, error) {
	if err := p.checkBank(cctrusted.AlgSHA256); err != nil {
		return 0, err
	}
	return cctrusted.AlgSHA256, nil
}

// MeasurementCount is the 24 PCRs of a PC Client TPM.
func (p *Provider) MeasurementCount(context.Context) (int, error) { return cctrusted.NumPCRs, nil }

// Banks lists the allocated PCR banks in the TPM's order.
func (p *Provider) Banks() []cctrusted.Algorithm { return slices.Clone(p.banks) }

// RuntimePCR is the PCR the runtime log extends.
func (p *Provider) RuntimePCR() cctrusted.PCR { return p.opts.RuntimePCR }

func (p *Provider) checkBank(alg cctrusted.Algorithm) error {
	if slices.Contains(p.banks, alg) {
		return nil
	}
	names := make([]string, len(p.banks))
	for i, b := range p.banks {
		names[i] = b.String()
	}
	return fmt.Errorf("tpm: PCR bank %v is not allocated on this TPM (allocated: %s)", alg, strings.Join(names, ", "))
}

// Measurement reads one PCR of one bank.
func (p *Provider) Measurement(ctx context.Context, imr cctrusted.IMR, alg cctrusted.Algorithm) (cctrusted.Digest, error) {
	if imr.Space != cctrusted.SpacePCR || !imr.Valid() {
		return cctrusted.Digest{}, fmt.Errorf("tpm: register %v is not a PCR 0..23", imr)
	}
	if err := p.checkBank(alg); err != nil {
		return cctrusted.Digest{}, err
	}
	var v []byte
	err := p.do(ctx, "pcr read", func(t transport.TPM) error {
		vals, err := readBank(t, alg, []uint{uint(imr.Index)})
		v = vals[uint(imr.Index)]
		return err
	})
	if err != nil {
		return cctrusted.Digest{}, fmt.Errorf("tpm: reading %v (%v): %w", imr, alg, err)
	}
	return cctrusted.Digest{Alg: alg, Value: v}, nil
}

// PCRs reads all 24 PCRs of each bank given (every allocated bank if none).
func (p *Provider) PCRs(ctx context.Context, banks ...cctrusted.Algorithm) (cctrusted.Registers, error) {
	if len(banks) == 0 {
		banks = p.banks
	}
	all := make([]uint, cctrusted.NumPCRs)
	for i := range all {
		all[i] = uint(i)
	}
	regs := make(cctrusted.Registers)
	for _, alg := range banks {
		if err := p.checkBank(alg); err != nil {
			return nil, err
		}
		err := p.do(ctx, "pcr read", func(t transport.TPM) error {
			vals, err := readBank(t, alg, all)
			for i, v := range vals {
				regs.Set(cctrusted.PCR(i).IMR(), alg, v)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("tpm: reading %v bank: %w", alg, err)
		}
	}
	return regs, nil
}

// Extend extends one bank of a PCR with digest.
func (p *Provider) Extend(ctx context.Context, pcr cctrusted.PCR, alg cctrusted.Algorithm, digest []byte) error {
	return p.ExtendDigests(ctx, pcr, []cctrusted.Digest{{Alg: alg, Value: digest}})
}

// ExtendDigests extends several banks of a PCR in one TPM2_PCR_Extend, so
// that the banks never disagree about how many events they hold.
func (p *Provider) ExtendDigests(ctx context.Context, pcr cctrusted.PCR, digests []cctrusted.Digest) error {
	if !pcr.IMR().Valid() {
		return fmt.Errorf("tpm: extend: pcr %d is outside 0..23", pcr)
	}
	if len(digests) == 0 {
		return fmt.Errorf("tpm: extend pcr%d: no digests", pcr)
	}
	vals := make([]tpm2.TPMTHA, 0, len(digests))
	for _, d := range digests {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("tpm: extend pcr%d: %w", pcr, err)
		}
		if err := p.checkBank(d.Alg); err != nil {
			return fmt.Errorf("tpm: extend pcr%d: %w", pcr, err)
		}
		vals = append(vals, tpm2.TPMTHA{HashAlg: tpm2.TPMIAlgHash(d.Alg), Digest: d.Value})
	}
	return p.do(ctx, "pcr extend", func(t transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: vals},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: extending pcr%d: %w", pcr, err)
		}
		return nil
	})
}

// RawEventLog returns the firmware's TCG event log (binary_bios_measurements).
func (p *Provider) RawEventLog(context.Context) ([]byte, error) {
	return readBounded(filepath.Join(p.opts.HostRoot, EventLogPath))
}

// RawIMALog returns the IMA binary measurement log.
func (p *Provider) RawIMALog(context.Context) ([]byte, error) {
	b, err := readBounded(filepath.Join(p.opts.HostRoot, IMALogPath))
	if errors.Is(err, os.ErrNotExist) {
		return readBounded(filepath.Join(p.opts.HostRoot, IMALogPathAlt))
	}
	return b, err
}

// EventLog returns events [start, start+count) of the firmware log, parsed
// by package eventlog (event 0 is the Spec ID event).
func (p *Provider) EventLog(ctx context.Context, start, count int) ([]cctrusted.Event, error) {
	raw, err := p.RawEventLog(ctx)
	if err != nil {
		return nil, err
	}
	log, err := eventlog.ParseTPM(raw)
	if err != nil {
		return nil, fmt.Errorf("tpm: %s: %w", EventLogPath, err)
	}
	return cctrusted.Page(log.Events, start, count)
}

func readBounded(path string) ([]byte, error) {
	b, err := smallfile.Read(path, MaxLogSize)
	if err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	return b, nil
}

// allocatedBanks lists the banks with at least one PCR allocated.
func allocatedBanks(t transport.TPM) ([]cctrusted.Algorithm, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, Property: 0, PropertyCount: 1}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("listing PCR banks: %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("listing PCR banks: %w", err)
	}
	var banks []cctrusted.Algorithm
	for _, s := range sel.PCRSelections {
		if slices.ContainsFunc(s.PCRSelect, func(b byte) bool { return b != 0 }) {
			banks = append(banks, cctrusted.Algorithm(s.Hash))
		}
	}
	if len(banks) == 0 {
		return nil, errors.New("the TPM allocates no PCR bank")
	}
	return banks, nil
}

// readBank reads the given PCRs of one bank. TPM2_PCR_Read returns at most
// 8 values per call and says which ones in pcrSelectionOut, so ask again for
// the rest until every value came back.
func readBank(t transport.TPM, alg cctrusted.Algorithm, pcrs []uint) (map[uint][]byte, error) {
	out := make(map[uint][]byte, len(pcrs))
	rest := slices.Clone(pcrs)
	for len(rest) > 0 {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
			{Hash: tpm2.TPMIAlgHash(alg), PCRSelect: tpm2.PCClientCompatible.PCRs(rest...)},
		}}}.Execute(t)
		if err != nil {
			return out, err
		}
		var got []uint
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if cctrusted.Algorithm(s.Hash) != alg {
				continue
			}
			for byteIdx, bits := range s.PCRSelect {
				for bit := range 8 {
					if bits&(1<<bit) != 0 {
						got = append(got, uint(byteIdx*8+bit))
					}
				}
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return out, fmt.Errorf("TPM2_PCR_Read returned %d values for %d selected PCRs", len(rsp.PCRValues.Digests), len(got))
		}
		for i, idx := range got {
			v := rsp.PCRValues.Digests[i].Buffer
			if len(v) != alg.Size() {
				return out, fmt.Errorf("pcr%d (%v) is %d bytes", idx, alg, len(v))
			}
			out[idx] = slices.Clone(v)
		}
		before := len(rest)
		rest = slices.DeleteFunc(rest, func(i uint) bool { _, ok := out[i]; return ok })
		if len(rest) == before {
			return out, fmt.Errorf("TPM2_PCR_Read returned none of the requested PCRs %v", rest)
		}
	}
	return out, nil
}
