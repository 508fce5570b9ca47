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
	evlogs "github.com/detourdev/detour/events/logs"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// slowSecondary is a secondary on loopback that holds each NOTIFY's reply for a while, as a busy
// or distant one does, and records per zone the serials it was told of, when each came, and how
// many NOTIFYs it held at once. A gated one holds every reply until answer is called.
type slowSecondary struct {
	mu           sync.Mutex
	serials      map[string][]uint32
	arrived      map[string][]time.Time
	inFlight     map[string]int
	mostInFlight map[string]int
	gate         chan struct{} // nil: not gated
	open         sync.Once
}

func startSlowSecondary(t *testing.T, hold time.Duration) (string, *slowSecondary) {
	t.Helper()
	return serveSlowSecondary(t, hold, nil)
}

// startGatedSecondary starts a secondary that answers no NOTIFY until its answer is called.
func startGatedSecondary(t *testing.T) (string, *slowSecondary) {
	t.Helper()
	return serveSlowSecondary(t, 0, make(chan struct{}))
}

func serveSlowSecondary(t *testing.T, hold time.Duration, gate chan struct{}) (string, *slowSecondary) {
	t.Helper()
	sec := &slowSecondary{serials: map[string][]uint32{}, arrived: map[string][]time.Time{}, inFlight: map[string]int{}, mostInFlight: map[string]int{}, gate: gate}
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
		if sec.gate != nil {
			<-sec.gate
		}
		// No longer in flight before the reply leaves, or the next NOTIFY may arrive first.
		sec.mu.Lock()
		sec.inFlight[name]--
		sec.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { sec.answer(); _ = srv.Shutdown() })
	return pc.LocalAddr().String(), sec
}

// answer lets a gated secondary answer the NOTIFYs it holds and every later one.
func (s *slowSecondary) answer() {
	if s.gate != nil {
		s.open.Do(func() { close(s.gate) })
	}
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
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) bool {
		select {
		case sent <- announced{z.Serial, target}:
		case <-ctx.Done():
			return true
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return true
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
	if len(n.zones) != 0 || len(n.secondaries) != 0 {
		t.Errorf("an offer after run returned left %v and %v", n.zones, n.secondaries)
	}
}

func TestANotifierHoldsAtMostItsBoundsInFlightAndSendsEveryOne(t *testing.T) {
	var mu sync.Mutex
	var inFlight, most, sent int
	perTarget, mostPerTarget := map[string]int{}, map[string]int{}
	release := make(chan struct{})
	answered := map[string]bool{}
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) bool {
		mu.Lock()
		if !answered[target] {
			// Each secondary answers its first exchange at once: until one answers, it has
			// a single exchange in flight.
			answered[target] = true
			sent++
			mu.Unlock()
			return true
		}
		inFlight++
		most = max(most, inFlight)
		perTarget[target]++
		mostPerTarget[target] = max(mostPerTarget[target], perTarget[target])
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
		}
		mu.Lock()
		inFlight--
		perTarget[target]--
		sent++
		mu.Unlock()
		return true
	})
	// More secondaries than the sockets leave room for at their own bound, and more zones
	// each than that bound: both bounds are reached.
	const targets, zones = maxNotifySockets/maxNotifyPerSecondary + 2, maxNotifyPerSecondary + 8
	var notify []string
	for i := range targets {
		notify = append(notify, fmt.Sprintf("10.0.0.%d:53", i+1))
	}
	for i := range zones {
		n.offer(&zone.Zone{Name: fmt.Sprintf("z%d.test.", i), Serial: 1, Config: &config.Zone{Notify: notify}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.run(ctx)
	count := func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		return inFlight, most, sent
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { f, _, _ := count(); return f >= maxNotifySockets }, "%d exchanges in flight", maxNotifySockets)
	close(release)
	eventstest.Eventually(t, 5*time.Second, func() bool { _, _, s := count(); return s == targets*zones }, "all %d exchanges sent", targets*zones)
	if _, m, _ := count(); m > maxNotifySockets {
		t.Errorf("%d exchanges in flight at once, want at most %d", m, maxNotifySockets)
	}
	mu.Lock()
	defer mu.Unlock()
	for target, m := range mostPerTarget {
		if m > maxNotifyPerSecondary {
			t.Errorf("%d exchanges in flight to %s at once, want at most %d", m, target, maxNotifyPerSecondary)
		}
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.zones) == 0 && len(n.secondaries) == 0
	}, "the notifier keeps nothing once every exchange is sent")
}

func TestANotifierSendsToALiveSecondaryAtItsOwnPaceWhileAnotherNeverAnswers(t *testing.T) {
	var mu sync.Mutex
	live := map[string]uint32{} // zone → the last serial the live secondary was sent
	var deadInFlight, deadMost int
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) bool {
		if target == "live:53" {
			mu.Lock()
			live[z.Name] = z.Serial
			mu.Unlock()
			return true
		}
		// The dead secondary holds each exchange until the notifier stops.
		mu.Lock()
		deadInFlight++
		deadMost = max(deadMost, deadInFlight)
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		deadInFlight--
		mu.Unlock()
		return true
	})
	// Several times more zones than the sockets: on their own, the dead secondary's exchanges
	// would take every one.
	const zones = 200
	offer := func(serial uint32) {
		for i := range zones {
			n.offer(&zone.Zone{Name: fmt.Sprintf("z%d.test.", i), Serial: serial, Config: &config.Zone{Notify: []string{"dead:53", "live:53"}}})
		}
	}
	// awaitLive polls until the live secondary was sent serial of every zone, for 2s.
	awaitLive := func(serial uint32) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			mu.Lock()
			told, dead := 0, deadInFlight
			for _, s := range live {
				if s == serial {
					told++
				}
			}
			mu.Unlock()
			if told == zones {
				return time.Since(start)
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("the live secondary was sent serial %d of %d of %d zones within 2s, with %d exchanges to the dead one in flight", serial, told, zones, dead)
			}
			time.Sleep(time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	offer(1)
	go func() { n.run(ctx); close(done) }()
	first := awaitLive(1)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return deadInFlight == 1
	}, "the dead secondary holds its one exchange")
	// With the dead secondary's exchange held, every zone changes again.
	offer(2)
	second := awaitLive(2)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of its context's end")
	}
	if deadMost > 1 {
		t.Errorf("%d exchanges to the dead secondary, which never answered, in flight at once, want 1", deadMost)
	}
	t.Logf("the live secondary was sent %d zones in %v, and again in %v with the dead one holding its exchange", zones, first, second)
}

func TestANotifierSendsAZoneItForgetsNothingAfterTheExchangeInFlight(t *testing.T) {
	sent := make(chan announced, 8)
	release := make(chan struct{})
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) bool {
		sent <- announced{z.Serial, target}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return true
	})
	version := func(serial uint32) *zone.Zone {
		return &zone.Zone{Name: "demo.test.", Serial: serial, Config: &config.Zone{Notify: []string{"a:53"}}}
	}
	n.offer(version(1))
	n.forget("demo.test.") // before run: nothing is kept
	n.mu.Lock()
	left := len(n.zones)
	n.mu.Unlock()
	if left != 0 {
		t.Fatalf("forgetting a zone offered before run left %d zones", left)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.run(ctx)
	n.offer(version(2))
	select {
	case a := <-sent:
		if a != (announced{2, "a:53"}) {
			t.Fatalf("want serial 2 to a:53, got %v", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY within 5s")
	}
	n.offer(version(3)) // queued behind 2
	n.forget("demo.test.")
	close(release)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.zones) == 0 && len(n.secondaries) == 0
	}, "the sender ends")
	select {
	case a := <-sent:
		t.Fatalf("a zone forgotten was sent %v after its exchange in flight", a)
	default:
	}
}

func TestANotifierStoppingAbandonsTheExchangesWaitingForTheirTurn(t *testing.T) {
	var started atomic.Int64
	n := newNotifier(func(ctx context.Context, z *zone.Zone, target string) bool {
		started.Add(1)
		<-ctx.Done()
		return true
	})
	for i := range 2 * maxNotifyPerSecondary {
		n.offer(&zone.Zone{Name: fmt.Sprintf("z%d.test.", i), Serial: 1, Config: &config.Zone{Notify: []string{"a:53"}}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx); close(done) }()
	// The secondary has not answered: it has one exchange in flight, the others wait.
	eventstest.Eventually(t, 5*time.Second, func() bool { return started.Load() >= 1 }, "an exchange in flight")
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of its context's end")
	}
	if got := started.Load(); got != 1 {
		t.Errorf("%d exchanges started, want the one in flight when the notifier stopped and no more", got)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.zones) != 0 || len(n.secondaries) != 0 {
		t.Errorf("the notifier kept %d zones and %d secondaries after it stopped", len(n.zones), len(n.secondaries))
	}
}

// silentSecondary is a secondary on loopback that answers nothing, as one that is down behind a
// firewall does, and records the zone of each NOTIFY it gets, in the order they came.
type silentSecondary struct {
	mu    sync.Mutex
	zones []string
}

func startSilentSecondary(t *testing.T) (string, *silentSecondary) {
	t.Helper()
	sec := &silentSecondary{}
	addr := serveDatagrams(t, func(_ net.PacketConn, _ net.Addr, m *dns.Msg) {
		if len(m.Question) != 1 {
			return
		}
		sec.mu.Lock()
		sec.zones = append(sec.zones, m.Question[0].Name)
		sec.mu.Unlock()
	})
	return addr, sec
}

// serveDatagrams listens on a loopback UDP port until the test ends and hands handle every
// datagram that is a DNS message, with the socket and its sender, so that a fake secondary can
// answer as no server library would (not at all, or with junk first). It returns the address.
func serveDatagrams(t *testing.T, handle func(pc net.PacketConn, from net.Addr, m *dns.Msg)) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) == nil {
				handle(pc, from, m)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// firstExchanges returns how many zones the secondary got a NOTIFY of before its first repeated
// one: a NOTIFY is repeated a timeout after its first attempt, and an exchange gives back its
// slot only after its last, so these are the exchanges it held at once when it went silent.
func (s *silentSecondary) firstExchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, z := range s.zones {
		if seen[z] {
			break
		}
		seen[z] = true
	}
	return len(seen)
}

func TestStoppingCutsShortANotifyToASecondaryThatNeverAnswers(t *testing.T) {
	target, silent := startSilentSecondary(t)
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, withNotify(demoConfig, target)), "")
	eventstest.Eventually(t, 5*time.Second, func() bool { return silent.firstExchanges() > 0 }, "a NOTIFY arrives")
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
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2, Configs: configs, CredentialDirs: tempCredentialDirs(t)})
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

// notifierIdle reports whether srv's notifier has nothing to send and no exchange in flight.
func notifierIdle(srv *Server) bool {
	srv.notifier.mu.Lock()
	defer srv.notifier.mu.Unlock()
	return len(srv.notifier.zones) == 0
}

func TestAZoneAReloadRemovesIsSentNothingAfterItsExchangeInFlight(t *testing.T) {
	target, sec := startGatedSecondary(t)
	other, gotOther := fakeSecondary(t)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, eventstest.Config(t, withNotify(demoConfig, target)))
	first := serial(t, srv.Addr())
	eventstest.Eventually(t, 5*time.Second, func() bool { got, _ := sec.received("demo.test."); return len(got) > 0 }, "the secondary holds the NOTIFY of serial %d", first)

	// A later serial waits for the exchange in flight.
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	var second uint32
	eventstest.Eventually(t, 2*time.Second, func() bool { second = serial(t, srv.Addr()); return second != first }, "serial moves after the change")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		srv.notifier.mu.Lock()
		defer srv.notifier.mu.Unlock()
		e := srv.notifier.zones["demo.test."]
		return e != nil && e.newest != nil && e.newest.Serial == second
	}, "serial %d waits for the exchange in flight", second)

	// The reload removes the zone; a second one adds another zone, whose NOTIFY comes after
	// the first reload's reports: by then the notifier has been told of the removal.
	configs <- eventstest.Config(t, "zones:\n  - name: keep.test\n")
	configs <- eventstest.Config(t, "zones:\n  - name: keep.test\n  - name: other.test\n    notify: [\""+other+"\"]\n")
	select {
	case <-gotOther:
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY of other.test. within 5s of the reload that adds it")
	}
	sec.answer()
	eventstest.Eventually(t, 5*time.Second, func() bool { return notifierIdle(srv) }, "the notifier ends its senders")
	got, _ := sec.received("demo.test.")
	for _, s := range got {
		if s != first { // the exchange in flight may have sent its serial again
			t.Errorf("the secondary was sent serial %d of demo.test. after a reload removed the zone (got %v)", s, got)
		}
	}
}

func TestAReloadThatOnlyRespellsOrReordersTheSecondariesNotifiesNoneAgain(t *testing.T) {
	respell := func(target string) string { return "[::ffff:" + strings.Replace(target, ":", "]:", 1) }
	tests := []struct {
		name string
		// after is the reload's notify list, given the secondaries a and b listed before.
		after func(a, b string) []string
	}{
		{name: "the first in its IPv6-mapped form", after: func(a, b string) []string { return []string{respell(a), b} }},
		{name: "in the other order", after: func(a, b string) []string { return []string{b, a} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, gotA := fakeSecondary(t)
			b, gotB := fakeSecondary(t)
			other, gotOther := fakeSecondary(t)
			js := eventstest.Start(t)
			srv, configs := startReloadable(t, js, eventstest.Config(t, withNotify(demoConfig, a, b)))
			first := serial(t, srv.Addr())
			awaitNotify(t, gotA, first)
			awaitNotify(t, gotB, first)
			eventstest.Eventually(t, 5*time.Second, func() bool { return notifierIdle(srv) }, "the notifier ends its senders")

			// The reload under test; then one that adds a zone, whose NOTIFY comes after the
			// first reload's.
			after := withNotify(demoConfig, tt.after(a, b)...)
			configs <- eventstest.Config(t, after)
			configs <- eventstest.Config(t, strings.Replace(after, "zones:\n", "zones:\n  - name: other.test\n    notify: [\""+other+"\"]\n", 1))
			select {
			case <-gotOther:
			case <-time.After(5 * time.Second):
				t.Fatal("no NOTIFY of other.test. within 5s of the reload that adds it")
			}
			eventstest.Eventually(t, 5*time.Second, func() bool { return notifierIdle(srv) }, "the notifier ends its senders")
			for name, got := range map[string]<-chan *dns.Msg{a: gotA, b: gotB} {
				select {
				case m := <-got:
					t.Errorf("a reload that listed %s as %q sent %s %v", []string{a, b}, tt.after(a, b), name, m)
				default:
				}
			}
		})
	}
}

// notifyAtStart starts a server without a snapshot, so that every serial is new, serving zones
// zones z0.test… that each name every one of targets as a secondary, and returns how long it
// took sec, one of them, to be notified of every zone: within limit, or the test fails.
func notifyAtStart(t *testing.T, zones int, targets []string, sec *slowSecondary, limit time.Duration) time.Duration {
	t.Helper()
	notify := `"` + strings.Join(targets, `", "`) + `"`
	var doc strings.Builder
	doc.WriteString("zones:\n")
	for i := range zones {
		fmt.Fprintf(&doc, "  - name: z%d.test\n    notify: [%s]\n", i, notify)
	}
	cfg := eventstest.Config(t, doc.String())
	js := eventstest.Start(t)
	start := time.Now()
	startServer(t, js, cfg, "")
	told := func() int {
		n := 0
		for i := range zones {
			if got, _ := sec.received(fmt.Sprintf("z%d.test.", i)); len(got) > 0 {
				n++
			}
		}
		return n
	}
	// Polled by hand rather than with Eventually, whose message is made before it polls.
	for n := told(); n < zones; n = told() {
		if time.Since(start) > limit {
			t.Fatalf("the live secondary was notified of %d of %d zones within %v of the start, beside %d other secondaries", n, zones, limit, len(targets)-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestASecondaryThatNeverAnswersDoesNotSlowTheNotifiesToOneThatDoes(t *testing.T) {
	dead, silent := startSilentSecondary(t)
	live, sec := startSlowSecondary(t, 0)
	const zones = 200 // several times the exchanges a secondary may hold
	elapsed := notifyAtStart(t, zones, []string{dead, live}, sec, 3*time.Second)
	held := silent.firstExchanges()
	if held > 1 {
		t.Errorf("the dead secondary held %d exchanges at once, want 1", held)
	}
	t.Logf("the live secondary was notified of %d zones %v after the start, while the dead one held %d exchanges", zones, elapsed, held)
}

func TestTenSecondariesThatNeverAnswerDoNotDelayTheNotifiesToOneThatDoes(t *testing.T) {
	const deadOnes, zones = 10, 200 // ten took 320 sockets of 256 with 32 each
	var dead []string
	var silent []*silentSecondary
	for range deadOnes {
		addr, sec := startSilentSecondary(t)
		dead, silent = append(dead, addr), append(silent, sec)
	}
	live, sec := startSlowSecondary(t, 0)
	// Within the first attempt's wait of the dead ones' exchanges: nothing of the live one's
	// waited for a socket they held.
	elapsed := notifyAtStart(t, zones, append(dead, live), sec, notifyWait)
	for i, s := range silent {
		if held := s.firstExchanges(); held > 1 {
			t.Errorf("dead secondary %d held %d exchanges at once, want 1", i, held)
		}
	}
	t.Logf("the live secondary was notified of %d zones %v after the start, beside %d dead secondaries", zones, elapsed, deadOnes)
}

func TestANotifyIsAcknowledgedByASecondaryThatAnswersAfterTheFirstAttemptTimedOut(t *testing.T) {
	late, sec := startSlowSecondary(t, 1200*time.Millisecond) // past the 1 s an attempt waits
	var logs eventstest.Logs
	s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
	s.notify(context.Background(), notifiedZone("demo.test.", 7), late)
	if logs.Count("notify acknowledged") != 1 || logs.Count("notify not acknowledged") != 0 {
		t.Errorf("a secondary answering each NOTIFY after 1.2 s: want it acknowledged, got\n%s", logs.String())
	}
	if got, _ := sec.received("demo.test."); len(got) > notifyAttempts-1 {
		t.Errorf("the secondary was sent %d NOTIFYs, want the exchange to end with the first one's reply, before the last attempt", len(got))
	}
}

func TestANotifyIsAcknowledgedByASecondaryThatAnswersAfterTheLastAttemptAndWaitedForNoLongerThanItsBound(t *testing.T) {
	late, sec := startSlowSecondary(t, 3500*time.Millisecond) // past the last attempt's wait, 3 s
	silent, _ := startSilentSecondary(t)
	for _, c := range []struct {
		name   string
		target string
		acked  bool
		within time.Duration
	}{
		{"a secondary answering each NOTIFY after 3.5 s", late, true, notifyAttempts*notifyWait + time.Second},
		{"a secondary that never answers", silent, false, notifyLate + time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var logs eventstest.Logs
			s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
			start := time.Now()
			s.notify(context.Background(), notifiedZone("demo.test.", 7), c.target)
			took := time.Since(start)
			if acked := logs.Count("notify acknowledged") == 1; acked != c.acked || took > c.within {
				t.Errorf("acknowledged %v after %v, want %v within %v:\n%s", acked, took, c.acked, c.within, logs.String())
			}
		})
	}
	t.Cleanup(func() {
		// One a second until its first answer, 3.5 s after the first: the attempts, and the
		// one sent while the exchange listened for a late answer.
		if got, _ := sec.received("demo.test."); len(got) != notifyAttempts+1 {
			t.Errorf("the late secondary was sent %d NOTIFYs, want %d, one a second until it answered", len(got), notifyAttempts+1)
		}
	})
}

func TestANotifyIsAcknowledgedThroughDatagramsThatAreNoAnswerToIt(t *testing.T) {
	notifies := make(chan int, 8)
	addr := serveDatagrams(t, func(pc net.PacketConn, from net.Addr, q *dns.Msg) {
		notifies <- 1
		// Junk, a reply to another id, a message of its id that is no reply (refusing: taken
		// for one, it would end the exchange), then the answer.
		other := new(dns.Msg)
		other.SetReply(q)
		other.Id = q.Id + 1
		noReply := q.Copy()
		noReply.Rcode = dns.RcodeRefused
		ok := new(dns.Msg)
		ok.SetReply(q)
		for _, m := range []*dns.Msg{other, noReply, ok} {
			b, _ := m.Pack()
			_, _ = pc.WriteTo([]byte{0, 1, 2, 3, 4, 5}, from)
			_, _ = pc.WriteTo(b, from)
		}
	})
	var logs eventstest.Logs
	s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
	s.notify(context.Background(), notifiedZone("demo.test.", 7), addr)
	if logs.Count("notify acknowledged") != 1 || len(notifies) != 1 {
		t.Errorf("a secondary sending junk, a reply to another id and the query back before its answer: want one NOTIFY acknowledged, sent %d:\n%s", len(notifies), logs.String())
	}
}

func TestANotifyReachesASecondaryWhosePortOpensWhileItIsSent(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close() // the secondary restarts: its port refuses datagrams for a while
	opened := make(chan string, 1)
	reopen := time.AfterFunc(1300*time.Millisecond, func() { // past the first attempt's wait
		target, err := net.ListenPacket("udp", addr)
		if err != nil {
			opened <- err.Error()
			return
		}
		t.Cleanup(func() { target.Close() })
		srv := &dns.Server{PacketConn: target, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			_ = w.WriteMsg(m)
		})}
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
		opened <- ""
	})
	defer reopen.Stop()
	var logs eventstest.Logs
	s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
	s.notify(context.Background(), notifiedZone("demo.test.", 7), addr)
	if msg := <-opened; msg != "" {
		t.Skipf("the secondary's port could not be opened again: %s", msg)
	}
	if logs.Count("notify acknowledged") != 1 {
		t.Errorf("a secondary whose port opened 1.3 s after the first attempt: want the NOTIFY acknowledged by a later attempt, got\n%s", logs.String())
	}
}

func TestAnErrorCodeEndsANotifyButServfailIsAskedAgain(t *testing.T) {
	tests := []struct {
		name   string
		rcodes []int
		sent   int64
		acked  bool
	}{
		{name: "REFUSED", rcodes: []int{dns.RcodeRefused}, sent: 1},
		{name: "NOTAUTH", rcodes: []int{dns.RcodeNotAuth}, sent: 1},
		{name: "SERVFAIL, then NOERROR", rcodes: []int{dns.RcodeServerFailure, dns.RcodeSuccess}, sent: 2, acked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, got := startAnsweringSecondary(t, tt.rcodes...)
			var logs eventstest.Logs
			s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
			s.notify(context.Background(), notifiedZone("demo.test.", 7), addr)
			if got.Load() != tt.sent || (logs.Count("notify acknowledged") == 1) != tt.acked {
				t.Errorf("want %d NOTIFYs sent, acknowledged %v; got %d:\n%s", tt.sent, tt.acked, got.Load(), logs.String())
			}
		})
	}
}

func TestASecondarysFailedNotifiesAreLoggedOncePerWindow(t *testing.T) {
	refusing, _ := startAnsweringSecondary(t, dns.RcodeRefused)
	var logs eventstest.Logs
	s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
	for i := range 5 {
		s.notify(context.Background(), notifiedZone(fmt.Sprintf("z%d.test.", i), 1), refusing)
	}
	if n := logs.Count("notify not acknowledged"); n != 1 || !strings.Contains(logs.String(), "REFUSED") {
		t.Errorf("five zones refused by %s within %v: want one line naming REFUSED, got %d:\n%s", refusing, notifyFailureWindow, n, logs.String())
	}
}

// notifiedZone is zone name at serial, as much of it as a NOTIFY carries.
func notifiedZone(name string, serial uint32) *zone.Zone {
	return &zone.Zone{Name: name, Serial: serial, Config: &config.Zone{Name: name}, SOA: &dns.SOA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 5},
		Ns: "ns1." + name, Mbox: "hostmaster." + name, Serial: serial}}
}

// startAnsweringSecondary is a secondary on loopback that answers its i-th NOTIFY with
// rcodes[i], or the last of them, and counts the NOTIFYs it gets.
func startAnsweringSecondary(t *testing.T, rcodes ...int) (string, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		i := int(got.Add(1)) - 1
		m := new(dns.Msg)
		m.SetRcode(r, rcodes[min(i, len(rcodes)-1)])
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), &got
}

func TestANotifyNoAttemptGotThroughIsSentAgainUntilTheSecondaryAcknowledgesIt(t *testing.T) {
	// The secondary is unreachable for every attempt of the first exchange (restarting, or a
	// link down for a few seconds), then answers. It polls the SOA only every hour (the
	// zone's refresh), so a NOTIFY given up on leaves it serving the old answers that long.
	var seen atomic.Int64
	acked := make(chan uint32, 16)
	target := serveDatagrams(t, func(pc net.PacketConn, from net.Addr, q *dns.Msg) {
		if q.Opcode != dns.OpcodeNotify || len(q.Answer) != 1 || seen.Add(1) <= notifyAttempts {
			return
		}
		r := new(dns.Msg)
		r.SetReply(q)
		b, _ := r.Pack()
		_, _ = pc.WriteTo(b, from)
		acked <- q.Answer[0].(*dns.SOA).Serial
	})
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, withNotify(demoConfig, target)), "")
	want := serial(t, h.srv.Addr())
	select {
	case got := <-acked:
		if got != want {
			t.Errorf("the secondary acknowledged serial %d, want the one served, %d", got, want)
		}
	case <-time.After(notifyLate + 5*time.Second):
		t.Fatalf("a secondary that missed every attempt of the first NOTIFY (%d sent) was not sent serial %d again within %v", seen.Load(), want, notifyLate+5*time.Second)
	}
}

// returningSecondary is a secondary on loopback that drops every NOTIFY until back is closed
// (it is down, or restarting), then acknowledges each; it reports each NOTIFY's serial on got,
// and closes silent once it has dropped n of them.
func returningSecondary(t *testing.T, back <-chan struct{}, n int) (addr string, got <-chan uint32, silent <-chan struct{}) {
	t.Helper()
	serials := make(chan uint32, 64)
	thrice := make(chan struct{})
	dropped := 0
	addr = serveDatagrams(t, func(pc net.PacketConn, from net.Addr, q *dns.Msg) {
		if q.Opcode != dns.OpcodeNotify || len(q.Answer) != 1 {
			return
		}
		serial := q.Answer[0].(*dns.SOA).Serial
		select {
		case <-back:
		default:
			if dropped++; dropped == n {
				close(thrice)
			}
			return
		}
		r := new(dns.Msg)
		r.SetReply(q)
		b, _ := r.Pack()
		_, _ = pc.WriteTo(b, from)
		select {
		case serials <- serial:
		default:
		}
	})
	return addr, serials, thrice
}

// TestASecondaryComingBackWhileANotifyWaitsForALateAnswerIsToldWithinASecond has a secondary
// miss every attempt of a NOTIFY (down), then come back while the exchange still listens for a
// late answer: it is sent the NOTIFY again within a second, where it waited for the exchange's
// end, 10 s after its first attempt, and the next one's start.
func TestASecondaryComingBackWhileANotifyWaitsForALateAnswerIsToldWithinASecond(t *testing.T) {
	back := make(chan struct{})
	addr, got, thrice := returningSecondary(t, back, notifyAttempts)
	var logs eventstest.Logs
	s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.notify(context.Background(), notifiedZone("demo.test.", 7), addr)
	}()
	select {
	case <-thrice:
	case <-time.After(notifyAttempts*notifyWait + time.Second):
		t.Fatalf("the secondary did not get the %d attempts within %v", notifyAttempts, notifyAttempts*notifyWait+time.Second)
	}
	close(back)
	cameBack := time.Now()
	select {
	case serial := <-got:
		if serial != 7 {
			t.Errorf("the secondary back was told serial %d, want 7", serial)
		}
		t.Logf("the secondary back was told the serial %v after its return", time.Since(cameBack))
	case <-time.After(2 * notifyWait): // the next attempt, a second on, and a second for a busy machine
		t.Fatalf("the secondary back was told nothing within %v of its return", 2*notifyWait)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the exchange did not end once acknowledged")
	}
	if logs.Count("notify acknowledged") != 1 {
		t.Errorf("want the NOTIFY acknowledged once, got\n%s", logs.String())
	}
}

// TestALaterSerialOfferedWhileANotifyWaitsForALateAnswerIsSentAtOnce offers a zone's next serial
// while the exchange of the one before, none of whose attempts a secondary answered, still
// listens for a late answer: the later serial goes out at once, not once that exchange ends
// and the wait after it passes.
func TestALaterSerialOfferedWhileANotifyWaitsForALateAnswerIsSentAtOnce(t *testing.T) {
	back := make(chan struct{})
	// The exchange listens for a late answer from its third attempt's wait on: once the
	// secondary dropped a fourth NOTIFY (or, before, after the third attempt's second).
	addr, got, window := returningSecondary(t, back, notifyAttempts+1)
	var logs eventstest.Logs
	s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
	s.notifier = newNotifier(s.notify)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); s.notifier.run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	z := func(serial uint32) *zone.Zone {
		z := notifiedZone("demo.test.", serial)
		z.Config.Notify = []string{addr}
		return z
	}
	s.notifier.offer(z(7))
	select {
	case <-window:
	case <-time.After(notifyAttempts*notifyWait + 2*time.Second):
		// Before this change the exchange sent nothing after its attempts: past their wait, it
		// is listening for a late answer.
	}
	close(back) // it answers from now on: the next NOTIFY it gets is acknowledged
	s.notifier.offer(z(8))
	offered := time.Now()
	deadline := time.After(notifyWait / 2)
	for {
		select {
		case serial := <-got:
			if serial == 8 {
				t.Logf("serial 8 sent %v after it was offered", time.Since(offered))
				return
			}
		case <-deadline:
			t.Fatalf("serial 8, offered while the exchange of 7 listened for a late answer, was not sent within %v", notifyWait/2)
		}
	}
}

// TestASerialASecondaryMissedIsNotifiedAfterARestartThatKeepsIt: a failover's NOTIFY finds the
// secondary down, and the server is restarted (an upgrade) before the secondary is back. The
// restart keeps the serial (the same records, a data dir), and the secondary, back, must still
// be told of it: it polls the SOA only at the zone's refresh interval, an hour, and serves the
// answers from before the failover until then (before, a start NOTIFYed only the zones whose
// serial it changed, and the exchanges still waiting for an answer ended with the stop).
func TestASerialASecondaryMissedIsNotifiedAfterARestartThatKeepsIt(t *testing.T) {
	back := make(chan struct{})
	target, got, _ := returningSecondary(t, back, 1)
	js := eventstest.Start(t)
	dir := t.TempDir()
	conf := eventstest.Config(t, withNotify(demoConfig, target))
	h := startServer(t, js, conf, dir)
	before := serial(t, h.srv.Addr())
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	var failover uint32
	eventstest.Eventually(t, 5*time.Second, func() bool { failover = serial(t, h.srv.Addr()); return failover != before },
		"the server serves the failover")
	h.stop()

	close(back)
	h = startServer(t, js, conf, dir)
	if s := serial(t, h.srv.Addr()); s != failover {
		t.Fatalf("after the restart: serial %d, want %d kept", s, failover)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-got:
			if s == failover {
				return
			}
		case <-deadline:
			t.Fatalf("the secondary back after the restart was not told serial %d within 5s", failover)
		}
	}
}
