package cli

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-eventlog/tcg"
	"github.com/spf13/cobra"

	"github.com/ccnp-spire/ccnp-spire/eventlog"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
)

func init() { commands = append(commands, newEventlogCmd) }

type eventlogFlags struct {
	format string
	start  int
	count  int
	replay bool
	alg    string
}

func newEventlogCmd(g *globals) *cobra.Command {
	var f eventlogFlags
	cmd := &cobra.Command{
		Use:   "eventlog [FILE]",
		Short: "Decode an event log (CCEL, TPM, IMA, runtime) and optionally replay it",
		Long: `Decode an event log and print its events. Without FILE the live TEE's log is
read (--tee): the CCEL on TDX and the simulator, the firmware log on a TPM, or
the IMA list with --format ima. The format of a file is detected unless
--format is given. --replay prints the registers the log replays to: rtmr0..rtmr3
for a CCEL, pcr0..pcr23 for TPM and IMA logs, one map per bank under
"replayed_banks" and the default bank (or --alg) under "replayed".`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				raw  []byte
				name string
				err  error
			)
			if len(args) == 1 {
				name = args[0]
				raw, err = readInput("event log", name)
			} else {
				name = "live " + g.tee + " event log"
				raw, f.format, err = g.liveLog(cmd.Context(), f.format)
			}
			if err != nil {
				return err
			}
			out, err := decodeLog(raw, f)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return g.emit(out, func() error { g.printLog(out); return nil })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", "", "log format: ccel, tpm, ima or runtime (default: detect)")
	fl.IntVar(&f.start, "start", 0, "first event to print")
	fl.IntVar(&f.count, "count", 0, "number of events to print (0: all remaining)")
	fl.BoolVar(&f.replay, "replay", false, "replay the whole log and print the registers")
	fl.StringVar(&f.alg, "alg", "", "bank shown under \"replayed\" (default: sha384 for CCEL, sha256 for TPM (sha1 for a legacy SHA-1 log), the template hash's for IMA)")
	return cmd
}

// logOutput is the JSON shape of `ccnp eventlog`.
type logOutput struct {
	Format        eventlog.Format              `json:"format"`
	TotalEvents   int                          `json:"total_events"`
	Start         int                          `json:"start"`
	Events        []eventOutput                `json:"events"`
	ReplayedAlg   string                       `json:"replayed_alg,omitempty"`
	Replayed      map[string]string            `json:"replayed,omitempty"`
	ReplayedBanks map[string]map[string]string `json:"replayed_banks,omitempty"`
}

type eventOutput struct {
	Index    int               `json:"index"`
	Register string            `json:"register"`
	Type     string            `json:"type"`
	TypeID   uint32            `json:"type_id"`
	Digests  map[string]string `json:"digests"`
	DataSize int               `json:"data_size"`
	Detail   string            `json:"detail,omitempty"`
}

func decodeLog(raw []byte, f eventlogFlags) (*logOutput, error) {
	format, err := pickFormat(raw, f.format)
	if err != nil {
		return nil, err
	}
	var (
		events  []cctrusted.Event
		details []string
		regs    cctrusted.Registers
		defAlg  cctrusted.Algorithm
	)
	var banks []cctrusted.Algorithm // the banks the log carries
	switch format {
	case eventlog.FormatCCEL, eventlog.FormatTPM:
		var l *eventlog.Log
		if format == eventlog.FormatCCEL {
			l, err = eventlog.ParseCCEL(raw)
			defAlg = cctrusted.AlgSHA384
		} else {
			l, err = eventlog.ParseTPM(raw)
			defAlg = cctrusted.AlgSHA256
		}
		if err != nil {
			return nil, wrongKind(raw, format, err)
		}
		events, banks = l.Events, l.Algorithms
		if !slices.Contains(banks, defAlg) {
			// A legacy TPM log has only SHA-1; other logs may lack the
			// usual bank: show one the log has.
			defAlg = banks[0]
			for _, b := range banks {
				if _, err := b.Hash(); err == nil {
					defAlg = b
					break
				}
			}
		}
		if f.replay {
			if regs, err = l.Replay(); err != nil {
				return nil, err
			}
		}
	case eventlog.FormatIMA:
		l, err := ima.Parse(raw, ima.Options{})
		if err != nil {
			return nil, wrongKind(raw, format, err)
		}
		// The template hash's own bank: SHA-1 upstream, SHA-384 on CCNP's
		// TDX kernels.
		defAlg = l.TemplateHashAlg
		if defAlg == 0 {
			defAlg = cctrusted.AlgSHA1
		}
		banks = []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384}
		if events, err = l.Events(defAlg); err != nil {
			return nil, err
		}
		for i := range l.Entries {
			details = append(details, l.Entries[i].Template+" "+l.Entries[i].FileName)
		}
		if f.replay {
			regs = make(cctrusted.Registers)
			for _, alg := range []cctrusted.Algorithm{cctrusted.AlgSHA1, cctrusted.AlgSHA256, cctrusted.AlgSHA384} {
				r, err := l.Replay(alg)
				if err != nil {
					return nil, err
				}
				for m, banks := range r {
					for a, v := range banks {
						regs.Set(m, a, v)
					}
				}
			}
		}
	case eventlog.FormatRuntime:
		l, err := runtimelog.Decode(raw, runtimelog.DefaultLimits())
		if err != nil {
			return nil, wrongKind(raw, format, err)
		}
		defAlg = l.Algorithm()
		banks = []cctrusted.Algorithm{defAlg}
		events = l.Events()
		notices := l.Notices()
		for i := range l.Len() {
			if w, ok := l.Workload(i); ok {
				details = append(details, workloadDetail(w))
				continue
			}
			for _, n := range notices {
				if n.Record == i {
					details = append(details, strings.TrimSpace("notice: "+n.Kind.String()+" "+n.Subject))
				}
			}
		}
		if f.replay {
			if regs, err = l.Replay(); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("format %q is not supported", format)
	}

	page, err := cctrusted.Page(events, f.start, f.count)
	if err != nil {
		return nil, err
	}
	out := &logOutput{Format: format, TotalEvents: len(events), Start: f.start, Events: []eventOutput{}}
	for i := range page {
		idx := f.start + i
		e := &page[i]
		eo := eventOutput{Index: idx, Register: e.IMR.String(), Type: eventTypeName(format, e.Type),
			TypeID: e.Type, Digests: map[string]string{}, DataSize: len(e.Data)}
		for _, d := range e.Digests {
			eo.Digests[d.Alg.String()] = d.Hex()
		}
		if idx < len(details) {
			eo.Detail = details[idx]
		}
		out.Events = append(out.Events, eo)
	}
	if regs != nil {
		alg := defAlg
		if f.alg != "" {
			if alg, err = cctrusted.ParseAlgorithm(f.alg); err != nil {
				return nil, err
			}
		}
		out.ReplayedAlg = alg.String()
		out.Replayed = map[string]string{}
		out.ReplayedBanks = map[string]map[string]string{}
		for m, banks := range regs {
			for a, v := range banks {
				bank := out.ReplayedBanks[a.String()]
				if bank == nil {
					bank = map[string]string{}
					out.ReplayedBanks[a.String()] = bank
				}
				bank[m.String()] = hex.EncodeToString(v)
				if a == alg {
					out.Replayed[m.String()] = hex.EncodeToString(v)
				}
			}
		}
		if len(out.Replayed) == 0 {
			if _, err := alg.Hash(); err != nil && slices.Contains(banks, alg) {
				return nil, fmt.Errorf("the log has a %v bank, but replaying %v is not supported (no implementation of it here); its digests are printed without --replay", alg, alg)
			}
			if !slices.Contains(banks, alg) {
				return nil, fmt.Errorf("the log has no %v bank (its banks: %v)", alg, banks)
			}
			return nil, fmt.Errorf("no event of the log extends a register in the %v bank", alg)
		}
	}
	return out, nil
}

// pickFormat returns the format named by flag, or detects it.
func pickFormat(raw []byte, flag string) (eventlog.Format, error) {
	if flag != "" {
		return eventlog.ParseFormat(flag)
	}
	if f, ok := eventlog.DetectTCG(raw); ok {
		return f, nil
	}
	if _, ok := ima.Sniff(raw); ok {
		return eventlog.FormatIMA, nil
	}
	if runtimelog.Sniff(raw) {
		return eventlog.FormatRuntime, nil
	}
	if what, _ := describeInput(raw); what != "" {
		return "", fmt.Errorf("%s, not an event log", what)
	}
	return "", fmt.Errorf("not a recognised event log (tried %s); name one with --format", joinFormats())
}

// wrongKind adds to a parse error what the input looks like when that is
// not the format it was parsed as, so `--format ccel` on an IMA list says
// so instead of only why it is no CCEL.
func wrongKind(raw []byte, format eventlog.Format, err error) error {
	what, kind := describeInput(raw)
	if what == "" || kind == format {
		return err
	}
	return fmt.Errorf("%w; the input looks like %s", err, what)
}

// describeInput names inputs people hand to `ccnp eventlog` by mistake, or
// says which log format the input is (then also returned as kind). what is
// "" when it recognises nothing.
func describeInput(raw []byte) (what string, kind eventlog.Format) {
	le := binary.LittleEndian
	switch {
	case len(raw) == 0:
		return "empty input", ""
	case len(raw) >= 48 && (le.Uint16(raw) == 4 || le.Uint16(raw) == 5) && le.Uint32(raw[4:]) == 0x81:
		return fmt.Sprintf("a TDX quote (version %d; read it with `ccnp quote inspect`)", le.Uint16(raw)), ""
	case len(raw) >= 48 && le.Uint16(raw) >= 3 && le.Uint16(raw) <= 5 && le.Uint32(raw[4:]) == 0:
		return fmt.Sprintf("an SGX quote (version %d, TEE type 0)", le.Uint16(raw)), ""
	case len(raw) == 1024 && raw[0] == 0x81 && raw[1] == 0:
		return "a TDX TDREPORT (1024 bytes, report type 0x81)", ""
	case len(raw) >= eventlog.CCELTableSize && len(raw) <= 4096 && string(raw[:4]) == "CCEL":
		return "the CCEL ACPI table (/sys/firmware/acpi/tables/CCEL), not the log it points to (/sys/firmware/acpi/tables/data/CCEL)", ""
	case raw[0] == '{':
		return "JSON (a TPM report or a command's output?)", ""
	}
	if f, ok := eventlog.DetectTCG(raw); ok {
		return fmt.Sprintf("a %s log (use --format %s)", f, f), f
	}
	if f, ok := ima.Sniff(raw); ok {
		return fmt.Sprintf("an IMA %s measurement list (use --format ima)", f), eventlog.FormatIMA
	}
	if runtimelog.Sniff(raw) {
		return "a runtime log (use --format runtime)", eventlog.FormatRuntime
	}
	return "", ""
}

func joinFormats() string {
	var s []string
	for _, f := range eventlog.Formats() {
		s = append(s, string(f))
	}
	return strings.Join(s, ", ")
}

func eventTypeName(f eventlog.Format, t uint32) string {
	switch f {
	case eventlog.FormatCCEL, eventlog.FormatTPM:
		return tcg.EventType(t).String()
	case eventlog.FormatIMA:
		return "IMA"
	case eventlog.FormatRuntime:
		return "CCNP workload"
	}
	return fmt.Sprintf("0x%x", t)
}

func (g *globals) printLog(out *logOutput) {
	g.printf("%s log, %d events", out.Format, out.TotalEvents)
	if out.Start > 0 || len(out.Events) != out.TotalEvents {
		g.printf(" (showing %d from %d)", len(out.Events), out.Start)
	}
	g.printf("\n")
	for _, e := range out.Events {
		g.printf("event %d: %s %s (0x%x), %d bytes of data", e.Index, e.Register, e.Type, e.TypeID, e.DataSize)
		if e.Detail != "" {
			g.printf(": %s", e.Detail)
		}
		g.printf("\n")
		for _, a := range slices.Sorted(maps.Keys(e.Digests)) {
			g.printf("    %-7s %s\n", a, e.Digests[a])
		}
	}
	if out.ReplayedBanks != nil {
		g.printf("replayed:\n")
		for _, a := range slices.Sorted(maps.Keys(out.ReplayedBanks)) {
			bank := out.ReplayedBanks[a]
			for _, m := range sortedRegisters(bank) {
				g.printf("    %-6s %-7s %s\n", m, a, bank[m])
			}
		}
	}
}

func workloadDetail(w runtimelog.Workload) string {
	s := fmt.Sprintf("exe sha256:%x", w.ExeSHA256)
	for _, kv := range [][2]string{{"path", w.ExePath}, {"container", w.ContainerID}, {"pod", w.PodUID}, {"cgroup", w.CgroupPath}} {
		if kv[1] != "" {
			s += fmt.Sprintf(" %s=%q", kv[0], kv[1])
		}
	}
	return s
}

// liveLog reads the raw log of the live TEE, so a live log goes through the
// same decoder as a file.
func (g *globals) liveLog(ctx context.Context, format string) ([]byte, string, error) {
	p, err := g.open(ctx)
	if err != nil {
		return nil, "", err
	}
	defer p.Close()
	src := tee.Unwrap(p)
	type ccelSource interface {
		RawCCEL(context.Context) (table, log []byte, err error)
	}
	type tpmSource interface {
		RawEventLog(context.Context) ([]byte, error)
	}
	type imaSource interface {
		RawIMA(context.Context) ([]byte, error)
	}
	type tpmIMASource interface {
		RawIMALog(context.Context) ([]byte, error)
	}
	if format == string(eventlog.FormatIMA) {
		switch s := src.(type) {
		case imaSource:
			b, err := s.RawIMA(ctx)
			return b, format, err
		case tpmIMASource:
			b, err := s.RawIMALog(ctx)
			return b, format, err
		}
		return nil, "", fmt.Errorf("the %s TEE has no IMA log source", p.TEE())
	}
	switch s := src.(type) {
	case ccelSource:
		_, b, err := s.RawCCEL(ctx)
		return b, string(eventlog.FormatCCEL), err
	case tpmSource:
		b, err := s.RawEventLog(ctx)
		return b, string(eventlog.FormatTPM), err
	}
	return nil, "", fmt.Errorf("the %s TEE has no firmware event log source", p.TEE())
}
