// Package collateral fetches Intel TDX collateral (TCB info, QE identity, PCK
// and root CRLs) for quote verification: from Intel's PCS, from a
// PCS-compatible service (the simulated PCS of the demo) or an Intel PCCS at
// another base URL (Getter), or from an offline directory (Dir). Every source
// implements go-tdx-guest's trust.HTTPSGetter and trust.ContextHTTPSGetter,
// so the library's own URL construction is used unchanged.
//
// Cache wraps any of them so that a server attesting hundreds of agents a
// second fetches each document once per refresh period. It caches bytes
// only and never verifies anything: every response, cached or not, must be
// verified by the caller (signatures, issuer chain, issue and next-update
// dates), so a cache can make a verifier slower or unavailable but never
// make it accept what it would otherwise reject. New builds the chain from
// the server configuration.
package collateral

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Intel's collateral hosts: the only hosts whose URLs a Getter maps.
const (
	PCSHost          = "api.trustedservices.intel.com"
	CertificatesHost = "certificates.trustedservices.intel.com"
)

// MaxResponseBytes bounds one collateral response. Intel's largest (a TCB
// info with its issuer chain) is around 10 KiB; a CRL can grow, but not to this.
const MaxResponseBytes = 4 << 20

// DefaultTimeout bounds one request when the caller's context has no deadline.
const DefaultTimeout = 30 * time.Second

// Getter fetches Intel collateral URLs from BaseURL: the path and query of
// each Intel URL are appended to it. An empty BaseURL fetches from Intel.
// Only the URLs ParseIntelURL recognises are fetched.
type Getter struct {
	BaseURL string
	// Client makes the requests; nil means a client with DefaultTimeout.
	Client *http.Client
	// PCCS says BaseURL is an Intel PCCS rather than a copy of the PCS: it
	// serves the root CA CRL at PCCSRootCRLPath, and CRLs may come back
	// hex-encoded (as PCCS releases have sent them), which is decoded.
	PCCS bool
}

// apiSuffix matches the API prefix operators copy into a base URL
// (conf.DefaultPCSURL, a PCCS's "…/sgx/certification/v4/"); Getter appends
// whole Intel paths, so it is removed.
var apiSuffix = regexp.MustCompile(`/(sgx|tdx)/certification/v[0-9]+$`)

func normalizeBase(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("collateral: base URL %q: %w", base, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("collateral: base URL %q: want http(s)://host[:port][/path]", base)
	}
	return apiSuffix.ReplaceAllString(strings.TrimRight(base, "/"), ""), nil
}

// NewGetter checks base, the URL of the PCS or of a copy serving Intel's
// paths (the simulated PCS), and returns a Getter for it. A trailing
// /tdx/certification/v4 (or sgx) is dropped, and Intel's own PCS URL means
// fetching Intel's URLs unchanged (the root CA CRL lives on another host).
func NewGetter(base string) (*Getter, error) {
	b, err := normalizeBase(base)
	if err != nil {
		return nil, err
	}
	if b == "https://"+PCSHost {
		b = ""
	}
	return &Getter{BaseURL: b}, nil
}

// NewPCCSGetter checks base, the URL of an Intel PCCS (as in
// sgx_default_qcnl.conf: https://host:8081/sgx/certification/v4/ or just
// https://host:8081), and returns a Getter for it.
func NewPCCSGetter(base string) (*Getter, error) {
	b, err := normalizeBase(base)
	if err != nil {
		return nil, err
	}
	if u, _ := url.Parse(b); u.Host == PCSHost || u.Host == CertificatesHost {
		return nil, fmt.Errorf("collateral: PCCS URL %q is Intel's PCS: configure it as the PCS", base)
	}
	return &Getter{BaseURL: b, PCCS: true}, nil
}

// Get implements trust.HTTPSGetter.
func (g *Getter) Get(rawURL string) (map[string][]string, []byte, error) {
	return g.GetContext(context.Background(), rawURL)
}

// GetContext implements trust.ContextHTTPSGetter: it fetches the mapped URL
// and returns the response headers (the issuer chains are there) and body.
// Any status but 200 is an error.
func (g *Getter) GetContext(ctx context.Context, rawURL string) (map[string][]string, []byte, error) {
	target, res, err := g.mapURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("collateral: %w", err)
	}
	c := g.Client
	if c == nil {
		c = &http.Client{Timeout: DefaultTimeout}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("collateral: GET %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("collateral: GET %s: %w", target, err)
	}
	if len(body) > MaxResponseBytes {
		return nil, nil, fmt.Errorf("collateral: GET %s: response larger than %d bytes", target, MaxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("collateral: GET %s: %s", target, resp.Status)
	}
	if g.PCCS && (res.Kind == KindRootCRL || (res.Kind == KindPCKCRL && !res.PEM)) {
		body = unhexCRL(body)
	}
	return resp.Header, body, nil
}

// mapURL moves an Intel collateral URL onto BaseURL. Other URLs are refused:
// the verifier must never be steered to fetch from elsewhere.
func (g *Getter) mapURL(rawURL string) (string, Resource, error) {
	res, err := ParseIntelURL(rawURL)
	if err != nil {
		return "", res, err
	}
	switch {
	case g.BaseURL == "":
		return rawURL, res, nil
	case g.PCCS && res.Kind == KindRootCRL:
		return g.BaseURL + PCCSRootCRLPath, res, nil
	default:
		return g.BaseURL + res.RequestURI, res, nil
	}
}

// unhexCRL decodes a CRL a PCCS sent as hex text. A DER CRL is never valid
// hex (its second byte is a length of 0x81 or more), so DER passes through;
// anything that is neither is left for the CRL parser to refuse.
func unhexCRL(b []byte) []byte {
	t := bytes.TrimSpace(b)
	if len(t) < 4 || len(t)%2 != 0 {
		return b
	}
	d := make([]byte, len(t)/2)
	if _, err := hex.Decode(d, t); err != nil || d[0] != 0x30 {
		return b
	}
	return d
}
