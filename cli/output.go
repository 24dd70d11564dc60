package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/internal/smallfile"
)

// emit writes v as indented JSON when -o json was given, else calls text.
func (g *globals) emit(v any, text func() error) error {
	if g.output == "json" {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return text()
}

// printf writes human output.
func (g *globals) printf(format string, args ...any) {
	fmt.Fprintf(g.stdout, format, args...)
}

// maxInputFile bounds what any command reads from a file: event logs and
// quotes are kilobytes to a few megabytes; anything near this is not one.
const maxInputFile = 64 << 20

// readInput reads a file given on the command line, bounded.
func readInput(what, path string) ([]byte, error) {
	b, err := smallfile.Read(path, maxInputFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: %s is empty", what, path)
	}
	return b, nil
}

func mapsKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// sortedRegisters orders register names as an operator reads them: mrtd,
// then by space and numeric index (pcr2 before pcr10).
func sortedRegisters[V any](m map[string]V) []string {
	keys := mapsKeys(m)
	slices.SortFunc(keys, func(a, b string) int {
		ma, ea := cctrusted.ParseIMR(a)
		mb, eb := cctrusted.ParseIMR(b)
		if ea != nil || eb != nil {
			return strings.Compare(a, b)
		}
		if ma.Space != mb.Space {
			return int(ma.Space) - int(mb.Space)
		}
		return int(ma.Index) - int(mb.Index)
	})
	return keys
}
func itoa(i int) string { return strconv.Itoa(i) }
