package collateral

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/google/go-tdx-guest/pcs"
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
// (the layout of OfflineTCBInfo and friends) with the headers Intel's PCS
// would send, without any network. It implements trust.HTTPSGetter and
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("collateral: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("collateral: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("collateral: %s is not a regular file", path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("collateral: %s is %d bytes, limit %d", path, st.Size(), limit)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("collateral: read %s: %w", path, err)
	}
	return b, nil
}
