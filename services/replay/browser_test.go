package replay_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/services/internal/browsertest"
	"github.com/detourdev/detour/services/replay"
)

func TestTheHTMLTimelineReadsInABrowserWithoutLoadingAnything(t *testing.T) {
	browsertest.Chromium(t)
	inc := recordIncident(t)
	s, err := replay.ParseSettings("fall=1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), "replay.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := replay.Run(context.Background(), inc.js, replay.Options{Config: inc.cfg, WhatIf: &s, Format: "html"}, f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	p := browsertest.Open(t, path, "svg[aria-label=timeline]")
	labels := browsertest.Eval[string](t, p, `Array.from(document.querySelectorAll("svg[aria-label=timeline] > text")).map(e => e.textContent).join("|")`)
	downs := browsertest.Eval[int](t, p, `document.querySelectorAll("svg[aria-label=timeline] rect.down").length`)
	phaseBars := browsertest.Eval[int](t, p, `document.querySelectorAll("svg.bar rect").length`)
	verdicts := browsertest.Eval[string](t, p, `Array.from(document.querySelectorAll("td.earlier, td.later, td.gone, td.new, td.same")).map(e => e.textContent).join("|")`)
	p.Screenshot(t, "replay.png")
	for _, want := range []string{"shop/west/" + inc.west, "edge edge-a", "DNS answers", "edge route tables"} {
		if !strings.Contains(labels, want) {
			t.Errorf("the chart has no lane %q: %s", want, labels)
		}
	}
	if downs < 2 {
		t.Errorf("%d red (down) segments, want the west endpoint's outage and edge-a's", downs)
	}
	if phaseBars == 0 || !strings.Contains(verdicts, "earlier") {
		t.Errorf("%d phase bars and verdicts %q; want bars and an earlier transition with fall=1", phaseBars, verdicts)
	}
	if ext := p.External(); len(ext) > 0 {
		t.Errorf("the page requested %v: it must be self-contained", ext)
	}
}
