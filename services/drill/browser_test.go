package drill_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/services/drill"
	"github.com/detourdev/detour/services/internal/browsertest"
)

func TestTheHTMLScorecardReadsInABrowserWithoutLoadingAnything(t *testing.T) {
	browsertest.Chromium(t)
	s := startStack(t)
	sc, err := drill.Run(context.Background(), s.options(t, `
name: scorecard
steps:
  - {fail: pool shop/west, rto: 2s}
  - {fail: edge edge-a, rto: 1ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), "scorecard.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := browsertest.Open(t, path, "table")
	title := browsertest.Eval[string](t, p, `document.querySelector("h1").textContent`)
	verdicts := browsertest.Eval[string](t, p, `Array.from(document.querySelectorAll("tr.step td.pass, tr.step td.fail")).map(e => e.textContent).join("|")`)
	bars := browsertest.Eval[int](t, p, `document.querySelectorAll("svg.score rect").length`)
	p.Screenshot(t, "scorecard.png")
	if !strings.Contains(title, "FAIL") || verdicts != "PASS|FAIL|PASS" || bars != 3 {
		t.Errorf("title %q, verdicts %q, %d bars; want a failed drill whose second step failed, and a bar per step and the restore", title, verdicts, bars)
	}
	if ext := p.External(); len(ext) > 0 {
		t.Errorf("the page requested %v: it must be self-contained", ext)
	}
}
