package collateral

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

// Paths of the collateral a TDX verifier fetches, as Intel's PCS v4 serves
// them (TCB info, QE identity and PCK CRL on PCSHost, the root CA CRL on
// CertificatesHost) and as a PCCS serves them under its own base URL.
const (
	TCBInfoPath    = "/tdx/certification/v4/tcb"
	QEIdentityPath = "/tdx/certification/v4/qe/identity"
	PCKCRLPath     = "/sgx/certification/v4/pckcrl"
	RootCRLPath    = "/IntelSGXRootCA.der"
	// PCCSRootCRLPath is where a PCCS serves the root CA CRL: it has no
	// copy of Intel's certificates host.
	PCCSRootCRLPath = "/sgx/certification/v4/rootcacrl"
)

// maxURL bounds the URLs accepted; Intel's longest is about 100 bytes.
const maxURL = 2048

// Kind is one kind of collateral document.
type Kind int

// The collateral kinds a TDX verifier fetches.
const (
	KindTCBInfo Kind = iota + 1
	KindQEIdentity
	KindPCKCRL
	KindRootCRL
)

func (k Kind) String() string {
	switch k {
	case KindTCBInfo:
		return "TCB info"
	case KindQEIdentity:
		return "QE identity"
	case KindPCKCRL:
		return "PCK CRL"
	case KindRootCRL:
		return "root CA CRL"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Resource is one Intel collateral URL, recognised.
type Resource struct {
	Kind Kind
	// FMSPC is the platform's FMSPC in lower-case hex (TCB info only).
	FMSPC string
	// CA is "platform" or "processor" (PCK CRL only).
	CA string
	// PEM is set when a PCK CRL is asked for PEM-encoded (Intel's default
	// when no encoding is given).
	PEM bool
	// RequestURI is the path and query of the URL as given.
	RequestURI string
}

// ParseIntelURL recognises one of the Intel collateral URLs go-tdx-guest's
// pcs package builds (TcbInfoURL, QeIdentityURL, PckCrlURL) or the root CA's
// CRL distribution point. Anything else is refused, so that nothing can
// steer a verifier to fetch from elsewhere or read another file.
func ParseIntelURL(rawURL string) (Resource, error) {
	if len(rawURL) > maxURL {
		return Resource{}, fmt.Errorf("collateral: URL of %d bytes, limit %d", len(rawURL), maxURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return Resource{}, fmt.Errorf("collateral: %w", err)
	}
	if u.Scheme != "https" || u.User != nil || u.Fragment != "" || u.Opaque != "" || (u.Host != PCSHost && u.Host != CertificatesHost) {
		return Resource{}, fmt.Errorf("collateral: %q is not an Intel collateral URL", rawURL)
	}
	r := Resource{RequestURI: u.RequestURI()}
	wantHost := PCSHost
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Resource{}, fmt.Errorf("collateral: %q: query: %w", rawURL, err)
	}
	switch u.Path {
	case TCBInfoPath:
		r.Kind = KindTCBInfo
		f := q.Get("fmspc")
		if b, err := hex.DecodeString(f); err != nil || len(b) != 6 {
			return Resource{}, fmt.Errorf("collateral: %q: fmspc %q is not 6 bytes of hex", rawURL, f)
		}
		r.FMSPC = strings.ToLower(f)
	case QEIdentityPath:
		r.Kind = KindQEIdentity
	case PCKCRLPath:
		r.Kind = KindPCKCRL
		r.CA = q.Get("ca")
		if r.CA != "platform" && r.CA != "processor" {
			return Resource{}, fmt.Errorf("collateral: %q: ca %q is neither platform nor processor", rawURL, r.CA)
		}
		switch enc := q.Get("encoding"); enc {
		case "der":
		case "", "pem":
			r.PEM = true
		default:
			return Resource{}, fmt.Errorf("collateral: %q: encoding %q is neither der nor pem", rawURL, enc)
		}
	case RootCRLPath:
		r.Kind = KindRootCRL
		wantHost = CertificatesHost
		if u.RawQuery != "" {
			return Resource{}, fmt.Errorf("collateral: %q: the root CA CRL takes no query", rawURL)
		}
	default:
		return Resource{}, fmt.Errorf("collateral: %q is not an Intel collateral URL: unknown path", rawURL)
	}
	if u.Host != wantHost {
		return Resource{}, fmt.Errorf("collateral: %q: %s is served from %s, not %s", rawURL, r.Kind, wantHost, u.Host)
	}
	return r, nil
}
