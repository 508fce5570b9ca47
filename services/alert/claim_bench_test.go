package alert

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// BenchmarkAClaimBeforeAnAttempt measures what claiming adds before an attempt: one append to
// ALERTS, on one node storing in files (as detour up does) and on three nodes keeping three
// replicas (as the compose cluster does, though in memory), all in process on loopback.
func BenchmarkAClaimBeforeAnAttempt(b *testing.B) {
	for _, c := range []struct {
		name string
		js   func(*testing.B) jetstream.JetStream
	}{
		{"one node, files", func(b *testing.B) jetstream.JetStream {
			return eventstest.StartWith(b, eventstest.Options{Files: true}).JS
		}},
		{"three nodes, three replicas", func(b *testing.B) jetstream.JetStream { return eventstest.StartCluster(b, 3).Streams(b) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &runner{o: Options{JS: c.js(b), Name: "controller-1", Now: time.Now}, log: zerolog.Nop(), ledger: newLedger(), groups: &config.Config{}}
			var watching sync.WaitGroup
			watching.Go(func() { r.watch(b.Context(), time.Now(), 0, nil) })
			b.Cleanup(watching.Wait) // b.Context ends first
			<-r.ledger.caught
			g := &config.Alert{Name: "oncall"}
			for i := 0; b.Loop(); i++ {
				id := strconv.Itoa(i)
				d := &delivery{group: g, url: "http://127.0.0.1/hook", kind: config.AlertPoolDown, id: id, fact: Fact{Event: events.Envelope{ID: id}}}
				if !r.claim(b.Context(), d, 1) || d.unclaimed {
					b.Fatal("the claim was not stored")
				}
			}
		})
	}
}
