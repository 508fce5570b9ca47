package dnsupdater

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/atomicfile"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"

	"github.com/miekg/dns"
)

// benchQuery is an ordinary query with EDNS, as resolvers send them.
func benchQuery(b *testing.B) []byte {
	m := withEDNS(newQuery("shop.demo.test.", dns.TypeA), 1232)
	p, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// loopReply has w answer the query p from tab until the benchmark ends.
func loopReply(b *testing.B, w *worker, tab *table, p []byte) {
	remote := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if w.respond(tab, p, remote, false) == nil {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkPreparedReply answers from the replies prepared at state change.
func BenchmarkPreparedReply(b *testing.B) {
	tab, p := testTable(b), benchQuery(b)
	loopReply(b, newWorker(1), tab, p)
}

// BenchmarkPreparedReplyThatLeavesOutAddresses answers an MX query without EDNS whose targets'
// addresses do not all fit in 512 bytes: the prepared reply loses the ones that do not fit.
func BenchmarkPreparedReplyThatLeavesOutAddresses(b *testing.B) {
	tab := testTable(b)
	p, err := newQuery("relays.demo.test.", dns.TypeMX).Pack()
	if err != nil {
		b.Fatal(err)
	}
	w := newWorker(1)
	remote := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if r := w.respond(tab, p, remote, false); len(r) < 300 || r[2]&0x02 != 0 {
			b.Fatal("no whole answer")
		}
	}
}

// BenchmarkPreparedReplyWithMetrics is BenchmarkPreparedReply with the query counter and the
// answer-time histogram on: it must stay at zero allocations.
func BenchmarkPreparedReplyWithMetrics(b *testing.B) {
	tab, p := testTable(b), benchQuery(b)
	w := newWorker(1)
	w.metrics = newQueryMetrics(metrics.New())
	loopReply(b, w, tab, p)
}

// BenchmarkReferenceReply answers as a plain miekg/dns handler would: decode, build, pack.
func BenchmarkReferenceReply(b *testing.B) {
	tab, p := testTable(b), benchQuery(b)
	w := newWorker(1)
	remote := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if w.reference(tab, p, remote, false) == nil {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkReferralReply answers a name below a delegation of 12 name servers in the zone, each
// with an A and an AAAA record: a referral, which the reference path always answers.
func BenchmarkReferralReply(b *testing.B) {
	var conf strings.Builder
	conf.WriteString("zones:\n  - name: demo.test\n    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]\n    records:\n")
	for i := range 12 {
		fmt.Fprintf(&conf, "      - \"wide IN NS relay%02d\"\n      - \"relay%02d IN A 192.0.2.%d\"\n      - \"relay%02d IN AAAA 2001:db8::%d\"\n", i, i, 100+i, i, 100+i)
	}
	tab := answersTable(b, conf.String())
	p, err := withEDNS(newQuery("host.wide.demo.test.", dns.TypeA), 4096).Pack()
	if err != nil {
		b.Fatal(err)
	}
	loopReply(b, newWorker(1), tab, p)
}

// BenchmarkStateChangeToAnswer measures the time from a STATE transition being stored to the
// server answering differently: each iteration takes the first pool's endpoint down or up and
// queries until the answer follows. It reports the 50th and 99th percentiles. With a data dir
// the serials file must cover each serial before it is served (serials.go).
func BenchmarkStateChangeToAnswer(b *testing.B) {
	b.Run("no data dir", func(b *testing.B) { stateChangeToAnswer(b, "") })
	b.Run("data dir", func(b *testing.B) { stateChangeToAnswer(b, b.TempDir()) })
}

func stateChangeToAnswer(b *testing.B, dataDir string) {
	js := eventstest.Start(b)
	h := startServer(b, js, eventstest.Config(b, demoConfig), dataDir)
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	q := newQuery("shop.demo.test.", dns.TypeA)
	answer := func() string {
		r, _, err := c.Exchange(q, h.srv.Addr())
		if err != nil || len(r.Answer) == 0 {
			return ""
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	var took []time.Duration
	down := true
	for b.Loop() {
		want := "127.0.0.12"
		start := time.Now()
		if down {
			endpointDown(b, js, "shop", "us-west", "127-0-0-11_8081")
		} else {
			endpointUp(b, js, "shop", "us-west", "127-0-0-11_8081")
			want = "127.0.0.11"
		}
		down = !down
		deadline := start.Add(5 * time.Second)
		for answer() != want {
			if time.Now().After(deadline) {
				b.Fatalf("answer did not become %s within 5s", want)
			}
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRecomputeAndPrepare is the work one STATE change costs the server before the new
// answers are served: project the zones and prepare every reply.
func BenchmarkRecomputeAndPrepare(b *testing.B) {
	cfg := eventstest.Config(b, fmt.Sprintf(conformanceConfig, bigRecords()))
	static, err := zone.Compile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	p := newProjector(static, time.Now)
	p.project()
	b.ReportAllocs()
	tab := buildTable(p.project(), nil)
	serial := uint32(1)
	for b.Loop() {
		// A new serial each time, as a real change brings.
		serial++
		p.serials["demo.test."] = serial
		zones, _ := p.recompute()
		tab = buildTable(zones, tab)
	}
}

// BenchmarkZoneVersionOf10000Apps is the work one zone version costs when n of a zone's 10,000
// apps changed their answer, as in a region failure (tens per version mid-storm, a few at its
// end): the projection and the prepared replies built from the previous version, against
// preparing every reply afresh (the peer, at n = 100). served-ns/op is the part before the
// version is served (the events' folding and the changes' description are not).
func BenchmarkZoneVersionOf10000Apps(b *testing.B) {
	static := regionOf10000Apps(b)
	for _, c := range []struct {
		n     int
		whole bool
	}{{1, false}, {10, false}, {100, false}, {100, true}} {
		name := fmt.Sprintf("%d apps from the previous version", c.n)
		if c.whole {
			name = fmt.Sprintf("%d apps, every reply afresh", c.n)
		}
		b.Run(name, func(b *testing.B) {
			p := newProjector(static, time.Now)
			tab := buildTable(p.project(), nil)
			seq := uint64(0)
			var served time.Duration
			b.ReportAllocs()
			for b.Loop() {
				for range c.n {
					seq++
					to := []string{events.TypeEndpointDown, events.TypeEndpointUp}[seq/10000%2]
					env, err := events.New(to, "bench", time.Now(), events.Transition{})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := p.apply(events.EndpointStateSubject(fmt.Sprintf("app%d", seq%10000), "main", "e"), seq, env, nil); err != nil {
						b.Fatal(err)
					}
				}
				// As the refresher does: the answers are served before the changes are described.
				start := time.Now()
				zones, changes := p.finish(p.decide())
				if c.whole {
					tab = buildTable(zones, nil)
				} else {
					tab = buildTable(zones, tab)
				}
				served += time.Since(start)
				p.describe(changes)
			}
			b.ReportMetric(float64(served.Nanoseconds())/float64(b.N), "served-ns/op")
		})
	}
}

// BenchmarkReStampOf10000Apps is what a re-stamp costs the refresher (see peers.go): the zone of
// 10,000 apps at a new serial with the same answers.
func BenchmarkReStampOf10000Apps(b *testing.B) {
	static := regionOf10000Apps(b)
	p := newProjector(static, time.Now)
	tab := buildTable(p.project(), nil)
	name := p.current[0].Name
	b.ReportAllocs()
	for b.Loop() {
		p.pass(map[string]uint32{name: p.serials[name]}, true)
		zones, changes := p.finish(p.decide())
		tab = buildTable(zones, tab)
		p.describe(changes)
	}
}

// BenchmarkSnapshotSaveOf10000Apps is what one save of the last-known-good snapshot costs
// when 500 of 10,000 apps' endpoints and pools moved since the save before, as in a region's
// failure: a line of the journal (the events that changed) against writing the whole state
// with its digests (the peer: every save before the journal).
func BenchmarkSnapshotSaveOf10000Apps(b *testing.B) {
	static := regionOf10000Apps(b)
	seq := uint64(0)
	apply := func(p *projector, app int, down bool) {
		for _, s := range []string{events.EndpointStateSubject(fmt.Sprintf("app%d", app), "main", "e"), events.PoolStateSubject(fmt.Sprintf("app%d", app), "main"),
			events.EndpointStateSubject(fmt.Sprintf("app%d", app), "backup", "e"), events.PoolStateSubject(fmt.Sprintf("app%d", app), "backup")} {
			seq++
			typ := map[bool]string{false: events.TypeEndpointUp, true: events.TypeEndpointDown}[down]
			if strings.HasPrefix(s, "detour.state.pool") {
				typ = map[bool]string{false: events.TypePoolUp, true: events.TypePoolDown}[down]
			}
			env, err := events.New(typ, "bench", time.Now(), events.Transition{App: fmt.Sprintf("app%d", app), Pool: "main", Endpoint: "e", Reason: "3 of 3 checks failed"})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := p.apply(s, seq, env, env.Encode()); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, whole := range []bool{false, true} {
		b.Run(map[bool]string{false: "journal line", true: "whole state"}[whole], func(b *testing.B) {
			p := newProjector(static, time.Now)
			for i := range 10000 {
				apply(p, i, false)
			}
			p.project()
			dir := b.TempDir()
			w := &snapshotWriter{dir: dir}
			defer w.close()
			if err := w.write(p.save(true)); err != nil {
				b.Fatal(err)
			}
			moved := 0
			for b.Loop() {
				b.StopTimer() // the changes themselves are not the save's cost
				for range 500 {
					apply(p, moved%10000, moved/10000%2 == 0)
					moved++
				}
				p.recompute()
				b.StartTimer()
				if whole {
					if _, err := saveSnapshot(dir, p.snapshot()); err != nil {
						b.Fatal(err)
					}
				} else if err := w.write(p.save(false)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSnapshotTakeOf10000Apps is the part of a save the follower waits for (the refresher
// holds projMu while it takes what changed): 500 of 10,000 apps' endpoints and pools moved
// since the save before, 2,000 STATE events, as in a second of a region's failure.
func BenchmarkSnapshotTakeOf10000Apps(b *testing.B) {
	static := regionOf10000Apps(b)
	p := newProjector(static, time.Now)
	envs := map[bool]events.Envelope{}
	for _, down := range []bool{false, true} {
		env, err := events.New(map[bool]string{false: events.TypeEndpointUp, true: events.TypeEndpointDown}[down], "bench", time.Now(),
			events.Transition{App: "app", Pool: "main", Endpoint: "e", Reason: "3 of 3 checks failed"})
		if err != nil {
			b.Fatal(err)
		}
		envs[down] = env
	}
	seq := uint64(0)
	apply := func(app int, down bool) {
		for _, s := range []string{events.EndpointStateSubject(fmt.Sprintf("app%d", app), "main", "e"), events.EndpointStateSubject(fmt.Sprintf("app%d", app), "backup", "e"),
			events.EndpointStateSubject(fmt.Sprintf("app%d", app), "main", "f"), events.EndpointStateSubject(fmt.Sprintf("app%d", app), "backup", "f")} {
			seq++
			if _, err := p.apply(s, seq, envs[down], nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range 10000 {
		apply(i, false)
	}
	p.save(true)
	moved := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for range 500 {
			apply(moved%10000, moved/10000%2 == 0)
			moved++
		}
		b.StartTimer()
		if s := p.save(false); len(s.events) != 2000 {
			b.Fatalf("save took %d events, want 2000", len(s.events))
		}
	}
}

// BenchmarkSnapshotEventsOf500Apps is the CPU a journal line's events cost the snapshot writer
// when 500 apps' endpoints and pools moved (2,000 STATE events): written as the stream stored
// them, against each encoded again with json.Marshal (the peer: every save before).
func BenchmarkSnapshotEventsOf500Apps(b *testing.B) {
	saved := make(map[string]storedEvent, 2000)
	for app := range 500 {
		for _, s := range []string{events.EndpointStateSubject(fmt.Sprintf("app%d", app), "main", "e"), events.PoolStateSubject(fmt.Sprintf("app%d", app), "main"),
			events.EndpointStateSubject(fmt.Sprintf("app%d", app), "backup", "e"), events.PoolStateSubject(fmt.Sprintf("app%d", app), "backup")} {
			env, err := events.New(events.TypeEndpointDown, "decider/d1", time.Now(), events.Transition{App: fmt.Sprintf("app%d", app), Pool: "main", Endpoint: "e",
				From: events.StatusUp, To: events.StatusDown, Reason: "3 of 3 checks failed"})
			if err != nil {
				b.Fatal(err)
			}
			saved[s] = storedEvent{Subject: s, Seq: uint64(len(saved) + 1), Event: env, raw: env.Encode()}
		}
	}
	for _, again := range []bool{false, true} {
		b.Run(map[bool]string{false: "as received", true: "encoded again"}[again], func(b *testing.B) {
			if again {
				for s, e := range saved {
					e.raw = nil
					saved[s] = e
				}
			}
			w := &snapshotWriter{events: map[string]encodedEvent{}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.encode(saved); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// regionOf10000Apps compiles a zone of 10,000 failover apps, each a main endpoint of its own and
// a shared backup, as a region of 10,000 endpoints.
func regionOf10000Apps(b *testing.B) *zone.Static {
	var doc strings.Builder
	doc.WriteString("zones: [{name: region.test}]\napps:\n")
	for i := range 10000 {
		fmt.Fprintf(&doc, "  - {name: app%d, fqdn: app%d.region.test, pools: [{name: main, endpoints: [{name: e, address: \"10.1.%d.%d:80\"}]}, {name: backup, endpoints: [{name: e, address: \"10.200.0.1:80\"}]}]}\n",
			i, i, i>>8, i&255)
	}
	static, err := zone.Compile(eventstest.Config(b, doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	return static
}

// BenchmarkPreparedReplyOf10000Apps answers A queries for the 10,000 apps of a region in a
// shuffled order, as dnsperf sends them: unlike BenchmarkPreparedReply, whose one name stays in
// the cache, each query looks up a name the query before did not touch.
func BenchmarkPreparedReplyOf10000Apps(b *testing.B) {
	p := newProjector(regionOf10000Apps(b), time.Now)
	tab := buildTable(p.project(), nil)
	queries := make([][]byte, 10000)
	for i, app := range rand.New(rand.NewPCG(1, 2)).Perm(len(queries)) {
		q, err := withEDNS(newQuery(fmt.Sprintf("app%d.region.test.", app), dns.TypeA), 1232).Pack()
		if err != nil {
			b.Fatal(err)
		}
		queries[i] = q
	}
	w := newWorker(1)
	remote := netip.MustParseAddr("10.1.2.3")
	i := 0
	for b.Loop() {
		if w.prepared(tab, queries[i], remote, false) == nil {
			b.Fatal("no prepared reply")
		}
		i = (i + 1) % len(queries)
	}
}

// BenchmarkSnapshotBaseOf10000Apps is the base the snapshot writer writes again when the
// journal outgrows it, at 10,000 apps (40,000 STATE subjects, 23 MB): streamed to its file a
// chunk at a time against built whole first (the peer: every base before). It reports the
// process's CPU per base (user and system, the kernel's copy and the sync's share included),
// since the wall time is mostly the disk's.
func BenchmarkSnapshotBaseOf10000Apps(b *testing.B) {
	w := &snapshotWriter{events: make(map[string]encodedEvent, 40000)}
	for app := range 10000 {
		for _, s := range []string{events.EndpointStateSubject(fmt.Sprintf("app%d", app), "main", "e"), events.PoolStateSubject(fmt.Sprintf("app%d", app), "main"),
			events.EndpointStateSubject(fmt.Sprintf("app%d", app), "backup", "e"), events.PoolStateSubject(fmt.Sprintf("app%d", app), "backup")} {
			env, err := events.New(events.TypeEndpointDown, "decider/decider-1", time.Now(), events.Transition{App: fmt.Sprintf("app%d", app), Pool: "main", Endpoint: "e",
				Address: "10.1.4.210:80", From: events.StatusUp, To: events.StatusDown, Reason: "3 of 3 checks failed",
				Results: []string{"0198c4c2-7f3a-7c1e-9a4b-3c2d1e0f9a8b/17"}, Thresholds: events.Thresholds{Fall: 3, Rise: 2, IntervalMS: 10000}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.encode(map[string]storedEvent{s: {Subject: s, Seq: uint64(len(w.events) + 1), Event: env, raw: env.Encode()}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	head := []byte(`{"version":1,"generation":7,"serials":{"region.test.":3},"last_seq":40000}`)
	dir := b.TempDir()
	for _, whole := range []bool{false, true} {
		b.Run(map[bool]string{false: "streamed", true: "built whole"}[whole], func(b *testing.B) {
			b.ReportAllocs()
			start := eventstest.ProcessCPU(b)
			for b.Loop() {
				all := slices.AppendSeq(make([]encodedEvent, 0, len(w.events)), maps.Values(w.events))
				slices.SortFunc(all, func(a, b encodedEvent) int { return cmp.Compare(a.seq, b.seq) })
				write := func(f io.Writer) error {
					_, err := streamWithEvents(f, head, all, '\n')
					return err
				}
				if whole {
					write = atomicfile.Bytes(withEvents(head, all, '\n'))
				}
				if err := atomicfile.Write(dir, snapshotFile, write); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((eventstest.ProcessCPU(b)-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}
