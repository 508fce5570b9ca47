package decider

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// BenchmarkAdoptingAVersion measures how long a live replica, whose NATS is a link away (each way
// 1 ms, then 10 ms), takes to apply a version adding the 10,000 endpoint fleet that STATE records
// up: what it reads of STATE for them (adopt) holds every decision meanwhile. One op is one
// version: from its arrival until the replica takes the next one.
func BenchmarkAdoptingAVersion(b *testing.B) {
	for _, delay := range []time.Duration{time.Millisecond, 10 * time.Millisecond} {
		b.Run(fmt.Sprintf("link=%s", delay), func(b *testing.B) {
			srv := eventstest.Start(b)
			fleet := fleet(b)
			var subjects []string
			var payloads [][]byte
			for _, a := range fleet.Apps {
				for _, p := range a.Pools {
					for _, e := range p.Endpoints {
						ev, err := events.New(events.TypeEndpointUp, "bench", time.Now(), events.Transition{App: a.Name, Pool: p.Name, Endpoint: e.Name, To: events.StatusUp})
						if err != nil {
							b.Fatal(err)
						}
						subjects = append(subjects, events.EndpointStateSubject(a.Name, p.Name, e.Name))
						payloads = append(payloads, ev.Encode())
					}
				}
			}
			if err := publishAll(srv.JS, subjects, payloads); err != nil {
				b.Fatal(err)
			}
			small := eventstest.Config(b, "zones: [{name: bench.test}]\napps: [{name: one, fqdn: one.bench.test, pools: [{name: p, endpoints: [{name: e, address: \"10.9.9.9:80\"}]}]}]\n")
			link := eventstest.NewSlowLink(b, srv.URL)
			link.Delay(delay, delay)
			_, js := eventstest.ConnectJS(b, link.URL)
			configs := make(chan *config.Config)
			stats := &Stats{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Options{JS: js, Config: small, Name: "bench", Log: zerolog.Nop(), Stats: stats, Configs: configs})
			}()
			b.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					b.Errorf("decider: %v", err)
				}
			})
			eventstest.Eventually(b, time.Minute, stats.Live.Load, "decider did not go live")
			b.ResetTimer()
			for range b.N {
				configs <- fleet
				configs <- small // taken once the fleet's version is applied
			}
		})
	}
}
