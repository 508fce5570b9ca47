package replay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/replay"
	"github.com/nats-io/nats.go/jetstream"
)

// benchEvents is how many events the replay benchmarks record: probe results from 3 regions over
// 1,000 endpoints, one message each, with an endpoint failing now and then.
const benchEvents = 1_000_000

var benchRegions = []string{"eu-west", "us-east", "ap-south"}

// record stores n probe results: one per message as an idle prober publishes them (batch 1), or
// batch per message as a busy prober's 2 ms batches carry them.
func record(tb testing.TB, js jetstream.JetStream, n, batch int) {
	tb.Helper()
	start := time.Now().Add(-time.Hour)
	pending := map[string][]events.ProbeResult{}
	for i := 0; i < n; i++ {
		region := benchRegions[i%3]
		ep := (i / 3) % 1000
		round := i / 3000
		r := events.ProbeResult{ID: fmt.Sprintf("r%d", i), At: start.Add(time.Duration(round) * time.Second),
			App: fmt.Sprintf("app%d", ep/100), Pool: "p" + fmt.Sprint(ep/10%10), Endpoint: fmt.Sprintf("e%d", ep%10),
			Address: "10.0.0.1:80", Region: region, Prober: "p1", Check: "tcp", LatencyMicros: 800,
			OK: !(ep%97 == 0 && round%20 < 5)}
		if !r.OK {
			r.ErrorClass, r.Error = "refused", "connection refused"
		}
		var e events.Envelope
		var err error
		subject := events.ProbeSubject(region, r.App, r.Pool, r.Endpoint)
		if batch == 1 {
			e, err = events.New(events.TypeProbeCompleted, "prober/"+region+"/p1", r.At, r)
		} else {
			// A batch holds the results of one region.
			pending[region] = append(pending[region], r)
			if len(pending[region]) < batch && i+3 < n {
				continue
			}
			subject = events.ProbeBatchSubject(region, "p1")
			e, err = events.New(events.TypeProbeBatchCompleted, "prober/"+region+"/p1", r.At, events.ProbeBatch{Region: region, Prober: "p1", Results: pending[region]})
			pending[region] = nil
		}
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := js.PublishAsync(subject, e.Encode()); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("publishing did not complete in 5 minutes")
	}
}

// BenchmarkReplay folds benchEvents recorded probe results into a timeline and reports events/s,
// against JetStream's own ordered replay of the same stream (messages read, nothing decoded) in
// the same run: the results one per message, then in batches of 24.
func BenchmarkReplay(b *testing.B) {
	for _, batch := range []int{1, 24} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchReplay(b, batch) })
	}
}

func benchReplay(b *testing.B, batch int) {
	s := eventstest.Start(b)
	ctx := context.Background()
	// PROBES on file, as deployed (not in memory, where a million messages would sit in this
	// process's heap), with room for every benchmark event.
	if err := s.JS.DeleteStream(ctx, events.StreamProbes); err != nil {
		b.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, s.JS, events.StreamOptions{ProbeMaxBytes: 4 << 30}); err != nil {
		b.Fatal(err)
	}
	record(b, s.JS, benchEvents, batch)
	info, err := s.Stream(b, events.StreamProbes).Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	msgs := int(info.State.Msgs)
	b.ResetTimer()
	var peer, ours time.Duration
	for range b.N {
		t0 := time.Now()
		cons, err := s.JS.OrderedConsumer(ctx, events.StreamProbes, jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(4096))
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < msgs; n++ {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
		it.Stop()
		peer += time.Since(t0)

		t0 = time.Now()
		bl := replay.NewBuilder(replay.Filter{})
		if err := replay.Read(ctx, s.JS, replay.Window{}, bl.Add); err != nil {
			b.Fatal(err)
		}
		tl := bl.Timeline()
		ours += time.Since(t0)
		if tl.Results != benchEvents || len(tl.Items) == 0 {
			b.Fatalf("timeline folded %d results into %d items, want %d results and some items", tl.Results, len(tl.Items), benchEvents)
		}
	}
	// The what-if end to end: read the stream and re-decide every result with other thresholds.
	cfg := eventstest.Config(b, benchConfig())
	settings, err := replay.ParseSettings("fall=5,rise=3")
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	w := replay.NewWhatIf(cfg, settings, time.Time{}, time.Time{})
	if err := replay.Read(ctx, s.JS, replay.Window{}, w.Add); err != nil {
		b.Fatal(err)
	}
	if c := w.Compare(time.Now()); c.Results != benchEvents {
		b.Fatalf("what-if re-decided %d results, want %d", c.Results, benchEvents)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "what-if-s")
	b.ReportMetric(float64(benchEvents*b.N)/ours.Seconds(), "events/s")
	b.ReportMetric(float64(msgs*b.N)/peer.Seconds(), "jetstream-msgs/s")
	b.ReportMetric(float64(msgs*b.N)/ours.Seconds()/(float64(msgs*b.N)/peer.Seconds()), "msgs-ratio")
}

// BenchmarkWhatIf re-decides benchEvents results (already read) with other thresholds.
func BenchmarkWhatIf(b *testing.B) {
	c := eventstest.Config(b, benchConfig())
	start := time.Now().Add(-time.Hour)
	recs := make([]replay.Record, 0, benchEvents)
	for i := 0; i < benchEvents; i++ {
		region := benchRegions[i%3]
		ep := (i / 3) % 1000
		round := i / 3000
		at := start.Add(time.Duration(round)*time.Second + time.Duration(i%3000)*time.Microsecond)
		r := events.ProbeResult{ID: fmt.Sprintf("r%d", i), App: fmt.Sprintf("app%d", ep/100), Pool: "p" + fmt.Sprint(ep/10%10),
			Endpoint: fmt.Sprintf("e%d", ep%10), Region: region, OK: !(ep%97 == 0 && round%20 < 5)}
		recs = append(recs, replay.Record{Stream: events.StreamProbes, Subject: events.ProbeSubject(region, r.App, r.Pool, r.Endpoint),
			Stored: at, Results: []events.ProbeResult{r}})
	}
	s, err := replay.ParseSettings("fall=5,rise=3")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		w := replay.NewWhatIf(c, s, time.Time{}, time.Time{})
		for i := range recs {
			w.Add(&recs[i])
		}
		cmp := w.Compare(start.Add(2 * time.Hour))
		if cmp.Results != benchEvents || len(cmp.Pairs) == 0 {
			b.Fatalf("what-if folded %d results into %d transitions", cmp.Results, len(cmp.Pairs))
		}
	}
	b.ReportMetric(float64(benchEvents), "results/op")
}

// benchConfig is the benchmark's fleet: 10 apps of 10 pools of 10 endpoints, probed from 3 regions.
func benchConfig() string {
	var sb strings.Builder
	sb.WriteString("zones: [{name: bench.test}]\nregions: [eu-west, us-east, ap-south]\napps:\n")
	for a := range 10 {
		fmt.Fprintf(&sb, "  - name: app%d\n    fqdn: app%d.bench.test\n    check: {interval: 1s}\n    pools:\n", a, a)
		for p := range 10 {
			fmt.Fprintf(&sb, "      - name: p%d\n        endpoints:\n", p)
			for e := range 10 {
				fmt.Fprintf(&sb, "          - {name: e%d, address: \"10.%d.%d.%d:80\"}\n", e, a, p, e+1)
			}
		}
	}
	return sb.String()
}
