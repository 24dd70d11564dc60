package conf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/hcl/token"
)

// Error is one configuration problem, located in its source so that an
// operator can go straight to the line: "plugin_data: line 7: unknown key
// "alow_debug" in tdx".
type Error struct {
	// Source is "plugin_data" for a plugin's HCL block, or a file name.
	Source string
	// Line is 1-based; 0 when the problem belongs to no single line (for
	// example a key that is required but missing).
	Line int
	// Msg names the key (with its block path) and says what is wrong.
	Msg string
}

// Error formats the problem as "source: line N: msg".
func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %s", e.Source, e.Line, e.Msg)
	}
	return e.Source + ": " + e.Msg
}

// maxErrors caps how many problems one parse reports: enough to fix a file
// in one go, not so many that a garbage input floods a log line.
const maxErrors = 20

// errList collects problems across the documents of one configuration
// (plugin_data and its policy_file), in the order they were found.
type errList struct {
	errs []error
}

func (l *errList) add(e *Error) {
	if len(l.errs) < maxErrors {
		l.errs = append(l.errs, e)
	}
}

func (l *errList) empty() bool { return len(l.errs) == 0 }

// err returns nil, the single *Error, or an errors.Join of them, so callers
// can use errors.As to reach the first *Error in every case.
func (l *errList) err() error {
	switch len(l.errs) {
	case 0:
		return nil
	case 1:
		return l.errs[0]
	}
	return errors.Join(l.errs...)
}

// doc is one parsed HCL document: its name for messages, the position of
// every key path the walker saw, and the shared error list.
type doc struct {
	name string
	pos  map[string]token.Pos
	errs *errList
}

func newDoc(name string, errs *errList) *doc {
	return &doc{name: name, pos: make(map[string]token.Pos), errs: errs}
}

// has reports whether the key path was written in the document, which is
// how defaults are told apart from explicit zero values.
func (d *doc) has(path string) bool {
	_, ok := d.pos[path]
	return ok
}

// line returns the line of path, or of its closest enclosing key when the
// path itself was not written (a required key missing from a block is
// reported at the block).
func (d *doc) line(path string) int {
	for path != "" {
		if p, ok := d.pos[path]; ok {
			return p.Line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// errLine records a problem at an explicit line.
func (d *doc) errLine(line int, format string, args ...any) {
	d.errs.add(&Error{Source: d.name, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// errf records a problem with key path, located at that path's line. The
// message is prefixed with the path so it always names the key.
func (d *doc) errf(path, format string, args ...any) {
	d.errLine(d.line(path), "%s: %s", path, fmt.Sprintf(format, args...))
}
