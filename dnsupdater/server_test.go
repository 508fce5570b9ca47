package dnsupdater

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

const demoConfig = `
zones:
  - name: demo.test
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    pools:
      - name: us-west
        endpoints: [{address: "127.0.0.11:8081"}]
      - name: us-east
        endpoints: [{address: "127.0.0.12:8081"}]
`

// harness is a running server on loopback with the JetStream it follows.
type harness struct {
	js   *eventstest.Server
	srv  *Server
	stop func()
}

func startServer(t testing.TB, js *eventstest.Server, cfg *config.Config, dataDir string) *harness {
	t.Helper()
	return startNamed(t, js, cfg, dataDir, "dns-test")
}

// startNamed is startServer for a server named name, as each of several DNS servers is.
func startNamed(t testing.TB, js *eventstest.Server, cfg *config.Config, dataDir, name string) *harness {
	t.Helper()
	srv, err := New(Options{
		JS: js.JS, Config: cfg, Addr: "127.0.0.1:0", DataDir: dataDir, Name: name,
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2, CredentialDirs: tempCredentialDirs(t),
	})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	stop := eventstest.Run(t, "dns server", srv.Run)
	return &harness{js: js, srv: srv, stop: stop}
}

// tempCredentialDirs allows the key files the tests write, in their temporary directories.
func tempCredentialDirs(t testing.TB) config.CredentialDirs {
	t.Helper()
	d, err := config.NewCredentialDirs(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func exchange(t testing.TB, addr, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s: %v", network, m.Question[0].String(), err)
	}
	return r
}

func ask(t testing.TB, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return exchange(t, addr, network, m)
}

// addrs returns the A and AAAA data of the answer section, sorted.
func addrs(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	sort.Strings(out)
	return out
}

func publishState(t testing.TB, js *eventstest.Server, typ, subject string, tr events.Transition) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "decider-test", time.Now(), tr)
	if err != nil {
		t.Fatalf("new event: %v", err)
	}
	if _, err := events.Publish(context.Background(), js.JS, subject, e); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return e
}

func endpointDown(t testing.TB, js *eventstest.Server, app, pool, endpoint string) events.Envelope {
	return publishState(t, js, events.TypeEndpointDown, events.EndpointStateSubject(app, pool, endpoint),
		events.Transition{App: app, Pool: pool, Endpoint: endpoint, From: events.StatusUp, To: events.StatusDown, Reason: "test"})
}

func endpointUp(t testing.TB, js *eventstest.Server, app, pool, endpoint string) events.Envelope {
	return publishState(t, js, events.TypeEndpointUp, events.EndpointStateSubject(app, pool, endpoint),
		events.Transition{App: app, Pool: pool, Endpoint: endpoint, From: events.StatusDown, To: events.StatusUp, Reason: "test"})
}

func serial(t testing.TB, addr string) uint32 {
	t.Helper()
	r := ask(t, addr, "udp", "demo.test.", dns.TypeSOA)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA query: want one answer, got %v", r)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// soaSerial is the serial of the SOA record server answers for apex, 0 for none.
func soaSerial(server, apex string) uint32 {
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(newQuery(apex, dns.TypeSOA), server)
	if err != nil || len(r.Answer) != 1 {
		return 0
	}
	if soa, ok := r.Answer[0].(*dns.SOA); ok {
		return soa.Serial
	}
	return 0
}

func TestFailoverAnswerMovesToTheNextPoolAndBack(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, demoConfig), "")
	addr := h.srv.Addr()
	answer := func() []string { return addrs(ask(t, addr, "udp", "shop.demo.test.", dns.TypeA)) }

	if got := answer(); !slices.Equal(got, []string{"127.0.0.11"}) {
		t.Fatalf("before any decision: want the first pool [127.0.0.11], got %v", got)
	}
	first := serial(t, addr)
	down := endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return slices.Equal(answer(), []string{"127.0.0.12"}) },
		"answer moves to us-east after us-west went down")
	if s := serial(t, addr); !serialAfter(s, first) {
		t.Errorf("serial after the change: want later than %d, got %d", first, s)
	}

	// The change is recorded as a ZoneChanged event caused by the STATE event. The server
	// records a change after it serves it, and the zone's first version at start has its own
	// event, so the test waits for the event of this change.
	st := js.Stream(t, events.StreamDNS)
	var changed events.Envelope
	eventstest.Eventually(t, 2*time.Second, func() bool {
		e, _, ok, err := events.Last(context.Background(), st, events.ZoneSubject("demo.test.", "dns-test"))
		changed = e
		return err == nil && ok && e.Cause == down.ID
	}, "a zone change event on %s caused by %s", events.ZoneSubject("demo.test.", "dns-test"), down.ID)
	if changed.Type != events.TypeZoneChanged {
		t.Errorf("zone change event: want type %s, got %s", events.TypeZoneChanged, changed.Type)
	}
	var zc events.ZoneChanged
	if err := changed.Payload(&zc); err != nil {
		t.Fatal(err)
	}
	want := []events.RecordChange{{Name: "shop.demo.test.", Type: "A", Before: []string{"127.0.0.11"}, After: []string{"127.0.0.12"}}}
	if zc.Zone != "demo.test." || zc.Serial != serial(t, addr) || !slices.EqualFunc(zc.Changes, want, func(a, b events.RecordChange) bool {
		return a.Name == b.Name && a.Type == b.Type && slices.Equal(a.Before, b.Before) && slices.Equal(a.After, b.After)
	}) {
		t.Errorf("zone change: want zone demo.test. serial %d changes %+v, got %+v", serial(t, addr), want, zc)
	}

	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return slices.Equal(answer(), []string{"127.0.0.11"}) },
		"answer returns to us-west once it is up again")
}

// TestRepliesHoldingAnAppsAnswerFollowItAfterFailover asks, after the app's first pool went
// down, for the names whose replies hold its answer besides its own: an MX and an SRV record
// whose target it is (their additional section), and CNAMEs to it, in its zone and in another
// zone that the version leaves as it was. Each must carry what the app's name now answers, over
// UDP and TCP.
func TestRepliesHoldingAnAppsAnswerFollowItAfterFailover(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, `
zones:
  - name: demo.test
    records: ["mail IN MX 10 shop", "_http._tcp IN SRV 0 0 80 shop", "www IN CNAME shop"]
  - name: other.test
    records: ["mail IN MX 10 shop.demo.test.", "www IN CNAME shop.demo.test."]
`+demoConfig[strings.Index(demoConfig, "apps:"):]), "")
	addr := h.srv.Addr()
	before := serial(t, addr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, addr) != before }, "serial moves after the failover")
	if got := addrs(ask(t, addr, "udp", "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.12"}) {
		t.Fatalf("after us-west went down shop answers %v, want [127.0.0.12]", got)
	}
	for _, q := range []struct {
		name string
		qt   uint16
	}{
		{"mail.demo.test.", dns.TypeMX}, {"_http._tcp.demo.test.", dns.TypeSRV}, {"www.demo.test.", dns.TypeA},
		{"mail.other.test.", dns.TypeMX}, {"www.other.test.", dns.TypeA},
	} {
		for _, network := range []string{"udp", "tcp"} {
			r := ask(t, addr, network, q.name, q.qt)
			if got := addrs(&dns.Msg{Answer: append(r.Answer, r.Extra...)}); !slices.Equal(got, []string{"127.0.0.12"}) {
				t.Errorf("%s %s over %s: addresses %v, want shop's [127.0.0.12]", q.name, dns.TypeToString[q.qt], network, got)
			}
		}
	}
}

func TestAddrPicksOnePortForUDPAndTCP(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, demoConfig), "")
	ap := netip.MustParseAddrPort(h.srv.Addr())
	if ap.Port() == 0 || !ap.Addr().IsLoopback() {
		t.Fatalf("addr: want a loopback address with a port, got %s", ap)
	}
	for _, network := range []string{"udp", "tcp"} {
		if got := addrs(ask(t, h.srv.Addr(), network, "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.11"}) {
			t.Errorf("%s: want [127.0.0.11], got %v", network, got)
		}
	}
}

func TestGarbageOnTheStateStreamIsSkipped(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, demoConfig), "")
	if _, err := js.JS.Publish(context.Background(), "detour.state.endpoint.shop.us-west.junk", []byte("{not an event")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.JS.Publish(context.Background(), "detour.state.endpoint.shop.us-west.odd",
		[]byte(`{"type":"detour.unknown.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{}}`)); err != nil {
		t.Fatal(err)
	}
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "the event after the garbage still moves the answer")
}

// fakeSecondary listens on loopback for NOTIFYs, acknowledges them and hands them over; it holds
// no copy of a zone, and refuses the SOA queries that follow an acknowledged NOTIFY (ahead.go).
func fakeSecondary(t *testing.T) (string, <-chan *dns.Msg) {
	t.Helper()
	got := make(chan *dns.Msg, 16)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secondary := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		if r.Opcode != dns.OpcodeNotify {
			_ = w.WriteMsg(m.SetRcode(r, dns.RcodeRefused))
			return
		}
		select {
		case got <- r:
		default:
		}
		m.SetReply(r)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = secondary.ActivateAndServe() }()
	t.Cleanup(func() { _ = secondary.Shutdown() })
	return pc.LocalAddr().String(), got
}

// awaitNotify waits for a NOTIFY of demo.test. carrying serial want, skipping earlier ones.
func awaitNotify(t *testing.T, got <-chan *dns.Msg, want uint32) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	var seen []uint32
	for {
		select {
		case m := <-got:
			if m.Opcode != dns.OpcodeNotify || !m.Authoritative || m.Question[0].Name != "demo.test." || m.Question[0].Qtype != dns.TypeSOA || len(m.Answer) != 1 {
				t.Fatalf("want a NOTIFY for demo.test. SOA with the new SOA, got %v", m)
			}
			s := m.Answer[0].(*dns.SOA).Serial
			if s == want {
				return
			}
			seen = append(seen, s)
		case <-deadline:
			t.Fatalf("no NOTIFY with serial %d within 5s (got serials %v)", want, seen)
		}
	}
}

// withNotify gives demo.test the secondaries targets.
func withNotify(conf string, targets ...string) string {
	return strings.Replace(conf, "  - name: demo.test\n", "  - name: demo.test\n    notify: [\""+strings.Join(targets, "\", \"")+"\"]\n", 1)
}

func TestNotifyIsSentToSecondariesOnEveryChange(t *testing.T) {
	target, got := fakeSecondary(t)
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, withNotify(demoConfig, target)), "")
	first := serial(t, h.srv.Addr())
	awaitNotify(t, got, first)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, h.srv.Addr()) != first }, "serial moves after the change")
	awaitNotify(t, got, serial(t, h.srv.Addr()))
}

func TestServerAnswersOnIPv6Loopback(t *testing.T) {
	if l, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	js := eventstest.Start(t)
	srv, err := New(Options{JS: js.JS, Config: eventstest.Config(t, demoConfig), Addr: "[::1]:0", Name: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, network := range []string{"udp", "tcp"} {
		if got := addrs(ask(t, srv.Addr(), network, "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.11"}) {
			t.Errorf("%s over ::1: want [127.0.0.11], got %v", network, got)
		}
	}
}

func TestNewRefusesMissingOptionsByName(t *testing.T) {
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{name: "no config", o: Options{JS: js.JS, Name: "x", Addr: "127.0.0.1:0"}, want: "config: must not be nil"},
		{name: "no jetstream", o: Options{Config: cfg, Name: "x", Addr: "127.0.0.1:0"}, want: "js: must not be nil"},
		{name: "no name", o: Options{JS: js.JS, Config: cfg, Addr: "127.0.0.1:0"}, want: "name: must not be empty"},
		{name: "an address without a port", o: Options{JS: js.JS, Config: cfg, Name: "x", Addr: "127.0.0.1"}, want: `addr: want ip:port, got "127.0.0.1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("want an error containing %q, got %v", tt.want, err)
			}
		})
	}
}

func TestSecondariesAreNotifiedWhileTheDNSStreamElectsALeader(t *testing.T) {
	target, got := fakeSecondary(t)
	ns := eventstest.Start(t)
	js := eventstest.NewElecting(ns.JS, "detour.dns.", true)
	srv, err := New(Options{JS: js, Config: eventstest.Config(t, withNotify(demoConfig, target)), Addr: "127.0.0.1:0",
		Name: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	first := serial(t, srv.Addr())
	awaitNotify(t, got, first)

	// DNS, the stream of zone changes, has no leader: the change cannot be recorded there, and
	// the secondaries are told of it all the same, at once.
	js.On.Store(true)
	endpointDown(t, ns, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, srv.Addr()) != first }, "serial moves after the change")
	moved := time.Now()
	awaitNotify(t, got, serial(t, srv.Addr()))
	if took := time.Since(moved); took > time.Second {
		t.Errorf("NOTIFY sent %s after the serial moved, want within 1s: it waited for the DNS stream", took.Round(time.Millisecond))
	}
}

// failingListener fails every Accept, as a listener does when the process is out of file
// descriptors, until it is closed.
type failingListener struct {
	accepts atomic.Int64
	closed  atomic.Bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.accepts.Add(1)
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func (l *failingListener) Close() error   { l.closed.Store(true); return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func TestAFailingAcceptIsRetriedWithABackOffNotInALoop(t *testing.T) {
	l := &failingListener{}
	s := &Server{ls: &listeners{tcp: l}, tcpSem: make(chan struct{}, maxTCPConns), log: zerolog.New(zerolog.NewTestWriter(t))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serveTCP(ctx)
	}()
	start := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return l.accepts.Load() >= 4 }, "four accepts")
	// Backing off from 5 ms and doubling, the fourth try comes 35 ms after the first; a loop
	// makes it within microseconds.
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Errorf("four failing accepts within %v, want a back-off between them", took)
	}
	l.Close()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("serveTCP did not return after its listener was closed")
	}
}

// A secondary on a link-local address reaches the server with its interface's zone
// (fe80::53%eth0 over TCP); transfer_to names it, or its prefix, without one (it takes none),
// and permits it.
func TestALinkLocalSecondaryIsPermittedWhateverItsZone(t *testing.T) {
	z := &zone.Zone{Config: &config.Zone{TransferTo: []string{"fe80::53", "fe80:0:0:1::/64"}}}
	for _, tt := range []struct {
		from string
		want bool
	}{
		{"fe80::53%eth0", true},
		{"fe80:0:0:1::7%eth2", true},
		{"fe80::55%eth0", false},
		{"::ffff:127.0.0.1", false},
	} {
		if got := transferAllowed(z, clientAddr(netip.MustParseAddr(tt.from))); got != tt.want {
			t.Errorf("a transfer asked from %s: permitted %v, want %v", tt.from, got, tt.want)
		}
	}
	if got := clientAddr(netip.MustParseAddr("::ffff:10.0.0.1")); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("clientAddr(::ffff:10.0.0.1) = %v, want the IPv4 address", got)
	}
}
