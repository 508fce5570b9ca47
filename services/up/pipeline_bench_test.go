package up_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const benchConfig = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, fall: 3, rise: 2, stale_after: 1h}
    pools:
      - name: west
        endpoints: [{address: "127.0.0.11:8081"}]
      - name: east
        endpoints: [{address: "127.0.0.12:8081"}]
`

// BenchmarkPipelineFailover measures Detour's own latency: from publishing the probe result that
// completes a threshold to the moment the authoritative server answers differently. Each
// iteration is one failover and one failback. Its peer, measured in the same run, is one bare
// JetStream hop (publish, then receive on a consumer): the pipeline needs at least three (the
// result to the decider, the transition to STATE, STATE to the DNS server).
func BenchmarkPipelineFailover(b *testing.B) {
	srv := eventstest.Start(b)
	cfg, err := config.Parse("bench", []byte(benchConfig))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := zerolog.Nop()
	dnsSrv, err := dnsupdater.New(dnsupdater.Options{JS: srv.JS, Config: cfg, Addr: "127.0.0.1:0", Name: "dns-bench", Log: log})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = dnsSrv.Run(ctx); done <- struct{}{} }()
	go func() {
		_ = decider.Run(ctx, decider.Options{JS: srv.JS, Config: cfg, Name: "decider-bench", Log: log})
		done <- struct{}{}
	}()
	defer func() { cancel(); <-done; <-done }()

	client := &dns.Client{Timeout: time.Second}
	q := new(dns.Msg)
	q.SetQuestion("shop.demo.test.", dns.TypeA)
	first := func() string {
		r, _, err := client.Exchange(q, dnsSrv.Addr())
		if err != nil || len(r.Answer) == 0 {
			return ""
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	app := cfg.App("shop")
	ep := app.Pools[0].Endpoints[0]
	seq := 0
	result := func(ok bool) events.Envelope {
		seq++
		r := events.ProbeResult{At: time.Now(), App: "shop", Pool: "west", Endpoint: ep.Name, Address: ep.Address,
			Region: "bench", Prober: "bench-1", Check: "tcp", OK: ok, LatencyMicros: 50}
		e, err := events.New(events.TypeProbeCompleted, "prober/bench", r.At, r)
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	subject := events.ProbeSubject("bench", "shop", "west", ep.Name)
	publish := func(ok bool) {
		if _, err := events.Publish(ctx, srv.JS, subject, result(ok)); err != nil {
			b.Fatal(err)
		}
	}
	// flip publishes n-1 results, then times the n-th until the answer becomes want.
	flip := func(ok bool, n int, want string) time.Duration {
		for range n - 1 {
			publish(ok)
		}
		start := time.Now()
		publish(ok)
		deadline := start.Add(5 * time.Second)
		for first() != want {
			if time.Now().After(deadline) {
				b.Fatalf("answer did not become %s within 5s", want)
			}
		}
		return time.Since(start)
	}
	// Settle: the west endpoint up and answered.
	flip(true, 2, "127.0.0.11")

	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		lat = append(lat, flip(false, 3, "127.0.0.12"), flip(true, 2, "127.0.0.11"))
	}
	b.StopTimer()
	hop := jetStreamHop(b, srv.JS, 200)
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(percentile(hop, 50).Microseconds()), "hop-p50-µs")
	b.ReportMetric(float64(p50)/float64(percentile(hop, 50)), "p50/hop")
	b.Logf("%d switches: p50 %s p99 %s max %s; one JetStream hop p50 %s (ratio %.1f)",
		len(lat), p50, p99, percentile(lat, 100), percentile(hop, 50), float64(p50)/float64(percentile(hop, 50)))
}

// jetStreamHop measures n publish-to-receive trips through a stream and an ordered consumer.
func jetStreamHop(b *testing.B, js jetstream.JetStream, n int) []time.Duration {
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "HOP", Subjects: []string{"hop.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		b.Fatal(err)
	}
	c, err := js.OrderedConsumer(ctx, "HOP", jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan time.Time, 1)
	cc, err := c.Consume(func(jetstream.Msg) { got <- time.Now() })
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	out := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := js.Publish(ctx, fmt.Sprintf("hop.%d", i), []byte("x")); err != nil {
			b.Fatal(err)
		}
		out = append(out, (<-got).Sub(start))
	}
	return out
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}
