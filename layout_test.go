package flotilla_test

import (
	"go/ast"
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

// TestTransportsUseNoStoreImplementation: device protocols, the management
// API and push delivery reach data through the core and small interfaces
// of their own, never through a database package.
func TestTransportsUseNoStoreImplementation(t *testing.T) {
	pkgs := goPackages(t)
	for _, dir := range []string{"internal/pushd", "internal/httpapi", "internal/deviceapi", "internal/hawkbit"} {
		for _, imp := range imports(t, pkgs[dir]) {
			for _, banned := range []string{"/internal/sqlstore", "/internal/sqlite", "/internal/postgres", "/internal/store"} {
				if imp == module+banned {
					t.Errorf("%s imports %s; declare the few methods it needs instead", dir, imp)
				}
			}
		}
	}
}

// TestOnlyServerWiresHooks: who reacts to what is decided in one place,
// internal/server; no constructor registers callbacks as a side effect.
func TestOnlyServerWiresHooks(t *testing.T) {
	hookFields := map[string]bool{"Forward": true, "NotifyFinal": true, "Observe": true}
	for dir, files := range goPackages(t) {
		if dir == "internal/server" {
			continue
		}
		fset := token.NewFileSet()
		for _, f := range files {
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok {
						break
					}
					// SetHooks, or an OnX(func...) registration.
					registers := sel.Sel.Name == "SetHooks"
					if strings.HasPrefix(sel.Sel.Name, "On") && len(n.Args) == 1 {
						switch n.Args[0].(type) {
						case *ast.FuncLit, *ast.SelectorExpr:
							registers = true
						}
					}
					if registers {
						t.Errorf("%s: %s registers a hook; wire hooks in internal/server", fset.Position(n.Pos()), sel.Sel.Name)
					}
				case *ast.AssignStmt:
					for _, lhs := range n.Lhs {
						if sel, ok := lhs.(*ast.SelectorExpr); ok && hookFields[sel.Sel.Name] {
							t.Errorf("%s: sets %s; wire hooks in internal/server", fset.Position(n.Pos()), sel.Sel.Name)
						}
					}
				}
				return true
			})
		}
	}
}

// TestFilesStaySmall: a file that holds several responsibilities is
// several files. Tests and generated code are exempt.
func TestFilesStaySmall(t *testing.T) {
	const limit = 520
	for _, files := range goPackages(t) {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "Code generated") {
				continue
			}
			if n := strings.Count(string(b), "\n"); n > limit {
				t.Errorf("%s has %d lines; split it by responsibility (limit %d)", f, n, limit)
			}
		}
	}
}
