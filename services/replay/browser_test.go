package replay_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/detourdev/detour/services/replay"
)

// chromium returns the path of a Chromium binary, or skips the test saying how to install one.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: install it with `apt-get install chromium` (or `bash deployments/install-packages.sh deployments/packages/test.txt`)")
	return ""
}

// page is an HTML file open in headless Chromium.
type page struct {
	ctx context.Context
	mu  sync.Mutex
	// requested are the URLs the page asked for.
	requested []string
}

// openPage opens the file at path in headless Chromium and waits until sel is visible.
func openPage(t *testing.T, path, sel string) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.WindowSize(1300, 900), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	p := &page{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			p.mu.Lock()
			p.requested = append(p.requested, e.Request.URL)
			p.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	if err := chromedp.Do(tctx, chromedp.Navigate("file://"+path), chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		t.Fatalf("open %s in chromium: %v", path, err)
	}
	return p
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, p *page, expr string) T {
	t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves a full-page PNG under the test's artifact directory (kept with
// `go test -artifacts -outputdir DIR`) and returns its path.
func (p *page) screenshot(t *testing.T, name string) string {
	t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// external returns the URLs the page asked for that are not the file itself.
func (p *page) external() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, u := range p.requested {
		if !strings.HasPrefix(u, "file://") {
			out = append(out, u)
		}
	}
	return out
}

func TestTheHTMLTimelineReadsInABrowserWithoutLoadingAnything(t *testing.T) {
	chromium(t)
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

	p := openPage(t, path, "svg[aria-label=timeline]")
	labels := eval[string](t, p, `Array.from(document.querySelectorAll("svg[aria-label=timeline] > text")).map(e => e.textContent).join("|")`)
	downs := eval[int](t, p, `document.querySelectorAll("svg[aria-label=timeline] rect.down").length`)
	phaseBars := eval[int](t, p, `document.querySelectorAll("svg.bar rect").length`)
	verdicts := eval[string](t, p, `Array.from(document.querySelectorAll("td.earlier, td.later, td.gone, td.new, td.same")).map(e => e.textContent).join("|")`)
	p.screenshot(t, "replay.png")
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
	if ext := p.external(); len(ext) > 0 {
		t.Errorf("the page requested %v: it must be self-contained", ext)
	}
}
