package collateral

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// Offline collateral directory layout. Bodies are stored as Intel serves
// them (JSON, DER CRLs); each issuer chain is stored as PEM next to its body.
// This is the one definition of the layout: the simulator's pcs.WriteOffline
// writes it with these names and Dir reads it.
const (
	OfflineQEIdentity      = "qe-identity.json"
	OfflineQEIdentityChain = "qe-identity.issuer-chain.pem"
	OfflineRootCRL         = "rootcrl.der"
)

// OfflineTCBInfo is the TCB info file of an FMSPC (hex, any case).
func OfflineTCBInfo(fmspc string) string { return "tcbinfo-" + lowerASCII(fmspc) + ".json" }

// OfflineTCBInfoChain is the issuer chain file of OfflineTCBInfo(fmspc).
func OfflineTCBInfoChain(fmspc string) string {
	return "tcbinfo-" + lowerASCII(fmspc) + ".issuer-chain.pem"
}

// OfflineBundle is a file holding every collateral document of one FMSPC
// in the JSON layout of Phala-Network's dcap-qvl (QuoteCollateralV3):
// "tcb_info" and "qe_identity" are the exact signed JSON texts Intel's PCS
// served, "tcb_info_signature" and "qe_identity_signature" their hex
// signatures, "*_issuer_chain" PEM issuer chains, "pck_crl" and
// "root_ca_crl" hex-encoded DER. Dir uses it for what the split files
// above do not provide.
func OfflineBundle(fmspc string) string { return "collateral-" + lowerASCII(fmspc) + ".json" }

// offlineBundlePattern matches every OfflineBundle name.
const offlineBundlePattern = "collateral-*.json"

// OfflinePCKCRL is the DER PCK CRL file of a PCK CA ("platform" or "processor").
func OfflinePCKCRL(ca string) string { return "pckcrl-" + ca + ".der" }

// OfflinePCKCRLChain is the issuer chain file of OfflinePCKCRL(ca).
func OfflinePCKCRLChain(ca string) string { return "pckcrl-" + ca + ".issuer-chain.pem" }

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Dir answers Intel collateral URLs from an offline collateral directory
// (the layout of OfflineTCBInfo and friends, or OfflineBundle files) with
// the headers Intel's PCS would send, without any network. A split file
// wins over a bundle. TCB info comes from the bundle of its FMSPC; the
// documents every platform shares (QE identity, CRLs) from the first bundle
// in name order that has them (for a PCK CRL: whose issuer chain is that
// CA's). Nothing here is trusted: the verifier checks every document. It implements trust.HTTPSGetter and
// trust.ContextHTTPSGetter.
type Dir struct {
	// Path is the offline collateral directory.
	Path string
	// MaxBytes bounds each file; zero means MaxResponseBytes.
	MaxBytes int64
}

// Get implements trust.HTTPSGetter.
func (d *Dir) Get(rawURL string) (map[string][]string, []byte, error) {
	return d.GetContext(context.Background(), rawURL)
}

// GetContext implements trust.ContextHTTPSGetter: it returns the stored
// response for rawURL. A missing file is an error naming it.
func (d *Dir) GetContext(ctx context.Context, rawURL string) (map[string][]string, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("collateral: offline %s: %w", rawURL, err)
	}
	res, err := ParseIntelURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	// ParseIntelURL checked fmspc (12 hex digits) and ca (two fixed words),
	// so no name below can climb out of Path.
	var bodyFile, chainFile, header string
	switch res.Kind {
	case KindTCBInfo:
		bodyFile, chainFile, header = OfflineTCBInfo(res.FMSPC), OfflineTCBInfoChain(res.FMSPC), pcs.TcbInfoIssuerChainPhrase
	case KindQEIdentity:
		bodyFile, chainFile, header = OfflineQEIdentity, OfflineQEIdentityChain, pcs.SgxQeIdentityIssuerChainPhrase
	case KindPCKCRL:
		bodyFile, chainFile, header = OfflinePCKCRL(res.CA), OfflinePCKCRLChain(res.CA), pcs.SgxPckCrlIssuerChainPhrase
	case KindRootCRL:
		bodyFile = OfflineRootCRL
	}
	limit := d.MaxBytes
	if limit <= 0 {
		limit = MaxResponseBytes
	}
	body, err := readBounded(filepath.Join(d.Path, bodyFile), limit)
	if errors.Is(err, fs.ErrNotExist) {
		h, b, berr := d.fromBundle(res, limit)
		if berr == nil {
			return h, b, nil
		}
		if !errors.Is(berr, errNoBundle) {
			return nil, nil, berr
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if res.PEM {
		body = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: body})
	}
	hdr := http.Header{}
	if chainFile != "" {
		chain, err := readBounded(filepath.Join(d.Path, chainFile), limit)
		if err != nil {
			return nil, nil, err
		}
		hdr.Set(header, url.QueryEscape(string(chain)))
	}
	return hdr, body, nil
}

// readBounded reads a regular file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	b, err := smallfile.Read(path, limit)
	if err != nil {
		return nil, fmt.Errorf("collateral: %w", err)
	}
	return b, nil
}

// bundle is an OfflineBundle file.
type bundle struct {
	TCBInfoIssuerChain    string          `json:"tcb_info_issuer_chain"`
	TCBInfo               json.RawMessage `json:"tcb_info"`
	TCBInfoSignature      string          `json:"tcb_info_signature"`
	QEIdentityIssuerChain string          `json:"qe_identity_issuer_chain"`
	QEIdentity            json.RawMessage `json:"qe_identity"`
	QEIdentitySignature   string          `json:"qe_identity_signature"`
	PCKCRLIssuerChain     string          `json:"pck_crl_issuer_chain"`
	PCKCRL                string          `json:"pck_crl"`
	RootCACRL             string          `json:"root_ca_crl"`
}

// errNoBundle: no bundle holds the document; the split file's error stands.
var errNoBundle = errors.New("no offline bundle holds it")

// pckCACommonNames are the issuer CNs of the PCK CRLs, by CA parameter.
var pckCACommonNames = map[string]string{"platform": "Intel SGX PCK Platform CA", "processor": "Intel SGX PCK Processor CA"}

// fromBundle answers res from OfflineBundle files.
func (d *Dir) fromBundle(res Resource, limit int64) (map[string][]string, []byte, error) {
	var names []string
	if res.Kind == KindTCBInfo {
		names = []string{OfflineBundle(res.FMSPC)}
	} else {
		var err error
		if names, err = filepath.Glob(filepath.Join(d.Path, offlineBundlePattern)); err != nil {
			return nil, nil, fmt.Errorf("collateral: %w", err)
		}
		for i := range names {
			names[i] = filepath.Base(names[i])
		}
		slices.Sort(names)
	}
	for _, name := range names {
		path := filepath.Join(d.Path, name)
		raw, err := readBounded(path, limit)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var b bundle
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, nil, fmt.Errorf("collateral: %s: not a collateral bundle: %w", path, err)
		}
		h, body, ok, err := b.answer(res)
		if err != nil {
			return nil, nil, fmt.Errorf("collateral: %s: %w", path, err)
		}
		if ok {
			return h, body, nil
		}
	}
	return nil, nil, errNoBundle
}

// answer builds the response Intel's PCS would send for res from b; ok is
// false when b does not hold it.
func (b *bundle) answer(res Resource) (h http.Header, body []byte, ok bool, err error) {
	h = http.Header{}
	switch res.Kind {
	case KindTCBInfo:
		if len(b.TCBInfo) == 0 {
			return nil, nil, false, nil
		}
		body, err = signedBody("tcb_info", "tcbInfo", b.TCBInfo, b.TCBInfoSignature)
		h.Set(pcs.TcbInfoIssuerChainPhrase, url.QueryEscape(b.TCBInfoIssuerChain))
	case KindQEIdentity:
		if len(b.QEIdentity) == 0 {
			return nil, nil, false, nil
		}
		body, err = signedBody("qe_identity", "enclaveIdentity", b.QEIdentity, b.QEIdentitySignature)
		h.Set(pcs.SgxQeIdentityIssuerChainPhrase, url.QueryEscape(b.QEIdentityIssuerChain))
	case KindPCKCRL:
		if b.PCKCRL == "" || firstCN(b.PCKCRLIssuerChain) != pckCACommonNames[res.CA] {
			return nil, nil, false, nil
		}
		if body, err = hexField("pck_crl", b.PCKCRL); err == nil && res.PEM {
			body = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: body})
		}
		h.Set(pcs.SgxPckCrlIssuerChainPhrase, url.QueryEscape(b.PCKCRLIssuerChain))
	case KindRootCRL:
		if b.RootCACRL == "" {
			return nil, nil, false, nil
		}
		body, err = hexField("root_ca_crl", b.RootCACRL)
	}
	if err != nil {
		return nil, nil, false, err
	}
	return h, body, true, nil
}

// signedBody rebuilds a PCS response, {"<member>":<doc>,"signature":"<hex>"},
// keeping doc's bytes exactly: the signature is over them.
func signedBody(key, member string, doc json.RawMessage, sig string) ([]byte, error) {
	// The bundle stores the document as a JSON string of the signed text.
	var text string
	if err := json.Unmarshal(doc, &text); err != nil {
		return nil, fmt.Errorf("%s: want the signed JSON text as a string: %w", key, err)
	}
	if t := strings.TrimSpace(text); !strings.HasPrefix(t, "{") || !json.Valid([]byte(t)) {
		return nil, fmt.Errorf("%s: not a JSON object", key)
	}
	if _, err := hex.DecodeString(sig); err != nil || sig == "" {
		return nil, fmt.Errorf("%s_signature: not hex", key)
	}
	return []byte(`{"` + member + `":` + text + `,"signature":"` + sig + `"}`), nil
}

func hexField(key, v string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("%s: not hex-encoded DER: %w", key, err)
	}
	return b, nil
}

// firstCN is the subject CN of the first certificate of a PEM chain.
func firstCN(chain string) string {
	blk, _ := pem.Decode([]byte(chain))
	if blk == nil {
		return ""
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return ""
	}
	return c.Subject.CommonName
}
