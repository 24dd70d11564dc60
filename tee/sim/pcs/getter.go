package pcs

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ccnp-spire/ccnp-spire/collateral"
)

// pckCA is the PCK CA that issues the simulated platform's PCK certificate.
const pckCA = "platform"

// WriteOffline writes c into outDir (created if missing) as an offline collateral
// directory in the layout collateral.Dir reads (collateral.OfflineTCBInfo and
// friends): TCB info, QE identity, the platform CA's PCK CRL and the root CRL,
// each with its issuer chain where Intel sends one. Files are replaced
// atomically.
func WriteOffline(c *Collateral, outDir string) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("pcs: %w", err)
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{collateral.OfflineTCBInfo(c.FMSPC), c.TCBInfo},
		{collateral.OfflineTCBInfoChain(c.FMSPC), c.TCBIssuerChain},
		{collateral.OfflineQEIdentity, c.QEIdentity},
		{collateral.OfflineQEIdentityChain, c.TCBIssuerChain},
		{collateral.OfflinePCKCRL(pckCA), c.PCKCRL},
		{collateral.OfflinePCKCRLChain(pckCA), c.PCKCRLIssuerChain},
		{collateral.OfflineRootCRL, c.RootCRL},
	} {
		if err := writeAtomic(filepath.Join(outDir, f.name), f.b); err != nil {
			return err
		}
	}
	return nil
}
