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

// byteList is a byte string written as a JSON list of numbers (v0).
type byteList []byte

func (b *byteList) UnmarshalJSON(data []byte) error {
	var v []uint16
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("want a list of byte values: %w", err)
	}
	out := make([]byte, len(v))
	for i, x := range v {
		if x > 0xff {
			return fmt.Errorf("element %d is %d, not a byte value", i, x)
		}
		out[i] = byte(x)
	}
	*b = out
	return nil
}

// hexString is a byte string written as hex (v1).
type hexString []byte

func (h *hexString) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("want a hex string: %w", err)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("not hex: %w", err)
	}
	*h = b
	return nil
}

func (h hexString) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// b64url is a byte string written as base64url (v1), padded as trustee
// writes it; unpadded input is accepted too.
type b64url []byte

func (u *b64url) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("want a base64url string: %w", err)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return fmt.Errorf("not base64url: %w", err)
	}
	*u = b
	return nil
}

func (u b64url) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.URLEncoding.EncodeToString(u))
}

type evidenceV0 struct {
	TPMQuote struct {
		Signature byteList   `json:"signature"`
		Message   byteList   `json:"message"`
		PCRs      []byteList `json:"pcrs"`
	} `json:"tpm_quote"`
	HCLReport byteList `json:"hcl_report"`
	TDQuote   byteList `json:"td_quote"`
}

type evidenceV1 struct {
	Version  uint32 `json:"version"`
	TPMQuote struct {
		Signature hexString   `json:"signature"`
		Message   hexString   `json:"message"`
		PCRs      []hexString `json:"pcrs"`
	} `json:"tpm_quote"`
	HCLReport b64url `json:"hcl_report"`
	TDQuote   b64url `json:"td_quote"`
}

// ParseEvidence reads trustee's JSON evidence of an Azure TDX VM, in either
// layout: v0 (no version; byte lists) or v1 ("version": 1; hex and
// base64url strings). Unknown fields, unknown versions, missing parts,
// trailing bytes and parts over their bounds are errors naming the field.
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidenceJSON {
		return nil, fmt.Errorf("evidence is %d bytes, more than the %d allowed", len(b), MaxEvidenceJSON)
	}
	var probe struct {
		Version *json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("evidence is not a JSON object: %w", err)
	}
	ev := &Evidence{}
	if probe.Version == nil {
		var v evidenceV0
		if err := strictDecode(b, &v); err != nil {
			return nil, fmt.Errorf("evidence (%s layout: no version field): %w", LayoutV0, err)
		}
		ev.Layout, ev.HCLReport, ev.TDQuote = LayoutV0, v.HCLReport, v.TDQuote
		ev.TPMQuote = TPMQuote{Message: v.TPMQuote.Message, Signature: v.TPMQuote.Signature}
		for _, p := range v.TPMQuote.PCRs {
			ev.TPMQuote.PCRs = append(ev.TPMQuote.PCRs, p)
		}
	} else {
		var v evidenceV1
		if err := strictDecode(b, &v); err != nil {
			return nil, fmt.Errorf("evidence (version field present): %w", err)
		}
		if v.Version != 1 {
			return nil, fmt.Errorf("evidence version %d: this verifier reads %s (no version) and %s (version 1)", v.Version, LayoutV0, LayoutV1)
		}
		ev.Layout, ev.HCLReport, ev.TDQuote = LayoutV1, v.HCLReport, v.TDQuote
		ev.TPMQuote = TPMQuote{Message: v.TPMQuote.Message, Signature: v.TPMQuote.Signature}
		for _, p := range v.TPMQuote.PCRs {
			ev.TPMQuote.PCRs = append(ev.TPMQuote.PCRs, p)
		}
	}
	if err := ev.checkBounds(); err != nil {
		return nil, fmt.Errorf("evidence (%s): %w", ev.Layout, err)
	}
	return ev, nil
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

// MarshalV1 writes the evidence in trustee's v1 layout.
func (ev *Evidence) MarshalV1() ([]byte, error) {
	var v evidenceV1
	v.Version = 1
	v.TPMQuote.Message, v.TPMQuote.Signature = ev.TPMQuote.Message, ev.TPMQuote.Signature
	v.TPMQuote.PCRs = make([]hexString, 0, len(ev.TPMQuote.PCRs))
	for _, p := range ev.TPMQuote.PCRs {
		v.TPMQuote.PCRs = append(v.TPMQuote.PCRs, p)
	}
	v.HCLReport, v.TDQuote = ev.HCLReport, ev.TDQuote
	return json.Marshal(&v)
}
