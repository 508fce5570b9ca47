package prober

import (
	"go/parser"
	"go/token"
	"testing"
)

func TestEveryPackageOfTheModuleHasADocComment(t *testing.T) {
	for _, dir := range []string{".", "cmd/probebench"} {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatalf("parse %s: %v", dir, err)
		}
		for name, p := range pkgs {
			documented := false
			for _, f := range p.Files {
				if f.Doc != nil && len(f.Doc.Text()) > 0 {
					documented = true
				}
			}
			if !documented {
				t.Errorf("package %s in %s has no doc comment", name, dir)
			}
		}
	}
}
