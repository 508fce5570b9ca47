package up_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/up"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// TestTheDemoShowsAnAppFailoverAndAnEdgeFailover walks the README's demo: the app's answer moves
// when us-west fails, the edge forwards to the other region meanwhile, and www's CNAME moves to
// the sibling edge when edge-west stops.
func TestTheDemoShowsAnAppFailoverAndAnEdgeFailover(t *testing.T) {
	var out strings.Builder
	st := startStack(t, up.Options{
		DNSAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, DemoControlAddr: "127.0.0.1:0", Out: &out,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	for _, want := range []string{"curl -X POST http://127.0.0.11:8081/-/fail", "query --server " + st.DNSAddr + " --watch shop.demo.test",
		"go tool nats --server " + st.NATSURL + " --nkey " + st.NATSCredentials.File + " stream view STATE",
		"DETOUR_NATS_NKEY=" + st.NATSCredentials.File} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the instructions lack %q:\n%s", want, out.String())
		}
	}
	waitAnswer(t, st, "127.0.0.11", 5*time.Second, "demo at start")
	waitCNAME(t, st.DNSAddr, "edge-west.demo.test.", 5*time.Second)
	eventstest.Eventually(t, 2*time.Second, func() bool { return strings.Contains(get(t, "http://127.0.0.21:8080/"), "us-west") },
		"edge-west serves us-west at start")

	st.Backends["us-west"].SetFailing(true)
	waitAnswer(t, st, "127.0.0.12", 2*time.Second, "after us-west failed")
	eventstest.Eventually(t, 2*time.Second, func() bool { return strings.Contains(get(t, "http://127.0.0.21:8080/"), "us-east") },
		"edge-west forwards to us-east through edge-east")

	st.Edges["edge-west"].Stop()
	waitCNAME(t, st.DNSAddr, "edge-east.demo.test.", 3*250*time.Millisecond+time.Second)
	st.Backends["us-west"].SetFailing(false)
	waitAnswer(t, st, "127.0.0.11", 2*time.Second, "after us-west recovered")
}

func waitCNAME(t *testing.T, server, want string, within time.Duration) {
	t.Helper()
	got := ""
	eventstest.Eventually(t, within, func() bool {
		m := new(dns.Msg)
		m.SetQuestion("www.demo.test.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, server)
		if err != nil || len(r.Answer) == 0 {
			return false
		}
		if c, ok := r.Answer[0].(*dns.CNAME); ok {
			got = c.Target
		}
		return got == want
	}, "www.demo.test CNAME is %q, want %q", &got, want)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Second}).Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
