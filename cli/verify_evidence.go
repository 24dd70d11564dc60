package cli

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	serververifier "github.com/ccnp-spire/ccnp-spire/server-verifier"
)

// evidenceFlags are the flags of `ccnp verify --evidence`.
type evidenceFlags struct {
	file, nonce, serverConfig, trustDomain string
	verbose                                bool
}

func (e *evidenceFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&e.file, "evidence", "", "a recording made by `ccnp evidence collect`: run the server plugin's whole attestation on it")
	fl.StringVar(&e.nonce, "nonce", "", "with --evidence: the nonce given to `ccnp evidence collect`, 64 hex characters; with --azure-tdx: the vTPM quote's nonce, 1 to 64 bytes in hex")
	fl.StringVar(&e.serverConfig, "server-config", "", "with --evidence: the server NodeAttestor's plugin_data (HCL file); default: see README")
	fl.StringVar(&e.trustDomain, "trust-domain", "example.org", "with --evidence: the SPIRE server's trust domain (for the agent ID)")
	fl.BoolVar(&e.verbose, "verbose", false, "with --evidence: print the plugin's log lines (the audit line among them) on stderr")
}

// verifyEvidence runs the server plugin on a recording (serververifier.VerifyOffline).
func (g *globals) verifyEvidence(cmd *cobra.Command, f *verifyFlags) error {
	e := &f.recorded
	if f.quote != "" || f.ccel != "" || f.table != "" || f.reportData != "" || f.pcsURL != "" {
		return fmt.Errorf("--evidence takes the quote and logs from the recording and the trust settings from --server-config: drop --quote, --ccel, --ccel-table, --report-data and --pcs-url")
	}
	nonce, err := parseNonce(e.nonce)
	if err != nil {
		return err
	}
	b, err := readInput("--evidence", e.file)
	if err != nil {
		return err
	}
	rec, err := evidence.UnmarshalRecording(b, evidence.DefaultLimits())
	if err != nil {
		return fmt.Errorf("--evidence: %s: %w", e.file, err)
	}
	hcl, err := g.serverConfig(f, rec)
	if err != nil {
		return err
	}
	opts := serververifier.OfflineOptions{}
	if f.at != "" {
		at, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return fmt.Errorf("--at: %w", err)
		}
		opts.Now = func() time.Time { return at }
	}
	if e.verbose {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "ccnp-server-plugin", Output: g.stderr, Level: hclog.Debug})
	}
	res, err := serververifier.VerifyOffline(cmd.Context(), hcl, e.trustDomain, rec, nonce, opts)
	if err != nil {
		return fmt.Errorf("--server-config: %w", err)
	}
	if err := g.emit(res, func() error { g.printOffline(res); return nil }); err != nil {
		return err
	}
	if !res.Accepted {
		return &exitError{code: 2, err: fmt.Errorf("the server plugin rejects this evidence: check %s failed", res.FailedCheck)}
	}
	return nil
}

// serverConfig is the --server-config file's text or, without one, the
// least a server needs for the recording's TEE: for sim the simulated root
// (--trusted-root, else --sim-dir's root.pem), for tdx the server plugin's
// defaults (Intel's root, collateral from Intel's PCS); tpm needs a file
// (there is no default EK trust).
func (g *globals) serverConfig(f *verifyFlags, rec *evidence.Recording) (string, error) {
	if f.recorded.serverConfig != "" {
		b, err := readInput("--server-config", f.recorded.serverConfig)
		return string(b), err
	}
	h, err := evidence.DecodeHello(rec.Hello, evidence.DefaultLimits())
	if err != nil {
		return "", fmt.Errorf("--evidence: the recorded hello: %w (with --server-config the server plugin judges it anyway)", err)
	}
	switch cctrusted.TEE(h.GetTee()) {
	case cctrusted.TEESim:
		root := f.trustedRoot
		if root == "" && g.simDir != "" {
			root = filepath.Join(g.simDir, "root.pem")
		}
		if root == "" {
			return "", fmt.Errorf("the recording is from a simulated TEE: give --server-config, --trusted-root or --sim-dir (whose root.pem is trusted)")
		}
		if abs, err := filepath.Abs(root); err == nil {
			root = abs
		}
		return fmt.Sprintf("sim {\n  trusted_root_file = %s\n}\n", strconv.Quote(root)), nil
	case cctrusted.TEETDX:
		if f.trustedRoot == "" {
			return "tdx {\n}\n", nil
		}
		root, err := filepath.Abs(f.trustedRoot)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("tdx {\n  trusted_roots_file = %s\n}\n", strconv.Quote(root)), nil
	}
	return "", fmt.Errorf("the recording is from a %s node: give --server-config (the server's plugin_data, whose tpm block says how EKs are trusted)", h.GetTee())
}

func (g *globals) printOffline(r *serververifier.OfflineResult) {
	for _, c := range r.Checks {
		g.printCheck(c.Name, c.OK, c.Skipped, c.Detail)
	}
	for _, p := range r.Policies {
		res := "match"
		switch {
		case !p.Match && p.Enforce:
			res = "MISMATCH"
		case !p.Match:
			res = "warn"
		}
		g.printf("policy %-9s %-8s digest=%s enforce=%v %s\n", p.Name, res, p.Digest, p.Enforce, strings.Join(p.Mismatches, "; "))
	}
	for _, n := range r.NotChecked {
		g.printf("not checked offline: %s\n", n)
	}
	if !r.Accepted {
		g.printf("rejected: %s (%s): %s\n", r.FailedCheck, r.Code, r.Error)
		return
	}
	proven := ""
	if !r.AgentIDProven {
		proven = " (UNPROVEN: credential activation needs the live TPM)"
	}
	g.printf("agent ID: %s%s\n", r.AgentID, proven)
	g.printf("selectors (SPIRE prefixes each with the plugin name, e.g. ccnp:%s):\n", firstOr(r.Selectors, "tee:..."))
	for _, s := range r.Selectors {
		g.printf("  %s\n", s)
	}
	g.printf("accepted: the server plugin would attest this node\n")
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
