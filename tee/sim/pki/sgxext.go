package pki

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// OIDs of the SGX extension (Intel SGX PCK Certificate and CRL Profile).
var (
	oidSGX      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidPPID     = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	oidTCB      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	oidPCEID    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	oidFMSPC    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidSGXType  = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidPCESVN   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2, 17}
	oidCPUSVN   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2, 18}
	sgxTypeStd  = asn1.Enumerated(0) // "Standard"
	tcbCompBase = oidTCB
)

// sgxExtension encodes the SGX extension of a PCK certificate: a SEQUENCE of
// (OID, value) pairs for PPID, TCB (16 component SVNs, PCESVN, CPUSVN), PCE-ID,
// FMSPC and SGX type.
func sgxExtension(p *Platform) (pkix.Extension, error) {
	var tcb [][]byte
	for i := 0; i < CPUSVNSize; i++ {
		oid := append(asn1.ObjectIdentifier{}, tcbCompBase...)
		oid = append(oid, i+1)
		e, err := pair(oid, int(p.CPUSVN[i]))
		if err != nil {
			return pkix.Extension{}, err
		}
		tcb = append(tcb, e)
	}
	pcesvn, err := pair(oidPCESVN, int(p.PCESVN))
	if err != nil {
		return pkix.Extension{}, err
	}
	cpusvn, err := pair(oidCPUSVN, []byte(p.CPUSVN))
	if err != nil {
		return pkix.Extension{}, err
	}
	tcb = append(tcb, pcesvn, cpusvn)
	tcbOID, err := asn1.Marshal(oidTCB)
	if err != nil {
		return pkix.Extension{}, err
	}

	ppid, err := pair(oidPPID, []byte(p.PPID))
	if err != nil {
		return pkix.Extension{}, err
	}
	pceid, err := pair(oidPCEID, []byte(p.PCEID))
	if err != nil {
		return pkix.Extension{}, err
	}
	fmspc, err := pair(oidFMSPC, []byte(p.FMSPC))
	if err != nil {
		return pkix.Extension{}, err
	}
	sgxType, err := pair(oidSGXType, sgxTypeStd)
	if err != nil {
		return pkix.Extension{}, err
	}
	value := sequence(ppid, sequence(tcbOID, sequence(tcb...)), pceid, fmspc, sgxType)
	return pkix.Extension{Id: oidSGX, Value: value}, nil
}

// pair encodes SEQUENCE { oid, value }.
func pair(oid asn1.ObjectIdentifier, value any) ([]byte, error) {
	o, err := asn1.Marshal(oid)
	if err != nil {
		return nil, fmt.Errorf("pki: SGX extension OID %v: %w", oid, err)
	}
	v, err := asn1.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("pki: SGX extension value of %v: %w", oid, err)
	}
	return sequence(o, v), nil
}

// sequence wraps already-encoded elements in a DER SEQUENCE (tag 0x30, definite
// length in short or long form).
func sequence(elems ...[]byte) []byte {
	var body []byte
	for _, e := range elems {
		body = append(body, e...)
	}
	out := []byte{0x30}
	switch n := len(body); {
	case n < 0x80:
		out = append(out, byte(n))
	case n <= 0xff:
		out = append(out, 0x81, byte(n))
	default:
		// The SGX extension is a few hundred bytes; two length octets cover 64 KiB.
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, body...)
}
