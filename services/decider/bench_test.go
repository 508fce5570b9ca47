package decider

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// The benchmark fleet: 10,000 endpoints (10 apps × 10 pools × 100) probed from 3 regions at 1s.
const fleetApps, fleetPools, fleetEndpoints = 10, 10, 100

var fleetRegions = []string{"eu-west", "us-east", "ap-south"}

func fleet(tb testing.TB) *config.Config {
	tb.Helper()
	c := &config.Config{Zones: []config.Zone{{Name: "bench.test"}}}
	for a := range fleetApps {
		app := config.App{Name: fmt.Sprintf("app%d", a), FQDN: fmt.Sprintf("app%d.bench.test", a),
			Check: config.Check{Interval: config.Duration(time.Second)}}
		for p := range fleetPools {
			pool := config.Pool{Name: fmt.Sprintf("pool%d", p)}
			for e := range fleetEndpoints {
				pool.Endpoints = append(pool.Endpoints, config.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d:80", a, p, e+1)})
			}
			app.Pools = append(app.Pools, pool)
		}
		c.Apps = append(c.Apps, app)
	}
	c.ApplyDefaults()
	if problems := c.Validate(); len(problems) > 0 {
		tb.Fatalf("benchmark fleet: %v", problems)
	}
	return c
}

// fleetMessages encodes n results over the fleet as PROBES messages of batch results each (a
// batch of 1 is sent as a single TypeProbeCompleted). Every 97th endpoint fails.
func fleetMessages(tb testing.TB, c *config.Config, n, batch int, from time.Time) (subjects []string, payloads [][]byte) {
	tb.Helper()
	var rs []events.ProbeResult
	flush := func() {
		if len(rs) == 0 {
			return
		}
		region := rs[0].Region
		var e events.Envelope
		var err error
		if batch == 1 {
			e, err = events.New(events.TypeProbeCompleted, "bench", rs[0].At, rs[0])
			subjects = append(subjects, events.ProbeSubject(region, rs[0].App, rs[0].Pool, rs[0].Endpoint))
		} else {
			e, err = events.New(events.TypeProbeBatchCompleted, "bench", rs[0].At, events.ProbeBatch{Region: region, Prober: "p1", Results: rs})
			subjects = append(subjects, events.ProbeBatchSubject(region, "p1"))
		}
		if err != nil {
			tb.Fatal(err)
		}
		payloads = append(payloads, e.Encode())
		rs = nil
	}
	i := 0
	for round := 0; i < n; round++ {
		at := from.Add(time.Duration(round) * time.Second)
		for ri, region := range fleetRegions {
			for _, a := range c.Apps {
				for _, p := range a.Pools {
					for k, e := range p.Endpoints {
						if i == n {
							break
						}
						rs = append(rs, events.ProbeResult{At: at, App: a.Name, Pool: p.Name, Endpoint: e.Name,
							Region: region, Prober: "p1", Check: "tcp", OK: k%97 != 0 || ri == 0, LatencyMicros: 800})
						i++
						if len(rs) == batch {
							flush()
						}
					}
				}
			}
			flush()
		}
	}
	return subjects, payloads
}

// publishAll publishes every message asynchronously and waits for their acknowledgements. While
// the client's limit of pending publishes is reached it waits for a slot as long as for the
// acknowledgements, not nats.go's default 200 ms, which a loaded machine exceeds (the publisher
// then stopped short, and a benchmark waited for messages never sent).
func publishAll(js jetstream.JetStream, subjects []string, payloads [][]byte) error {
	for i := range payloads {
		if _, err := js.PublishAsync(subjects[i], payloads[i], jetstream.WithStallWait(time.Minute)); err != nil {
			return fmt.Errorf("publish message %d: %w", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-time.After(time.Minute):
		return fmt.Errorf("publishing did not complete in a minute")
	}
}

// TestBenchmarkPublishingOutlastsSlowAcknowledgements: a loaded machine acknowledges the
// benchmarks' publishes later than nats.go waits by default for a free slot among the pending
// ones (200 ms): the publisher must wait for the slot rather than stop, leaving the benchmark to
// wait for messages never sent.
func TestBenchmarkPublishingOutlastsSlowAcknowledgements(t *testing.T) {
	srv := eventstest.Start(t)
	var seq atomic.Uint64
	if _, err := srv.Conn.Subscribe("bench.slow", func(m *nats.Msg) {
		time.AfterFunc(300*time.Millisecond, func() {
			m.Respond(fmt.Appendf(nil, `{"stream":"bench","seq":%d}`, seq.Add(1)))
		})
	}); err != nil {
		t.Fatal(err)
	}
	nc := eventstest.Connect(t, srv.URL)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2))
	if err != nil {
		t.Fatal(err)
	}
	subjects := slices.Repeat([]string{"bench.slow"}, 5)
	payloads := slices.Repeat([][]byte{[]byte("result")}, 5)
	if err := publishAll(js, subjects, payloads); err != nil {
		t.Fatal(err)
	}
	if got := seq.Load(); got != 5 {
		t.Fatalf("%d messages acknowledged, want 5", got)
	}
}

// publishing publishes in the background, and calls stop if that fails, so that a reader waiting
// for the messages does not wait for ever; the returned function waits for publishing to finish.
func publishing(tb testing.TB, js jetstream.JetStream, subjects []string, payloads [][]byte, stop func()) (wait func()) {
	errc := make(chan error, 1)
	go func() {
		err := publishAll(js, subjects, payloads)
		if err != nil {
			stop()
		}
		errc <- err
	}()
	return func() {
		tb.Helper()
		if err := <-errc; err != nil {
			tb.Fatal(err)
		}
	}
}

func runDecider(tb testing.TB, js jetstream.JetStream, c *config.Config, stats *Stats) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{JS: js, Config: c, Name: "bench", Log: zerolog.Nop(), Stats: stats, TickEvery: 250 * time.Millisecond})
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("decider: %v", err)
		}
	})
}

// BenchmarkFold measures probe results folded per second by one live decider of the 10,000
// endpoint fleet, as results are published, against its peer: an ordered consumer that only reads
// and decodes the same messages. One op is one result.
func BenchmarkFold(b *testing.B) {
	for _, batch := range []int{500, 1} {
		b.Run(fmt.Sprintf("decider/batch=%d", batch), func(b *testing.B) {
			srv := eventstest.Start(b)
			unboundedProbes(b, srv)
			c := fleet(b)
			stats := &Stats{}
			runDecider(b, srv.JS, c, stats)
			eventstest.Eventually(b, 10*time.Second, stats.Live.Load, "decider did not go live")
			subjects, payloads := fleetMessages(b, c, b.N, batch, time.Now())
			// Published on a connection of its own, as a prober's: on the decider's, the
			// publisher's pending messages would hold up the decider's appends.
			_, pub := eventstest.ConnectJS(b, srv.URL)
			var stopped atomic.Bool
			b.ResetTimer()
			wait := publishing(b, pub, subjects, payloads, func() { stopped.Store(true) })
			// Every PROBES message processed. A result that PROBES delivers after a newer one of
			// its endpoint and region was heard on the wire is not folded (the wire drops what it
			// cannot hand over in time, as a slow consumer), so the results folded may stay short
			// of b.N.
			var processed uint64
			eventstest.Eventually(b, 5*time.Minute, func() bool {
				processed = stats.Messages.Load()
				return processed >= uint64(len(subjects)) || stopped.Load()
			}, "decider processed %d of %d messages", &processed, len(subjects))
			wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
			b.ReportMetric(float64(stats.Results.Load())/float64(b.N), "folded/result")
		})
		b.Run(fmt.Sprintf("consume-only/batch=%d", batch), func(b *testing.B) {
			srv := eventstest.Start(b)
			unboundedProbes(b, srv)
			c := fleet(b)
			cons, err := srv.JS.OrderedConsumer(context.Background(), events.StreamProbes, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{events.SubjectProbes}, DeliverPolicy: jetstream.DeliverNewPolicy})
			if err != nil {
				b.Fatal(err)
			}
			it, err := cons.Messages()
			if err != nil {
				b.Fatal(err)
			}
			defer it.Stop()
			subjects, payloads := fleetMessages(b, c, b.N, batch, time.Now())
			_, pub := eventstest.ConnectJS(b, srv.URL)
			b.ResetTimer()
			wait := publishing(b, pub, subjects, payloads, it.Stop)
			for n := 0; n < b.N; {
				m, err := it.Next()
				if err != nil {
					wait() // why publishing stopped the reader, if it did
					b.Fatal(err)
				}
				rs, err := events.DecodeProbes(m.Data())
				if err != nil {
					b.Fatal(err)
				}
				n += len(rs)
			}
			wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
		})
	}
}

// unboundedProbes lifts the test server's bound on PROBES, so that it holds every message a
// benchmark publishes however far the reader falls behind: a publisher faster than the decider
// (one result a message, on a fast machine) would otherwise have the oldest discarded unread,
// and the benchmark wait for them for ever.
func unboundedProbes(tb testing.TB, srv *eventstest.Server) {
	tb.Helper()
	st := srv.Stream(tb, events.StreamProbes)
	cfg := st.CachedInfo().Config
	cfg.MaxBytes = -1
	if _, err := srv.JS.UpdateStream(context.Background(), cfg); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkColdStart measures how long a decider of the 10,000 endpoint fleet takes from start to
// live, with STATE holding a status for every endpoint and PROBES the default replay window of
// results (3 intervals × 3 regions × 10,000), in batches of 500 and one result a message, against
// its peer: reading the same messages with two ordered consumers. One op is one start. With
// held_down, STATE also holds when a hold-down of every endpoint began (its last-per-subject read
// doubles): what recording hold-downs adds to a start at most.
func BenchmarkColdStart(b *testing.B) {
	for _, batch := range []int{500, 1} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { coldStart(b, batch, false) })
	}
	b.Run("batch=500,held_down", func(b *testing.B) { coldStart(b, 500, true) })
}

func coldStart(b *testing.B, batch int, heldDown bool) {
	srv := eventstest.Start(b)
	c := fleet(b)
	ctx := context.Background()
	var subjects []string
	var payloads [][]byte
	for _, a := range c.Apps {
		for _, p := range a.Pools {
			for _, e := range p.Endpoints {
				ev, _ := events.New(events.TypeEndpointUp, "bench", time.Now(), events.Transition{App: a.Name, Pool: p.Name, Endpoint: e.Name, To: events.StatusUp})
				subjects = append(subjects, events.EndpointStateSubject(a.Name, p.Name, e.Name))
				payloads = append(payloads, ev.Encode())
				if heldDown {
					ev, _ = events.New(events.TypeHoldDownStarted, "bench", time.Now(), events.HoldDown{App: a.Name, Pool: p.Name, Endpoint: e.Name, HoldDown: "10m"})
					subjects = append(subjects, events.HoldDownSubject(a.Name, p.Name, e.Name))
					payloads = append(payloads, ev.Encode())
				}
			}
		}
	}
	if err := publishAll(srv.JS, subjects, payloads); err != nil {
		b.Fatal(err)
	}
	stateSubjects := len(subjects)
	const window, results = 3 * time.Second, 3 * 3 * fleetEndpointsTotal
	subjects, payloads = fleetMessages(b, c, results, batch, time.Now().Add(-window+time.Second))
	if err := publishAll(srv.JS, subjects, payloads); err != nil {
		b.Fatal(err)
	}

	b.Run("decider", func(b *testing.B) {
		for range b.N {
			stats := &Stats{}
			dctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- Run(dctx, Options{JS: srv.JS, Config: c, Name: "bench", Log: zerolog.Nop(), Stats: stats, Replay: window + time.Minute})
			}()
			eventstest.Eventually(b, time.Minute, stats.Live.Load, "decider did not go live")
			b.StopTimer()
			if got := stats.Results.Load(); got != results {
				b.Fatalf("replayed %d results, want %d", got, results)
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("read-only", func(b *testing.B) {
		for range b.N {
			for _, read := range []struct {
				stream string
				policy jetstream.DeliverPolicy
				want   int
			}{{events.StreamState, jetstream.DeliverLastPerSubjectPolicy, stateSubjects}, {events.StreamProbes, jetstream.DeliverAllPolicy, len(payloads)}} {
				cons, err := srv.JS.OrderedConsumer(ctx, read.stream, jetstream.OrderedConsumerConfig{DeliverPolicy: read.policy})
				if err != nil {
					b.Fatal(err)
				}
				it, err := cons.Messages()
				if err != nil {
					b.Fatal(err)
				}
				for range read.want {
					m, err := it.Next()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := events.Decode(m.Data()); err != nil {
						b.Fatal(err)
					}
				}
				it.Stop()
			}
		}
	})
}

// BenchmarkMemoryPerEndpoint measures the heap one endpoint costs the decider (its index entries,
// what STATE recorded, and its pure state with 3 regions' streaks of result ids), against its
// peer: the configuration of the endpoint itself.
func BenchmarkMemoryPerEndpoint(b *testing.B) {
	ctx := context.Background()
	var perEndpoint, cfg float64
	for range b.N {
		before := heap()
		c := fleet(b)
		cfg = float64(heap()-before) / fleetEndpointsTotal
		_, payloads := fleetMessages(b, c, 3*len(fleetRegions)*fleetEndpointsTotal, 500, time.Now())
		before = heap()
		d := &decider{o: Options{Config: c, Now: time.Now, Stats: &Stats{}}, log: zerolog.Nop(), ix: newIndex(c), regions: map[string]string{}}
		for _, p := range payloads {
			rs, err := events.DecodeProbes(p)
			if err != nil {
				b.Fatal(err)
			}
			d.fold(ctx, rs, time.Now(), rs[0].Region, false)
		}
		for _, s := range d.ix.endpoints {
			s.pending = nil // appended when the decider goes live
		}
		perEndpoint = float64(heap()-before) / fleetEndpointsTotal
		runtime.KeepAlive(d)
		runtime.KeepAlive(payloads)
	}
	b.ReportMetric(perEndpoint, "B/endpoint")
	b.ReportMetric(cfg, "config-B/endpoint")
}

const fleetEndpointsTotal = fleetApps * fleetPools * fleetEndpoints

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkDecisionLatency measures, over b.N transitions, the time from publishing the result
// that completes a threshold (fall = rise = 1, so every result does) to the transition reaching a
// subscriber of STATE, against its peer: the time from publishing a result to an ordered consumer
// of PROBES receiving it. One op is one transition.
func BenchmarkDecisionLatency(b *testing.B) {
	doc := `
zones: [{name: bench.test}]
apps:
  - name: shop
    fqdn: shop.bench.test
    check: {interval: 1s, fall: 1, rise: 1, stale_after: 1h}
    pools: [{name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}]
`
	c, err := config.Parse("bench.yaml", []byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	result := func(i int) []byte {
		r := events.ProbeResult{ID: fmt.Sprintf("r%d", i), At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", OK: i%2 == 0}
		e, _ := events.New(events.TypeProbeCompleted, "bench", r.At, r)
		return e.Encode()
	}
	subject := events.ProbeSubject("eu", "shop", "west", "w1")
	measure := func(b *testing.B, srv *eventstest.Server, next func() error) {
		ctx := context.Background()
		lat := make([]time.Duration, 0, b.N)
		for i := range b.N {
			data := result(i)
			start := time.Now()
			if _, err := srv.JS.Publish(ctx, subject, data); err != nil {
				b.Fatal(err)
			}
			if err := next(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("decider", func(b *testing.B) {
		srv := eventstest.Start(b)
		sub, err := srv.Conn.SubscribeSync("detour.state.endpoint.>")
		if err != nil {
			b.Fatal(err)
		}
		stats := &Stats{}
		runDecider(b, srv.JS, c, stats)
		eventstest.Eventually(b, 10*time.Second, stats.Live.Load, "decider did not go live")
		b.ResetTimer()
		measure(b, srv, func() error { _, err := sub.NextMsg(5 * time.Second); return err })
	})
	b.Run("consume-only", func(b *testing.B) {
		srv := eventstest.Start(b)
		cons, err := srv.JS.OrderedConsumer(context.Background(), events.StreamProbes, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Stop()
		b.ResetTimer()
		measure(b, srv, func() error { _, err := it.Next(); return err })
	})
}

// BenchmarkHeardFoldedWhileAnOverrideIsHeld measures what a PROBES message costs the check of an
// override held for the results heard before it (heardFolded, twice a message in onProbes):
// `prefix` messages heard on the wire before the one the override waits for were delivered by
// PROBES since the last tick. One op is one message: heard, delivered, and the check.
func BenchmarkHeardFoldedWhileAnOverrideIsHeld(b *testing.B) {
	for _, prefix := range []int{10, 1000, 4096} {
		b.Run(fmt.Sprintf("prefix=%d", prefix), func(b *testing.B) {
			d := &decider{live: true, log: zerolog.Nop()}
			at := time.Now()
			for i := range prefix {
				k := msgKey{"detour.probe.eu.shop.west.w1", strconv.Itoa(i)}
				d.heard(heardMsg{key: k, at: at})
				d.delivered(k)
			}
			d.heard(heardMsg{key: msgKey{"detour.probe.eu.shop.west.w1", "awaited"}, at: at})
			awaited := d.heardCount
			b.ResetTimer()
			for i := range b.N {
				k := msgKey{"detour.probe.eu.shop.west.w2", strconv.Itoa(i)}
				d.heard(heardMsg{key: k, at: at})
				d.delivered(k)
				if d.heardFolded(awaited) {
					b.Fatal("the message the override waits for was folded")
				}
			}
		})
	}
}
