package up_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/internal/stacktest"
	"github.com/detourdev/detour/services/up"
	"github.com/nats-io/nats.go"
)

// chromium finds a Chromium to drive, or skips the test saying how to install one.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: apt-get install chromium (go tool task test installs it where apt works)")
	return ""
}

func TestTheStatusPageShowsAnEndpointDownWithinASecondOfItsStateEvent(t *testing.T) {
	browser := chromium(t)
	st, west, _ := slice(t, func(o *up.Options) { o.APIAddr = "127.0.0.1:0" })
	waitAnswer(t, st, host(west.Addr()), 5*time.Second, "at start")

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(412, 915), // a phone's viewport
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")) // no lookups off loopback
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	endpoint := events.AddressToken(west.Addr())
	selector := `[data-endpoint="shop/west/` + endpoint + `"]`
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+st.APIAddr+"/"), chromedp.WaitVisible(selector)); err != nil {
		t.Fatalf("open the status page: %v", err)
	}
	statusOf := func() string {
		a, err := chromedp.Run(ctx, chromedp.AttributeValue(selector, "data-status"))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return a.Value
	}
	status := statusOf()
	if status == "down" {
		t.Fatalf("west shows %q before its backend was killed", status)
	}

	// Note when the down transition reaches a STATE subscriber, then when the page shows it.
	nc, _ := stacktest.Connect(t, st)
	downAt := make(chan time.Time, 1)
	sub, err := nc.Subscribe(events.EndpointStateSubject("shop", "west", endpoint), func(m *nats.Msg) {
		if e, err := events.Decode(m.Data); err == nil && e.Type == events.TypeEndpointDown {
			select {
			case downAt <- time.Now():
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	west.Close()
	var at time.Time
	select {
	case at = <-downAt:
	case <-time.After(interval*fall + 2*time.Second):
		t.Fatal("no down transition of west on STATE")
	}
	var shown time.Time
	for time.Since(at) < 3*time.Second {
		if status = statusOf(); status == "down" {
			shown = time.Now()
			break
		}
		time.Sleep(10 * time.Millisecond) // polls the page; the page itself is pushed the change
	}
	if shown.IsZero() {
		t.Fatalf("the page still shows west %q 3s after its down transition", status)
	}
	lag := shown.Sub(at)
	t.Logf("the page showed west down %s after the STATE event", lag.Round(time.Millisecond))
	if lag > time.Second {
		t.Errorf("the page showed west down %s after the STATE event, want within 1s", lag)
	}
	var answer string
	eventstest.Eventually(t, 2*time.Second, func() bool {
		answer, _ = chromedp.Run(ctx, chromedp.Text(`[data-answer="shop"]`))
		return strings.Contains(answer, "127.0.0.12")
	}, "the page's answer for shop to move to east: %q", &answer)

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(os.TempDir(), "detour-status-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
