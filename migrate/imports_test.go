package migrate

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/mediad/mediad"

// TestMigrationsUseNoLiveCode holds migrations to pure functions on data
// (DESIGN.md §5): nothing migrate depends on, directly or through another
// package of this module, may be the protocol code under ingest, whose
// changes would otherwise change what an old blob migrates to. It reads
// the import clauses itself, since a test cannot run go list; test files
// of migrate count too, so that no test leans on live code either.
func TestMigrationsUseNoLiveCode(t *testing.T) {
	seen := map[string]bool{}
	queue := []string{module + "/migrate"}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		if seen[pkg] {
			continue
		}
		seen[pkg] = true
		imports, err := importsOf(filepath.Join("..", strings.TrimPrefix(pkg, module)), pkg == module+"/migrate")
		if err != nil {
			t.Fatal(err)
		}
		for file, paths := range imports {
			for _, path := range paths {
				if path == module+"/ingest" || strings.HasPrefix(path, module+"/ingest/") {
					t.Errorf("%s imports %s: a migration must not derive anything with live protocol code; freeze what it needs in package migrate", file, path)
				}
				if strings.HasPrefix(path, module+"/") {
					queue = append(queue, path)
				}
			}
		}
	}
	if !seen[module+"/state"] {
		t.Error("the walk never reached package state: is the module path right?")
	}
}

// importsOf returns the import paths of every Go file in dir, by file;
// test files only if withTests. Build constraints are ignored: an import
// behind any of them counts.
func importsOf(dir string, withTests bool) (map[string][]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || (!withTests && strings.HasSuffix(name, "_test.go")) {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return nil, err
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return nil, err
			}
			out[path] = append(out[path], p)
		}
	}
	return out, nil
}
