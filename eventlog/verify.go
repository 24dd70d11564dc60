package eventlog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/google/go-eventlog/ccel"
	"github.com/google/go-eventlog/extract"
	pb "github.com/google/go-eventlog/proto/state"
	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tpmeventlog"
)

// Facts are what a verified firmware log says about the boot, in the shape
// a policy compares against. A fact the log could not establish is left at
// its zero value and its *_known flag (where there is one) is false; the
// reason is in Warnings.
type Facts struct {
	// Format is the log the facts come from (ccel or tpm).
	Format Format `json:"format"`
	// Hash is the bank the facts were extracted from (sha384 for CCELs).
	Hash string `json:"hash"`
	// VerifiedRegisters lists the registers whose replay matched a signed
	// value, e.g. "rtmr0" or "pcr7:sha256". Only their events feed the facts.
	VerifiedRegisters []string `json:"verified_registers"`

	SecureBoot      bool `json:"secure_boot"`
	SecureBootKnown bool `json:"secure_boot_known"`
	// SecureBootAuthorities are the certificates that authorised loaded
	// images after the separator: well-known names (e.g.
	// "MS_THIRD_PARTY_UEFI_CA_2011") or "sha256:<hex>" of the DER.
	SecureBootAuthorities []string `json:"secure_boot_authorities,omitempty"`
	// SecureBootPK, KEK and DB likewise name the certificates of those
	// variables; DBXHashes counts the forbidden image hashes.
	SecureBootPK  []string `json:"secure_boot_pk,omitempty"`
	SecureBootKEK []string `json:"secure_boot_kek,omitempty"`
	SecureBootDB  []string `json:"secure_boot_db,omitempty"`
	DBXHashes     int      `json:"dbx_hashes"`

	// Platform facts: the S-CRTM version string (firmware identity on TPM
	// platforms), the GCE firmware version when it parses as one, and the
	// confidential computing technology the log implies.
	SCRTMVersion    string `json:"scrtm_version,omitempty"`
	FirmwareVersion uint32 `json:"firmware_version,omitempty"`
	Technology      string `json:"technology,omitempty"`

	// EFIApps are the PE/COFF digests (hex) of the EFI applications the
	// firmware started, in order: typically shim, then GRUB.
	EFIApps               []string `json:"efi_apps,omitempty"`
	BootServicesDrivers   []string `json:"boot_services_drivers,omitempty"`
	RuntimeServiceDrivers []string `json:"runtime_services_drivers,omitempty"`

	// Bootloader is "grub" when GRUB measurements were found.
	Bootloader string `json:"bootloader,omitempty"`
	// GrubFiles are the files GRUB measured (kernel, initrd, grub.cfg).
	GrubFiles []GrubFile `json:"grub_files,omitempty"`
	// GrubCommands are the GRUB commands as measured, kernel and module
	// command lines included.
	GrubCommands []string `json:"grub_commands,omitempty"`

	KernelCmdline      string `json:"kernel_cmdline"`
	KernelCmdlineKnown bool   `json:"kernel_cmdline_known"`

	// Warnings explain facts that could not be extracted; the replay itself
	// succeeded when Facts are returned.
	Warnings []string `json:"warnings,omitempty"`
}

// GrubFile is one file GRUB measured. The name is not part of the measured
// digest: it says what the bootloader claims it loaded.
type GrubFile struct {
	Digest string `json:"digest"`
	Name   string `json:"name"`
}

// VerifyCCEL replays a CCEL against the RTMR0..2 values a TDX quote signed
// (each 48 bytes, SHA-384) and, when they match, extracts the boot facts.
// A mismatch returns an error wrapping *cctrusted.MismatchError naming the
// RTMR, both values and the last event that extended it.
//
// table is the CCEL ACPI table. It may be nil, in which case the TEE type
// and log area size go unchecked (the quote already says TDX); when given
// it must be a valid TDX table whose log area holds the whole log.
func VerifyCCEL(table, log []byte, rtmr [3][]byte) (*Facts, error) {
	for i, v := range rtmr {
		if len(v) != cctrusted.AlgSHA384.Size() {
			return nil, fmt.Errorf("eventlog: signed rtmr%d is %d bytes, want 48", i, len(v))
		}
	}
	if table != nil {
		t, err := ParseCCELTable(table)
		if err != nil {
			return nil, err
		}
		if t.CCType != CCTypeTDX {
			return nil, fmt.Errorf("eventlog: CCEL table is for CC type %d, want TDX (%d)", t.CCType, CCTypeTDX)
		}
		if uint64(len(log)) > t.LAML {
			return nil, fmt.Errorf("eventlog: CCEL is %d bytes, larger than the %d byte log area the table declares", len(log), t.LAML)
		}
	}
	l, err := ParseCCEL(log)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(l.Algorithms, cctrusted.AlgSHA384) {
		return nil, fmt.Errorf("eventlog: the CCEL declares the banks %v and no sha384: it cannot replay to TDX RTMRs, which are SHA-384", l.Algorithms)
	}
	r, err := l.replayer()
	if err != nil {
		return nil, err
	}
	// go-eventlog reads only the events: it would read zero fill as an
	// endless run of empty events.
	log = log[:l.End]
	facts := &Facts{Format: FormatCCEL, Hash: cctrusted.AlgSHA384.String()}
	bank := register.RTMRBank{}
	for i, want := range rtmr {
		m := cctrusted.RTMR(i).IMR()
		if err := r.Check(m, cctrusted.AlgSHA384, want); err != nil {
			return nil, fmt.Errorf("eventlog: CCEL does not replay to the signed RTMRs: %w", err)
		}
		facts.VerifiedRegisters = append(facts.VerifiedRegisters, m.String())
		bank.RTMRs = append(bank.RTMRs, register.RTMR{Index: i, Digest: want})
	}
	state, err := extractGuarded("CCEL", func() (*pb.FirmwareLogState, error) {
		return ccel.ReplayAndExtract(table, log, bank, extract.Opts{
			Loader:             extract.GRUB,
			AllowEmptySBVar:    true, // an unset SecureBoot variable means off
			SkipACPITableCheck: table == nil,
		})
	})
	if state == nil {
		return nil, fmt.Errorf("eventlog: go-eventlog refused the CCEL: %w", err)
	}
	facts.fill(state, err, true, true)
	return facts, nil
}

// TPM PCRs the firmware log owns. PCR10 belongs to IMA, 16 to debug, 17..22
// to DRTM and 23 to applications (the runtime log): those are checked only
// when the log itself extends them.
func firmwarePCR(i uint32) bool { return i <= 15 && i != 10 }

// VerifyTPM replays a TPM firmware log against signed PCR values (pcrs holds
// the quoted PCRs, any banks) and extracts the boot facts from the SHA-256
// bank, or the SHA-384 bank when no SHA-256 values are given. A legacy
// SHA-1 format log has only SHA-1 digests: the quote must cover the SHA-1
// bank, and the facts come from it (Facts.Hash "sha1", with a warning).
//
// Every signed firmware PCR (0..15 except IMA's 10) and every other signed
// PCR the log extends must replay to its value in every bank the log
// carries; banks the log has no digests for cannot be checked and are
// skipped. A mismatch returns an error wrapping *cctrusted.MismatchError.
func VerifyTPM(log []byte, pcrs cctrusted.Registers) (*Facts, error) {
	return VerifyTPMWith(log, pcrs, TPMOptions{})
}

// TPMOptions adjust VerifyTPMWith.
type TPMOptions struct {
	// RuntimePCR, when not zero, is a PCR of the firmware range (11..15)
	// that the node's runtime log owns: the firmware log must not extend
	// it (an event there is an error wrapping ErrRuntimePCRExtended, since
	// the runtime log replays it from zero), and its signed value is left
	// to the runtime log's replay.
	RuntimePCR cctrusted.PCR
}

// ErrRuntimePCRExtended says the firmware log extends the PCR reserved for
// the runtime log.
var ErrRuntimePCRExtended = errors.New("the firmware log extends the PCR reserved for the runtime log")

// VerifyTPMWith is VerifyTPM with opts.
func VerifyTPMWith(log []byte, pcrs cctrusted.Registers, opts TPMOptions) (*Facts, error) {
	keys := make([]cctrusted.IMR, 0, len(pcrs))
	for m, banks := range pcrs {
		if m.Space != cctrusted.SpacePCR || !m.Valid() {
			return nil, fmt.Errorf("eventlog: signed register %v is not a TPM PCR", m)
		}
		for alg, v := range banks {
			if err := (cctrusted.Digest{Alg: alg, Value: v}).Validate(); err != nil {
				return nil, fmt.Errorf("eventlog: signed %v: %w", m, err)
			}
		}
		keys = append(keys, m)
	}
	slices.SortFunc(keys, func(a, b cctrusted.IMR) int { return int(a.Index) - int(b.Index) })

	l, err := ParseTPM(log)
	if err != nil {
		return nil, err
	}
	r, err := l.replayer()
	if err != nil {
		return nil, err
	}
	touched := l.touched()
	if opts.RuntimePCR != 0 && touched[opts.RuntimePCR.IMR()] {
		for i, e := range l.Events {
			if e.IMR == opts.RuntimePCR.IMR() && e.Type != cctrusted.EventNoAction {
				return nil, fmt.Errorf("eventlog: %w: event %d (type %#x) extends %v", ErrRuntimePCRExtended, i, e.Type, opts.RuntimePCR.IMR())
			}
		}
	}
	var extractAlg cctrusted.Algorithm
	if l.Legacy {
		if !hasBank(pcrs, cctrusted.AlgSHA1) {
			return nil, fmt.Errorf("eventlog: the TPM log is in the legacy SHA-1 format (no Spec ID Event03), so only sha1 PCRs can check it, and none was signed (signed banks %v)", signedBanks(pcrs))
		}
		extractAlg = cctrusted.AlgSHA1
	}
	for _, alg := range []cctrusted.Algorithm{cctrusted.AlgSHA256, cctrusted.AlgSHA384} {
		if extractAlg == 0 && slices.Contains(l.Algorithms, alg) && hasBank(pcrs, alg) {
			extractAlg = alg
		}
	}
	if extractAlg == 0 {
		return nil, fmt.Errorf("eventlog: no signed SHA-256 or SHA-384 PCR values in a bank the log carries (log banks %v)", l.Algorithms)
	}
	facts := &Facts{Format: FormatTPM, Hash: extractAlg.String()}
	if l.Legacy {
		facts.Warnings = append(facts.Warnings, "legacy SHA-1 format log: its facts rest on SHA-1, which still resists second preimages (matching a fixed golden value) but not collisions")
	}
	goHash, err := extractAlg.Hash()
	if err != nil {
		return nil, err
	}
	bank := register.PCRBank{TCGHashAlgo: pb.HashAlgo(extractAlg)}
	verified := make(map[uint32]bool)
	for _, m := range keys {
		if !firmwarePCR(m.Index) && !touched[m] || opts.RuntimePCR != 0 && m == opts.RuntimePCR.IMR() {
			continue
		}
		algs := make([]cctrusted.Algorithm, 0, len(pcrs[m]))
		for alg := range pcrs[m] {
			algs = append(algs, alg)
		}
		slices.Sort(algs)
		for _, alg := range algs {
			if !slices.Contains(l.Algorithms, alg) {
				continue
			}
			want := pcrs[m][alg]
			if err := r.Check(m, alg, want); err != nil {
				return nil, fmt.Errorf("eventlog: TPM log does not replay to the signed PCRs: %w", err)
			}
			facts.VerifiedRegisters = append(facts.VerifiedRegisters, m.String()+":"+alg.String())
			if alg == extractAlg {
				verified[m.Index] = true
				bank.PCRs = append(bank.PCRs, register.PCR{Index: int(m.Index), Digest: want, DigestAlg: goHash})
			}
		}
	}
	if len(bank.PCRs) == 0 {
		return nil, fmt.Errorf("eventlog: none of the signed PCRs (%d) is one the TPM log covers in %v", len(keys), extractAlg)
	}
	state, err := extractGuarded("TPM log", func() (*pb.FirmwareLogState, error) {
		return tpmeventlog.ReplayAndExtract(log, bank, extract.Opts{
			Loader:          extract.GRUB,
			AllowEmptySBVar: true,
		})
	})
	if state == nil {
		return nil, fmt.Errorf("eventlog: go-eventlog refused the TPM log: %w", err)
	}
	facts.fill(state, err, verified[7], verified[8])
	for _, p := range []uint32{7, 8} {
		if !verified[p] {
			facts.Warnings = append(facts.Warnings, fmt.Sprintf("pcr%d (%v) was not signed: facts measured into it are unknown", p, extractAlg))
		}
	}
	return facts, nil
}

func signedBanks(pcrs cctrusted.Registers) []cctrusted.Algorithm {
	var out []cctrusted.Algorithm
	for _, banks := range pcrs {
		for alg := range banks {
			if !slices.Contains(out, alg) {
				out = append(out, alg)
			}
		}
	}
	slices.Sort(out)
	return out
}

func hasBank(pcrs cctrusted.Registers, alg cctrusted.Algorithm) bool {
	for _, banks := range pcrs {
		if _, ok := banks[alg]; ok {
			return true
		}
	}
	return false
}

// fill copies go-eventlog's state into f. sbReg and cmdReg say whether the
// registers secure boot and GRUB measure into were verified: without them
// go-eventlog sees no events and would report "off" and "empty" instead of
// "unknown".
func (f *Facts) fill(s *pb.FirmwareLogState, extractErr error, sbReg, cmdReg bool) {
	if extractErr != nil {
		for _, line := range strings.Split(extractErr.Error(), "\n") {
			if line != "" {
				f.Warnings = append(f.Warnings, line)
			}
		}
	}
	if p := s.GetPlatform(); p != nil {
		if v := p.GetScrtmVersionId(); len(v) > 0 {
			f.SCRTMVersion = printableVersion(v)
		}
		f.FirmwareVersion = p.GetGceVersion()
		if p.GetTechnology() != pb.GCEConfidentialTechnology_NONE {
			f.Technology = p.GetTechnology().String()
		}
	}
	if sb := s.GetSecureBoot(); sb != nil && sbReg {
		f.SecureBootKnown = true
		f.SecureBoot = sb.GetEnabled()
		f.SecureBootAuthorities = certNames(sb.GetAuthority())
		f.SecureBootPK = certNames(sb.GetPk())
		f.SecureBootKEK = certNames(sb.GetKek())
		f.SecureBootDB = certNames(sb.GetDb())
		f.DBXHashes = len(sb.GetDbx().GetHashes())
	}
	if efi := s.GetEfi(); efi != nil {
		f.EFIApps = appDigests(efi.GetApps())
		f.BootServicesDrivers = appDigests(efi.GetBootServicesDrivers())
		f.RuntimeServiceDrivers = appDigests(efi.GetRuntimeServicesDrivers())
	}
	if g := s.GetGrub(); g != nil && cmdReg && (len(g.GetFiles()) > 0 || len(g.GetCommands()) > 0) {
		f.Bootloader = "grub"
		for _, file := range g.GetFiles() {
			f.GrubFiles = append(f.GrubFiles, GrubFile{
				Digest: hex.EncodeToString(file.GetDigest()),
				Name:   strings.TrimRight(string(file.GetUntrustedFilename()), "\x00"),
			})
		}
		for _, c := range g.GetCommands() {
			f.GrubCommands = append(f.GrubCommands, strings.TrimRight(c, "\x00"))
		}
	}
	if k := s.GetLinuxKernel(); k != nil && cmdReg && k.GetCommandLine() != "" {
		f.KernelCmdline = strings.TrimRight(k.GetCommandLine(), "\x00")
		f.KernelCmdlineKnown = true
	}
}

// printableVersion renders an S-CRTM version: firmware writes UCS-2 text;
// anything else is shown as hex.
func printableVersion(v []byte) string {
	if len(v)%2 == 0 {
		var sb strings.Builder
		ok := true
		for i := 0; i+1 < len(v); i += 2 {
			c := rune(v[i]) | rune(v[i+1])<<8
			if c == 0 {
				break
			}
			if c < 0x20 || c > 0x7e {
				ok = false
				break
			}
			sb.WriteRune(c)
		}
		if ok && sb.Len() > 0 {
			return sb.String()
		}
	}
	return hex.EncodeToString(v)
}

func certNames(db *pb.Database) []string {
	var out []string
	for _, c := range db.GetCerts() {
		if der := c.GetDer(); der != nil {
			sum := sha256.Sum256(der)
			out = append(out, "sha256:"+hex.EncodeToString(sum[:]))
			continue
		}
		out = append(out, c.GetWellKnown().String())
	}
	return out
}

func appDigests(apps []*pb.EfiApp) []string {
	var out []string
	for _, a := range apps {
		out = append(out, hex.EncodeToString(a.GetDigest()))
	}
	return out
}

// Compile-time check that the extraction bank maps onto go-eventlog's enum
// the way VerifyTPM assumes (TCG ids on both sides).
var _ = [1]struct{}{}[int(pb.HashAlgo_SHA256)-int(cctrusted.AlgSHA256)]
