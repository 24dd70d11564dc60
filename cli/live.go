package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
)

func init() { commands = append(commands, newInfoCmd, newMeasurementsCmd) }

// open opens the TEE the global flags select.
func (g *globals) open(ctx context.Context) (tee.Provider, error) {
	return tee.Open(ctx, tee.Config{
		TEE:      cctrusted.TEE(g.tee),
		HostRoot: g.hostRoot,
		TPM:      tpm.Options{Device: g.tpm},
		SimDir:   g.simDir,
	})
}

type infoOutput struct {
	TEE              cctrusted.TEE     `json:"tee"`
	DefaultAlgorithm string            `json:"default_algorithm"`
	MeasurementCount int               `json:"measurement_count"`
	Events           int               `json:"events"`
	Measurements     map[string]string `json:"measurements"`
}

func newInfoCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Say which TEE this node has and what it measures",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := g.open(ctx)
			if err != nil {
				return err
			}
			defer p.Close()
			alg, err := p.DefaultAlgorithm(ctx)
			if err != nil {
				return fmt.Errorf("default algorithm: %w", err)
			}
			n, err := p.MeasurementCount(ctx)
			if err != nil {
				return fmt.Errorf("measurement count: %w", err)
			}
			out := infoOutput{TEE: p.TEE(), DefaultAlgorithm: alg.String(), MeasurementCount: n}
			if out.Measurements, err = readMeasurements(ctx, p, nil, alg); err != nil {
				return err
			}
			events, err := p.EventLog(ctx, 0, 0)
			if err != nil {
				return fmt.Errorf("event log: %w", err)
			}
			out.Events = len(events)
			return g.emit(out, func() error {
				g.printf("tee:               %s\n", out.TEE)
				if out.TEE == cctrusted.TEESim {
					g.printf("                   (simulated: never trusted unless a verifier is configured with its root)\n")
				}
				g.printf("default algorithm: %s\n", out.DefaultAlgorithm)
				g.printf("measurements:      %d\n", out.MeasurementCount)
				g.printf("event log:         %d events\n", out.Events)
				g.printMeasurements(out.Measurements)
				return nil
			})
		},
	}
}

// registers lists what `measurements` reads when no --imr is given.
func registers(t cctrusted.TEE) []cctrusted.IMR {
	if t == cctrusted.TEETPM {
		var r []cctrusted.IMR
		for i := range cctrusted.NumPCRs {
			r = append(r, cctrusted.PCR(i).IMR())
		}
		return r
	}
	r := []cctrusted.IMR{cctrusted.MRTD}
	for i := range cctrusted.NumRTMRs {
		r = append(r, cctrusted.RTMR(i).IMR())
	}
	return r
}

func readMeasurements(ctx context.Context, p cctrusted.Provider, imrs []cctrusted.IMR, alg cctrusted.Algorithm) (map[string]string, error) {
	if imrs == nil {
		imrs = registers(p.TEE())
	}
	out := map[string]string{}
	for _, m := range imrs {
		d, err := p.Measurement(ctx, m, alg)
		if err != nil {
			return nil, fmt.Errorf("measurement %v (%v): %w", m, alg, err)
		}
		out[m.String()] = d.Hex()
	}
	return out, nil
}

func (g *globals) printMeasurements(m map[string]string) {
	for _, k := range sortedRegisters(m) {
		g.printf("  %-6s %s\n", k, m[k])
	}
}

// parseIMRFlag accepts a register name (rtmr1, pcr7, mrtd) or a bare index
// in the TEE's native space: RTMR on TDX and the simulator, PCR on TPM.
func parseIMRFlag(s string, t cctrusted.TEE) (cctrusted.IMR, error) {
	var n uint32
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && !strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz") {
		m := cctrusted.RTMR(n).IMR()
		if t == cctrusted.TEETPM {
			m = cctrusted.PCR(n).IMR()
		}
		if !m.Valid() {
			return cctrusted.IMR{}, fmt.Errorf("--imr %s: outside the %s space of a %s TEE", s, m.Space, t)
		}
		return m, nil
	}
	m, err := cctrusted.ParseIMR(s)
	if err != nil {
		return cctrusted.IMR{}, fmt.Errorf("--imr: %w", err)
	}
	return m, nil
}

func newMeasurementsCmd(g *globals) *cobra.Command {
	var imrFlag, algFlag string
	cmd := &cobra.Command{
		Use:   "measurements",
		Short: "Read measurement registers (MRTD and RTMRs, or PCRs) from the live TEE",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := g.open(ctx)
			if err != nil {
				return err
			}
			defer p.Close()
			alg, err := p.DefaultAlgorithm(ctx)
			if err != nil {
				return err
			}
			if algFlag != "" {
				if alg, err = cctrusted.ParseAlgorithm(algFlag); err != nil {
					return err
				}
			}
			var imrs []cctrusted.IMR
			if imrFlag != "" {
				m, err := parseIMRFlag(imrFlag, p.TEE())
				if err != nil {
					return err
				}
				imrs = []cctrusted.IMR{m}
			}
			ms, err := readMeasurements(ctx, p, imrs, alg)
			if err != nil {
				return err
			}
			out := map[string]any{"tee": p.TEE(), "algorithm": alg.String(), "measurements": ms}
			return g.emit(out, func() error { g.printMeasurements(ms); return nil })
		},
	}
	cmd.Flags().StringVar(&imrFlag, "imr", "", "one register: an index (RTMR on TDX, PCR on TPM) or a name (mrtd, rtmr2, pcr7)")
	cmd.Flags().StringVar(&algFlag, "alg", "", "bank (default: the TEE's default algorithm)")
	return cmd
}

// quoteGet implements `ccnp quote get`: a report over the live TEE.
func (g *globals) quoteGet(cmd *cobra.Command, nonceHex, userHex, outFile string) error {
	nonce, err := hex.DecodeString(nonceHex)
	if err != nil || len(nonce) == 0 || len(nonce) > 64 {
		return fmt.Errorf("--nonce: want 1 to 64 bytes of hex, got %q", nonceHex)
	}
	var ud []byte
	if userHex != "" {
		if ud, err = hex.DecodeString(userHex); err != nil || len(ud) > 64 {
			return fmt.Errorf("--user-data: want up to 64 bytes of hex, got %q", userHex)
		}
	}
	ctx := cmd.Context()
	p, err := g.open(ctx)
	if err != nil {
		return err
	}
	defer p.Close()
	r, err := p.Report(ctx, nonce, ud)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	out := reportOutput{TEE: r.TEE, ReportData: hex.EncodeToString(r.ReportData), Quote: hex.EncodeToString(r.Quote),
		Signature: hex.EncodeToString(r.Signature)}
	if len(r.Registers) > 0 {
		out.PCRs = map[string]map[string]string{}
		for m, banks := range r.Registers {
			for a, v := range banks {
				if out.PCRs[a.String()] == nil {
					out.PCRs[a.String()] = map[string]string{}
				}
				out.PCRs[a.String()][m.String()] = hex.EncodeToString(v)
			}
		}
	}
	if outFile != "" {
		// A TDX quote is written as the raw bytes `ccnp verify --quote`
		// reads; a TPM report has several parts and is written as JSON.
		data := r.Quote
		if r.TEE == cctrusted.TEETPM {
			if data, err = json.MarshalIndent(out, "", "  "); err != nil {
				return err
			}
		}
		if err := os.WriteFile(outFile, data, 0o644); err != nil {
			return fmt.Errorf("writing the quote: %w", err)
		}
		fmt.Fprintf(g.stderr, "wrote a %d-byte %s quote to %s\n", len(r.Quote), r.TEE, outFile)
		return nil
	}
	return g.emit(out, func() error {
		g.printf("tee:         %s\nreport_data: %s\nquote:       %s\n", out.TEE, out.ReportData, out.Quote)
		if out.Signature != "" {
			g.printf("signature:   %s\n", out.Signature)
		}
		return nil
	})
}

type reportOutput struct {
	TEE        cctrusted.TEE                `json:"tee"`
	ReportData string                       `json:"report_data"`
	Quote      string                       `json:"quote"`
	Signature  string                       `json:"signature,omitempty"`
	PCRs       map[string]map[string]string `json:"pcrs,omitempty"`
}
