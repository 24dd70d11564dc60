package pcs

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Intel's PCS hosts and the paths this package serves under any base URL.
const (
	// APIHost serves TCB info, QE identity and PCK CRLs.
	APIHost = "api.trustedservices.intel.com"
	// CertificatesHost serves the root CA CRL.
	CertificatesHost = "certificates.trustedservices.intel.com"

	TCBInfoPath    = "/tdx/certification/v4/tcb"
	QEIdentityPath = "/tdx/certification/v4/qe/identity"
	PCKCRLPath     = "/sgx/certification/v4/pckcrl"
	RootCRLPath    = "/IntelSGXRootCA.der"
)

// Response header names, as Intel's PCS v4 sends them.
const (
	TCBInfoIssuerChainHeader    = "TCB-Info-Issuer-Chain"
	QEIdentityIssuerChainHeader = "SGX-Enclave-Identity-Issuer-Chain"
	PCKCRLIssuerChainHeader     = "SGX-PCK-CRL-Issuer-Chain"
)

// maxURL bounds the URLs RequestPath accepts; Intel's longest is about 100 bytes.
const maxURL = 2048

// RequestPath maps one of Intel's PCS URLs (as go-tdx-guest's verify package builds
// them: pcs.TcbInfoURL, pcs.QeIdentityURL, pcs.PckCrlURL and the root certificate's
// CRL distribution point) onto the path and query this package serves, so a getter
// can send it to any PCS-compatible base URL. Other URLs are refused rather than
// fetched from somewhere unexpected.
func RequestPath(rawURL string) (string, error) {
	if len(rawURL) > maxURL {
		return "", fmt.Errorf("pcs: URL of %d bytes, limit %d", len(rawURL), maxURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("pcs: %w", err)
	}
	if u.Scheme != "https" || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("pcs: %q is not an Intel PCS URL", rawURL)
	}
	if _, err := route(u.Host, u.Path, u.Query()); err != nil {
		return "", err
	}
	if u.RawQuery == "" {
		return u.Path, nil
	}
	return u.Path + "?" + u.RawQuery, nil
}

// resource is one thing the simulated PCS serves.
type resource int

const (
	resTCBInfo resource = iota + 1
	resQEIdentity
	resPCKCRLDER
	resPCKCRLPEM
	resRootCRL
)

// route recognises a request. host is empty for requests to this server (any base)
// and Intel's host for URLs that RequestPath maps.
func route(host, path string, q url.Values) (resource, error) {
	switch path {
	case TCBInfoPath, QEIdentityPath, PCKCRLPath:
		if host != "" && host != APIHost {
			return 0, fmt.Errorf("pcs: %s is not served from host %q", path, host)
		}
	case RootCRLPath:
		if host != "" && host != CertificatesHost {
			return 0, fmt.Errorf("pcs: %s is not served from host %q", path, host)
		}
		return resRootCRL, nil
	default:
		return 0, fmt.Errorf("pcs: unknown path %q", path)
	}
	switch path {
	case TCBInfoPath:
		f := q.Get("fmspc")
		if b, err := hex.DecodeString(f); err != nil || len(b) != 6 {
			return 0, fmt.Errorf("pcs: fmspc %q is not 6 bytes of hex", f)
		}
		return resTCBInfo, nil
	case QEIdentityPath:
		return resQEIdentity, nil
	default:
		if ca := q.Get("ca"); ca != "platform" && ca != "processor" {
			return 0, fmt.Errorf("pcs: pckcrl ca %q is neither platform nor processor", ca)
		}
		switch enc := q.Get("encoding"); enc {
		case "der":
			return resPCKCRLDER, nil
		case "", "pem":
			return resPCKCRLPEM, nil
		default:
			return 0, fmt.Errorf("pcs: pckcrl encoding %q is neither der nor pem", enc)
		}
	}
}

// Handler serves the collateral of the sim directory dir at Intel's paths: TCB info
// (TCBInfoPath?fmspc=HEX), QE identity (QEIdentityPath), the PCK CRL
// (PCKCRLPath?ca=platform&encoding=der|pem) and the root CRL (RootCRLPath), with
// issuer chains URL-encoded in Intel's response headers. Collateral is issued afresh
// for every request from the files in dir, so changes to pcs.json apply at once.
func Handler(dir string) http.Handler {
	return &handler{dir: dir, now: time.Now}
}

// HandlerWithClock is Handler issuing collateral as of now() rather than
// the wall clock, for tests that move a verifier's clock across nextUpdate.
func HandlerWithClock(dir string, now func() time.Time) http.Handler {
	return &handler{dir: dir, now: now}
}

type handler struct {
	dir string
	now func() time.Time
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	res, err := route("", r.URL.Path, r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	c, err := Load(h.dir, h.now())
	if err != nil {
		// The error names files in the sim directory, never key material.
		http.Error(w, "simulated PCS: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	var body []byte
	switch res {
	case resTCBInfo:
		if !strings.EqualFold(r.URL.Query().Get("fmspc"), c.FMSPC) {
			http.Error(w, fmt.Sprintf("no TCB info for fmspc %q (this platform is %s)", r.URL.Query().Get("fmspc"), c.FMSPC), http.StatusNotFound)
			return
		}
		hdr.Set(TCBInfoIssuerChainHeader, url.QueryEscape(string(c.TCBIssuerChain)))
		hdr.Set("Content-Type", "application/json")
		body = c.TCBInfo
	case resQEIdentity:
		hdr.Set(QEIdentityIssuerChainHeader, url.QueryEscape(string(c.TCBIssuerChain)))
		hdr.Set("Content-Type", "application/json")
		body = c.QEIdentity
	case resPCKCRLDER, resPCKCRLPEM:
		if r.URL.Query().Get("ca") != "platform" {
			http.Error(w, "the simulated platform's PCK is issued by the platform CA", http.StatusNotFound)
			return
		}
		hdr.Set(PCKCRLIssuerChainHeader, url.QueryEscape(string(c.PCKCRLIssuerChain)))
		body = c.PCKCRL
		if res == resPCKCRLPEM {
			body = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.PCKCRL})
			hdr.Set("Content-Type", "application/x-pem-file")
		} else {
			hdr.Set("Content-Type", "application/pkix-crl")
		}
	case resRootCRL:
		hdr.Set("Content-Type", "application/pkix-crl")
		body = c.RootCRL
	}
	hdr.Set("X-CCNP-Simulation", simulationNote)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// Serve runs the simulated PCS for the sim directory dir on listenAddr (for example
// "127.0.0.1:8081") until ctx ends. It is what `ccnp sim pcs --dir D --listen ADDR` runs.
func Serve(ctx context.Context, dir, listenAddr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("pcs: listen on %s: %w", listenAddr, err)
	}
	return ServeListener(ctx, dir, ln)
}

// ServeListener is Serve on a listener the caller opened (so it can print the port
// of ":0"). It checks that dir holds a usable sim before accepting requests, and
// closes ln when it returns.
func ServeListener(ctx context.Context, dir string, ln net.Listener) error {
	if _, err := Load(dir, time.Now()); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           Handler(dir),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("pcs: serve: %w", err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("pcs: shutdown: %w", err)
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("pcs: serve: %w", err)
		}
		return nil
	}
}
