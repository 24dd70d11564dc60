// Package sim is a simulated Intel TDX guest for the demo and for tests. Its state
// lives in a directory so that several processes (the SPIRE agent plugin, the CLI,
// the simulated PCS) share one TD:
//
//	D/state.json                          MRTD, RTMR0..3, TD attributes (State)
//	D/state.lock                          flock(2)ed around every state access
//	D/root.pem                            the simulated root, for a verifier's config
//	D/pki/                                the simulated Intel PKI (package sim/pki)
//	D/pcs.json                            what the simulated PCS says (package sim/pcs)
//	D/sys/firmware/acpi/tables/CCEL       the CCEL ACPI table the TD booted with
//	D/sys/firmware/acpi/tables/data/CCEL  its CCEL event log
//
// Open runs the production TDX provider (package tee/tdx) over that directory as its
// host root, with a configfs-tsm client whose quotes the simulated quoting enclave
// signs, a TDREPORT device and an RTMR extender backed by state.json. Only the
// hardware is simulated; quote retrieval, log reading and RTMR extension are the real
// code paths.
//
// A simulation is never mistaken for hardware: the provider's TEE is
// cctrusted.TEESim, state.json carries SimulatedMarker, every quote's QE vendor ID is
// "CCNP-SIM-NOTINTL", every certificate subject has the organizational unit
// pki.SimulationOU, and its quotes verify only under D/root.pem, never under Intel's
// root.
package sim

import (
	"context"
	"crypto/sha512"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
	"github.com/ccnp-spire/ccnp-spire/tee/tdx"
)

// The real CCEL a simulated TD boots with by default (see firmware/README.md).
var (
	//go:embed firmware/cos-113-intel-tdx.bin
	defaultCCEL []byte
	//go:embed firmware/cos-113-intel-tdx.table.bin
	defaultCCELTable []byte
)

// DefaultCCEL returns a copy of the embedded CCEL event log and its ACPI table (a real
// TDX VM's, Container-Optimized OS 113).
func DefaultCCEL() (log, table []byte) {
	return append([]byte(nil), defaultCCEL...), append([]byte(nil), defaultCCELTable...)
}

// InitOptions choose the simulated TD. The zero value is an UpToDate, non-debug TD
// booted with the embedded CCEL.
type InitOptions struct {
	// CCEL is the event log the TD booted with; nil means the embedded real one.
	CCEL []byte
	// CCELTable is the CCEL ACPI table. nil with CCEL set means a table is made for
	// the log (TDX, LAML = log size); nil with CCEL nil means the embedded table.
	CCELTable []byte
	// TCBStatus is what the simulated PCS reports for the platform's TCB level (one
	// of pcs.TCBStatuses()); empty means "UpToDate".
	TCBStatus string
	// Debug sets the TD's DEBUG attribute (td_attributes bit 0).
	Debug bool
	// MRTD is the build-time measurement (48 bytes); nil means DefaultMRTD().
	MRTD []byte
	// MRConfigID, MROwner and MROwnerConfig are what a VMM would set at TD
	// creation (48 bytes each); nil means zeros, as when the VMM sets none.
	MRConfigID, MROwner, MROwnerConfig []byte
	// Platform is the simulated machine; nil means pki.DefaultPlatform().
	Platform *pki.Platform
	// Now is when certificates start being valid; zero means time.Now().
	Now time.Time
}

// DefaultMRTD is the MRTD of a simulated TD unless InitOptions say otherwise:
// SHA-384 of a fixed label, so it is stable and recognisably not a real TD image.
func DefaultMRTD() []byte {
	sum := sha512.Sum384([]byte("ccnp-spire simulated TD image v1"))
	return sum[:]
}

// Default TD attributes and XFAM, as a production TD on a 4th-gen Xeon reports them
// (SEPT_VE_DISABLE set; x87, SSE, AVX, AVX-512, PK, CET state, AMX tiles).
var (
	defaultTDAttributes = pki.Hex{0, 0, 0, 0x10, 0, 0, 0, 0}
	defaultXFAM         = pki.Hex{0xe7, 0x02, 0x06, 0, 0, 0, 0, 0}
)

// Host-root paths of the CCEL inside a sim directory (the tdx package's defaults).
var (
	ccelTablePath = filepath.FromSlash(tdx.DefaultCCELTablePath)
	ccelLogPath   = filepath.FromSlash(tdx.DefaultCCELPath)
)

// Init creates a simulated TD in dir: the PKI, the PCS parameters, the CCEL under
// the host-root tree, state.json with RTMR0..2 replayed from the CCEL, and
// root.pem. dir may exist but must not already hold a sim.
func Init(dir string, opts InitOptions) error {
	status := opts.TCBStatus
	if status == "" {
		status = "UpToDate"
	}
	params := pcs.Params{TCBStatus: status}
	if err := params.Validate(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	platform := pki.DefaultPlatform()
	if opts.Platform != nil {
		platform = *opts.Platform
	}
	if err := platform.Validate(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	mrtd := opts.MRTD
	if mrtd == nil {
		mrtd = DefaultMRTD()
	}
	if len(mrtd) != pki.MRSize {
		return fmt.Errorf("sim: MRTD is %d bytes, want %d", len(mrtd), pki.MRSize)
	}
	vmm := [3][]byte{make(pki.Hex, pki.MRSize), make(pki.Hex, pki.MRSize), make(pki.Hex, pki.MRSize)}
	for i, v := range [3][]byte{opts.MRConfigID, opts.MROwner, opts.MROwnerConfig} {
		if v == nil {
			continue
		}
		if len(v) != pki.MRSize {
			return fmt.Errorf("sim: %s is %d bytes, want %d", [3]string{"MRConfigID", "MROwner", "MROwnerConfig"}[i], len(v), pki.MRSize)
		}
		copy(vmm[i], v)
	}
	log, table := opts.CCEL, opts.CCELTable
	switch {
	case log == nil && table != nil:
		return errors.New("sim: a CCEL table without its CCEL")
	case log == nil:
		log, table = DefaultCCEL()
	case table == nil:
		table = makeCCELTable(uint64(len(log)))
	}
	rtmr, err := replayCCEL(table, log)
	if err != nil {
		return err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		return fmt.Errorf("sim: %s already holds a simulated TD", dir)
	}
	auth, err := pki.Create(filepath.Join(dir, pcs.PKIDir), platform, now)
	if err != nil {
		return err
	}
	if err := pcs.WriteParams(dir, params); err != nil {
		return err
	}
	for _, f := range []struct {
		rel string
		b   []byte
	}{{ccelTablePath, table}, {ccelLogPath, log}} {
		p := filepath.Join(dir, f.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		if err := writeAtomic(p, f.b, 0o444); err != nil {
			return err
		}
	}

	s := &State{
		Simulated:     SimulatedMarker,
		Version:       stateVersion,
		MRTD:          append(pki.Hex(nil), mrtd...),
		TDAttributes:  append(pki.Hex(nil), defaultTDAttributes...),
		XFAM:          append(pki.Hex(nil), defaultXFAM...),
		MRConfigID:    vmm[0],
		MROwner:       vmm[1],
		MROwnerConfig: vmm[2],
	}
	if opts.Debug {
		s.TDAttributes[0] |= 1
	}
	for i := range s.RTMR {
		s.RTMR[i] = append(pki.Hex(nil), rtmr[i][:]...)
	}
	if err := writeAtomic(filepath.Join(dir, RootFile), auth.RootPEM(), 0o644); err != nil {
		return err
	}
	// state.json last: Open treats its presence as "this sim is complete".
	st := store{dir: dir}
	fl, err := st.lock(context.Background(), true)
	if err != nil {
		return err
	}
	defer fl.Close()
	return st.writeLocked(s)
}

// replayCCEL returns RTMR0..3 as the CCEL replays them, after checking with the
// verifier's own code that the log and table are consistent.
func replayCCEL(table, log []byte) ([4][48]byte, error) {
	var out [4][48]byte
	l, err := eventlog.ParseCCEL(log)
	if err != nil {
		return out, fmt.Errorf("sim: CCEL: %w", err)
	}
	regs, err := l.Replay()
	if err != nil {
		return out, fmt.Errorf("sim: CCEL replay: %w", err)
	}
	for i := range out {
		if v, ok := regs.Get(cctrusted.RTMR(i).IMR(), cctrusted.AlgSHA384); ok {
			if len(v) != 48 {
				return out, fmt.Errorf("sim: CCEL replay: RTMR%d is %d bytes", i, len(v))
			}
			copy(out[i][:], v)
		}
	}
	if _, err := eventlog.VerifyCCEL(table, log, [3][]byte{out[0][:], out[1][:], out[2][:]}); err != nil {
		return out, fmt.Errorf("sim: CCEL does not verify against its own replay: %w", err)
	}
	return out, nil
}

// makeCCELTable builds a TDX CCEL ACPI table for a log of logLen bytes (UEFI 2.10
// 38.4.2: 36-byte ACPI header, CC type, subtype, reserved, LAML, LASA).
func makeCCELTable(logLen uint64) []byte {
	t := make([]byte, eventlog.CCELTableSize)
	copy(t[0:4], "CCEL")
	binary.LittleEndian.PutUint32(t[4:], uint32(len(t)))
	t[8] = 1 // revision
	copy(t[10:16], "CCNPSM")
	copy(t[16:24], "SIMTDCEL")
	binary.LittleEndian.PutUint32(t[24:], 1)
	copy(t[28:32], "CCNP")
	binary.LittleEndian.PutUint32(t[32:], 1)
	t[36] = eventlog.CCTypeTDX
	binary.LittleEndian.PutUint64(t[40:], logLen)
	// LASA (guest-physical address of the log) is meaningless outside a VM; a
	// page-aligned address keeps the table looking like firmware's.
	binary.LittleEndian.PutUint64(t[48:], 0x7f000000)
	var sum byte
	for _, b := range t {
		sum += b
	}
	t[9] = -sum
	return t
}

// Provider is a simulated TD as the CC Trusted API sees it: the production TDX
// provider over the sim directory, reporting TEE cctrusted.TEESim. It is safe for
// concurrent use, also across processes sharing the directory.
type Provider struct {
	tdx  *tdx.Provider
	dir  string
	auth *pki.Authority
	st   store
}

var _ cctrusted.Provider = (*Provider)(nil)

// Open opens the simulated TD in dir (made by Init).
func Open(ctx context.Context, dir string) (*Provider, error) {
	st := store{dir: dir}
	if _, err := st.read(ctx); err != nil {
		return nil, err
	}
	auth, err := pki.Load(filepath.Join(dir, pcs.PKIDir))
	if err != nil {
		return nil, err
	}
	tp, err := tdx.Open(ctx, tdx.Options{
		HostRoot: dir,
		TSM:      newTSM(st, auth),
		Device:   &device{st: st, platform: auth.Platform},
		Extender: &extender{st: st},
	})
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return &Provider{tdx: tp, dir: dir, auth: auth, st: st}, nil
}

// Dir returns the sim directory.
func (p *Provider) Dir() string { return p.dir }

// RootPEM returns the simulated root certificate (the content of Dir()/root.pem).
func (p *Provider) RootPEM() []byte { return p.auth.RootPEM() }

// State returns the TD's current state.
func (p *Provider) State(ctx context.Context) (*State, error) { return p.st.read(ctx) }

// TEE returns cctrusted.TEESim: a simulation never presents itself as TDX.
func (p *Provider) TEE() cctrusted.TEE { return cctrusted.TEESim }

// DefaultAlgorithm returns SHA-384.
func (p *Provider) DefaultAlgorithm(ctx context.Context) (cctrusted.Algorithm, error) {
	return p.tdx.DefaultAlgorithm(ctx)
}

// MeasurementCount returns 4 (RTMR0..3).
func (p *Provider) MeasurementCount(ctx context.Context) (int, error) {
	return p.tdx.MeasurementCount(ctx)
}

// Measurement reads one register from a fresh simulated TDREPORT.
func (p *Provider) Measurement(ctx context.Context, imr cctrusted.IMR, alg cctrusted.Algorithm) (cctrusted.Digest, error) {
	return p.tdx.Measurement(ctx, imr, alg)
}

// Measurements returns the MRTD and RTMR0..3 from a fresh simulated TDREPORT.
func (p *Provider) Measurements(ctx context.Context) (mrtd [48]byte, rtmr [4][48]byte, err error) {
	return p.tdx.Measurements(ctx)
}

// EventLog returns CCEL events [start, start+count) read through the TDX provider.
func (p *Provider) EventLog(ctx context.Context, start, count int) ([]cctrusted.Event, error) {
	return p.tdx.EventLog(ctx, start, count)
}

// RawCCEL returns the CCEL table and log the simulated TD booted with.
func (p *Provider) RawCCEL(ctx context.Context) (table, log []byte, err error) {
	return p.tdx.RawCCEL(ctx)
}

// Report returns a quote signed by the simulated quoting enclave whose REPORTDATA is
// SHA-512(nonce || userData). The report's TEE is cctrusted.TEESim.
func (p *Provider) Report(ctx context.Context, nonce, userData []byte) (*cctrusted.Report, error) {
	r, err := p.tdx.Report(ctx, nonce, userData)
	if err != nil {
		return nil, err
	}
	r.TEE = cctrusted.TEESim
	return r, nil
}

// ExtendRTMR extends RTMR2 or RTMR3 with digest: new = SHA-384(old || digest).
func (p *Provider) ExtendRTMR(ctx context.Context, index int, digest [48]byte) error {
	return p.tdx.ExtendRTMR(ctx, index, digest)
}
