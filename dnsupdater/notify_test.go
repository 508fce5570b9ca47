package dnsupdater

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// slowSecondary is a secondary on loopback that holds each NOTIFY's reply for a while, as a busy
// or distant one does, and records per zone the serials it was told of and how many NOTIFYs it
// held at once.
type slowSecondary struct {
	mu           sync.Mutex
	serials      map[string][]uint32
	inFlight     map[string]int
	mostInFlight map[string]int
}

func startSlowSecondary(t *testing.T, hold time.Duration) (string, *slowSecondary) {
	t.Helper()
	sec := &slowSecondary{serials: map[string][]uint32{}, inFlight: map[string]int{}, mostInFlight: map[string]int{}}
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

func TestAStormOfSerialsSendsASlowSecondaryOneNotifyAtATimeAndTheLastSerialLast(t *testing.T) {
	target, sec := startSlowSecondary(t, 100*time.Millisecond)
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, withNotify(demoConfig, target)), "")
	addr := h.srv.Addr()

	// Each change waits for its serial, so that every one is a zone version of its own: twice
	// the NOTIFY queue the server once had, made faster than the secondary answers.
	const changes = 128
	last := serial(t, addr)
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
	if len(got) > changes/4 {
		t.Errorf("%d NOTIFYs for %d serials, want far fewer: %v", len(got), changes, got)
	}
	t.Logf("%d NOTIFYs for %d serials", len(got), changes)
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
	release <- struct{}{}
	if a := next(); a != (announced{4, "a:53"}) {
		t.Fatalf("want serial 4, the newest, after 1, got %v", a)
	}
	release <- struct{}{}
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
	release <- struct{}{}
	release <- struct{}{}
	idle()

	// Stopping ends an exchange in flight, and run waits for it.
	n.offer(version(7, "a:53"))
	next()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of its context's end")
	}
	n.offer(version(8, "a:53")) // after run: no sender starts
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.zones["demo.test."].busy) != 0 {
		t.Errorf("a sender started after run returned: %v", n.zones)
	}
}
