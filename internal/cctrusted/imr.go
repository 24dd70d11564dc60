package cctrusted

import (
	"fmt"
	"strconv"
	"strings"
)

// Space names the index space an IMR index lives in. TDX firmware logs
// number registers as CC measurement registers (0 = MRTD, 1..4 = RTMR0..3),
// TPM logs and IMA as PCRs, and the TDX module as RTMRs; mixing them up is
// the classic off-by-one of this field, so an index never travels without
// its space.
type Space uint8

// The index spaces.
const (
	SpacePCR  Space = iota + 1 // TPM PCR 0..23
	SpaceCCMR                  // UEFI CC measurement register: 0 = MRTD, 1..4 = RTMR0..3
	SpaceRTMR                  // TDX RTMR 0..3
	SpaceMRTD                  // the TDX build-time measurement (index always 0)
)

func (s Space) String() string {
	switch s {
	case SpacePCR:
		return "pcr"
	case SpaceCCMR:
		return "ccmr"
	case SpaceRTMR:
		return "rtmr"
	case SpaceMRTD:
		return "mrtd"
	}
	return fmt.Sprintf("space(%d)", uint8(s))
}

// Bounds of the index spaces.
const (
	NumPCRs  = 24
	NumCCMRs = 5
	NumRTMRs = 4
)

// IMR identifies one integrity measurement register: a space and an index.
// It is comparable and used as a map key.
type IMR struct {
	Space Space
	Index uint32
}

// PCR is a TPM PCR index (0..23).
type PCR uint32

// CCMR is a UEFI CC measurement register index (0 = MRTD, 1..4 = RTMR0..3).
type CCMR uint32

// RTMR is a TDX runtime measurement register index (0..3).
type RTMR uint32

// MRTD is the TDX build-time measurement register.
var MRTD = IMR{Space: SpaceMRTD}

// IMR returns p as an IMR.
func (p PCR) IMR() IMR { return IMR{SpacePCR, uint32(p)} }

// IMR returns c as an IMR.
func (c CCMR) IMR() IMR { return IMR{SpaceCCMR, uint32(c)} }

// IMR returns r as an IMR.
func (r RTMR) IMR() IMR { return IMR{SpaceRTMR, uint32(r)} }

// Valid reports whether the index is inside its space.
func (m IMR) Valid() bool {
	switch m.Space {
	case SpacePCR:
		return m.Index < NumPCRs
	case SpaceCCMR:
		return m.Index < NumCCMRs
	case SpaceRTMR:
		return m.Index < NumRTMRs
	case SpaceMRTD:
		return m.Index == 0
	}
	return false
}

// String returns "pcr7", "ccmr1", "rtmr0" or "mrtd".
func (m IMR) String() string {
	if m.Space == SpaceMRTD {
		return "mrtd"
	}
	return m.Space.String() + strconv.FormatUint(uint64(m.Index), 10)
}

// ParseIMR is the inverse of String.
func ParseIMR(s string) (IMR, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "mrtd" {
		return MRTD, nil
	}
	for _, sp := range []Space{SpacePCR, SpaceCCMR, SpaceRTMR} {
		name := sp.String()
		if rest, ok := strings.CutPrefix(s, name); ok {
			n, err := strconv.ParseUint(rest, 10, 32)
			if err != nil {
				break
			}
			m := IMR{sp, uint32(n)}
			if !m.Valid() {
				return IMR{}, fmt.Errorf("cctrusted: %s is outside the %s space", s, name)
			}
			return m, nil
		}
	}
	return IMR{}, fmt.Errorf("cctrusted: cannot parse register %q (want pcrN, ccmrN, rtmrN or mrtd)", s)
}

// TDX returns the TDX register that m is measured into: MRTD or an RTMR.
// PCRs follow the TDX mapping of the UEFI spec and the cc-api: PCR0 -> MRTD,
// PCR1,7 -> RTMR0, PCR2..6 -> RTMR1, PCR8..15 -> RTMR2. Other PCRs have no
// TDX counterpart.
func (m IMR) TDX() (IMR, error) {
	if !m.Valid() {
		return IMR{}, fmt.Errorf("cctrusted: invalid register %v", m)
	}
	switch m.Space {
	case SpaceMRTD, SpaceRTMR:
		return m, nil
	case SpaceCCMR:
		if m.Index == 0 {
			return MRTD, nil
		}
		return RTMR(m.Index - 1).IMR(), nil
	case SpacePCR:
		switch {
		case m.Index == 0:
			return MRTD, nil
		case m.Index == 1 || m.Index == 7:
			return RTMR(0).IMR(), nil
		case m.Index >= 2 && m.Index <= 6:
			return RTMR(1).IMR(), nil
		case m.Index >= 8 && m.Index <= 15:
			return RTMR(2).IMR(), nil
		}
		return IMR{}, fmt.Errorf("cctrusted: %v has no TDX register", m)
	}
	return IMR{}, fmt.Errorf("cctrusted: invalid register %v", m)
}

// CCMR returns the CC measurement register index of a TDX register.
func (m IMR) CCMR() (CCMR, error) {
	t, err := m.TDX()
	if err != nil {
		return 0, err
	}
	if t.Space == SpaceMRTD {
		return 0, nil
	}
	return CCMR(t.Index + 1), nil
}
