package prober

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// BenchmarkPublishEdgeResults stores edge-listener results in PROBES (in process, server
// included, until stored) as the prober sends them now, gathered in 2 ms batches, against its
// earlier way, each result a message of its own; the ratio of ns/op is the saving per check.
func BenchmarkPublishEdgeResults(b *testing.B) {
	for _, c := range []struct {
		name   string
		window time.Duration
	}{{"batched", 2 * time.Millisecond}, {"alone", -1}} {
		b.Run(c.name, func(b *testing.B) {
			srv := eventstest.Start(b)
			p := newPublisher(srv.JS, "eu", "p1", c.window, realClock{})
			ctx, cancel := context.WithCancel(context.Background())
			if c.window > 0 {
				go p.batches(ctx)
			} else {
				close(p.done)
			}
			r := events.ProbeResult{At: time.Now().UTC(), App: "shop", Pool: events.EdgeProbePool, Endpoint: "edge-west",
				Address: "127.0.0.21:8080", Region: "eu", Prober: "p1", Check: "http", OK: true, LatencyMicros: 120}
			b.ResetTimer()
			for i := range b.N {
				r.Window = int64(i)
				p.publish(r)
			}
			// Until JetStream stored them all.
			cancel()
			<-p.done
			p.flush(context.Background())
			b.StopTimer()
			if f := p.failed.Load(); f > 0 {
				b.Fatalf("%d results not stored", f)
			}
		})
	}
}
