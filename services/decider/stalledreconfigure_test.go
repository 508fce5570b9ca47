package decider

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// TestDecisionsKeptWhileTheAppendsAreStalledOutliveANewConfiguration: decider/a's down of w1,
// and west's with it, were stored while STATE's leader was silent, and none of its appends
// landed after them: w1's next up and down are kept queued for the next tick (see flush). A new
// configuration comes before it. Where w1 stays, the pair is appended on its new slot, after the
// down read back (the unanswered append goes with the endpoint), not lost. Where it moves w1 to
// another address (a new endpoint, started from what STATE records), the old one's kept
// decisions go with it, as a failed append's pending decision does: nothing is appended by the
// slot of a configuration no longer in force (kept on the queue, it would be, and would note
// its deadlines at its old place in the new index).
func TestDecisionsKeptWhileTheAppendsAreStalledOutliveANewConfiguration(t *testing.T) {
	first := w1YAML("")
	up := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	down := []string{"endpoint.shop.west.w1:down", "pool.shop.west:down"}
	for _, tt := range []struct {
		name, next string
		want       []string
	}{
		{"w1 stays", first, slices.Concat(up, down, up, down)},
		{"w1 moves", strings.Replace(first, "127.0.0.11:8081", "127.0.0.19:8081", 1), slices.Concat(up, down)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := eventstest.Start(t)
			log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
			js := &silencing{JetStream: srv.JS}
			d := handDriven(Options{Config: eventstest.Config(t, first), Name: "decider/a", Log: log, Now: time.Now, Stats: &Stats{}}, js)
			d.log, d.state = log, srv.Stream(t, events.StreamState)
			s := &unansweredStage{srv: srv, d: d, probes: srv.Stream(t, events.StreamProbes),
				w1: events.EndpointStateSubject("shop", "west", "w1"), west: events.PoolStateSubject("shop", "west")}

			s.fold(s.publish(t, "eu-1", true)) // w1 up at 1, west up at 2
			js.silent.Store(true)
			s.fold(s.publish(t, "eu-2", false)) // w1 down at 3, west down at 4, neither answered
			js.silent.Store(false)
			s.fold(s.publish(t, "eu-3", true)) // kept
			s.fold(s.publish(t, "eu-4", false))
			d.configure(context.Background(), eventstest.Config(t, tt.next), time.Now())
			s.tick()
			s.tick()

			if got := stateHistory(t, d.state); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("STATE history is %q, want %q", got, tt.want)
			}
		})
	}
}
