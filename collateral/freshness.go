package collateral

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// NextUpdate reads when a collateral document says it must be replaced:
// tcbInfo.nextUpdate of TCB info, enclaveIdentity.nextUpdate of a QE
// identity, NextUpdate of a CRL (DER or PEM). It only reads the date, it does
// not verify anything: the cache uses it to decide how long to keep bytes,
// and a forged date can at worst keep forged bytes that the verifier rejects
// anyway.
func NextUpdate(body []byte) (time.Time, error) {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) > 0 && t[0] == '{' {
		return jsonNextUpdate(body)
	}
	der := body
	if blk, _ := pem.Decode(body); blk != nil {
		if blk.Type != "X509 CRL" {
			return time.Time{}, fmt.Errorf("collateral: PEM block %q is not a CRL", blk.Type)
		}
		der = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return time.Time{}, fmt.Errorf("collateral: neither collateral JSON nor a CRL: %w", err)
	}
	if crl.NextUpdate.IsZero() {
		return time.Time{}, errors.New("collateral: CRL has no nextUpdate")
	}
	return crl.NextUpdate, nil
}

func jsonNextUpdate(body []byte) (time.Time, error) {
	var doc struct {
		TCBInfo         *struct{ NextUpdate string } `json:"tcbInfo"`
		EnclaveIdentity *struct{ NextUpdate string } `json:"enclaveIdentity"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return time.Time{}, fmt.Errorf("collateral: JSON: %w", err)
	}
	var s, member string
	switch {
	case doc.TCBInfo != nil && doc.EnclaveIdentity != nil:
		return time.Time{}, errors.New("collateral: JSON has both tcbInfo and enclaveIdentity")
	case doc.TCBInfo != nil:
		s, member = doc.TCBInfo.NextUpdate, "tcbInfo"
	case doc.EnclaveIdentity != nil:
		s, member = doc.EnclaveIdentity.NextUpdate, "enclaveIdentity"
	default:
		return time.Time{}, errors.New("collateral: JSON has neither tcbInfo nor enclaveIdentity")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("collateral: %s.nextUpdate: %w", member, err)
	}
	return t, nil
}
