package conf

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/scanner"
	"github.com/hashicorp/hcl/hcl/token"
)

// Bounds on what the parser accepts. HCL v1 parses recursively and keeps
// the whole tree, so size and nesting are checked before it runs.
const (
	// MaxConfigBytes bounds a plugin_data block.
	MaxConfigBytes = 1 << 20
	// MaxPolicyFileBytes bounds a policy_file.
	MaxPolicyFileBytes = 4 << 20
	// MaxListLen bounds every list value (allow-lists included).
	MaxListLen = 4096
	// MaxPolicies bounds the number of policies of one server.
	MaxPolicies = 1024
	// maxDepth bounds brace/bracket nesting; the deepest real config nests
	// three blocks (policy, pcr, bank list).
	maxDepth = 16
)

// parseDoc parses src as HCL and decodes it into out (a pointer to a struct
// with hcl tags) after checking every key against those tags. It reports
// false when d collected errors.
func parseDoc(d *doc, src string, limit int, out any) bool {
	if len(src) > limit {
		d.errLine(0, "%d bytes is more than the limit of %d", len(src), limit)
		return false
	}
	if firstNonSpace(src) == '{' {
		// hcl.Parse switches to its JSON dialect here, whose flattening
		// of nested objects makes key paths ambiguous; SPIRE hands plugins
		// HCL text, so JSON is refused rather than half supported.
		d.errLine(1, "JSON is not supported: write the configuration in HCL")
		return false
	}
	if line, msg := checkTokens(src); msg != "" {
		d.errLine(line, "%s", msg)
		return false
	}
	file, err := safeParse(src)
	if err != nil {
		d.errLine(errLine(err), "%s", errMsg(err))
		return false
	}
	list, ok := file.Node.(*ast.ObjectList)
	if !ok {
		d.errLine(1, "not an HCL body")
		return false
	}
	w := walker{d: d}
	before := len(d.errs.errs)
	w.object("", list, reflect.TypeOf(out).Elem())
	if len(d.errs.errs) != before {
		return false
	}
	if err := safeDecode(out, file); err != nil {
		d.errLine(errLine(err), "%s", errMsg(err))
		return false
	}
	return true
}

func firstNonSpace(s string) rune {
	for _, r := range s {
		if !unicode.IsSpace(r) {
			return r
		}
	}
	return 0
}

// checkTokens scans tokens (iteratively, unlike the parser) for what the
// parser gets wrong: braces or brackets nested deeper than maxDepth (its
// recursion), and an assignment with no value at the end of the input, which
// it silently drops ("tee = " parses as an empty body).
func checkTokens(src string) (line int, msg string) {
	s := scanner.New([]byte(src))
	s.Error = func(token.Pos, string) {} // the parser reports scan errors
	depth := 0
	var last token.Token
	for {
		tok := s.Scan()
		switch tok.Type {
		case token.EOF:
			if last.Type == token.ASSIGN {
				return last.Pos.Line, "an assignment has no value"
			}
			return 0, ""
		case token.LBRACE, token.LBRACK:
			depth++
			if depth > maxDepth {
				return tok.Pos.Line, fmt.Sprintf("nesting deeper than %d levels", maxDepth)
			}
		case token.RBRACE, token.RBRACK:
			depth--
		}
		if tok.Type != token.COMMENT {
			last = tok
		}
		if s.ErrorCount > 0 {
			return 0, ""
		}
	}
}

// safeParse runs the HCL parser, turning a panic inside it (it panics on
// some malformed strings) into an error. It is hcl.Parse's HCL branch
// without its duplicate-key check, whose message has no line of its own:
// the walker reports duplicates (blocks too) naming both lines.
func safeParse(src string) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("malformed HCL: %v", r)
		}
	}()
	return parser.ParseDontErrorOnDuplicateKeys([]byte(src))
}

// safeDecode decodes the checked tree; the walker has already type-checked
// every value, so an error here is unexpected but still reported, never a
// panic.
func safeDecode(out any, f *ast.File) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot decode: %v", r)
		}
	}()
	return hcl.DecodeObject(out, f)
}

// errLine and errMsg split the library's positioned errors, whose own
// format ("At 3:5: ...") differs from ours.
func errLine(err error) int {
	if pe, ok := err.(*parser.PosError); ok {
		return pe.Pos.Line
	}
	return 0
}

func errMsg(err error) string {
	if pe, ok := err.(*parser.PosError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// walker checks an HCL tree against the hcl tags of a Go struct type:
// unknown keys, duplicate keys and blocks, and value types, all with the
// line they are on. It records the position of every key path in the doc
// so later validation can name lines too.
type walker struct {
	d *doc
}

// fieldKind classifies what HCL shape a struct field accepts.
type fieldKind int

const (
	kindString fieldKind = iota + 1
	kindBool
	kindInt
	kindStringList
	kindIntList
	kindBlock    // struct: name { ... }
	kindLabelled // []struct with a ",key" field: name "label" { ... }
)

type field struct {
	kind fieldKind
	typ  reflect.Type // the struct type for blocks
}

// fieldsOf lists the keys a struct type accepts, from its hcl tags.
func fieldsOf(t reflect.Type) (map[string]field, []string) {
	fields := make(map[string]field)
	var names []string
	for i := range t.NumField() {
		sf := t.Field(i)
		parts := strings.Split(sf.Tag.Get("hcl"), ",")
		if parts[0] == "-" || !sf.IsExported() {
			continue
		}
		if len(parts) > 1 && parts[1] != "" {
			continue // ",key" and friends are not keys of the body
		}
		name := parts[0]
		if name == "" {
			name = sf.Name
		}
		f, ok := classify(sf.Type)
		if !ok {
			panic(fmt.Sprintf("conf: field %s of %s has no HCL kind", sf.Name, t))
		}
		fields[name] = f
		names = append(names, name)
	}
	return fields, names
}

func classify(t reflect.Type) (field, bool) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return field{kind: kindString}, true
	case reflect.Bool:
		return field{kind: kindBool}, true
	case reflect.Int:
		return field{kind: kindInt}, true
	case reflect.Struct:
		return field{kind: kindBlock, typ: t}, true
	case reflect.Slice:
		switch e := t.Elem(); e.Kind() {
		case reflect.String:
			return field{kind: kindStringList}, true
		case reflect.Int:
			return field{kind: kindIntList}, true
		case reflect.Struct:
			if hasKeyField(e) {
				return field{kind: kindLabelled, typ: e}, true
			}
		}
	}
	return field{}, false
}

func hasKeyField(t reflect.Type) bool {
	for i := range t.NumField() {
		parts := strings.Split(t.Field(i).Tag.Get("hcl"), ",")
		if len(parts) > 1 && parts[1] == "key" {
			return true
		}
	}
	return false
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func where(path string) string {
	if path == "" {
		return "at top level"
	}
	return "in " + path
}

// object walks the items of one body against struct type t.
func (w *walker) object(path string, list *ast.ObjectList, t reflect.Type) {
	fields, names := fieldsOf(t)
	seen := make(map[string]token.Pos)
	labels := make(map[string]map[string]token.Pos)
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			w.d.errLine(item.Val.Pos().Line, "value without a key %s", where(path))
			continue
		}
		key := item.Keys[0]
		name, ok := keyText(key)
		if !ok {
			w.d.errLine(key.Pos().Line, "malformed key %s", where(path))
			continue
		}
		f, ok := fields[name]
		if !ok {
			w.d.errLine(key.Pos().Line, "unknown key %q %s%s", name, where(path), suggest(name, names))
			continue
		}
		full := joinPath(path, name)
		if f.kind == kindLabelled {
			if labels[name] == nil {
				labels[name] = make(map[string]token.Pos)
			}
			w.labelled(full, name, item, f.typ, labels[name])
			continue
		}
		if prev, dup := seen[name]; dup {
			w.d.errLine(key.Pos().Line, "duplicate key %q %s (first set on line %d)", name, where(path), prev.Line)
			continue
		}
		seen[name] = key.Pos()
		w.d.pos[full] = key.Pos()
		if f.kind == kindBlock {
			w.block(full, item, f.typ)
			continue
		}
		if len(item.Keys) > 1 {
			w.d.errLine(item.Keys[1].Pos().Line, "%s: is a value, not a block: write %s = ...", full, name)
			continue
		}
		w.value(full, item.Val, f.kind)
	}
}

// block walks "name { ... }", "name = { ... }" and the shorthand
// "name sub { ... }" (which HCL v1 reads as name { sub { ... } }).
func (w *walker) block(path string, item *ast.ObjectItem, t reflect.Type) {
	if len(item.Keys) > 1 {
		inner := &ast.ObjectItem{Keys: item.Keys[1:], Assign: item.Assign, Val: item.Val}
		w.object(path, &ast.ObjectList{Items: []*ast.ObjectItem{inner}}, t)
		return
	}
	ot, ok := item.Val.(*ast.ObjectType)
	if !ok {
		w.d.errLine(item.Val.Pos().Line, "%s: want a block { ... }, got %s", path, describe(item.Val))
		return
	}
	w.object(path, ot.List, t)
}

// labelled walks `name "label" { ... }`; labels must be unique per name.
func (w *walker) labelled(path, name string, item *ast.ObjectItem, t reflect.Type, seen map[string]token.Pos) {
	line := item.Keys[0].Pos().Line
	if len(item.Keys) != 2 {
		if len(item.Keys) == 1 {
			w.d.errLine(line, "%s block needs a name: %s \"name\" { ... }", name, name)
		} else {
			w.d.errLine(line, "%s block takes one name, got %d", name, len(item.Keys)-1)
		}
		return
	}
	label, ok := keyText(item.Keys[1])
	if !ok {
		w.d.errLine(line, "%s: malformed name", name)
		return
	}
	if prev, dup := seen[label]; dup {
		w.d.errLine(line, "duplicate %s %q (first defined on line %d)", name, label, prev.Line)
		return
	}
	seen[label] = item.Keys[0].Pos()
	full := fmt.Sprintf("%s %q", path, label)
	w.d.pos[full] = item.Keys[0].Pos()
	ot, ok := item.Val.(*ast.ObjectType)
	if !ok {
		w.d.errLine(item.Val.Pos().Line, "%s: want a block { ... }, got %s", full, describe(item.Val))
		return
	}
	w.object(full, ot.List, t)
}

// value checks a scalar or list value against the field kind.
func (w *walker) value(path string, n ast.Node, k fieldKind) {
	line := n.Pos().Line
	switch k {
	case kindString:
		if !isLit(n, token.STRING, token.HEREDOC) {
			w.d.errLine(line, "%s: want a string, got %s", path, describe(n))
		} else if _, ok := litString(n.(*ast.LiteralType)); !ok {
			w.d.errLine(line, "%s: malformed string", path)
		}
	case kindBool:
		if !isLit(n, token.BOOL) {
			w.d.errLine(line, "%s: want true or false, got %s", path, describe(n))
		}
	case kindInt:
		if !isLit(n, token.NUMBER) {
			w.d.errLine(line, "%s: want an integer, got %s", path, describe(n))
		} else if _, err := strconv.ParseInt(n.(*ast.LiteralType).Token.Text, 0, 0); err != nil {
			w.d.errLine(line, "%s: integer out of range: %s", path, n.(*ast.LiteralType).Token.Text)
		}
	case kindStringList, kindIntList:
		lt, ok := n.(*ast.ListType)
		if !ok {
			want := "a list of strings [\"...\"]"
			if k == kindIntList {
				want = "a list of integers [...]"
			}
			w.d.errLine(line, "%s: want %s, got %s", path, want, describe(n))
			return
		}
		if len(lt.List) > MaxListLen {
			w.d.errLine(line, "%s: %d entries is more than the limit of %d", path, len(lt.List), MaxListLen)
			return
		}
		elem := kindString
		if k == kindIntList {
			elem = kindInt
		}
		for i, e := range lt.List {
			ep := fmt.Sprintf("%s[%d]", path, i)
			w.d.pos[ep] = e.Pos()
			w.value(ep, e, elem)
		}
	}
}

func isLit(n ast.Node, types ...token.Type) bool {
	lt, ok := n.(*ast.LiteralType)
	if !ok {
		return false
	}
	for _, t := range types {
		if lt.Token.Type == t {
			return true
		}
	}
	return false
}

// describe names an AST value for type errors, quoting short literals.
func describe(n ast.Node) string {
	switch v := n.(type) {
	case *ast.ObjectType:
		return "a block"
	case *ast.ListType:
		return "a list"
	case *ast.LiteralType:
		kind := strings.ToLower(v.Token.Type.String())
		switch v.Token.Type {
		case token.NUMBER, token.FLOAT:
			kind = "number"
		case token.HEREDOC:
			return "a heredoc"
		}
		text := v.Token.Text
		if len(text) > 40 {
			text = text[:40] + "..."
		}
		return kind + " " + text
	}
	return fmt.Sprintf("%T", n)
}

// keyText returns a key or label as a string. Token.Value panics on some
// malformed strings, hence the recover.
func keyText(k *ast.ObjectKey) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	v, isString := k.Token.Value().(string)
	return v, isString
}

func litString(l *ast.LiteralType) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	v, isString := l.Token.Value().(string)
	return v, isString && utf8.ValidString(v)
}

// suggest proposes the closest known key for a misspelt one.
func suggest(name string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return fmt.Sprintf(" (did you mean %q?)", n)
		}
		if d := editDistance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		// "measure_mode" for "measure": one key extends the other.
		for _, n := range names {
			if len(n) >= 3 && len(name) >= 3 && (strings.HasPrefix(name, n) || strings.HasPrefix(n, name)) {
				best = n
				break
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance, bounded to short keys so a
// garbage key costs nothing.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
