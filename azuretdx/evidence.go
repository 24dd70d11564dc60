package azuretdx

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// Bounds of trustee's JSON evidence. A real v0 document is 26 KB (bytes as
// decimal lists cost up to four characters each); v1 is smaller.
const (
	MaxEvidenceJSON = 1 << 20
	// MaxTPMAttest and MaxTPMSignature bound the vTPM quote's parts; real
	// ones are 122 and 256 bytes.
	MaxTPMAttest    = 2048
	MaxTPMSignature = 1024
	// MaxPCRs is the most PCR values a quote can carry: 24 in each of the
	// banks a TPM has; Azure's vTPM quotes the 24 SHA-256 PCRs.
	MaxPCRs = 4 * 24
)

// Layout names the JSON layout trustee's Azure TDX attester wrote.
type Layout string

// The layouts of trustee's az-tdx-vtpm evidence.
const (
	// LayoutV0 has no version field and every byte string as a JSON list
	// of numbers.
	LayoutV0 Layout = "evidence-v0"
	// LayoutV1 has "version": 1, the vTPM quote's message, signature and
	// PCRs as hex strings and the HCL report and TD quote as base64url.
	LayoutV1 Layout = "evidence-v1"
)

// Evidence is what an Azure TDX confidential VM presents: the HCL report
// from the vTPM, the TD quote the platform made for the report's TD report,
// and the vTPM's quote over its PCRs.
type Evidence struct {
	HCLReport []byte
	TDQuote   []byte
	TPMQuote  TPMQuote
	// Layout is the JSON layout the evidence was read from; empty when it
	// was built in memory.
	Layout Layout
}

// TPMQuote is the vTPM's quote: a TPMS_ATTEST, the attestation key's raw
// signature over it (RSASSA-PKCS1-v1_5, as Azure's vTPM signs), and the
// values of the quoted PCRs in the quote's selection order.
type TPMQuote struct {
	Message   []byte
	Signature []byte
	PCRs      [][]byte
}

// rawEvidence is either layout with its byte strings still undecoded, so
// that each is decoded by name and an error names the field.
type rawEvidence struct {
	Version  json.RawMessage `json:"version"`
	TPMQuote struct {
		Signature json.RawMessage   `json:"signature"`
		Message   json.RawMessage   `json:"message"`
		PCRs      []json.RawMessage `json:"pcrs"`
	} `json:"tpm_quote"`
	HCLReport json.RawMessage `json:"hcl_report"`
	TDQuote   json.RawMessage `json:"td_quote"`
}

// ParseEvidence reads trustee's JSON evidence of an Azure TDX VM, in either
// layout: v0 (no version; byte lists) or v1 ("version": 1; hex and
// base64url strings). Unknown fields, unknown versions, missing parts,
// trailing bytes and parts over their bounds are errors naming the field.
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidenceJSON {
		return nil, fmt.Errorf("evidence is %d bytes, more than the %d allowed", len(b), MaxEvidenceJSON)
	}
	var raw rawEvidence
	if err := strictDecode(b, &raw); err != nil {
		return nil, fmt.Errorf("evidence is not trustee's Azure TDX JSON: %w", err)
	}
	ev := &Evidence{Layout: LayoutV0}
	var bin, str func(json.RawMessage) ([]byte, error)
	switch v := string(raw.Version); v {
	case "":
		bin, str = decodeList, decodeList
	case "1":
		ev.Layout = LayoutV1
		bin, str = decodeBase64URL, decodeHex
	default:
		return nil, fmt.Errorf("evidence version %.20s: this verifier reads %s (no version) and %s (version 1)", v, LayoutV0, LayoutV1)
	}
	for _, f := range []struct {
		name string
		in   json.RawMessage
		dec  func(json.RawMessage) ([]byte, error)
		out  *[]byte
	}{
		{"hcl_report", raw.HCLReport, bin, &ev.HCLReport},
		{"td_quote", raw.TDQuote, bin, &ev.TDQuote},
		{"tpm_quote.message", raw.TPMQuote.Message, str, &ev.TPMQuote.Message},
		{"tpm_quote.signature", raw.TPMQuote.Signature, str, &ev.TPMQuote.Signature},
	} {
		v, err := f.dec(f.in)
		if err != nil {
			return nil, fmt.Errorf("evidence (%s) %s: %w", ev.Layout, f.name, err)
		}
		*f.out = v
	}
	if len(raw.TPMQuote.PCRs) > MaxPCRs {
		return nil, fmt.Errorf("evidence (%s): tpm_quote.pcrs has %d values, more than the %d allowed", ev.Layout, len(raw.TPMQuote.PCRs), MaxPCRs)
	}
	for i, p := range raw.TPMQuote.PCRs {
		v, err := str(p)
		if err != nil {
			return nil, fmt.Errorf("evidence (%s) tpm_quote.pcrs[%d]: %w", ev.Layout, i, err)
		}
		ev.TPMQuote.PCRs = append(ev.TPMQuote.PCRs, v)
	}
	if err := ev.checkBounds(); err != nil {
		return nil, fmt.Errorf("evidence (%s): %w", ev.Layout, err)
	}
	return ev, nil
}

// decodeList reads a byte string written as a JSON list of numbers (v0).
// Absent (null) is empty; checkBounds names it.
func decodeList(m json.RawMessage) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	var v []uint16
	if err := json.Unmarshal(m, &v); err != nil {
		return nil, fmt.Errorf("want a list of byte values: %w", err)
	}
	out := make([]byte, len(v))
	for i, x := range v {
		if x > 0xff {
			return nil, fmt.Errorf("element %d is %d, not a byte value", i, x)
		}
		out[i] = byte(x)
	}
	return out, nil
}

// decodeHex reads a byte string written as hex (v1).
func decodeHex(m json.RawMessage) ([]byte, error) {
	s, err := decodeString(m, "a hex string")
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not hex: %w", err)
	}
	return b, nil
}

// decodeBase64URL reads a byte string written as base64url (v1), padded as
// trustee writes it; unpadded input is accepted too.
func decodeBase64URL(m json.RawMessage) ([]byte, error) {
	s, err := decodeString(m, "a base64url string")
	if err != nil {
		return nil, err
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("not base64url: %w", err)
	}
	return b, nil
}

func decodeString(m json.RawMessage, what string) (string, error) {
	if len(m) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(m, &s); err != nil {
		return "", fmt.Errorf("want %s: %w", what, err)
	}
	return s, nil
}

// checkBounds insists every part is present and within its bound.
func (ev *Evidence) checkBounds() error {
	for _, p := range []struct {
		name string
		b    []byte
		max  int
	}{
		{"hcl_report", ev.HCLReport, MaxHCLReportSize},
		{"td_quote", ev.TDQuote, tdxquote.MaxQuoteSize},
		{"tpm_quote.message", ev.TPMQuote.Message, MaxTPMAttest},
		{"tpm_quote.signature", ev.TPMQuote.Signature, MaxTPMSignature},
	} {
		if len(p.b) == 0 {
			return fmt.Errorf("%s is missing or empty", p.name)
		}
		if len(p.b) > p.max {
			return fmt.Errorf("%s is %d bytes, more than the %d allowed", p.name, len(p.b), p.max)
		}
	}
	if len(ev.TPMQuote.PCRs) == 0 {
		return errors.New("tpm_quote.pcrs is missing or empty")
	}
	if len(ev.TPMQuote.PCRs) > MaxPCRs {
		return fmt.Errorf("tpm_quote.pcrs has %d values, more than the %d allowed", len(ev.TPMQuote.PCRs), MaxPCRs)
	}
	for i, p := range ev.TPMQuote.PCRs {
		if len(p) != 32 && len(p) != 48 && len(p) != 64 {
			return fmt.Errorf("tpm_quote.pcrs[%d] is %d bytes, not a SHA-256, SHA-384 or SHA-512 value", i, len(p))
		}
	}
	return nil
}

// strictDecode decodes one JSON document into v, refusing unknown fields
// and anything after the document.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
		return fmt.Errorf("%d bytes after the JSON document", len(rest))
	}
	return nil
}

// evidenceV1 is the v1 layout as MarshalV1 writes it.
type evidenceV1 struct {
	Version  uint32 `json:"version"`
	TPMQuote struct {
		Signature string   `json:"signature"`
		Message   string   `json:"message"`
		PCRs      []string `json:"pcrs"`
	} `json:"tpm_quote"`
	HCLReport string `json:"hcl_report"`
	TDQuote   string `json:"td_quote"`
}

// MarshalV1 writes the evidence in trustee's v1 layout.
func (ev *Evidence) MarshalV1() ([]byte, error) {
	var v evidenceV1
	v.Version = 1
	v.TPMQuote.Message, v.TPMQuote.Signature = hex.EncodeToString(ev.TPMQuote.Message), hex.EncodeToString(ev.TPMQuote.Signature)
	v.TPMQuote.PCRs = make([]string, 0, len(ev.TPMQuote.PCRs))
	for _, p := range ev.TPMQuote.PCRs {
		v.TPMQuote.PCRs = append(v.TPMQuote.PCRs, hex.EncodeToString(p))
	}
	v.HCLReport, v.TDQuote = base64.URLEncoding.EncodeToString(ev.HCLReport), base64.URLEncoding.EncodeToString(ev.TDQuote)
	return json.Marshal(&v)
}
