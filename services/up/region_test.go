package up_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/decider"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// regionConfig is a region of n failover apps: app i answers its own endpoint in the dying
// region while it is up, and a shared endpoint elsewhere once it is down. One edge fronts every
// app's first pool, so its route table changes with every endpoint.
func regionConfig(tb testing.TB, n int, interval time.Duration, notify string) *config.Config {
	tb.Helper()
	var b strings.Builder
	if notify != "" {
		fmt.Fprintf(&b, "zones: [{name: region.test, notify: [%q]}]\napps:\n", notify)
	} else {
		fmt.Fprintf(&b, "zones: [{name: region.test}]\napps:\n")
	}
	for i := range n {
		fmt.Fprintf(&b, `  - name: app%d
    fqdn: app%d.region.test
    check: {type: tcp, interval: %s, timeout: %s, fall: 3, rise: 2, stale_after: 1h}
    pools:
      - {name: main, region: doomed, endpoints: [{name: e, address: "%s:80"}]}
      - {name: backup, region: safe, endpoints: [{name: e, address: "10.200.0.1:80"}]}
`, i, i, interval, interval/2, regionAddr(i))
	}
	// One edge per 1,000 apps.
	b.WriteString("edges:\n")
	for i := range n {
		if i%1000 == 0 {
			fmt.Fprintf(&b, "  - name: edge-%d\n    region: safe\n    hostname: edge-%d.region.test\n    address: 10.200.1.%d\n    apps:\n",
				i/1000, i/1000, 1+i/1000)
		}
		fmt.Fprintf(&b, "      - {app: app%d, pool: main, listen: \"127.0.0.1:%d\"}\n", i, 10000+i)
	}
	c, err := config.Parse("region.yaml", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// regionAddr is the address of app i's endpoint in the dying region.
func regionAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
}

// region runs a decider, a DNS server and a controller on embedded JetStream, and plays the
// probers of a region whose n endpoints all die at once.
type region struct {
	tb       testing.TB
	n        int
	interval time.Duration
	cfg      *config.Config
	srv      *eventstest.Server
	dns      *dnsupdater.Server
	stats    decider.Stats
	round    int
	// spread, when set, spreads each round's batches evenly over it, as probers checking on
	// their own schedules do; sent holds when each endpoint's result of the last round was
	// published.
	spread time.Duration
	sent   []time.Time
	// perBatch is how many results one PROBES message holds (500, as a busy prober's batch
	// window fills; a few, as probers publishing every 2 ms send them at 10,000 checks a
	// second).
	perBatch int
}

func startRegion(tb testing.TB, n int, interval time.Duration, notify string) *region {
	tb.Helper()
	r := &region{tb: tb, n: n, interval: interval, cfg: regionConfig(tb, n, interval, notify), srv: eventstest.Start(tb), perBatch: 500}
	log := zerolog.Nop()
	if testing.Verbose() {
		log = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.InfoLevel)
	}
	var err error
	r.dns, err = dnsupdater.New(dnsupdater.Options{JS: r.srv.JS, Config: r.cfg, Addr: "127.0.0.1:0", Name: "dns-region", Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	eventstest.Run(tb, "dns", r.dns.Run)
	eventstest.Run(tb, "decider", func(ctx context.Context) error {
		return decider.Run(ctx, decider.Options{JS: r.srv.JS, Config: r.cfg, Name: "decider-region", Log: log, Stats: &r.stats})
	})
	eventstest.Run(tb, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: r.srv.JS, Config: r.cfg, Name: "controller-region", Log: log})
	})
	return r
}

// probe publishes one round of results for every endpoint, as the probers of a region do: a
// batch per prober, perBatch results each. It returns when JetStream has stored them all.
func (r *region) probe(ok bool) {
	r.tb.Helper()
	r.round++
	now := time.Now()
	perBatch := r.perBatch
	if r.sent == nil {
		r.sent = make([]time.Time, r.n)
	}
	batches := (r.n + perBatch - 1) / perBatch
	for start := 0; start < r.n; start += perBatch {
		if r.spread > 0 {
			time.Sleep(time.Until(now.Add(r.spread * time.Duration(start/perBatch) / time.Duration(batches))))
		}
		b := events.ProbeBatch{Region: "safe", Prober: fmt.Sprintf("p%d", start/perBatch)}
		for i := start; i < min(start+perBatch, r.n); i++ {
			b.Results = append(b.Results, events.ProbeResult{ID: fmt.Sprintf("r%d-%d", r.round, i), At: now,
				App: fmt.Sprintf("app%d", i), Pool: "main", Endpoint: "e", Address: regionAddr(i).String() + ":80",
				Region: "safe", Prober: b.Prober, Check: "tcp", OK: ok, LatencyMicros: 100})
		}
		env, err := events.New(events.TypeProbeBatchCompleted, "prober/"+b.Prober, now, b)
		if err != nil {
			r.tb.Fatal(err)
		}
		if _, err := r.srv.JS.PublishAsync(events.ProbeBatchSubject("safe", b.Prober), env.Encode()); err != nil {
			r.tb.Fatal(err)
		}
		for i := start; i < min(start+perBatch, r.n); i++ {
			r.sent[i] = time.Now()
		}
	}
	select {
	case <-r.srv.JS.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		r.tb.Fatal("probe results not stored within 10s")
	}
}

// pollEvery is how often a poller starts a pass over the answers it waits for.
const pollEvery = 20 * time.Millisecond

// watch polls every app's A answer from several goroutines until each one is want(i), and
// returns when each first was. It also counts the queries answered, to give the qps, and keeps
// in slowest the longest pass over the names still pending: how late an answer can be seen.
func (r *region) watch(ctx context.Context, want func(i int) string, queries, slowest *atomic.Int64) []time.Time {
	moved := make([]time.Time, r.n)
	const pollers = 2
	var wg sync.WaitGroup
	for w := range pollers {
		wg.Go(func() {
			c := &dns.Client{Timeout: time.Second}
			conn, err := c.Dial(r.dns.Addr())
			if err != nil {
				r.tb.Error(err)
				return
			}
			defer conn.Close()
			var pending []int
			for i := w; i < r.n; i += pollers {
				pending = append(pending, i)
			}
			m := new(dns.Msg)
			// One pass over the names still pending per pollEvery at most: the client must not
			// take the CPU the pipeline it measures needs.
			pace := time.NewTicker(pollEvery)
			defer pace.Stop()
			for ; len(pending) > 0 && ctx.Err() == nil; <-pace.C {
				start := time.Now()
				left := pending[:0]
				for _, i := range pending {
					m.SetQuestion(fmt.Sprintf("app%d.region.test.", i), dns.TypeA)
					resp, _, err := c.ExchangeWithConn(m, conn)
					if err == nil {
						queries.Add(1)
					}
					if err == nil && len(resp.Answer) == 1 && resp.Answer[0].(*dns.A).A.String() == want(i) {
						moved[i] = time.Now()
						continue
					}
					left = append(left, i)
				}
				pending = left
				if d := int64(time.Since(start)); d > slowest.Load() {
					slowest.Store(d)
				}
			}
		})
	}
	wg.Wait()
	return moved
}

// streamTimes returns the time JetStream stored each message of stream on subjects matching
// filter after sequence from.
func (r *region) streamTimes(stream, filter string, from uint64) []time.Time {
	var out []time.Time
	r.streamEach(stream, filter, from, func(_ string, t time.Time) { out = append(out, t) })
	return out
}

// streamEach calls f with the subject and storage time of each message of stream on subjects
// matching filter after sequence from, up to the stream's last sequence.
func (r *region) streamEach(stream, filter string, from uint64, f func(subject string, stored time.Time)) {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := r.srv.JS.Stream(ctx, stream)
	if err != nil {
		r.tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.tb.Fatal(err)
	}
	if info.State.LastSeq <= from {
		return
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1})
	if err != nil {
		r.tb.Fatal(err)
	}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			r.tb.Fatal(err)
		}
		got := 0
		var last uint64
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				r.tb.Fatal(err)
			}
			f(m.Subject(), md.Timestamp)
			last = md.Sequence.Stream
			got++
		}
		if got == 0 || last >= info.State.LastSeq {
			return
		}
	}
}

// stateLatency returns, for each endpoint transition STATE stored after sequence from, the time
// from the publishing of the probe result that completed its threshold to its storage.
func (r *region) stateLatency(from uint64) []time.Duration {
	var out []time.Duration
	r.streamEach(events.StreamState, "detour.state.endpoint.>", from, func(subject string, stored time.Time) {
		var i int
		if _, err := fmt.Sscanf(subject, "detour.state.endpoint.app%d.main.e", &i); err == nil && i < r.n {
			out = append(out, stored.Sub(r.sent[i]))
		}
	})
	return out
}

// routeTimes returns, per app, when ROUTES first stored a table after sequence from whose route
// for the app's local pool had Available == !down.
func (r *region) routeTimes(from uint64, down bool) []time.Time {
	r.tb.Helper()
	out := make([]time.Time, r.n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := r.lastSeq(events.StreamRoutes)
	if last <= from {
		return out
	}
	cons, err := r.srv.JS.OrderedConsumer(ctx, events.StreamRoutes, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1})
	if err != nil {
		r.tb.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			r.tb.Fatal(err)
		}
		md, err := m.Metadata()
		if err != nil {
			r.tb.Fatal(err)
		}
		var r1 events.EdgeRoute
		if env, err := events.Decode(m.Data()); err == nil && env.Payload(&r1) == nil {
			for _, a := range r1.Table().Apps {
				var i int
				if _, err := fmt.Sscanf(a.App, "app%d", &i); err == nil && i < r.n && out[i].IsZero() && a.Available != down {
					out[i] = md.Timestamp
				}
			}
		}
		if md.Sequence.Stream >= last {
			return out
		}
	}
}

func (r *region) lastSeq(stream string) uint64 {
	r.tb.Helper()
	s, err := r.srv.JS.Stream(context.Background(), stream)
	if err != nil {
		r.tb.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		r.tb.Fatal(err)
	}
	return info.State.LastSeq
}

// mainAnswer and backupAnswer are app i's answers while its endpoint in the dying region is up, and down.
func mainAnswer(i int) string { return regionAddr(i).String() }
func backupAnswer(int) string { return "10.200.0.1" }

// comeUp brings the region up (rise rounds of good results) and waits, up to within, for STATE
// to record every endpoint and pool up: unknown endpoints are answered too.
func (r *region) comeUp(rise int, within time.Duration) {
	r.tb.Helper()
	r.storm(true, rise, mainAnswer)
	eventstest.Eventually(r.tb, within, func() bool {
		return r.stats.Transitions.Load() >= uint64(r.n) && r.stats.PoolTransitions.Load() >= uint64(r.n)
	}, "the decider did not record %d endpoints and pools up", r.n)
}

// spread describes times as offsets from t0: first, median, p99 and last.
type spread struct{ first, median, p99, last time.Duration }

func spreadOf(t0 time.Time, ts []time.Time) spread {
	d := make([]time.Duration, len(ts))
	for i, t := range ts {
		d[i] = t.Sub(t0)
	}
	return spreadOfDurations(d)
}

func spreadOfDurations(d []time.Duration) spread {
	if len(d) == 0 {
		return spread{}
	}
	slices.Sort(d)
	return spread{d[0], d[len(d)/2], d[min(len(d)-1, len(d)*99/100)], d[len(d)-1]}
}

func (s spread) String() string {
	return fmt.Sprintf("first %s median %s p99 %s last %s", s.first.Round(time.Millisecond), s.median.Round(time.Millisecond),
		s.p99.Round(time.Millisecond), s.last.Round(time.Millisecond))
}

// stormResult is what one storm measured: the kill (one interval before the first round of
// changed results, as when the endpoints die just after a round), the round that completed the
// thresholds, and when each phase happened.
type stormResult struct {
	kill, threshold time.Time
	// state and pools are when STATE stored each endpoint and each pool transition; versions
	// when DNS stored each zone version (after its answers were swapped in).
	answers, state, pools, versions []time.Time
	// routes are when the edge's route table first showed each app's local pool unavailable
	// (after a failure) or available (after a recovery); zero where it never did.
	routes []time.Time
	// stateLatency is, per endpoint transition, the time from the publishing of the result that
	// completed its threshold to STATE storing it.
	stateLatency []time.Duration
	zoneVersions int
	routeTables  int
	transitions  int
	queries      int64
	// slowestPass is the longest the watcher took to ask every pending name once.
	slowestPass       time.Duration
	elapsed           time.Duration
	lastAnswer, bound time.Duration
}

// storm sends rounds rounds of results (ok or failing), one per interval, and waits for every
// answer to become want(i).
func (r *region) storm(ok bool, rounds int, want func(int) string) stormResult {
	r.tb.Helper()
	stateFrom, dnsFrom, routesFrom := r.lastSeq(events.StreamState), r.lastSeq(events.StreamDNS), r.lastSeq(events.StreamRoutes)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds)*r.interval+120*time.Second)
	defer cancel()
	var queries, slowest atomic.Int64
	done := make(chan []time.Time)
	go func() { done <- r.watch(ctx, want, &queries, &slowest) }()
	res := stormResult{kill: time.Now()}
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for range rounds {
		<-tick.C
		res.threshold = time.Now()
		r.probe(ok)
	}
	res.answers = <-done
	res.elapsed = time.Since(res.kill)
	res.queries = queries.Load()
	res.slowestPass = time.Duration(slowest.Load())
	res.state = r.streamTimes(events.StreamState, "detour.state.endpoint.>", stateFrom)
	res.pools = r.streamTimes(events.StreamState, "detour.state.pool.>", stateFrom)
	res.stateLatency = r.stateLatency(stateFrom)
	res.transitions = len(res.state) + len(res.pools)
	res.versions = r.streamTimes(events.StreamDNS, ">", dnsFrom)
	res.zoneVersions = len(res.versions)
	res.routes = r.routeTimes(routesFrom, !ok)
	res.routeTables = len(r.streamTimes(events.StreamRoutes, ">", routesFrom))
	for i, t := range res.answers {
		if t.IsZero() {
			r.tb.Fatalf("app%d's answer never moved; %d transitions in STATE, decider appended %d endpoint and %d pool transitions",
				i, res.transitions, r.stats.Transitions.Load(), r.stats.PoolTransitions.Load())
		}
	}
	return res
}

func (r *region) report(name string, s stormResult) {
	r.tb.Logf("%s of %d endpoints: kill → answers moved %s; threshold round → answers %s", name, r.n, spreadOf(s.kill, s.answers), spreadOf(s.threshold, s.answers))
	r.tb.Logf("%s phases after the threshold round: endpoint transitions stored %s; pool transitions stored %s; zone versions stored %s",
		name, spreadOf(s.threshold, s.state), spreadOf(s.threshold, s.pools), spreadOf(s.threshold, s.versions))
	r.tb.Logf("%s: threshold result published → endpoint transition stored %s", name, spreadOfDurations(s.stateLatency))
	r.tb.Logf("%s: %d transitions, %d zone versions, %d route tables, %d queries answered in %s (slowest pass over the pending names %s)",
		name, s.transitions, s.zoneVersions, s.routeTables, s.queries, s.elapsed.Round(time.Millisecond), s.slowestPass.Round(time.Millisecond))
}

// TestARegionOfAThousandEndpointsFailingAtOnceMovesEveryAnswerWithinTheCheckBound kills 1,000
// endpoints at once: every app's answer moves to its backup within interval × fall + 1 s of the
// kill, the zone changes in far fewer versions than there are transitions, and the same holds
// when the region comes back.
func TestARegionOfAThousandEndpointsFailingAtOnceMovesEveryAnswerWithinTheCheckBound(t *testing.T) {
	if testing.Short() {
		t.Skip("the region storm takes about 15 seconds")
	}
	const n, interval, fall, rise = 1000, time.Second, 3, 2
	r := startRegion(t, n, interval, "")
	r.comeUp(rise, 30*time.Second)

	bound := interval*fall + time.Second
	down := r.storm(false, fall, backupAnswer)
	r.report("failure", down)
	if last := spreadOf(down.kill, down.answers).last; last > bound {
		t.Errorf("the last answer moved %s after the kill, beyond interval × fall + 1s = %s", last, bound)
	}
	if down.zoneVersions*10 > down.transitions {
		t.Errorf("%d transitions made %d zone versions; want far fewer versions than transitions", down.transitions, down.zoneVersions)
	}

	back := r.storm(true, rise, mainAnswer)
	r.report("recovery", back)
	if last := spreadOf(back.kill, back.answers).last; last > interval*rise+time.Second {
		t.Errorf("the last answer came back %s after the region did, beyond interval × rise + 1s = %s", last, interval*rise+time.Second)
	}
}

// BenchmarkRegionFailure kills a region of 10,000 endpoints in process, as the region test does
// with 1,000, with each round's results published at once ("at once") or spread evenly over
// the check interval as probers on their own schedules publish them ("spread": 20 batches of
// 500, 10,000 endpoint transitions and 10,000 pool transitions a second; "spread in small
// messages": 2,000 messages of 5, as probers publishing every 2 ms send them). It reports, after the
// round that completed the thresholds, when the last answer moved and when STATE stored the
// last endpoint and pool transition, and per endpoint transition the time from the publishing
// of its threshold result to its storage (p99 and max). Each iteration is one failure and one
// recovery; run it with -benchtime 1x.
func BenchmarkRegionFailure(b *testing.B) {
	const n, interval, fall, rise = 10000, time.Second, 3, 2
	for _, c := range []struct {
		name     string
		spread   time.Duration
		perBatch int
	}{{"at once", 0, 500}, {"spread", interval, 500}, {"spread in small messages", interval, 5}} {
		b.Run(c.name, func(b *testing.B) {
			r := startRegion(b, n, interval, "")
			r.spread, r.perBatch = c.spread, c.perBatch
			r.comeUp(rise, 120*time.Second)
			var down stormResult
			for b.Loop() {
				down = r.storm(false, fall, backupAnswer)
				r.storm(true, rise, mainAnswer)
			}
			r.report("failure", down)
			latency := spreadOfDurations(down.stateLatency)
			b.ReportMetric(spreadOf(down.threshold, down.answers).last.Seconds(), "s-last-answer")
			b.ReportMetric(spreadOf(down.threshold, down.state).last.Seconds(), "s-last-endpoint-stored")
			b.ReportMetric(spreadOf(down.threshold, down.pools).last.Seconds(), "s-last-pool-stored")
			b.ReportMetric(float64(latency.p99.Milliseconds()), "ms-p99-state-latency")
			b.ReportMetric(float64(latency.last.Milliseconds()), "ms-max-state-latency")
		})
	}
}
