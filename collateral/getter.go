// Package collateral fetches Intel TDX collateral (TCB info, QE identity, PCK
// and root CRLs) for quote verification: from Intel's PCS, from a
// PCS-compatible service (a PCCS, or the simulated PCS of the demo) at another
// base URL. It implements go-tdx-guest's trust.HTTPSGetter, so the library's
// own URL construction is used unchanged.
package collateral

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
type Getter struct {
	BaseURL string
	// Client makes the requests; nil means a client with DefaultTimeout.
	Client *http.Client
}

// NewGetter checks base and returns a Getter for it.
func NewGetter(base string) (*Getter, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("collateral: base URL %q: %w", base, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("collateral: base URL %q: want http(s)://host[:port][/path]", base)
	}
	return &Getter{BaseURL: strings.TrimSuffix(base, "/")}, nil
}

// Get implements trust.HTTPSGetter.
func (g *Getter) Get(rawURL string) (map[string][]string, []byte, error) {
	return g.GetContext(context.Background(), rawURL)
}

// GetContext implements trust.ContextHTTPSGetter: it fetches the mapped URL
// and returns the response headers (the issuer chains are there) and body.
// Any status but 200 is an error.
func (g *Getter) GetContext(ctx context.Context, rawURL string) (map[string][]string, []byte, error) {
	target, err := g.mapURL(rawURL)
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
	return resp.Header, body, nil
}

// mapURL moves an Intel collateral URL onto BaseURL. URLs of other hosts are
// refused: the verifier must never be steered to fetch from elsewhere.
func (g *Getter) mapURL(rawURL string) (string, error) {
	if len(rawURL) > 2048 {
		return "", fmt.Errorf("collateral: URL of %d bytes", len(rawURL))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("collateral: %w", err)
	}
	if u.Scheme != "https" || (u.Host != PCSHost && u.Host != CertificatesHost) || u.User != nil {
		return "", fmt.Errorf("collateral: %q is not an Intel collateral URL", rawURL)
	}
	if g.BaseURL == "" {
		return rawURL, nil
	}
	return g.BaseURL + u.RequestURI(), nil
}
