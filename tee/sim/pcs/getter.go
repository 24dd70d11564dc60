package pcs

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// maxResponse bounds a stored collateral file; Intel's largest (a TCB info) is ~10 KiB.
const maxResponse = 1 << 20

// Offline collateral directory layout (WriteOffline writes it, DirGetter reads it).
// Bodies are stored as served; each issuer chain is stored as PEM next to its body.
const (
	offlineQEIdentity      = "qe-identity.json"
	offlineQEIdentityChain = "qe-identity.issuer-chain.pem"
	offlinePCKCRL          = "pckcrl-platform.der"
	offlinePCKCRLChain     = "pckcrl-platform.issuer-chain.pem"
	offlineRootCRL         = "rootcrl.der"
)

func offlineTCBInfo(fmspc string) string { return "tcbinfo-" + strings.ToLower(fmspc) + ".json" }
func offlineTCBInfoChain(fmspc string) string {
	return "tcbinfo-" + strings.ToLower(fmspc) + ".issuer-chain.pem"
}

// WriteOffline writes c into outDir (created if missing) as an offline collateral
// directory: tcbinfo-<fmspc>.json, qe-identity.json, pckcrl-platform.der,
// rootcrl.der, and for the first three an <name>.issuer-chain.pem. Files are
// replaced atomically.
func WriteOffline(c *Collateral, outDir string) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("pcs: %w", err)
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{offlineTCBInfo(c.FMSPC), c.TCBInfo},
		{offlineTCBInfoChain(c.FMSPC), c.TCBIssuerChain},
		{offlineQEIdentity, c.QEIdentity},
		{offlineQEIdentityChain, c.TCBIssuerChain},
		{offlinePCKCRL, c.PCKCRL},
		{offlinePCKCRLChain, c.PCKCRLIssuerChain},
		{offlineRootCRL, c.RootCRL},
	} {
		if err := writeAtomic(filepath.Join(outDir, f.name), f.b); err != nil {
			return err
		}
	}
	return nil
}

// DirGetter answers Intel PCS URLs from an offline collateral directory that
// WriteOffline wrote, with the same headers the PCS would send. It implements
// go-tdx-guest's trust.HTTPSGetter.
type DirGetter struct {
	// Dir is the offline collateral directory.
	Dir string
}

// Get returns the stored response for url.
func (g *DirGetter) Get(rawURL string) (map[string][]string, []byte, error) {
	p, err := RequestPath(rawURL)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(p)
	if err != nil {
		return nil, nil, fmt.Errorf("pcs: %w", err)
	}
	q := u.Query()
	res, err := route("", u.Path, q)
	if err != nil {
		return nil, nil, err
	}
	var bodyFile, chainFile, header string
	switch res {
	case resTCBInfo:
		// route checked that fmspc is 12 hex digits, so it cannot climb out of Dir.
		fmspc := q.Get("fmspc")
		bodyFile, chainFile, header = offlineTCBInfo(fmspc), offlineTCBInfoChain(fmspc), TCBInfoIssuerChainHeader
	case resQEIdentity:
		bodyFile, chainFile, header = offlineQEIdentity, offlineQEIdentityChain, QEIdentityIssuerChainHeader
	case resPCKCRLDER, resPCKCRLPEM:
		if q.Get("ca") != "platform" {
			return nil, nil, fmt.Errorf("pcs: offline collateral in %s has no PCK CRL for ca=%s", g.Dir, q.Get("ca"))
		}
		bodyFile, chainFile, header = offlinePCKCRL, offlinePCKCRLChain, PCKCRLIssuerChainHeader
	case resRootCRL:
		bodyFile = offlineRootCRL
	}
	body, err := readBounded(filepath.Join(g.Dir, bodyFile), maxResponse)
	if err != nil {
		return nil, nil, err
	}
	if res == resPCKCRLPEM {
		body = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: body})
	}
	hdr := http.Header{}
	if chainFile != "" {
		chain, err := readBounded(filepath.Join(g.Dir, chainFile), maxResponse)
		if err != nil {
			return nil, nil, err
		}
		hdr.Set(header, url.QueryEscape(string(chain)))
	}
	return hdr, body, nil
}
