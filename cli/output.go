package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s: %s is a directory", what, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > maxInputFile {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", what, path, maxInputFile)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: %s is empty", what, path)
	}
	return b, nil
}
