package tpmquote

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// reservedObjectAttributes are the TPMA_OBJECT bits TPM 2.0 Part 2 (1.59,
// "TPMA_OBJECT") reserves: 0, 3, 12 to 15 and 20 to 31. A TPM never
// creates an object with one of them set. go-tpm keeps them through a
// decode and re-encode, so the canonical-encoding check alone would let a
// public area differ from the TPM's by a reserved bit: the same key under
// another Name (FuzzVerifyQuote seed 3da09fe9d151e953).
const reservedObjectAttributes = 0xFFF0F009

// parsePublicArea parses a TPMT_PUBLIC strictly (see strictUnmarshal) and
// refuses reserved objectAttributes bits.
func parsePublicArea(what string, pub []byte) (*tpm2.TPMTPublic, error) {
	p, err := strictUnmarshal[tpm2.TPMTPublic](what, pub, MaxPublicSize)
	if err != nil {
		return nil, err
	}
	// type (u16), nameAlg (u16), then objectAttributes (u32, big endian):
	// a successful strict parse guarantees the eight bytes.
	if r := binary.BigEndian.Uint32(pub[4:8]) & reservedObjectAttributes; r != 0 {
		return nil, fmt.Errorf("%s sets reserved objectAttributes bits %#08x", what, r)
	}
	return p, nil
}
