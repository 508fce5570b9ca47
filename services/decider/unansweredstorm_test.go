package decider

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// silencing is JetStream whose answers to appends never come while silent is set (the appends
// are stored all the same).
type silencing struct {
	jetstream.JetStream
	silent atomic.Bool
}

func (w *silencing) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := w.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || !w.silent.Load() {
		return f, err
	}
	return silent{f}, nil
}

// stormYAML is one app of pools×per endpoints that one result takes down or brings up.
func stormYAML(pools, per int) string {
	var b strings.Builder
	b.WriteString(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, timeout: 500ms, fall: 1, rise: 1, stale_after: 1h}
    pools:
`)
	for p := range pools {
		fmt.Fprintf(&b, "      - name: p%d\n        endpoints:\n", p)
		for e := range per {
			fmt.Fprintf(&b, "          - {name: e%d, address: \"10.%d.%d.%d:80\"}\n", e, p/250, p%250, e+1)
		}
	}
	return b.String()
}

// TestAStormOfFlapsAfterUnansweredAppendsStallsATickByAboutAnAppendTimeout: 10,000 endpoints
// come up at once, their appends stored but never answered (a leader slow to answer), and fail
// again before the next tick: each down looks recorded already, and STATE's leader is read
// back before it is dropped. One read each, one after another, stalled the loop for as long
// as 10,000 round trips to the leader (3.2 s on loopback; each read may wait appendTimeout for
// a slow leader), while every other decision waited: a tick's reads are bounded by
// appendTimeout in all, and the rest wait for the next.
func TestAStormOfFlapsAfterUnansweredAppendsStallsATickByAboutAnAppendTimeout(t *testing.T) {
	const pools, per = 100, 100
	srv := eventstest.Start(t)
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel + 1)
	js := &silencing{JetStream: srv.JS}
	d := handDriven(Options{Config: eventstest.Config(t, stormYAML(pools, per)), Name: "decider/a", Log: log, Now: time.Now, Stats: &Stats{}}, js)
	d.log, d.state = log, srv.Stream(t, events.StreamState)
	// reads counts the reads of STATE's leader (events.LeaderLast).
	var reads atomic.Int64
	sub, err := srv.Conn.Subscribe("$JS.API.STREAM.MSG.GET."+events.StreamState, func(*nats.Msg) { reads.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	n := 0
	all := func(ok bool) {
		n++
		var rs []events.ProbeResult
		for p := range pools {
			for e := range per {
				rs = append(rs, events.ProbeResult{ID: fmt.Sprintf("r%d-%d-%d", n, p, e), App: "shop", Pool: fmt.Sprintf("p%d", p),
					Endpoint: fmt.Sprintf("e%d", e), Region: "eu", Prober: "p1", Check: "tcp", OK: ok})
			}
		}
		d.fold(ctx, rs, time.Now(), "eu", false)
		d.flush(ctx)
		d.settle(ctx)
	}
	all(true)
	all(false)
	js.silent.Store(true)
	all(true) // stored, never answered
	js.silent.Store(false)
	all(false) // before the next tick
	if err := srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	before := reads.Load()
	start := time.Now()
	d.tick(ctx, time.Now())
	took := time.Since(start)
	if err := srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Logf("tick took %v, %d leader reads", took, reads.Load()-before)
	if took > 4*appendTimeout {
		t.Errorf("the tick after a storm of flaps on unanswered appends took %v, want about appendTimeout (%v)", took, appendTimeout)
	}
}
