package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tee"
)

func init() { commands = append(commands, newPolicyCmd) }

type policyFlags struct {
	fromNode           bool
	quote, ccel, table string
	name               string
	warnOnly           bool
	registers          string
	out                string
	ima                imaGenFlags
}

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with golden-value policies"}
	var f policyFlags
	gen := &cobra.Command{
		Use:   "generate (--from-node | --quote FILE [--ccel FILE --ccel-table FILE]) [--name N] [-o policy.hcl]",
		Short: "Turn a golden node's measurements into a policy block for the server's plugin_data",
		Long: `Read a golden node's measurements, from the live TEE (--from-node) or from a
TDX quote and its CCEL, and print a policy block: the registers (--registers,
default mrtd,rtmr0,rtmr1,rtmr2 on TDX and pcr0-pcr9 on a TPM), the DEBUG
attribute, and, when the event log replays to the registers, the secure boot
state and kernel command line. RTMR3 and PCR23 hold the runtime log and change
as workloads run, so they are left out unless named.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{outputFileAllowed: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.ima.on {
				return f.generateIMA(cmd.Context(), g)
			}
			if g.output != "text" && g.output != "json" {
				f.out, g.output = g.output, "text"
			}
			p, err := f.generate(cmd.Context(), g)
			if err != nil {
				return err
			}
			if err := p.Validate(); err != nil {
				return err
			}
			text := p.HCL()
			if f.out != "" {
				if err := os.WriteFile(f.out, []byte(text), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "wrote policy %q (digest %s) to %s\n", p.Name, p.Digest(), f.out)
				return nil
			}
			return g.emit(map[string]string{"name": p.Name, "digest": p.Digest(), "hcl": text}, func() error {
				g.printf("%s", text)
				return nil
			})
		},
	}
	fl := gen.Flags()
	fl.BoolVar(&f.fromNode, "from-node", false, "read the live TEE (--tee, --sim-dir, --tpm, --host-root)")
	fl.StringVar(&f.quote, "quote", "", "TDX quote of the golden node")
	fl.StringVar(&f.ccel, "ccel", "", "its CCEL")
	fl.StringVar(&f.table, "ccel-table", "", "its CCEL ACPI table")
	fl.StringVar(&f.name, "name", "golden", "policy name (becomes selector ccnp:policy:<name>)")
	fl.BoolVar(&f.warnOnly, "warn-only", false, "generate enforce = false (report policy_warn:<name>, never reject)")
	fl.StringVar(&f.registers, "registers", "", "comma-separated registers to pin (e.g. mrtd,rtmr0,rtmr1,rtmr2 or pcr0,pcr7)")
	f.ima.addFlags(gen)
	cmd.AddCommand(gen)
	return cmd
}

// golden is what generate learned about the node.
type golden struct {
	tee   cctrusted.TEE
	regs  map[cctrusted.IMR]string // default bank
	alg   cctrusted.Algorithm
	debug *bool
	facts *eventlog.Facts
}

func (f *policyFlags) generate(ctx context.Context, g *globals) (*conf.Policy, error) {
	var (
		gd  *golden
		err error
	)
	switch {
	case f.fromNode && f.quote != "":
		return nil, fmt.Errorf("--from-node and --quote exclude each other")
	case f.fromNode:
		gd, err = goldenFromNode(ctx, g)
	case f.quote != "":
		gd, err = f.goldenFromQuote()
	default:
		return nil, fmt.Errorf("say where the golden values come from: --from-node or --quote FILE")
	}
	if err != nil {
		return nil, err
	}
	want, err := f.pinned(gd.tee)
	if err != nil {
		return nil, err
	}
	p := &conf.Policy{Name: f.name, Enforce: !f.warnOnly, TEE: []cctrusted.TEE{cctrusted.TEE(gd.tee)}, AllowDebug: gd.debug}
	for _, m := range want {
		v, ok := gd.regs[m]
		if !ok {
			return nil, fmt.Errorf("--registers: the %s node has no %v", gd.tee, m)
		}
		switch m.Space {
		case cctrusted.SpaceMRTD:
			p.MRTD = []string{v}
		case cctrusted.SpaceRTMR:
			p.RTMR[m.Index] = []string{v}
		case cctrusted.SpacePCR:
			if p.PCRs == nil {
				p.PCRs = map[cctrusted.PCR]map[cctrusted.Algorithm][]string{}
			}
			p.PCRs[cctrusted.PCR(m.Index)] = map[cctrusted.Algorithm][]string{gd.alg: {v}}
		default:
			return nil, fmt.Errorf("--registers: %v cannot be pinned", m)
		}
	}
	if gd.facts != nil {
		if gd.facts.SecureBootKnown {
			sb := gd.facts.SecureBoot
			p.SecureBoot = &sb
		}
		if gd.facts.KernelCmdlineKnown && gd.facts.KernelCmdline != "" {
			p.KernelCmdline = []string{gd.facts.KernelCmdline}
		}
	}
	return p, nil
}

// pinned returns the registers to put in the policy.
func (f *policyFlags) pinned(t cctrusted.TEE) ([]cctrusted.IMR, error) {
	spec := f.registers
	if spec == "" {
		spec = "mrtd,rtmr0,rtmr1,rtmr2"
		if t == cctrusted.TEETPM {
			spec = "pcr0,pcr1,pcr2,pcr3,pcr4,pcr5,pcr6,pcr7,pcr8,pcr9"
		}
	}
	var out []cctrusted.IMR
	for _, s := range strings.Split(spec, ",") {
		m, err := cctrusted.ParseIMR(s)
		if err != nil {
			return nil, fmt.Errorf("--registers: %w", err)
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *policyFlags) goldenFromQuote() (*golden, error) {
	raw, err := readInput("--quote", f.quote)
	if err != nil {
		return nil, err
	}
	var table, log []byte
	if f.ccel != "" {
		if log, err = readInput("--ccel", f.ccel); err != nil {
			return nil, err
		}
		if f.table != "" {
			if table, err = readInput("--ccel-table", f.table); err != nil {
				return nil, err
			}
		}
	}
	return goldenFromTDX(cctrusted.TEETDX, raw, table, log)
}

// goldenFromTDX reads the registers and the DEBUG attribute from a quote and,
// when a CCEL is given, the boot facts it replays to.
func goldenFromTDX(t cctrusted.TEE, raw, table, log []byte) (*golden, error) {
	q, err := tdxquote.Parse(raw)
	if err != nil {
		return nil, err
	}
	gd := &golden{tee: t, alg: cctrusted.AlgSHA384, regs: map[cctrusted.IMR]string{
		cctrusted.MRTD: hex.EncodeToString(q.Body.MRTD[:]),
	}}
	for i, r := range q.Body.RTMR {
		gd.regs[cctrusted.RTMR(i).IMR()] = hex.EncodeToString(r[:])
	}
	debug := q.Debug()
	gd.debug = &debug
	if log != nil {
		rtmr := [3][]byte{q.Body.RTMR[0][:], q.Body.RTMR[1][:], q.Body.RTMR[2][:]}
		if gd.facts, err = eventlog.VerifyCCEL(table, log, rtmr); err != nil {
			return nil, fmt.Errorf("the CCEL does not replay to the quote's RTMRs: %w", err)
		}
	}
	return gd, nil
}

func goldenFromNode(ctx context.Context, g *globals) (*golden, error) {
	p, err := g.open(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	src := tee.Unwrap(p)
	if s, ok := src.(interface {
		RawCCEL(context.Context) ([]byte, []byte, error)
	}); ok {
		// TDX and the simulator: take the values from a fresh quote, so the
		// policy pins what the hardware signs.
		nonce, err := evidence.NewNonce()
		if err != nil {
			return nil, err
		}
		r, err := p.Report(ctx, nonce, nil)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		table, log, err := s.RawCCEL(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the CCEL: %w", err)
		}
		return goldenFromTDX(p.TEE(), r.Quote, table, log)
	}
	gd := &golden{tee: p.TEE(), regs: map[cctrusted.IMR]string{}}
	if gd.alg, err = p.DefaultAlgorithm(ctx); err != nil {
		return nil, err
	}
	regs := cctrusted.Registers{}
	for _, m := range registers(p.TEE()) {
		d, err := p.Measurement(ctx, m, gd.alg)
		if err != nil {
			return nil, fmt.Errorf("measurement %v: %w", m, err)
		}
		gd.regs[m] = d.Hex()
		regs.Set(m, gd.alg, d.Value)
	}
	if s, ok := src.(interface {
		RawEventLog(context.Context) ([]byte, error)
	}); ok {
		if log, err := s.RawEventLog(ctx); err == nil && len(log) > 0 {
			if gd.facts, err = eventlog.VerifyTPM(log, regs); err != nil {
				return nil, fmt.Errorf("the node's TPM log does not replay to its PCRs: %w", err)
			}
		}
	}
	return gd, nil
}
