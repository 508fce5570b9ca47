package config_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/errors")

// TestConfigErrorsNameThePathAndLineInYAMLWords compares the error text of every document in
// testdata/errors with its .golden file: unknown keys with a suggestion, wrong types, bad YAML,
// each with its path and line, and no problem that only follows from another.
func TestConfigErrorsNameThePathAndLineInYAMLWords(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test documents: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = config.Parse(name+".yaml", doc)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want a *config.Error", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
			}
			if got != string(want) {
				t.Errorf("error text:\n%s\nwant (%s):\n%s", got, golden, want)
			}
			for _, banned := range []string{"!!str", "unmarshal", "config.", "uint32", "int64", "float64", "not found in type"} {
				if strings.Contains(got, banned) {
					t.Errorf("the error speaks Go (%q):\n%s", banned, got)
				}
			}
		})
	}
}
