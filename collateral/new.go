package collateral

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/google/go-tdx-guest/verify/trust"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// Options are what New needs beyond the operator's configuration.
type Options struct {
	// Client makes PCS and PCCS requests; nil means a client with DefaultTimeout.
	Client *http.Client
	// Now is the cache's clock; nil means time.Now.
	Now func() time.Time
	// Warn receives the cache's warnings (see CacheConfig.Warn).
	Warn func(msg string, args ...any)
	// MinTCBEvaluationDataNumber is the server's
	// tdx.min_tcb_evaluation_data_number (see CacheConfig).
	MinTCBEvaluationDataNumber uint32
}

// New builds the collateral getter the server configuration asks for: a
// Cache (Refresh, and CacheDir on disk) in front of
//
//   - source pcs: Intel's PCS, or the PCS-compatible service at URL (empty
//     URL or conf.DefaultPCSURL mean Intel's own URLs);
//   - source pccs: the Intel PCCS at URL, which serves the same v4 paths
//     under its base URL and the root CA CRL at PCCSRootCRLPath;
//   - source offline: the directory OfflineDir (Dir), with no network at
//     all. CacheDir is not used: the collateral is on disk already, and the
//     in-memory cache spares a file read per attestation while picking up
//     replaced files at the next refresh or nextUpdate.
func New(cfg conf.Collateral, opts Options) (*Cache, error) {
	var up trust.HTTPSGetter
	cacheDir := cfg.CacheDir
	if opts.Client == nil && cfg.FetchTimeout > 0 {
		// The cache bounds each request with FetchTimeout; the client's own
		// timeout must not cut a longer one short.
		opts.Client = &http.Client{Timeout: cfg.FetchTimeout}
	}
	switch cfg.Source {
	case conf.CollateralPCS, "":
		g := &Getter{}
		if cfg.URL != "" {
			var err error
			if g, err = NewGetter(cfg.URL); err != nil {
				return nil, fmt.Errorf("collateral: pcs_url: %w", err)
			}
		}
		g.Client = opts.Client
		up = g
	case conf.CollateralPCCS:
		if cfg.URL == "" {
			return nil, fmt.Errorf("collateral: source pccs needs pccs_url")
		}
		g, err := NewPCCSGetter(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("collateral: pccs_url: %w", err)
		}
		g.Client = opts.Client
		up = g
	case conf.CollateralOffline:
		if cfg.OfflineDir == "" {
			return nil, fmt.Errorf("collateral: source offline needs offline_dir")
		}
		st, err := os.Stat(cfg.OfflineDir)
		if err != nil {
			return nil, fmt.Errorf("collateral: offline_dir: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("collateral: offline_dir %s is not a directory", cfg.OfflineDir)
		}
		up = &Dir{Path: cfg.OfflineDir}
		cacheDir = ""
	default:
		return nil, fmt.Errorf("collateral: unknown source %q", cfg.Source)
	}
	return NewCache(up, CacheConfig{
		Refresh:      cfg.Refresh,
		FetchTimeout: cfg.FetchTimeout,
		Dir:          cacheDir,
		Now:          opts.Now,
		Warn:         opts.Warn,

		MinTCBEvaluationDataNumber: opts.MinTCBEvaluationDataNumber,
	})
}
