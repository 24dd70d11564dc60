package eventlog

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// CCELTableSize is the size of the CCEL ACPI table (revision 1), the only
// layout firmware produces today.
const CCELTableSize = 56

// maxCCELTableSize bounds a table that claims a later revision with more
// fields: accept it, but never a table big enough to matter.
const maxCCELTableSize = 4096

// Confidential computing types in the CCEL table (UEFI 2.10, 38.4.2).
const (
	CCTypeSEV uint8 = 1
	CCTypeTDX uint8 = 2
)

// CCELTable is the CCEL ACPI table (/sys/firmware/acpi/tables/CCEL): where
// the firmware put the log and for which TEE.
type CCELTable struct {
	Length          uint32 `json:"length"`
	Revision        uint8  `json:"revision"`
	OEMID           string `json:"oem_id"`
	OEMTableID      string `json:"oem_table_id"`
	OEMRevision     uint32 `json:"oem_revision"`
	CreatorID       string `json:"creator_id"`
	CreatorRevision uint32 `json:"creator_revision"`
	CCType          uint8  `json:"cc_type"`
	CCSubType       uint8  `json:"cc_sub_type"`
	// LAML is the log area minimum length: the size of the log buffer.
	LAML uint64 `json:"laml"`
	// LASA is the guest-physical start address of the log.
	LASA uint64 `json:"lasa"`
}

// ParseCCELTable checks and decodes a CCEL ACPI table: signature "CCEL",
// length field equal to the input, ACPI checksum, a known CC type and a
// non-empty log area.
func ParseCCELTable(table []byte) (*CCELTable, error) {
	if len(table) < CCELTableSize {
		return nil, fmt.Errorf("eventlog: CCEL table is %d bytes, want %d", len(table), CCELTableSize)
	}
	if len(table) > maxCCELTableSize {
		return nil, fmt.Errorf("eventlog: CCEL table is %d bytes, over the %d byte limit", len(table), maxCCELTableSize)
	}
	if string(table[0:4]) != "CCEL" {
		return nil, fmt.Errorf("eventlog: CCEL table signature is %q, want \"CCEL\"", table[0:4])
	}
	t := &CCELTable{
		Length:          binary.LittleEndian.Uint32(table[4:]),
		Revision:        table[8],
		OEMID:           acpiString(table[10:16]),
		OEMTableID:      acpiString(table[16:24]),
		OEMRevision:     binary.LittleEndian.Uint32(table[24:]),
		CreatorID:       acpiString(table[28:32]),
		CreatorRevision: binary.LittleEndian.Uint32(table[32:]),
		CCType:          table[36],
		CCSubType:       table[37],
		LAML:            binary.LittleEndian.Uint64(table[40:]),
		LASA:            binary.LittleEndian.Uint64(table[48:]),
	}
	if int64(t.Length) != int64(len(table)) {
		return nil, fmt.Errorf("eventlog: CCEL table length field says %d bytes, table has %d", t.Length, len(table))
	}
	var sum byte
	for _, b := range table {
		sum += b
	}
	if sum != 0 {
		return nil, fmt.Errorf("eventlog: CCEL table checksum does not add up (sum 0x%02x, want 0)", sum)
	}
	if t.CCType != CCTypeSEV && t.CCType != CCTypeTDX {
		return nil, fmt.Errorf("eventlog: CCEL table has unknown CC type %d", t.CCType)
	}
	if t.LAML == 0 {
		return nil, fmt.Errorf("eventlog: CCEL table declares an empty log area")
	}
	return t, nil
}

// acpiString trims the space and NUL padding of ACPI identifier fields.
func acpiString(b []byte) string {
	return strings.TrimRight(string(b), " \x00")
}
