package adversarial

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testFunc matches a test, fuzz target or benchmark name.
var testFunc = regexp.MustCompile(`^(Test|Fuzz|Benchmark)[A-Za-z0-9_]+$`)

// backticked is a `code span` in a table cell.
var backticked = regexp.MustCompile("`([^`]+)`")

// repoTests maps every test function of the module (func TestX(, func
// FuzzX(, func BenchmarkX( in a *_test.go file) to the directories, relative
// to the module root, of the files that declare it.
func repoTests(t *testing.T) map[string][]string {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)\(`)
	out := map[string][]string{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != repoRoot) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllSubmatch(b, -1) {
			out[string(m[1])] = append(out[string(m[1])], filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// isPackageDir reports whether p names a directory of the module.
func isPackageDir(p string) bool {
	st, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(p)))
	return err == nil && st.IsDir()
}

// fuzzSeedExists reports whether a regression seed Target/name is kept
// under some package's testdata/fuzz/.
func fuzzSeedExists(t *testing.T, target, name string) bool {
	t.Helper()
	found := false
	_ = filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return filepath.SkipDir
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == name && filepath.Base(filepath.Dir(path)) == target &&
			filepath.Base(filepath.Dir(filepath.Dir(path))) == "fuzz" {
			found = true
		}
		return nil
	})
	return found
}

// TestThreatModelNamesRealTests parses docs/threat-model.md: in every
// table row whose last column is the test column, each backticked name of
// a test, fuzz target or benchmark must be declared in the module (in the
// package a preceding backticked directory names, up to the next ";":
// "`tee/tpm` `TestEKCertificate`"), each `Target/seed` must be a kept fuzz seed, and
// every row must name at least one test. CI runs the named tests, so a row
// whose test is renamed, deleted or failing fails the build.
func TestThreatModelNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "threat-model.md"))
	if err != nil {
		t.Fatal(err)
	}
	tests := repoTests(t)
	rows, named := 0, 0
	var header []string
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(l, "|") {
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if header == nil {
			header = cells
			continue
		}
		if strings.Trim(cells[0], " -:") == "" { // the |---|---| line
			continue
		}
		if len(header) == 0 || strings.TrimSpace(header[len(header)-1]) != "test" {
			continue
		}
		rows++
		found := 0
		// A directory name qualifies the names after it up to the next
		// ";" ("`TestA`; `appraisal` `TestB`, `TestC`"); unqualified names
		// may be in any package.
		for _, group := range strings.Split(cells[len(cells)-1], ";") {
			pkg := ""
			for _, m := range backticked.FindAllStringSubmatch(group, -1) {
				tok := m[1]
				switch {
				case testFunc.MatchString(tok):
					dirs, ok := tests[tok]
					if !ok {
						t.Errorf("line %d: %s is not a test of the module", line, tok)
						continue
					}
					if pkg != "" && !containsDir(dirs, pkg) {
						t.Errorf("line %d: %s is not in %s (it is in %v)", line, tok, pkg, dirs)
					}
					found++
				case strings.Contains(tok, "/") && testFunc.MatchString(tok[strings.LastIndex(tok, "/")+1:]) && isPackageDir(tok[:strings.LastIndex(tok, "/")]):
					dir, fn := tok[:strings.LastIndex(tok, "/")], tok[strings.LastIndex(tok, "/")+1:]
					if !containsDir(tests[fn], dir) {
						t.Errorf("line %d: %s is not a test of %s", line, fn, dir)
					}
					found++
				case strings.Contains(tok, "/") && testFunc.MatchString(tok[:strings.Index(tok, "/")]):
					target, seed := tok[:strings.Index(tok, "/")], tok[strings.Index(tok, "/")+1:]
					if !fuzzSeedExists(t, target, seed) {
						t.Errorf("line %d: no fuzz seed testdata/fuzz/%s/%s", line, target, seed)
					}
					found++
				case isPackageDir(tok):
					pkg = tok
				}
			}
		}
		if found == 0 {
			t.Errorf("line %d: the row names no test: %s", line, l)
		}
		named += found
	}
	if rows < 20 {
		t.Fatalf("only %d threat rows parsed: has the table format changed?", rows)
	}
	t.Logf("%d threat rows naming %d tests and fuzz seeds", rows, named)
}

func containsDir(dirs []string, want string) bool {
	for _, d := range dirs {
		if d == want {
			return true
		}
	}
	return false
}
