package push

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/bindtest"
	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

var testSecret = base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))

const primaryZone = `$TTL 300
@       IN SOA ns1 hostmaster 1 3600 600 604800 5
@       IN NS  ns1
ns1     IN A   127.0.0.1
keep    IN A   192.0.2.99
shop    IN A   192.0.2.200
`

func startBIND(t *testing.T) string {
	return bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone, KeyName: "detour-key", Secret: testSecret})
}

func dig(t *testing.T, addr, name, qtype string) []string { return bindtest.Dig(t, addr, name, qtype) }

const pushConfig = `
zones:
  - name: demo.test
    push: {server: "%s", tsig: {name: detour-key, secret: "%s"}, retry_interval: 100ms}
edges:
  - {name: edge-a, region: west, hostname: edge-a.demo.test, address: 10.9.0.1}
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: p1, endpoints: [{address: "127.0.0.11:80"}, {address: "127.0.0.12:80"}]}
      - {name: p2, endpoints: [{address: "127.0.0.21:80"}]}
  - name: web
    fqdn: web.demo.test
    ingress: [edge-a]
    pools: [{name: p1, endpoints: [{address: "127.0.0.11:80"}]}]
`

// desired projects the configuration at a state into what the pusher sends, as of the position
// serial of testStream.
func desired(t *testing.T, c *config.Config, v *state.View, serial uint32) Desired {
	t.Helper()
	s, err := zone.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	z := s.Project(v, map[string]uint32{"demo.test.": serial})[0]
	return Desired{Serial: serial, RRsets: Owned(c, z), State: Position{Seq: uint64(serial), Created: testStream}}
}

func down(t *testing.T, v *state.View, seq uint64, app, pool, endpoint string) {
	t.Helper()
	e, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Apply(events.EndpointStateSubject(app, pool, endpoint), seq, e); err != nil {
		t.Fatal(err)
	}
}

func TestPushUpdatesOnlyDetoursRecordsOnARealBINDPrimary(t *testing.T) {
	t.Parallel()
	addr := startBIND(t)
	js := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(pushConfig, addr, testSecret)))
	if err != nil {
		t.Fatal(err)
	}
	p := runPusher(t, *cfg.Zones[0].Push, js.JS)

	v := state.NewView()
	p.Offer(desired(t, cfg, v, 10))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(dig(t, addr, "shop.demo.test", "A"), []string{"127.0.0.11", "127.0.0.12"})
	}, "BIND serves Detour's first pool for shop.demo.test")
	if got := dig(t, addr, "web.demo.test", "CNAME"); !slices.Equal(got, []string{"edge-a.demo.test."}) {
		t.Errorf("web.demo.test CNAME: want [edge-a.demo.test.], got %v", got)
	}
	if got := dig(t, addr, "edge-a.demo.test", "A"); !slices.Equal(got, []string{"10.9.0.1"}) {
		t.Errorf("edge-a.demo.test A: want [10.9.0.1], got %v", got)
	}
	if got := dig(t, addr, "keep.demo.test", "A"); !slices.Equal(got, []string{"192.0.2.99"}) {
		t.Errorf("a record Detour does not own must stay: want [192.0.2.99], got %v", got)
	}

	// A failover pushes only the difference; the primary's serial moves once per change.
	down(t, v, 1, "shop", "p1", "127-0-0-11_80")
	down(t, v, 2, "shop", "p1", "127-0-0-12_80")
	serialBefore := dig(t, addr, "demo.test", "SOA")
	p.Offer(desired(t, cfg, v, 11))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(dig(t, addr, "shop.demo.test", "A"), []string{"127.0.0.21"})
	}, "BIND serves the second pool after the failover")
	serialAfter := dig(t, addr, "demo.test", "SOA")
	if slices.Equal(serialBefore, serialAfter) {
		t.Errorf("the primary's SOA did not change with the update: %v", serialAfter)
	}

	// Offering the same state again changes nothing on the primary.
	p.Offer(desired(t, cfg, v, 12))
	pushed := func() int {
		n := 0
		st := js.Stream(t, events.StreamDNS)
		info, err := st.Info(context.Background())
		if err == nil {
			n = int(info.State.Msgs)
		}
		return n
	}
	eventstest.Eventually(t, 2*time.Second, func() bool { return pushed() == 2 }, "two pushed events, one per change")
	if got := dig(t, addr, "demo.test", "SOA"); !slices.Equal(got, serialAfter) {
		t.Errorf("an unchanged state must not touch the primary: SOA %v became %v", serialAfter, got)
	}
}

func TestAFailedPushIsReportedAndRetried(t *testing.T) {
	addr := startBIND(t)
	js := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(pushConfig, addr, testSecret)))
	if err != nil {
		t.Fatal(err)
	}
	wrong := *cfg.Zones[0].Push
	wrong.TSIG.Secret = base64.StdEncoding.EncodeToString([]byte("not the key BIND knows, at all!!"))
	m := metrics.New()
	p := startPusher(t, Options{Zone: "demo.test.", Push: wrong, JS: js.JS, Source: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m})
	p.Offer(desired(t, cfg, state.NewView(), 10))

	eventstest.Eventually(t, 5*time.Second, func() bool { return testutil.ToFloat64(m.Pushes.WithLabelValues("demo.test.", "failed")) >= 3 },
		"three attempts counted as failed pushes")
	st := js.Stream(t, events.StreamDNS)
	var failures []events.ZonePush
	eventstest.Eventually(t, 5*time.Second, func() bool {
		failures = failures[:0]
		for seq := uint64(1); ; seq++ {
			m, err := st.GetMsg(context.Background(), seq)
			if err != nil {
				break
			}
			e, err := events.Decode(m.Data)
			var zp events.ZonePush
			if err == nil && e.Type == events.TypeZonePushFailed && e.Payload(&zp) == nil {
				failures = append(failures, zp)
			}
		}
		return len(failures) > 0
	}, "a push_failed event")
	// Every attempt fails alike (BADSIG): the first is recorded, the retries only counted.
	if len(failures) != 1 || failures[0].Attempt != 1 || !strings.Contains(failures[0].Error, "BADSIG") || failures[0].Server != addr {
		t.Errorf("want one push_failed event, for attempt 1, naming BADSIG and the server; got %+v", failures)
	}
	if got := dig(t, addr, "shop.demo.test", "A"); !slices.Equal(got, []string{"192.0.2.200"}) {
		t.Errorf("an update signed with an unknown key must not change the zone: got %v", got)
	}
}

func TestOnARealBINDPrimaryAServerAtAnOlderStatePositionLeavesTheNewerState(t *testing.T) {
	t.Parallel()
	olderLeavesNewer(t, startBIND(t))
}

func TestOnARealBINDPrimaryTheLoserOfARaceForTheMarkerLeavesTheNewerState(t *testing.T) {
	t.Parallel()
	raceLostToNewer(t, startBIND(t))
}

// wildcardTXT is a wildcard TXT record, as a zone that sends no mail has: it answers for the
// marker's name until a push writes the marker there.
const wildcardTXT = "*       IN TXT \"v=spf1 -all\"\n"

// wildcardDoesNotStopPushes: a push to the primary at addr, whose zone holds wildcardTXT and no
// marker, must reach it and write the marker.
func wildcardDoesNotStopPushes(t *testing.T, addr string) {
	cfg := parsePushConfig(t, addr)
	var logs eventstest.Logs
	p := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(&logs)})
	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 || logs.Count("zone push failed") == 1 },
		"the first push's outcome")
	if got := ask(t, addr, "shop.demo.test.", "A"); !slices.Equal(got, []string{"127.0.0.11", "127.0.0.12"}) {
		t.Errorf("shop.demo.test A: %v, want Detour's first pool", got)
	}
	if !markerSays(t, addr, "seq=10", "server=dns-test") {
		t.Errorf("marker %v, want Detour's, at seq 10", ask(t, addr, markerName, "TXT"))
	}
	if got := ask(t, addr, "other.demo.test.", "TXT"); !slices.Equal(got, []string{`"v=spf1 -all"`}) {
		t.Errorf("other.demo.test TXT: %v, want the wildcard's", got)
	}
}

func TestOnARealBINDPrimaryAWildcardTXTCoveringTheMarkersNameDoesNotStopPushes(t *testing.T) {
	t.Parallel()
	wildcardDoesNotStopPushes(t, bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone + wildcardTXT, KeyName: "detour-key", Secret: testSecret}))
}

// A primary that caps the TTLs of an update (BIND's max-zone-ttl) holds Detour's records with
// another TTL: a recheck leaves them, rather than pushing them again, to be lowered again, with
// a warning, at every recheck for ever.
func TestARecheckLeavesOwnedRecordsWhoseTTLThePrimaryCapped(t *testing.T) {
	t.Parallel()
	addr := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: strings.Replace(primaryZone, "$TTL 300", "$TTL 10", 1), KeyName: "detour-key", Secret: testSecret, Options: "max-zone-ttl 10;"})
	cfg := parsePushConfig(t, addr)
	var logs eventstest.Logs
	p := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(&logs)})
	want := desired(t, cfg, state.NewView(), 10)
	p.Offer(want)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")
	serial := dig(t, addr, "demo.test", "SOA")
	want.Recheck = true
	for i := range 3 {
		p.Offer(want)
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return logs.Count("zone not pushed: the primary holds its records")+
				logs.Count("zone pushed: owned records were changed on the primary under the marker, and are restored") > i
		}, "recheck %d", i+1)
	}
	if n := logs.Count("zone pushed: owned records were changed on the primary under the marker, and are restored"); n > 0 {
		t.Errorf("%d of 3 rechecks pushed the records whose TTL the primary capped again, want none", n)
	}
	if got := dig(t, addr, "demo.test", "SOA"); !slices.Equal(got, serial) {
		t.Errorf("the primary's SOA moved from %v to %v over the rechecks, want it left", serial, got)
	}
	if got := dig(t, addr, "shop.demo.test", "A"); !slices.Equal(got, []string{"127.0.0.11", "127.0.0.12"}) {
		t.Errorf("shop.demo.test A: %v, want Detour's first pool", got)
	}
}

// BIND moves the serial by one at each UPDATE it applies: a push between rechecks does not make
// the next read every owned name, and a hand edit between two pushes is still put back.
func TestOnARealBINDPrimaryAPushBetweenRechecksDoesNotMakeTheNextReadEveryName(t *testing.T) {
	t.Parallel()
	pushesBetweenRechecks(t, startBIND(t))
}

// An owned name below a delegation of the primary's zone is answered with a referral, never with
// what a push wrote there: the pusher says so once, naming the name and the delegation, and
// pushes it no more, where before each recheck that read it pushed it again.
func TestOnARealBINDPrimaryAnOwnedNameBelowADelegationIsRefusedOnceNotPushedAtEveryRecheck(t *testing.T) {
	t.Parallel()
	addr := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone + "sub     IN NS  ns.elsewhere.test.\n", KeyName: "detour-key", Secret: testSecret})
	relay, sent := startCountingRelay(t, addr, dns.OpcodeUpdate)
	p, logs := startLogging(t, relay)
	rrsets := map[zone.Key][]dns.RR{}
	for name, ip := range map[string]string{"app.demo.test.": "10.0.0.1", "shop.sub.demo.test.": "10.0.0.2"} {
		own(rrsets, name, ip)
	}
	want := Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}}
	p.Offer(want)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")
	want.Recheck = true
	const done = `"message":"zone `
	var afterFirst int
	for i := range 2 * ownedReadEvery {
		before := strings.Count(logs.String(), done)
		p.Offer(want)
		eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Count(logs.String(), done) > before }, "recheck %d", i+1)
		if i == 0 {
			afterFirst = sent()
		}
	}
	if n := sent() - afterFirst; n > 0 {
		t.Errorf("%d rechecks after the first sent %d UPDATEs, want none: the name below the delegation is pushed again and again", 2*ownedReadEvery-1, n)
	}
	const refused = "owned name lies below a delegation on the primary, which answers it with a referral: not pushed"
	if n := logs.Count(refused); n != 1 {
		t.Fatalf("logged %q %d times, want once:\n%s", refused, n, logs.String())
	}
	if !strings.Contains(logs.String(), `"name":"shop.sub.demo.test."`) || !strings.Contains(logs.String(), `"delegation":"sub.demo.test."`) {
		t.Errorf("the error names neither the name nor the delegation:\n%s", logs.String())
	}
	if got := dig(t, addr, "app.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("app.demo.test A: %v, want Detour's [10.0.0.1]", got)
	}
}

// A name Detour pushed to and that a human then delegates with its own glue (shop NS
// shop.demo.test., shop A 192.0.2.53) is the delegation's now: the pusher stops pushing it and
// leaves what the primary holds there. Before, it removed the A RRset it had pushed at the
// name, which was now the glue: the delegated zone's server could no longer be found.
func TestOnARealBINDPrimaryANameDelegatedAfterItWasPushedKeepsTheDelegationsGlue(t *testing.T) {
	t.Parallel()
	addr := startBIND(t)
	p, logs := startLogging(t, addr)
	rrsets := map[zone.Key][]dns.RR{}
	for name, ip := range map[string]string{"app.demo.test.": "10.0.0.1", "shop.demo.test.": "10.0.0.2"} {
		own(rrsets, name, ip)
	}
	want := Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}}
	p.Offer(want)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")

	delegateShopByHand(t, addr)

	const refused = "owned name lies below a delegation on the primary, which answers it with a referral: not pushed"
	const done = `"message":"zone `
	before := strings.Count(logs.String(), done)
	want.Recheck = true
	p.Offer(want)
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Count(logs.String(), done) > before }, "the recheck")
	if n := logs.Count(refused); n != 1 {
		t.Fatalf("logged %q %d times, want once:\n%s", refused, n, logs.String())
	}
	if got := glue(t, addr, "shop.demo.test."); !slices.Equal(got, []string{"192.0.2.53"}) {
		t.Errorf("the glue of the delegation shop.demo.test: %v, want the [192.0.2.53] written by hand", got)
	}
	if got := dig(t, addr, "app.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("app.demo.test A: %v, want Detour's [10.0.0.1]", got)
	}
}

// delegateShopByHand delegates shop.demo.test. on the primary at addr as a human would, with an
// UPDATE: shop NS shop.demo.test., and the glue shop A 192.0.2.53 in place of the A RRset there.
func delegateShopByHand(t *testing.T, addr string) {
	t.Helper()
	edit := new(dns.Msg)
	edit.SetUpdate("demo.test.")
	edit.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "shop.demo.test.", Rrtype: dns.TypeA, Class: dns.ClassANY}}})
	edit.Insert([]dns.RR{
		&dns.NS{Hdr: dns.RR_Header{Name: "shop.demo.test.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: "shop.demo.test."},
		aRecord("shop.demo.test.", "192.0.2.53"),
	})
	updateByHand(t, addr, "delegate shop by hand", edit)
}

// updateByHand sends edit, an UPDATE of demo.test as a human makes one, signed with the test
// key, to the primary at addr, and fails the test unless it is applied.
func updateByHand(t *testing.T, addr, what string, edit *dns.Msg) {
	t.Helper()
	edit.SetTsig("detour-key.", dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second, TsigSecret: map[string]string{"detour-key.": testSecret}}
	if r, _, err := c.Exchange(edit, addr); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("%s: %v %v", what, r, err)
	}
}

// A name Detour pushed to and that a human then delegates with its own glue keeps the glue
// though the next thing the pusher does is a failover that changes the name's address, before
// any recheck has read it: a failover's UPDATE requires that neither a name it writes nor a name
// above it in the zone holds an NS RRset, so the primary refuses it whole, and the pusher learns
// the delegation and sends it again without the name. Before, the failover, which asks the
// primary nothing, replaced the glue with Detour's addresses; with two servers pushing one
// primary, the one whose rechecks stand aside for the other's marker never read the name, and
// did so at every failover.
func TestOnARealBINDPrimaryAFailoverRightAfterANameIsDelegatedKeepsTheDelegationsGlue(t *testing.T) {
	t.Parallel()
	failoverAfterDelegation(t, startBIND(t))
}

// failoverAfterDelegation pushes app and shop to the primary at addr, delegates shop there by
// hand, and checks the failovers after it: the glue stays, app's addresses go out, the
// delegation is told once and costs no refusal at the failover after.
func failoverAfterDelegation(t *testing.T, addr string) {
	relay, sent := startCountingRelay(t, addr, dns.OpcodeUpdate)
	p, logs := startLogging(t, relay)
	at := func(seq uint64, app, shop string) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		own(rrsets, "app.demo.test.", app)
		own(rrsets, "shop.demo.test.", shop)
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	p.Offer(at(10, "10.0.0.1", "10.0.0.2"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")
	delegateShopByHand(t, addr)

	p.Offer(at(11, "10.0.0.3", "10.0.0.4"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 2 || logs.Count("zone push failed") > 0 }, "the failover")
	const refused = "owned name lies below a delegation on the primary, which answers it with a referral: not pushed"
	if n := logs.Count(refused); n != 1 || logs.Count("zone push failed") > 0 {
		t.Errorf("logged %q %d times, want once, and no failed push:\n%s", refused, n, logs.String())
	}
	if got := glue(t, addr, "shop.demo.test."); !slices.Equal(got, []string{"192.0.2.53"}) {
		t.Errorf("the glue of the delegation shop.demo.test: %v, want the [192.0.2.53] written by hand", got)
	}
	if got := dig(t, addr, "app.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("app.demo.test A: %v, want the failover's [10.0.0.3]", got)
	}

	// The delegation is known now: the next failover goes out at once, and leaves shop alone.
	updates := sent()
	p.Offer(at(12, "10.0.0.5", "10.0.0.6"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 3 || logs.Count("zone push failed") > 0 }, "the next failover")
	if n := sent() - updates; n != 1 {
		t.Errorf("the next failover sent %d UPDATEs, want 1", n)
	}
	if got := glue(t, addr, "shop.demo.test."); !slices.Equal(got, []string{"192.0.2.53"}) {
		t.Errorf("after the next failover the glue of shop.demo.test: %v, want [192.0.2.53]", got)
	}
	if got := dig(t, addr, "app.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.5"}) {
		t.Errorf("app.demo.test A: %v, want the next failover's [10.0.0.5]", got)
	}
	if n := logs.Count(refused); n != 1 {
		t.Errorf("after the next failover %q is logged %d times, want once", refused, n)
	}
}

// glue returns the addresses the primary at addr gives with its referral for name.
func glue(t *testing.T, addr, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("ask %s A: %v", name, err)
	}
	var out []string
	for _, rr := range r.Extra {
		if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, name) {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// A marker name below a delegation on the primary is never answered from what a push writes
// there: the pusher cannot read it, so the push fails at once and says why, naming the marker
// and the delegation. Before, the first push wrote the marker below the cut, and every later
// push was refused by the primary (YXRRSET) for ever, the failover never reaching it.
func TestOnARealBINDPrimaryAMarkerBelowADelegationFailsThePushNamingTheDelegation(t *testing.T) {
	t.Parallel()
	addr := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone + "_detour-state IN NS ns.elsewhere.test.\n", KeyName: "detour-key", Secret: testSecret})
	p, logs := startLogging(t, addr)
	rrsets := map[zone.Key][]dns.RR{}
	own(rrsets, "app.demo.test.", "10.0.0.1")
	p.Offer(Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") > 0 || logs.Count("zone push failed") > 0 }, "the first push")
	const why = "read marker _detour-state.demo.test. from %s: it lies below the delegation _detour-state.demo.test. on the primary"
	if n := logs.Count("zone push failed"); n == 0 || !strings.Contains(logs.String(), fmt.Sprintf(why, addr)) {
		t.Fatalf("the first push with the marker below a delegation: %d failures logged, want one saying %q:\n%s", n, fmt.Sprintf(why, addr), logs.String())
	}
	if got := dig(t, addr, "app.demo.test", "A"); len(got) != 0 {
		t.Errorf("app.demo.test A: %v, want nothing pushed without a marker that can be read", got)
	}
}

// A marker moved by a reload to a name that answers TXT records already (written there by hand,
// or a wildcard's) is moved all the same: the next push leaves it at its new name alone, in
// place of what a push replaces at any marker name, and sends only the change. Before, the
// pusher took those records for the marker, rewrote every owned name, and left its old marker at
// the old name for good.
func TestOnARealBINDPrimaryAMarkerMovedToANameAnsweringATXTRecordLeavesNoneAtItsOldName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, line string }{
		{"a record written by hand", `_moved IN TXT "written by hand"`},
		{"a wildcard", `* IN TXT "wild"`},
	} {
		t.Run(c.name, func(t *testing.T) { markerMovedOver(t, c.line) })
	}
}

// markerMovedOver moves the marker of a pusher to a BIND primary whose zone holds line to
// _moved.demo.test, and checks the push after it.
func markerMovedOver(t *testing.T, line string) {
	addr := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone + line + "\n", KeyName: "detour-key", Secret: testSecret})
	p, logs := startLogging(t, addr)
	at := func(seq uint64, ip string) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		for name, ip := range map[string]string{"shop.demo.test.": ip, "web.demo.test.": "10.0.0.1"} {
			own(rrsets, name, ip)
		}
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	p.Offer(at(10, "127.0.0.11"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")

	p.Tune(config.Duration(time.Second), "_moved.demo.test.")
	p.Offer(at(11, "127.0.0.12"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 2 }, "the push after the move")
	for _, rr := range dig(t, addr, "_detour-state.demo.test", "TXT") {
		if strings.Contains(rr, "detour-state") {
			t.Errorf("the marker's old name still holds %v, want it moved", rr)
		}
	}
	if got := dig(t, addr, "_moved.demo.test", "TXT"); len(got) != 1 || !strings.Contains(got[0], `"seq=11"`) {
		t.Errorf("the marker's new name holds %v, want the marker of seq 11", got)
	}
	if !strings.Contains(logs.String(), `"rrsets":1,`) {
		t.Errorf("the push after the move was not of the one RRset it changes, every owned name rewritten:\n%s", logs.String())
	}
	if got := dig(t, addr, "shop.demo.test", "A"); !slices.Equal(got, []string{"127.0.0.12"}) {
		t.Errorf("shop.demo.test A: %v, want [127.0.0.12]", got)
	}
}

// BIND takes a push of 10,000 names, and their failover, in UPDATEs compressed and signed, 13 and
// 9 of them where they were 20 and 15, and then holds every name's records. Like the other tests
// of thousands of names it runs before the parallel ones, not beside them: in a CI run, three
// packages at a time, the BIND of a parallel test then took over 5 s to answer one query.
func TestOnARealBINDPrimaryTenThousandNamesFailOverInFewCompressedUPDATEs(t *testing.T) {
	tenThousandFailOver(t, bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone, KeyName: "detour-key", Secret: testSecret,
		Options: "allow-transfer { 127.0.0.1; };"}))
}

// tenThousandFailOver pushes 10,000 names to the primary at addr, which lets 127.0.0.1 transfer
// the zone, then fails every one over, and checks the UPDATEs each push took and what the
// primary holds after it.
func tenThousandFailOver(t *testing.T, addr string) {
	const names = 10000
	relay, updates := startCountingRelay(t, addr, dns.OpcodeUpdate)
	cfg := parsePushConfig(t, relay)
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		what string
		seq  uint64
		ip   string
		most int
	}{
		{what: "the first push, every name rewritten", seq: 10, ip: "10.0.0.1", most: 13},
		{what: "the failover of every name", seq: 11, ip: "10.0.0.2", most: 9},
	} {
		rrsets := map[zone.Key][]dns.RR{}
		for i := range names {
			own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), step.ip)
		}
		before, start := updates(), time.Now()
		if _, err := p.push(t.Context(), Desired{Serial: uint32(step.seq), RRsets: rrsets, State: Position{Seq: step.seq, Created: testStream}}); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		took, sent := time.Since(start), updates()-before
		t.Logf("%s: %d UPDATEs, %v", step.what, sent, took.Round(time.Millisecond))
		if sent > step.most {
			t.Errorf("%s went in %d UPDATEs, want at most %d", step.what, sent, step.most)
		}
		held := map[string][]string{}
		transfer, err := new(dns.Transfer).In(&dns.Msg{Question: []dns.Question{{Name: "demo.test.", Qtype: dns.TypeAXFR, Qclass: dns.ClassINET}}}, addr)
		if err != nil {
			t.Fatalf("transfer demo.test: %v", err)
		}
		for e := range transfer {
			if e.Error != nil {
				t.Fatalf("transfer demo.test: %v", e.Error)
			}
			for _, rr := range e.RR {
				if a, ok := rr.(*dns.A); ok {
					held[a.Hdr.Name] = append(held[a.Hdr.Name], a.A.String())
				}
			}
		}
		var wrong []string
		for i := range names {
			if name := fmt.Sprintf("app-%d.demo.test.", i); !slices.Equal(held[name], []string{step.ip}) {
				wrong = append(wrong, name)
			}
		}
		if len(wrong) > 0 {
			t.Errorf("after %s %d names (%s first) do not hold [%s]", step.what, len(wrong), wrong[0], step.ip)
		}
	}
}

// A primary that serves, beside the zone, a child zone delegated from it (sub.demo.test, a
// team's own) answers a name in the child zone from the child, with authority, never with a
// referral: the pusher cannot learn that an owned name there (shop.sub.demo.test, configured in
// the parent by mistake) lies below the parent's delegation. A failover that changes it and
// app.demo.test still reaches the primary, app's new address with it. Before, every failover's
// UPDATE required that sub.demo.test holds no NS RRset, which it does: BIND refused it
// (YXRRSET), the pusher asked the names, found no referral, and sent the same update again,
// refused again, for ever: no failover of any app of the zone reached the primary.
func TestOnARealBINDPrimaryServingAChildZoneAFailoverOfANameInTheChildStillReachesTheOthers(t *testing.T) {
	t.Parallel()
	childZoneFailover(t, bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone + childDelegation, KeyName: "detour-key", Secret: testSecret,
		More: map[string]string{"sub.demo.test": childZone}}))
}

// childDelegation delegates sub.demo.test from demo.test to the primary itself, which serves
// childZone there.
const childDelegation = "sub     IN NS  ns1\n"

const childZone = "$TTL 300\n@ IN SOA ns1.demo.test. hostmaster 1 3600 600 604800 5\n@ IN NS ns1.demo.test.\nshop IN A 192.0.2.7\n"

// childZoneFailover pushes app.demo.test and shop.sub.demo.test to the primary at addr, which
// serves sub.demo.test itself, then a failover of both: app's new address reaches it.
func childZoneFailover(t *testing.T, addr string) {
	p, logs := startLogging(t, addr)
	at := func(seq uint64, app, shop string) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		own(rrsets, "app.demo.test.", app)
		own(rrsets, "shop.sub.demo.test.", shop)
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	p.Offer(at(10, "10.0.0.1", "10.0.0.2"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 || logs.Count("zone push failed") > 0 }, "the first push")
	p.Offer(at(11, "10.0.0.3", "10.0.0.4"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 2 || logs.Count("zone push failed") > 0 }, "the failover")
	if n := logs.Count("zone push failed"); n > 0 {
		t.Errorf("a push failed:\n%s", logs.String())
	}
	if got := dig(t, addr, "app.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("app.demo.test A: %v, want the failover's [10.0.0.3]", got)
	}
	if got := dig(t, addr, "shop.sub.demo.test", "A"); !slices.Equal(got, []string{"192.0.2.7"}) {
		t.Errorf("shop.sub.demo.test A: %v, want the child zone's [192.0.2.7]", got)
	}
}

// A human who delegates a subdomain holding thousands of owned names (team.demo.test, 7,000
// apps below it) right before a failover of them all costs the failover one refusal: the
// names below the delegation found are left out of the next try, asked or not. Before, each try
// asked only the names its refused first part wrote, about 1,300, and left out those alone: the
// next try's first part was refused for the next ones, and after five refusals (maxRaces) the
// failover failed, zz.demo.test's with it, until a retry after the backoff.
func TestOnARealBINDPrimaryAFailoverRightAfterASubdomainOfThousandsOfOwnedNamesIsDelegatedGoesOut(t *testing.T) {
	addr := startBIND(t)
	relay, updates := startCountingRelay(t, addr, dns.OpcodeUpdate)
	cfg := parsePushConfig(t, relay)
	logs := &eventstest.Logs{}
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(logs).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	at := func(seq uint64, ip string) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		for i := range 7000 {
			own(rrsets, fmt.Sprintf("app-%d.team.demo.test.", i), ip)
		}
		own(rrsets, "zz.demo.test.", ip)
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	if _, err := p.push(t.Context(), at(10, "10.0.0.1")); err != nil {
		t.Fatalf("the first push: %v", err)
	}
	edit := new(dns.Msg)
	edit.SetUpdate("demo.test.")
	edit.Insert([]dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: "team.demo.test.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: "ns.elsewhere.test."}})
	updateByHand(t, addr, "delegate team.demo.test by hand", edit)
	before := updates()
	if _, err := p.push(t.Context(), at(11, "10.0.0.2")); err != nil {
		t.Errorf("the failover: %v", err)
	}
	if n := updates() - before; n > 2 {
		t.Errorf("the failover sent %d UPDATEs, want 2: one refused, one without the delegated names", n)
	}
	if got := dig(t, addr, "zz.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Errorf("zz.demo.test A: %v, want the failover's [10.0.0.2]", got)
	}
	// One line for the delegation, naming how many owned names it holds: a line a name was
	// 7,000 lines at error level.
	const refused = "owned name lies below a delegation on the primary, which answers it with a referral: not pushed"
	if n := logs.Count(refused); n != 1 || !strings.Contains(logs.String(), `"names":7000`) {
		t.Errorf("logged %q %d times (want once, with \"names\":7000):\n%.2000s", refused, n, logs.String())
	}
}

// A failover in parts to a primary that serves a child zone (aaa.demo.test, holding an owned
// name by mistake) goes out though its first part is refused for the child's NS, and the part
// that writes a name a human delegated meanwhile (zz.demo.test) is still refused for it: the
// glue stays. Only the names asked after the first refusal, and found not delegated, go
// without the prerequisite.
func TestOnARealBINDPrimaryServingAChildZoneAFailoverInPartsKeepsTheGlueOfANameDelegatedMeanwhile(t *testing.T) {
	t.Parallel()
	addr := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone + "aaa     IN NS  ns1\n", KeyName: "detour-key", Secret: testSecret,
		More: map[string]string{"aaa.demo.test": childZone}})
	cfg := parsePushConfig(t, addr)
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	at := func(seq uint64, ip string) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		own(rrsets, "shop.aaa.demo.test.", ip)
		for i := range 2500 {
			own(rrsets, fmt.Sprintf("x-%d.demo.test.", i), ip)
		}
		own(rrsets, "zz.demo.test.", ip)
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	if _, err := p.push(t.Context(), at(10, "10.0.0.1")); err != nil {
		t.Fatalf("the first push: %v", err)
	}
	edit := new(dns.Msg)
	edit.SetUpdate("demo.test.")
	edit.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "zz.demo.test.", Rrtype: dns.TypeA, Class: dns.ClassANY}}})
	edit.Insert([]dns.RR{
		&dns.NS{Hdr: dns.RR_Header{Name: "zz.demo.test.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: "zz.demo.test."},
		aRecord("zz.demo.test.", "192.0.2.53"),
	})
	updateByHand(t, addr, "delegate zz.demo.test by hand", edit)
	if _, err := p.push(t.Context(), at(11, "10.0.0.2")); err != nil {
		t.Errorf("the failover: %v", err)
	}
	if got := glue(t, addr, "zz.demo.test."); !slices.Equal(got, []string{"192.0.2.53"}) {
		t.Errorf("the glue of the delegation zz.demo.test: %v, want the [192.0.2.53] written by hand", got)
	}
	if got := dig(t, addr, "x-2499.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Errorf("x-2499.demo.test A: %v, want the failover's [10.0.0.2]", got)
	}
}
