package push

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// applyingPrimary is a primary on loopback TCP that applies the UPDATEs signed with testSecret to
// its records and answers them signed, unless told to misbehave. As BIND, it knows its key as
// detour-key., matches the name of an UPDATE's key whatever its case, and signs its answer with
// its own spelling. It checks the prerequisites "RRset exists (value dependent)" and "RRset does
// not exist" (RFC 2136 §2.4.2, §2.4.3), deletes single records (§2.5.4), and answers queries
// from its records, with the TTL each RRset was last given (60 s by default), and for the SOA
// of demo.test. with a serial that each UPDATE it applies moves, signed when they are.
type applyingPrimary struct {
	addr string
	mu   sync.Mutex
	// records holds each name's records as "TYPE data" lines, and ttls each RRset's TTL by
	// "name TYPE".
	records map[string][]string
	ttls    map[string]uint32
	// serial is the zone's SOA serial.
	serial uint32
	// updates counts the UPDATEs received; unconditional those without a prerequisite, and
	// unmet those refused for a prerequisite; reads the queries.
	updates, unconditional, unmet, reads int
	// tried holds when each UPDATE came, and from the remote address of each.
	tried []time.Time
	from  []string
	// hangUp applies the next UPDATEs of this many and closes the connection without an answer.
	hangUp int
	// unsigned answers every UPDATE NOERROR without a TSIG, and applies nothing.
	unsigned bool
	// refuse answers every UPDATE REFUSED, and applies nothing.
	refuse bool
	// answering, when set, is called before the primary answers an UPDATE it applied.
	answering func()
	// hangUpAfter closes the connection after answering each UPDATE it applied.
	hangUpAfter bool
	// hangUpQueries closes the connection after answering each query, one a connection, as a
	// server that does not keep a connection open does (RFC 7766 §6.2.1).
	hangUpQueries bool
	// stallQueries answers the first query of each connection and leaves the others
	// unanswered, the connection open, as a server that takes no pipelined queries may.
	stallQueries bool
	// asked counts the queries of each connection, by the client's address.
	asked map[string]int
}

func startApplyingPrimary(t *testing.T) *applyingPrimary {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &applyingPrimary{addr: ln.Addr().String(), records: map[string][]string{}, ttls: map[string]uint32{}, serial: 1, asked: map[string]int{}}
	key, err := tsig.New(config.TSIG{Name: "detour-key", Algorithm: "hmac-sha256", Secret: testSecret}, config.CredentialDirs{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, TsigProvider: key,
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept },
		Handler:       dns.HandlerFunc(p.serve)}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return p
}

func (p *applyingPrimary) serve(w dns.ResponseWriter, r *dns.Msg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	if r.Opcode == dns.OpcodeQuery && len(r.Question) == 1 {
		p.reads++
		p.asked[w.RemoteAddr().String()]++
		if p.stallQueries && p.asked[w.RemoteAddr().String()] > 1 {
			return
		}
		p.answer(w, r, m)
		if p.hangUpQueries {
			_ = w.Close()
		}
		return
	}
	if r.Opcode != dns.OpcodeUpdate {
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	p.updates++
	p.tried = append(p.tried, time.Now())
	p.from = append(p.from, w.RemoteAddr().String())
	if p.unsigned {
		_ = w.WriteMsg(m)
		return
	}
	if p.refuse {
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	t := r.IsTsig()
	if t == nil || w.TsigStatus() != nil {
		m.Rcode = dns.RcodeNotAuth
		_ = w.WriteMsg(m)
		return
	}
	if len(r.Answer) == 0 {
		p.unconditional++
	}
	if rcode := p.prerequisites(r.Answer); rcode != dns.RcodeSuccess {
		p.unmet++
		m.Rcode = rcode
		m.SetTsig("detour-key.", t.Algorithm, 300, time.Now().Unix())
		_ = w.WriteMsg(m)
		return
	}
	for _, rr := range r.Ns {
		h := rr.Header()
		typ := dns.TypeToString[h.Rrtype]
		switch h.Class {
		case dns.ClassANY:
			p.records[h.Name] = slices.DeleteFunc(p.records[h.Name], func(l string) bool { return strings.HasPrefix(l, typ+" ") })
		case dns.ClassNONE:
			l := line(rr)
			p.records[h.Name] = slices.DeleteFunc(p.records[h.Name], func(have string) bool { return have == l })
		case dns.ClassINET:
			l := line(rr)
			if !slices.Contains(p.records[h.Name], l) {
				p.records[h.Name] = append(p.records[h.Name], l)
			}
			p.ttls[h.Name+" "+typ] = h.Ttl
		}
	}
	p.serial++
	if p.hangUp > 0 {
		p.hangUp--
		_ = w.Close()
		return
	}
	if p.answering != nil {
		p.answering()
	}
	m.SetTsig("detour-key.", t.Algorithm, 300, time.Now().Unix())
	_ = w.WriteMsg(m)
	if p.hangUpAfter {
		_ = w.Close()
	}
}

// line is rr as the primary keeps it: "TYPE data".
func line(rr dns.RR) string {
	return dns.TypeToString[rr.Header().Rrtype] + " " + strings.TrimPrefix(rr.String(), rr.Header().String())
}

// prerequisites returns the code of an UPDATE whose prerequisite section is prereqs: NOERROR
// when each holds, else that of the first that does not (RFC 2136 §3.2).
func (p *applyingPrimary) prerequisites(prereqs []dns.RR) int {
	type rrset struct{ name, typ string }
	want := map[rrset][]string{}
	var sets []rrset
	for _, rr := range prereqs {
		h := rr.Header()
		set := rrset{h.Name, dns.TypeToString[h.Rrtype]}
		switch h.Class {
		case dns.ClassNONE: // RRset does not exist
			if slices.ContainsFunc(p.records[h.Name], func(l string) bool { return strings.HasPrefix(l, set.typ+" ") }) {
				return dns.RcodeYXRrset
			}
		case dns.ClassINET: // RRset exists, value dependent
			if _, ok := want[set]; !ok {
				sets = append(sets, set)
			}
			want[set] = append(want[set], line(rr))
		}
	}
	for _, set := range sets {
		var have []string
		for _, l := range p.records[set.name] {
			if strings.HasPrefix(l, set.typ+" ") {
				have = append(have, l)
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(have)), slices.Sorted(slices.Values(want[set]))) {
			return dns.RcodeNXRrset
		}
	}
	return dns.RcodeSuccess
}

// answer answers the query r with the records the primary holds, signed when r is.
func (p *applyingPrimary) answer(w dns.ResponseWriter, r, m *dns.Msg) {
	q := r.Question[0]
	typ := dns.TypeToString[q.Qtype]
	ttl := cmp.Or(p.ttls[q.Name+" "+typ], 60)
	for _, l := range p.records[q.Name] {
		if data, ok := strings.CutPrefix(l, typ+" "); ok {
			rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", q.Name, ttl, typ, data))
			if err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if q.Qtype == dns.TypeSOA && q.Name == "demo.test." {
		m.Answer = append(m.Answer, &dns.SOA{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
			Ns: "ns1.demo.test.", Mbox: "hostmaster.demo.test.", Serial: p.serial, Refresh: 3600, Retry: 600, Expire: 604800, Minttl: 5})
	}
	m.Authoritative = true
	if t := r.IsTsig(); t != nil {
		if w.TsigStatus() != nil {
			m.Rcode = dns.RcodeNotAuth
		} else {
			m.SetTsig("detour-key.", t.Algorithm, 300, time.Now().Unix())
		}
	}
	_ = w.WriteMsg(m)
}

// at returns the records the primary holds at name, sorted.
func (p *applyingPrimary) at(name string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(slices.Values(p.records[name]))
}

func (p *applyingPrimary) set(f func(p *applyingPrimary)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func parsePushConfig(t *testing.T, addr string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(pushConfig, addr, testSecret)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startLogging starts a pusher of demo.test to the primary at addr, configured as
// parsePushConfig has it, logging to the Logs it returns.
func startLogging(t *testing.T, addr string) (*Pusher, *eventstest.Logs) {
	t.Helper()
	cfg := parsePushConfig(t, addr)
	logs := &eventstest.Logs{}
	return startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(logs)}), logs
}

func TestAnUpdateThePrimaryAppliedWithoutAnsweringIsUndoneWhenTheStateGoesBack(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	push := *cfg.Zones[0].Push
	push.RetryInterval = config.Duration(time.Second)
	p := runPusher(t, push, nil)
	firstPool := []string{"A 127.0.0.11", "A 127.0.0.12"}

	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(primary.at("shop.demo.test."), firstPool) },
		"the primary serves the first pool")

	// The failover reaches the primary, which applies it and hangs up before answering.
	primary.set(func(p *applyingPrimary) { p.hangUp = 1 })
	v := state.NewView()
	down(t, v, 1, "shop", "p1", "127-0-0-11_80")
	down(t, v, 2, "shop", "p1", "127-0-0-12_80")
	p.Offer(desired(t, cfg, v, 11))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(primary.at("shop.demo.test."), []string{"A 127.0.0.21"}) },
		"the primary applies the failover")

	// The first pool recovers before the retry: the primary must serve it again.
	p.Offer(desired(t, cfg, state.NewView(), 12))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(primary.at("shop.demo.test."), firstPool) },
		"the primary serves the first pool again, not the failover it applied unanswered")
}

func TestAnAppRemovedWhileThePrimaryRefusesPushesLeavesThePrimaryOnceItAccepts(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	var logs eventstest.Logs
	p := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Log: zerolog.New(&logs)})
	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(primary.at("web.demo.test."), []string{"CNAME edge-a.demo.test."}) },
		"the primary serves web's CNAME")

	// web leaves the configuration while the primary refuses every update.
	primary.set(func(p *applyingPrimary) { p.refuse = true })
	text := strings.Replace(fmt.Sprintf(pushConfig, primary.addr, testSecret),
		"  - name: web\n    fqdn: web.demo.test\n    ingress: [edge-a]\n    pools: [{name: p1, endpoints: [{address: \"127.0.0.11:80\"}]}]\n", "", 1)
	withoutWeb, err := config.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(withoutWeb.Apps) != 1 {
		t.Fatalf("the configuration without web has %d apps, want 1", len(withoutWeb.Apps))
	}
	p.Offer(desired(t, withoutWeb, state.NewView(), 11))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone push failed") == 1 }, "the refused push is logged")

	primary.set(func(p *applyingPrimary) { p.refuse = false })
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 2 }, "the retry is accepted")
	if got := primary.at("web.demo.test."); len(got) != 0 {
		t.Errorf("web left the configuration: want no records of it on the primary, got %v", got)
	}
}

func TestAnAppAddedByAReloadIsWrittenWholeOnThePrimaryAsAtAStart(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	var logs eventstest.Logs
	p := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Log: zerolog.New(&logs)})
	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push is accepted")

	// The primary holds the operator's own IPv6 address of api.demo.test, which a reload then
	// hands to Detour, with IPv4 endpoints.
	primary.set(func(p *applyingPrimary) { p.records["api.demo.test."] = []string{"AAAA 2001:db8::99"} })
	withAPI, err := config.Parse("test.yaml", []byte(fmt.Sprintf(pushConfig, primary.addr, testSecret)+`  - name: api
    fqdn: api.demo.test
    pools: [{name: p1, endpoints: [{address: "127.0.0.31:80"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	p.Offer(desired(t, withAPI, state.NewView(), 11))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 2 }, "the reload's push is accepted")
	if got, want := primary.at("api.demo.test."), []string{"A 127.0.0.31"}; !slices.Equal(got, want) {
		t.Errorf("api.demo.test. is Detour's now: want %v on the primary, as a start would leave it, got %v", want, got)
	}
}

func TestAnUnsignedAnswerIsNotTakenForAnAcceptedUpdate(t *testing.T) {
	primary := startApplyingPrimary(t)
	primary.set(func(p *applyingPrimary) { p.unsigned = true })
	cfg := parsePushConfig(t, primary.addr)
	p := runPusher(t, *cfg.Zones[0].Push, nil)

	// Something other than the primary, which holds no key, answers NOERROR and applies nothing.
	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.updates > 0
	}, "the first UPDATE is answered unsigned")

	// The pusher keeps sending until the primary itself confirms.
	primary.set(func(p *applyingPrimary) { p.unsigned = false })
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(primary.at("shop.demo.test."), []string{"A 127.0.0.11", "A 127.0.0.12"})
	}, "the primary serves the first pool once it answers signed")
}

func TestAKeyNameSpeltInAnotherCaseThanThePrimarysIsAcceptedBothWays(t *testing.T) {
	primary := startApplyingPrimary(t)
	text := strings.Replace(fmt.Sprintf(pushConfig, primary.addr, testSecret), "name: detour-key,", "name: Detour-Key,", 1)
	cfg, err := config.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push})
	if err != nil {
		t.Fatal(err)
	}

	// The primary accepts the update and answers signed as detour-key.: that is its answer.
	if _, err := p.push(t.Context(), desired(t, cfg, state.NewView(), 10)); err != nil {
		t.Errorf("push with the key named Detour-Key to a primary that names it detour-key: %v, want it accepted", err)
	}
	if got, want := primary.at("shop.demo.test."), []string{"A 127.0.0.11", "A 127.0.0.12"}; !slices.Equal(got, want) {
		t.Errorf("the primary holds %v at shop.demo.test., want %v", got, want)
	}
}

func TestTheFirstPushAfterAStartEmptiesAFailClosedAppWhosePoolsAreAllDown(t *testing.T) {
	primary := startApplyingPrimary(t)
	// What an earlier run pushed, before every pool went down while no DNS server was running.
	primary.set(func(p *applyingPrimary) { p.records["shop.demo.test."] = []string{"A 127.0.0.11", "A 127.0.0.12"} })
	text := strings.Replace(fmt.Sprintf(pushConfig, primary.addr, testSecret),
		"    fqdn: shop.demo.test\n", "    fqdn: shop.demo.test\n    when_all_down: fail_closed\n", 1)
	cfg, err := config.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := runPusher(t, *cfg.Zones[0].Push, nil)

	v := state.NewView()
	down(t, v, 1, "shop", "p1", "127-0-0-11_80")
	down(t, v, 2, "shop", "p1", "127-0-0-12_80")
	down(t, v, 3, "shop", "p2", "127-0-0-21_80")
	p.Offer(desired(t, cfg, v, 10))
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(primary.at("edge-a.demo.test.")) > 0 },
		"the first push reaches the primary")
	if got := primary.at("shop.demo.test."); len(got) != 0 {
		t.Errorf("shop.demo.test. is fail_closed with every pool down: want no records on the primary, got %v", got)
	}
}

func TestAPushThePrimaryRefusesForItsKeyNamesTheTSIGError(t *testing.T) {
	// As BIND answers an UPDATE signed with a key it does not know: NOTAUTH, with a TSIG whose
	// error is BADKEY and which carries no MAC (RFC 8945 §5.2.2).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeNotAuth)
			if t := r.IsTsig(); t != nil {
				m.Extra = append(m.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
					Algorithm: t.Algorithm, TimeSigned: t.TimeSigned, Fudge: t.Fudge, OrigId: r.Id, Error: dns.RcodeBadKey})
			}
			b, err := m.Pack()
			if err == nil {
				_, _ = w.Write(b)
			}
		})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	cfg := parsePushConfig(t, ln.Addr().String())
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push})
	if err != nil {
		t.Fatal(err)
	}

	_, err = p.push(t.Context(), desired(t, cfg, state.NewView(), 10))
	if err == nil || !strings.Contains(err.Error(), "NOTAUTH") || !strings.Contains(err.Error(), "BADKEY") {
		t.Errorf("err = %v, want it to name the primary's NOTAUTH and BADKEY", err)
	}
}

func TestAZoneOfAThousandAppsReachesThePrimaryThoughItOutgrowsOneTCPMessage(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	p := runPusher(t, *cfg.Zones[0].Push, nil)

	want := map[zone.Key][]dns.RR{}
	for i := range 1000 {
		name := fmt.Sprintf("app-%d.demo.test.", i)
		want[zone.Key{Name: name, Type: dns.TypeA}] = []dns.RR{a(name, "10.0.0.1"), a(name, "10.0.0.2")}
	}
	p.Offer(Desired{Serial: 10, RRsets: want})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(primary.at("app-0.demo.test."), []string{"A 10.0.0.1", "A 10.0.0.2"}) &&
			slices.Equal(primary.at("app-999.demo.test."), []string{"A 10.0.0.1", "A 10.0.0.2"})
	}, "the primary serves the first and the last app")
}

// The parts of a push too large for one UPDATE go over one TCP connection, one after the other
// (RFC 1035 §4.2.2), where each opened its own: a full rewrite of 10,000 names, 13 UPDATEs, paid
// 13 handshakes, a round trip each across a wide area link. A primary that closes the connection
// after an answer (an idle timeout, a limit of messages a connection) is connected to again for
// the next part.
func TestThePartsOfAPushGoOverOneConnection(t *testing.T) {
	for _, hangUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("the primary closing it after each UPDATE: %v", hangUp), func(t *testing.T) {
			primary := startApplyingPrimary(t)
			primary.set(func(p *applyingPrimary) { p.hangUpAfter = hangUp })
			cfg := parsePushConfig(t, primary.addr)
			p := runPusher(t, *cfg.Zones[0].Push, nil)
			want := map[zone.Key][]dns.RR{}
			for i := range 3000 {
				own(want, fmt.Sprintf("app-%d.demo.test.", i), "10.0.0.1")
			}
			p.Offer(Desired{Serial: 10, RRsets: want, State: Position{Seq: 10, Created: testStream}})
			eventstest.Eventually(t, 10*time.Second, func() bool { return markerSays(t, primary.addr, "seq=10") }, "the push's marker")
			primary.mu.Lock()
			parts, conns := primary.updates, len(slices.Compact(slices.Clone(primary.from)))
			primary.mu.Unlock()
			if parts < 3 {
				t.Fatalf("the push of 3,000 names went in %d UPDATEs, want several", parts)
			}
			if want := map[bool]int{false: 1, true: parts}[hangUp]; conns != want {
				t.Errorf("the %d parts of the push went over %d connections, want %d", parts, conns, want)
			}
			if got := primary.at("app-2999.demo.test."); !slices.Equal(got, []string{"A 10.0.0.1"}) {
				t.Errorf("app-2999 after the push: %v, want the pushed [A 10.0.0.1]", got)
			}
		})
	}
}

// pushedThenEditedByHand has p push n owned names, app-0 … app-(n-1), to primary within the
// bound, the first push (which asks every name for a delegation), then edits the last one on
// the primary by hand, moving its serial; it returns the records pushed, as a recheck.
func pushedThenEditedByHand(t *testing.T, p *Pusher, logs *eventstest.Logs, primary *applyingPrimary, n int, within time.Duration) Desired {
	t.Helper()
	rrsets := map[zone.Key][]dns.RR{}
	for i := range n {
		own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), "10.0.0.1")
	}
	d := Desired{Serial: 1, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}}
	p.Offer(d)
	eventstest.Eventually(t, within, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")
	primary.set(func(p *applyingPrimary) {
		p.records[fmt.Sprintf("app-%d.demo.test.", n-1)] = []string{"A 192.0.2.66"}
		p.serial++
	})
	d.Recheck = true
	return d
}

// A primary that answers one query a connection and closes it, the queries pipelined after it
// unread (a reset), still has every owned name read: the answer it sent is read before the
// pusher connects again for the rest. Before, the write of a query after it failed (broken pipe)
// and the pipeline gave up with that answer unread, none taken on the connection: the first push
// after a start, which asks every name for a delegation, failed at every retry, and so did every
// recheck that read the owned names.
func TestAPrimaryThatAnswersOneQueryAConnectionStillHasEveryOwnedNameRead(t *testing.T) {
	primary := startApplyingPrimary(t)
	primary.set(func(p *applyingPrimary) { p.hangUpQueries = true })
	p, logs := startLogging(t, primary.addr)
	d := pushedThenEditedByHand(t, p, logs, primary, 200, 10*time.Second)
	p.Offer(d)
	const restored = "zone pushed: owned records were changed on the primary under the marker, and are restored"
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count(restored) == 1 }, "the recheck that reads every owned name")
	if got := primary.at("app-199.demo.test."); !slices.Equal(got, []string{"A 10.0.0.1"}) {
		t.Errorf("app-199 after the recheck: %v, want the pushed [A 10.0.0.1]", got)
	}
	if n := logs.Count("zone push failed"); n > 0 {
		t.Errorf("%d pushes failed, want none:\n%s", n, logs.String())
	}
}

// TestAPrimaryThatLeavesPipelinedQueriesUnansweredFailsThePushWithinItsTimeout: a primary that
// answers the first query of a connection and then none, the connection left open, failed
// nothing: each connection that answered one was taken for one a loaded primary had dropped, and
// the rest asked again on another, a timeout (5 s) a query, hours for a recheck of 1,000 names,
// with a failover offered meanwhile waiting behind it. A timeout fails the read, as when the
// reads went one at a time, and the push is retried (see Failures).
func TestAPrimaryThatLeavesPipelinedQueriesUnansweredFailsThePushWithinItsTimeout(t *testing.T) {
	primary := startApplyingPrimary(t)
	primary.set(func(p *applyingPrimary) { p.stallQueries = true })
	p, logs := startLogging(t, primary.addr)
	rrsets := map[zone.Key][]dns.RR{}
	for i := range 20 {
		own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), "10.0.0.1")
	}
	p.Offer(Desired{Serial: 1, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}})
	eventstest.Eventually(t, 8*time.Second, func() bool { return logs.Count("zone push failed") == 1 },
		"the first push, whose delegation check times out, failed")
	if !strings.Contains(logs.String(), "i/o timeout") {
		t.Errorf("the failure does not say the primary timed out:\n%s", logs.String())
	}
}

func TestTheBackoffOfAHugeRetryIntervalSaturatesWhereItWouldOverflow(t *testing.T) {
	for _, base := range []time.Duration{time.Hour, 1 << 60, math.MaxInt64 / 3, math.MaxInt64} {
		b := backoff{base: base}
		for i := range 2 * maxDoublings {
			// The wait is at least three quarters of retry_interval, whatever it doubles to.
			if d := b.next(); d < base/4*3 {
				t.Errorf("retry_interval %v, failure %d: wait %v, want at least %v", base, i+1, d, base/4*3)
			}
		}
	}
}

func TestAPrimaryFailingForTheSameReasonIsReportedOnceNotAtEveryRetry(t *testing.T) {
	primary := startApplyingPrimary(t)
	primary.set(func(p *applyingPrimary) { p.unsigned = true })
	cfg := parsePushConfig(t, primary.addr)
	push := *cfg.Zones[0].Push
	push.RetryInterval = config.Duration(5 * time.Millisecond)
	var logs eventstest.Logs
	p := startPusher(t, Options{Zone: "demo.test.", Push: push, Log: zerolog.New(&logs)})

	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 10*time.Second, func() bool {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.updates >= 20
	}, "the pusher retries the unconfirmed update")
	if n := logs.Count("zone push failed"); n != 1 {
		t.Errorf("%d retries failing alike logged %d times, want once", 20, n)
	}

	// Another reason is news.
	primary.set(func(p *applyingPrimary) { p.unsigned, p.refuse = false, true })
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count("zone push failed") == 2 },
		"the primary's refusal is logged")
	primary.set(func(p *applyingPrimary) { p.refuse = false })
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count("zone pushed") == 1 },
		"the push succeeds once the primary accepts it")
}

func TestAPusherWaitingForAPrimaryThatDoesNotAnswerStopsWhenAsked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c // read nothing, answer nothing
		}
	}()
	cfg := parsePushConfig(t, ln.Addr().String())
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	p.Offer(desired(t, cfg, state.NewView(), 10))
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the pusher did not connect to the primary")
	}

	// The exchange's own timeout is 5 s: stopping must not wait for it.
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the pusher still waits for the primary's answer 2 s after it was asked to stop")
	}
}

func TestAPrimaryResettingEveryConnectionIsReportedOnceThoughEachRetryComesFromAnotherPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	accepted := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the update, then reset the connection instead of answering.
			buf := make([]byte, 2)
			_, _ = c.Read(buf)
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
			mu.Lock()
			accepted++
			mu.Unlock()
		}
	}()
	cfg := parsePushConfig(t, ln.Addr().String())
	push := *cfg.Zones[0].Push
	push.RetryInterval = config.Duration(5 * time.Millisecond)
	var logs eventstest.Logs
	p := startPusher(t, Options{Zone: "demo.test.", Push: push, Log: zerolog.New(&logs)})

	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return accepted >= 20
	}, "the pusher retries the reset update")
	if n := logs.Count("zone push failed"); n > 2 {
		t.Errorf("20 retries reset alike logged %d times, want once (twice should one reset read as another error):\n%s", n, logs.String())
	}
}

// A recheck reads the owned names only when the primary's SOA serial moved since a recheck found
// them as pushed: with nothing changed it costs a query for the marker and one for the serial,
// not two a name (20,000 a minute for 10,000 apps); a hand edit, which moves the serial, is
// still put back at the next recheck.
func TestARecheckReadsTheOwnedNamesOnlyWhenThePrimarysSerialMoved(t *testing.T) {
	primary := startApplyingPrimary(t)
	p, logs := startLogging(t, primary.addr)
	const names = 50
	rrsets := map[zone.Key][]dns.RR{}
	for i := range names {
		name := fmt.Sprintf("app-%d.demo.test.", i)
		own(rrsets, name, "10.0.0.1")
	}
	at := func(recheck bool) Desired {
		return Desired{Serial: 1, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}, Recheck: recheck}
	}
	reads := func() int {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.reads
	}
	p.Offer(at(false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")
	// recheck offers one and returns the queries it cost, once the pusher found the primary
	// holding its records.
	recheck := func() int {
		t.Helper()
		before, stood := reads(), logs.Count("zone not pushed: the primary holds its records")
		p.Offer(at(true))
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return logs.Count("zone not pushed: the primary holds its records") > stood
		}, "the recheck")
		return reads() - before
	}
	recheck() // the first push rewrote every name from a serial it read: the marker says the one it left
	for i := range 3 {
		if i == 2 {
			// A change of STATE that leaves the zone's records sends nothing, and keeps the gate.
			later := at(false)
			later.State.Seq = 11
			stood := logs.Count("zone not pushed: the primary holds its records")
			p.Offer(later)
			eventstest.Eventually(t, 5*time.Second, func() bool {
				return logs.Count("zone not pushed: the primary holds its records") > stood
			}, "the offer of a later position")
		}
		if n := recheck(); n > 2 {
			t.Fatalf("recheck %d with nothing changed sent %d queries to the primary, want at most 2 (the marker and the SOA serial), not two a name", i+2, n)
		}
	}

	primary.set(func(p *applyingPrimary) {
		p.records["app-7.demo.test."] = []string{"A 192.0.2.66"}
		p.serial++
	})
	p.Offer(at(true))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return logs.Count("zone pushed: owned records were changed on the primary under the marker, and are restored") == 1
	}, "the recheck after the hand edit")
	if got := primary.at("app-7.demo.test."); !slices.Equal(got, []string{"A 10.0.0.1"}) {
		t.Errorf("app-7 after the recheck: %v, want the pushed [A 10.0.0.1]", got)
	}

	// A primary that does not move its serial at an edit has the names read all the same, at
	// least once every ownedReadEvery rechecks.
	primary.set(func(p *applyingPrimary) { p.records["app-8.demo.test."] = []string{"A 192.0.2.66"} })
	const restoredMessage = "zone pushed: owned records were changed on the primary under the marker, and are restored"
	for i := 0; i <= ownedReadEvery && logs.Count(restoredMessage) < 2; i++ {
		done := logs.Count("zone not pushed: the primary holds its records") + logs.Count(restoredMessage)
		p.Offer(at(true))
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return logs.Count("zone not pushed: the primary holds its records")+logs.Count(restoredMessage) > done
		}, "the recheck")
	}
	if got := primary.at("app-8.demo.test."); !slices.Equal(got, []string{"A 10.0.0.1"}) {
		t.Errorf("app-8 after %d rechecks, its edit not moving the serial: %v, want the pushed [A 10.0.0.1]", ownedReadEvery+1, got)
	}
}

// A recheck that reads every owned name (the primary's serial moved: a hand edit, an ACME client,
// another server's push) asks them pipelined, up to pipelineWindow queries in flight on a
// connection: 2,000 apps 20 ms away cost a few dozen round trips, where a query at a time cost
// 4,000 of them, 80 s before the edit was put back (2 s on loopback, 34 s on a loaded CI run, in
// which one answer took over 5 s and failed the push).
func TestARecheckAcrossAWideAreaLinkReadsTwoThousandOwnedNamesInAFewRoundTripsNotTwoAName(t *testing.T) {
	const names, oneWay = 2000, 10 * time.Millisecond
	primary := startApplyingPrimary(t)
	p, logs := startLogging(t, startLink(t, primary.addr, oneWay))
	d := pushedThenEditedByHand(t, p, logs, primary, names, 20*time.Second)
	start := time.Now()
	p.Offer(d)
	const restored, rtt = "zone pushed: owned records were changed on the primary under the marker, and are restored", 2 * oneWay
	eventstest.Eventually(t, 500*rtt, func() bool { return logs.Count(restored) == 1 },
		"the recheck that reads %d names, two queries each, and puts the hand edit back, a round trip being %v: want fewer than 500 round trips, not one a query", names, rtt)
	t.Logf("the recheck read %d names and put the edit back in %v, %.0f round trips", names, time.Since(start), float64(time.Since(start))/float64(rtt))
	if got := primary.at("app-1999.demo.test."); !slices.Equal(got, []string{"A 10.0.0.1"}) {
		t.Errorf("app-1999 after the recheck: %v, want the pushed [A 10.0.0.1]", got)
	}
	if !strings.Contains(logs.String(), `"restored":["app-1999.demo.test. A"]`) {
		t.Errorf("the recheck's log does not name app-1999.demo.test. A alone as restored:\n%s", logs.String())
	}
}

// A push between two rechecks moves the primary's serial by the one UPDATE it sent, and the
// pusher knows it: with STATE changing every minute, the next recheck costs the marker and the
// serial, not two queries a name (2,000 a minute for 1,000 apps); a hand edit made between two
// pushes moves the serial further, and is still found and put back.
func TestAPushBetweenRechecksDoesNotMakeTheNextReadEveryName(t *testing.T) {
	primary := startApplyingPrimary(t)
	pushesBetweenRechecks(t, primary.addr)
}

// pushesBetweenRechecks offers the primary at addr, which applies UPDATEs signed with testSecret
// to demo.test, a change before every recheck, counting the queries it gets through a relay, and
// edits an owned name by hand between two pushes.
func pushesBetweenRechecks(t *testing.T, addr string) {
	relay, counted := startCountingRelay(t, addr, dns.OpcodeQuery)
	p, logs := startLogging(t, relay)
	const names = 50
	seq := uint64(10)
	// next returns the next state: app-0's address changes at each.
	next := func() Desired {
		seq++
		rrsets := map[zone.Key][]dns.RR{}
		for i := range names {
			name := fmt.Sprintf("app-%d.demo.test.", i)
			ip := "10.0.0.1"
			if i == 0 {
				ip = fmt.Sprintf("10.0.%d.%d", seq/250, seq%250+1)
			}
			own(rrsets, name, ip)
		}
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	const held, restored = "zone not pushed: the primary holds its records", "zone pushed: owned records were changed on the primary under the marker, and are restored"
	var last Desired
	pushNext := func() {
		t.Helper()
		pushed := logs.Count("zone pushed")
		last = next()
		p.Offer(last)
		eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") > pushed }, "the push of seq %d", seq)
	}
	// recheck offers one and returns the queries it cost, once it is done.
	recheck := func() int {
		t.Helper()
		before, done := counted(), logs.Count(held)+logs.Count(restored)
		again := last
		again.Recheck = true
		p.Offer(again)
		eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(held)+logs.Count(restored) > done }, "the recheck")
		return counted() - before
	}
	pushNext()
	recheck() // the first push rewrote every name from a serial it read: the marker says the one it left
	for i := range 3 {
		pushNext()
		if n := recheck(); n > 2 {
			t.Fatalf("the recheck after push %d sent %d queries to the primary, want at most 2 (the marker and the SOA serial), not two a name", i+2, n)
		}
	}

	pushNext()
	edit := new(dns.Msg)
	edit.SetUpdate("demo.test.")
	edit.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "app-7.demo.test.", Rrtype: dns.TypeA, Class: dns.ClassANY}}})
	edit.Insert([]dns.RR{aRecord("app-7.demo.test.", "192.0.2.66")})
	updateByHand(t, addr, "edit app-7 by hand", edit)
	pushNext()
	recheck()
	if n := logs.Count(restored); n != 1 {
		t.Errorf("the recheck after a hand edit between two pushes logged %q %d times, want once", restored, n)
	}
	if got := ask(t, addr, "app-7.demo.test.", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("app-7 after the recheck: %v, want the pushed [10.0.0.1]", got)
	}
}

// A pusher tuned in place keeps what it knows of the primary: the next push moves the marker to
// its new name in the one UPDATE that sends the change, and the recheck after it reads the marker
// and the serial, not every owned name.
func TestAPusherTunedInPlaceMovesItsMarkerWithoutReadingEveryName(t *testing.T) {
	primary := startApplyingPrimary(t)
	p, logs := startLogging(t, primary.addr)
	const held = "zone not pushed: the primary holds its records"
	// at returns the state of position seq, with shop at ip.
	at := func(seq uint64, ip string) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		for name, ip := range map[string]string{"shop.demo.test.": ip, "web.demo.test.": "10.0.0.1"} {
			own(rrsets, name, ip)
		}
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	want := at(10, "127.0.0.11")
	p.Offer(want)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")
	want.Recheck = true
	p.Offer(want)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(held) == 1 }, "the first recheck, which reads every name")

	p.Tune(config.Duration(time.Second), "_moved.demo.test.")
	changed := at(11, "127.0.0.12")
	updates := func() int {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.updates
	}
	before := updates()
	p.Offer(changed)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 2 }, "the push after the tune")
	if n := updates() - before; n != 1 {
		t.Errorf("the push after the tune sent %d UPDATEs, want 1", n)
	}
	if got := primary.at(markerName); len(got) != 0 {
		t.Errorf("the marker's old name holds %v, want nothing", got)
	}
	if got := primary.at("_moved.demo.test."); len(got) != 1 || !strings.Contains(got[0], `"seq=11"`) {
		t.Errorf("the marker's new name holds %v, want the marker of seq 11", got)
	}
	if got := primary.at("shop.demo.test."); !slices.Equal(got, []string{"A 127.0.0.12"}) {
		t.Errorf("shop after the push: %v, want [A 127.0.0.12]", got)
	}
	reads := func() int {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.reads
	}
	before = reads()
	changed.Recheck = true
	p.Offer(changed)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(held) == 2 }, "the recheck after the tune")
	if n := reads() - before; n > 2 {
		t.Errorf("the recheck after the tune sent %d queries, want at most 2 (the marker and the SOA serial), not two a name", n)
	}
}
