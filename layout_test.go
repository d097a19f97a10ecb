package flotilla_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/flotilla-ota/flotilla"

// goPackages maps each package directory to its parsed non-test files.
func goPackages(t *testing.T) map[string][]string {
	pkgs := map[string][]string{}
	filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "." || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			pkgs[filepath.Dir(p)] = append(pkgs[filepath.Dir(p)], p)
		}
		return nil
	})
	return pkgs
}

func imports(t *testing.T, files []string) []string {
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out = append(out, p)
		}
	}
	return out
}

// TestDomainImportsOnlyStdlib keeps the domain package free of I/O
// dependencies: only the standard library.
func TestDomainImportsOnlyStdlib(t *testing.T) {
	for _, imp := range imports(t, goPackages(t)["."]) {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("domain package imports %s; it may import only the standard library", imp)
		}
		for _, io := range []string{"net/http", "database/sql", "os"} {
			if imp == io {
				t.Errorf("domain package imports %s; keep I/O out of the domain", imp)
			}
		}
	}
}

// TestPublicPackagesAvoidInternals: the SDK, wire types and pure policy code
// must never depend on the server's internals.
func TestPublicPackagesAvoidInternals(t *testing.T) {
	for dir, files := range goPackages(t) {
		if dir == "." || strings.HasPrefix(dir, "internal") || strings.HasPrefix(dir, "cmd") || strings.HasPrefix(dir, "bench") {
			continue
		}
		for _, imp := range imports(t, files) {
			if strings.HasPrefix(imp, module+"/internal") {
				t.Errorf("public package %s imports %s", dir, imp)
			}
		}
	}
}

// TestEveryPackageHasADoc: each package says why it exists.
func TestEveryPackageHasADoc(t *testing.T) {
	for dir, files := range goPackages(t) {
		found := false
		fset := token.NewFileSet()
		for _, f := range files {
			af, err := parser.ParseFile(fset, f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && strings.HasPrefix(af.Doc.Text(), "Package "+af.Name.Name+" ") ||
				af.Doc != nil && af.Name.Name == "main" && strings.HasPrefix(af.Doc.Text(), "Command ") {
				found = true
			}
		}
		if !found {
			t.Errorf("package in %s has no package doc starting %q", dir, "Package <name> ")
		}
	}
	if _, err := os.Stat("go.mod"); err != nil {
		t.Fatal("run from the module root")
	}
}
