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

// EvaluationDataNumber reads the tcbEvaluationDataNumber of a TCB info or
// QE identity response; ok is false for anything else (a CRL). Like
// NextUpdate it verifies nothing: the cache uses it only to refuse to keep
// collateral older than the configured minimum, and the verifier checks the
// number of the signed document again.
func EvaluationDataNumber(body []byte) (n int64, ok bool, err error) {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return 0, false, nil
	}
	var doc struct {
		TCBInfo         *struct{ TCBEvaluationDataNumber *int64 } `json:"tcbInfo"`
		EnclaveIdentity *struct{ TCBEvaluationDataNumber *int64 } `json:"enclaveIdentity"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return 0, false, fmt.Errorf("collateral: JSON: %w", err)
	}
	var p *int64
	var member string
	switch {
	case doc.TCBInfo != nil && doc.EnclaveIdentity != nil:
		return 0, false, errors.New("collateral: JSON has both tcbInfo and enclaveIdentity")
	case doc.TCBInfo != nil:
		p, member = doc.TCBInfo.TCBEvaluationDataNumber, "tcbInfo"
	case doc.EnclaveIdentity != nil:
		p, member = doc.EnclaveIdentity.TCBEvaluationDataNumber, "enclaveIdentity"
	default:
		return 0, false, errors.New("collateral: JSON has neither tcbInfo nor enclaveIdentity")
	}
	if p == nil {
		return 0, false, fmt.Errorf("collateral: %s has no tcbEvaluationDataNumber", member)
	}
	return *p, true, nil
}

// belowMinimum is an error when body is TCB info or QE identity whose
// evaluation data number is under the configured minimum (or unreadable
// while a minimum is configured).
func (c *Cache) belowMinimum(body []byte) error {
	min := c.cfg.MinTCBEvaluationDataNumber
	if min == 0 {
		return nil
	}
	n, ok, err := EvaluationDataNumber(body)
	switch {
	case err != nil:
		return err
	case ok && n < int64(min):
		return fmt.Errorf("tcbEvaluationDataNumber %d is below the minimum %d (tdx.min_tcb_evaluation_data_number): collateral from before a TCB recovery", n, min)
	}
	return nil
}
