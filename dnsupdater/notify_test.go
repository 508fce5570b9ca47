package dnsupdater

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// slowSecondary is a secondary on loopback that holds each NOTIFY's reply for a while, as a busy
// or distant one does, and records per zone the serials it was told of, when each came, and how
// many NOTIFYs it held at once.
type slowSecondary struct {
	mu           sync.Mutex
	serials      map[string][]uint32
	arrived      map[string][]time.Time
	inFlight     map[string]int
	mostInFlight map[string]int
}

func startSlowSecondary(t *testing.T, hold time.Duration) (string, *slowSecondary) {
	t.Helper()
	sec := &slowSecondary{serials: map[string][]uint32{}, arrived: map[string][]time.Time{}, inFlight: map[string]int{}, mostInFlight: map[string]int{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The server answers each datagram in a goroutine of its own, so the NOTIFYs it holds
	// overlap as their senders do.
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Opcode != dns.OpcodeNotify || len(r.Question) != 1 || len(r.Answer) != 1 {
			return
		}
		name := r.Question[0].Name
		sec.mu.Lock()
		sec.serials[name] = append(sec.serials[name], r.Answer[0].(*dns.SOA).Serial)
		sec.arrived[name] = append(sec.arrived[name], time.Now())
		sec.inFlight[name]++
		sec.mostInFlight[name] = max(sec.mostInFlight[name], sec.inFlight[name])
		sec.mu.Unlock()
		time.Sleep(hold) // the secondary's delay, not a wait for anything
		// No longer in flight before the reply leaves, or the next NOTIFY may arrive first.
		sec.mu.Lock()
		sec.inFlight[name]--
		sec.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), sec
}

// received returns the serials of the NOTIFYs of zone name so far, in the order they came, and
// the most that were held at once.
func (s *slowSecondary) received(name string) ([]uint32, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.serials[name]...), s.mostInFlight[name]
}

// lastArrival returns when the last NOTIFY of zone name came.
func (s *slowSecondary) lastArrival(name string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived[name][len(s.arrived[name])-1]
}

func TestAStormOfSerialsSendsASlowSecondaryOneNotifyAtATimeAndTheLastSerialLast(t *testing.T) {
	const hold = 100 * time.Millisecond
	target, sec := startSlowSecondary(t, hold)
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, withNotify(demoConfig, target)), "")
	addr := h.srv.Addr()

	// Each change waits for its serial, so that every one is a zone version of its own: twice
	// the NOTIFY queue the server once had, made faster than the secondary answers.
	const changes = 128
	last := serial(t, addr)
	first := time.Now() // the first change
	for i := range changes {
		if i%2 == 0 {
			endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
		} else {
			endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
		}
		eventstest.Eventually(t, 2*time.Second, func() bool {
			s := serial(t, addr)
			moved := s != last
			last = s
			return moved
		}, "serial moves after change %d", i+1)
	}

	eventstest.Eventually(t, 5*time.Second, func() bool {
		got, _ := sec.received("demo.test.")
		return len(got) > 0 && got[len(got)-1] == last
	}, "the last NOTIFY carries the final serial %d", last)
	got, most := sec.received("demo.test.")
	if most != 1 {
		t.Errorf("the secondary held %d NOTIFYs of demo.test. at once, want 1", most)
	}
	for i := 1; i < len(got); i++ {
		if serialAfter(got[i-1], got[i]) {
			t.Errorf("NOTIFY %d announced serial %d after %d: an obsolete version", i+1, got[i], got[i-1])
		}
	}
	// With one NOTIFY in flight, each held for hold, they come at least hold apart: from the
	// first change to the last NOTIFY there is room for elapsed/hold + 1, and the start's may
	// have come before the first change.
	elapsed := sec.lastArrival("demo.test.").Sub(first)
	if bound := int(elapsed/hold) + 2; len(got) > bound {
		t.Errorf("%d NOTIFYs for %d serials in %v, want at most one a hold (%v) and the start's: %d: %v", len(got), changes, elapsed, hold, bound, got)
	}
	if len(got) >= changes/2 {
		t.Errorf("%d NOTIFYs for %d serials: want most serials skipped, as a slow secondary is told only the newest", len(got), changes)
	}
	t.Logf("%d NOTIFYs for %d serials in %v", len(got), changes, elapsed)
}

func TestAStartNotifiesEveryZoneWithANewSerialHoweverMany(t *testing.T) {
	target, sec := startSlowSecondary(t, 0)
	const zones = 100 // more than the 64 the server's NOTIFY queue once held
	var doc strings.Builder
	doc.WriteString("zones:\n")
	for i := range zones {
		fmt.Fprintf(&doc, "  - name: z%d.test\n    notify: [%q]\n", i, target)
	}
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, doc.String()), "") // no snapshot: every serial is new

	missing := func() []string {
		var out []string
		for i := range zones {
			if got, _ := sec.received(fmt.Sprintf("z%d.test.", i)); len(got) == 0 {
				out = append(out, fmt.Sprintf("z%d.test.", i))
			}
		}
		return out
	}
	// Polled by hand rather than with Eventually, whose message is made before it polls.
	deadline := time.Now().Add(5 * time.Second)
	for left := missing(); len(left) > 0; left = missing() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d zones not notified within 5s: %v", len(left), zones, left)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range zones {
		name := fmt.Sprintf("z%d.test.", i)
		r := ask(t, h.srv.Addr(), "udp", name, dns.TypeSOA)
		if got, _ := sec.received(name); got[len(got)-1] != r.Answer[0].(*dns.SOA).Serial {
			t.Errorf("%s: NOTIFY serials %v, want the last to be the served %d", name, got, r.Answer[0].(*dns.SOA).Serial)
		}
	}
}

// announced is one exchange a notifier started: the serial and the secondary.
type announced struct {
	serial uint32
	target string
}

func TestANotifierSendsTheNewestVersionOnceTheExchangeInFlightEnds(t *testing.T) {
	sent := make(chan announced)
	release := make(chan struct{})
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) {
		select {
		case sent <- announced{z.Serial, target}:
		case <-ctx.Done():
			return
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
	version := func(serial uint32, notify ...string) *zone.Zone {
		return &zone.Zone{Name: "demo.test.", Serial: serial, Config: &config.Zone{Notify: notify}}
	}
	next := func() announced {
		t.Helper()
		select {
		case a := <-sent:
			return a
		case <-time.After(5 * time.Second):
			t.Fatal("no NOTIFY within 5s")
			return announced{}
		}
	}
	endOne := func() { // ends the exchange in flight
		t.Helper()
		select {
		case release <- struct{}{}:
		case <-time.After(5 * time.Second):
			t.Fatal("no exchange in flight to end within 5s")
		}
	}
	idle := func() {
		t.Helper()
		eventstest.Eventually(t, 5*time.Second, func() bool {
			n.mu.Lock()
			defer n.mu.Unlock()
			return len(n.zones) == 0
		}, "the senders end")
		select {
		case a := <-sent:
			t.Fatalf("want no more NOTIFYs, got %v", a)
		default:
		}
	}

	n.offer(version(1, "a:53")) // before run: waits for it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx); close(done) }()
	if a := next(); a != (announced{1, "a:53"}) {
		t.Fatalf("want serial 1 to a:53 once run starts, got %v", a)
	}
	// While 1 is in flight, 2, 3 and 4 replace each other; none blocks the caller.
	for s := uint32(2); s <= 4; s++ {
		n.offer(version(s, "a:53"))
	}
	endOne()
	if a := next(); a != (announced{4, "a:53"}) {
		t.Fatalf("want serial 4, the newest, after 1, got %v", a)
	}
	endOne()
	idle()

	// A version naming other secondaries goes to them; the one no longer named stops.
	n.offer(version(5, "a:53"))
	if a := next(); a != (announced{5, "a:53"}) {
		t.Fatalf("want serial 5 to a:53, got %v", a)
	}
	n.offer(version(6, "b:53"))
	if a := next(); a != (announced{6, "b:53"}) {
		t.Fatalf("want serial 6 to b:53 while a:53 is busy, got %v", a)
	}
	endOne()
	endOne()
	idle()

	// Stopping ends an exchange in flight (this fake's, which ends with ctx), and run waits for it.
	n.offer(version(7, "a:53"))
	if a := next(); a != (announced{7, "a:53"}) {
		t.Fatalf("want serial 7 to a:53, got %v", a)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of its context's end")
	}
	n.offer(version(8, "a:53")) // after run: no sender starts, nothing is kept
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.zones) != 0 {
		t.Errorf("an offer after run returned left %v", n.zones)
	}
}

func TestANotifierHoldsAtMostMaxNotifyExchangesInFlightAndSendsEveryOne(t *testing.T) {
	var mu sync.Mutex
	var inFlight, most, sent int
	release := make(chan struct{})
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
		}
		mu.Lock()
		inFlight--
		sent++
		mu.Unlock()
	})
	// Two secondaries a zone: twice as many exchanges as may be in flight.
	const zones = maxNotifyExchanges
	for i := range zones {
		n.offer(&zone.Zone{Name: fmt.Sprintf("z%d.test.", i), Serial: 1, Config: &config.Zone{Notify: []string{"a:53", "b:53"}}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.run(ctx)
	count := func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		return inFlight, most, sent
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { f, _, _ := count(); return f >= maxNotifyExchanges }, "%d exchanges in flight", maxNotifyExchanges)
	close(release)
	eventstest.Eventually(t, 5*time.Second, func() bool { _, _, s := count(); return s == 2*zones }, "all %d exchanges sent", 2*zones)
	if _, m, _ := count(); m > maxNotifyExchanges {
		t.Errorf("%d exchanges in flight at once, want at most %d", m, maxNotifyExchanges)
	}
}

func TestANotifierStoppingAbandonsTheExchangesWaitingForTheirTurn(t *testing.T) {
	var started atomic.Int64
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) {
		started.Add(1)
		<-ctx.Done()
	})
	for i := range 2 * maxNotifyExchanges {
		n.offer(&zone.Zone{Name: fmt.Sprintf("z%d.test.", i), Serial: 1, Config: &config.Zone{Notify: []string{"a:53"}}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx); close(done) }()
	eventstest.Eventually(t, 5*time.Second, func() bool { return started.Load() >= maxNotifyExchanges }, "%d exchanges in flight", maxNotifyExchanges)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of its context's end")
	}
	if got := started.Load(); got != maxNotifyExchanges {
		t.Errorf("%d exchanges started, want the %d in flight when the notifier stopped and no more", got, maxNotifyExchanges)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.zones) != 0 {
		t.Errorf("the notifier kept %d zones after it stopped", len(n.zones))
	}
}

func TestStoppingCutsShortANotifyToASecondaryThatNeverAnswers(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	arrived := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	}()
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, withNotify(demoConfig, pc.LocalAddr().String())), "")
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY within 5s")
	}
	// The attempt in flight waits up to 1s for its answer; stopping must not.
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Errorf("the server took %v to stop with a NOTIFY unanswered, want under 800ms (an attempt waits 1s)", d)
	}
}

// startReloadable starts a server on cfg that takes the later configurations sent on the
// channel it returns.
func startReloadable(t *testing.T, js *eventstest.Server, cfg *config.Config) (*Server, chan<- *config.Config) {
	t.Helper()
	configs := make(chan *config.Config, 1)
	srv, err := New(Options{JS: js.JS, Config: cfg, Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2, Configs: configs})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	return srv, configs
}

func TestAReloadNamingAnotherSecondaryNotifiesItOfTheServedSerialAtOnce(t *testing.T) {
	a, gotA := fakeSecondary(t)
	b, gotB := fakeSecondary(t)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, eventstest.Config(t, withNotify(demoConfig, a)))
	first := serial(t, srv.Addr())
	awaitNotify(t, gotA, first)

	configs <- eventstest.Config(t, withNotify(demoConfig, a, b)) // the same content
	awaitNotify(t, gotB, first)
	if s := serial(t, srv.Addr()); s != first {
		t.Errorf("serial %d after a reload that changed only notify, want %d as before", s, first)
	}
}

func TestAZoneAReloadAddsNotifiesItsSecondariesOfItsFirstSerial(t *testing.T) {
	target, got := fakeSecondary(t)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, eventstest.Config(t, demoConfig))
	serial(t, srv.Addr())

	configs <- eventstest.Config(t, strings.Replace(demoConfig, "zones:\n", "zones:\n  - name: other.test\n    notify: [\""+target+"\"]\n", 1))
	var served uint32
	eventstest.Eventually(t, 5*time.Second, func() bool {
		r := ask(t, srv.Addr(), "udp", "other.test.", dns.TypeSOA)
		if len(r.Answer) != 1 {
			return false
		}
		served = r.Answer[0].(*dns.SOA).Serial
		return true
	}, "other.test. served after the reload")
	select {
	case m := <-got:
		if m.Question[0].Name != "other.test." || len(m.Answer) != 1 || m.Answer[0].(*dns.SOA).Serial != served {
			t.Errorf("want a NOTIFY of other.test. at serial %d, got %v", served, m)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no NOTIFY of other.test. within 5s of its serial %d being served", served)
	}
	srv.projMu.Lock()
	left := len(srv.proj.started)
	srv.projMu.Unlock()
	if left != 0 {
		t.Errorf("the projector still lists %d zones to announce after the reload, want none", left)
	}
}
