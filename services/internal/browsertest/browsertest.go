// Package browsertest opens the self-contained HTML pages Detour writes (replay timelines, drill
// scorecards) in headless Chromium for tests: evaluate JavaScript in them, list what they
// requested, and keep a screenshot under the test's artifact directory. Tests skip, naming the
// install command, where Chromium is missing.
package browsertest

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
)

// Chromium returns the path of a Chromium binary, or skips the test saying how to install one.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: install it with `apt-get install chromium` (or `bash deployments/install-packages.sh deployments/packages/test.txt`)")
	return ""
}

// Page is an HTML file open in headless Chromium.
type Page struct {
	ctx context.Context
	mu  sync.Mutex
	// requested are the URLs the page asked for.
	requested []string
}

// Open opens the file at path in headless Chromium and waits until sel is visible.
func Open(t *testing.T, path, sel string) *Page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(Chromium(t)), chromedp.NoSandbox,
		chromedp.WindowSize(1300, 900), chromedp.DisableGPU,
		// Chromium asks the host's resolver for names of its own (component updates, safe
		// browsing) even headless; tests stay on loopback.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	p := &Page{ctx: ctx}
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

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](t *testing.T, p *Page, expr string) T {
	t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Screenshot saves a full-page PNG under the test's artifact directory (kept with
// `go test -artifacts -outputdir DIR`) and returns its path.
func (p *Page) Screenshot(t *testing.T, name string) string {
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

// External returns the URLs the page asked for that are not the file itself.
func (p *Page) External() []string {
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
