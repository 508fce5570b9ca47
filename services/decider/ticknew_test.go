package decider_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
)

// TestANewConfigurationsShorterIntervalDecidesStalenessOnTime: the decider's clock ticks at a
// quarter of the shortest check interval, and it is on a tick that a region silent for longer
// than stale_after is found stale. A version that shortens the interval from 4s to 40ms and
// stale_after to 300ms has each endpoint's staleness decided within a tick of 10ms of its
// deadline, not of the 1s tick the decider started with. Each endpoint is down as region a sees
// it, up as b does, under a quorum of all regions; once a is stale, b's vote brings it up.
// Twenty endpoints' deadlines are spread over a second, so that a tick left at 1s decides most of
// them hundreds of milliseconds late.
func TestANewConfigurationsShorterIntervalDecidesStalenessOnTime(t *testing.T) {
	const n = 20
	var doc strings.Builder
	doc.WriteString("zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n")
	doc.WriteString("    check: {type: http, interval: 4s, timeout: 1s, fall: 1, rise: 1, stale_after: 1h}\n    quorum: 1\n")
	doc.WriteString("    pools:\n      - name: west\n        endpoints:\n")
	for i := range n {
		fmt.Fprintf(&doc, "          - {name: w%d, address: \"127.0.0.%d:8081\"}\n", i, 11+i)
	}
	first := doc.String()
	next := strings.Replace(first, "interval: 4s, timeout: 1s, fall: 1, rise: 1, stale_after: 1h",
		"interval: 40ms, timeout: 20ms, fall: 1, rise: 1, stale_after: 300ms", 1)
	srv := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	start(t, srv.JS, eventstest.Config(t, first), "d1", func(o *decider.Options) { o.Configs = configs })
	configs <- eventstest.Config(t, next)
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(configs) == 0 }, "the decider to take the version")

	a, b := &prober{t: t, js: srv.JS, region: "a"}, &prober{t: t, js: srv.JS, region: "b"}
	deadline := map[string]time.Time{}
	for i := range n {
		name := fmt.Sprintf("w%d", i)
		a.send("shop", "west", name, false)
		deadline["endpoint.shop.west."+name] = stamp(t, srv, events.StreamProbes, a.lastSeq).Add(300 * time.Millisecond)
		b.send("shop", "west", name, true)
		time.Sleep(50 * time.Millisecond) // spreads the deadlines over a second (the subject of the test, not a wait)
	}
	ctx := context.Background()
	st := srv.Stream(t, events.StreamState)
	late := map[string]time.Duration{}
	eventstest.Eventually(t, 10*time.Second, func() bool {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			subject := strings.TrimPrefix(m.Subject, "detour.state.")
			var tr events.Transition
			e, err := events.Decode(m.Data)
			if err != nil || e.Payload(&tr) != nil {
				t.Fatalf("STATE seq %d: %v", seq, err)
			}
			if d, ok := deadline[subject]; ok && tr.To == events.StatusUp {
				late[subject] = m.Time.Sub(d)
			}
		}
		return len(late) == n
	}, "every endpoint's staleness to be decided")
	for subject, d := range late {
		if d > 300*time.Millisecond {
			t.Errorf("%s: staleness stored %s after its deadline, want within a few ticks of 10ms", subject, d)
		}
	}
}
