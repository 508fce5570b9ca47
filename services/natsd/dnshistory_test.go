package natsd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	mdns "github.com/miekg/dns"
	"github.com/rs/zerolog"
)

func TestDeploymentIdentitiesADNSServerRestartedUnderItsOwnUserAnswersIXFRFromTheHistoryItRecorded(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	ctx := context.Background()
	cfg, _, err := config.Apply(ctx, d.as("operator").js, "test.yaml", []byte(`
zones: [{name: demo.test, transfer_to: ["127.0.0.1"]}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    pools:
      - {name: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
      - {name: us-east, endpoints: [{name: e1, address: "127.0.0.12:8081"}]}
`), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := func() (*client, *dnsupdater.Server, func()) {
		c := d.as("dns-1")
		s, err := dnsupdater.New(dnsupdater.Options{JS: c.js, Config: cfg, Addr: "127.0.0.1:0", DataDir: dir, Name: "dns-1",
			Log: zerolog.New(zerolog.NewTestWriter(t))})
		if err != nil {
			t.Fatal(err)
		}
		return c, s, eventstest.Run(t, "dns-1", s.Run)
	}
	_, s, stop := start()
	s0 := soaSerialOf(t, s.Addr())
	down, err := events.New(events.TypeEndpointDown, "decider-1", time.Now(),
		events.Transition{App: "shop", Pool: "us-west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, d.as("decider-1").js, events.EndpointStateSubject("shop", "us-west", "w1"), down); err != nil {
		t.Fatal(err)
	}
	var s1 uint32
	eventstest.Eventually(t, 5*time.Second, func() bool { s1 = soaSerialOf(t, s.Addr()); return s1 != s0 }, "the serial does not move")
	st, err := d.as("operator").js.Stream(ctx, events.StreamDNS)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, events.ZoneSubject("demo.test.", "dns-1"))
		var zc events.ZoneChanged
		return err == nil && ok && e.Payload(&zc) == nil && zc.Serial == s1
	}, "the change to serial %d is not recorded on the DNS stream", s1)
	stop()

	c, s, _ := start()
	want := []string{fmt.Sprint("SOA ", s1), fmt.Sprint("SOA ", s0), "A 127.0.0.11", fmt.Sprint("SOA ", s1), "A 127.0.0.12", fmt.Sprint("SOA ", s1)}
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = ixfr(t, s.Addr(), s0)
		return fmt.Sprint(got) == fmt.Sprint(want)
	}, "after a restart as dns-1, an IXFR from serial %d answers %q, want its one step %q", s0, &got, want)
	if v := c.errors(); len(v) > 0 {
		t.Errorf("dns-1 ran into its permissions: %q", v)
	}
}

// soaSerialOf is the serial the DNS server at addr answers for demo.test., 0 for none.
func soaSerialOf(t *testing.T, addr string) uint32 {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion("demo.test.", mdns.TypeSOA)
	r, err := mdns.Exchange(m, addr)
	if err != nil || len(r.Answer) != 1 {
		return 0
	}
	if soa, ok := r.Answer[0].(*mdns.SOA); ok {
		return soa.Serial
	}
	return 0
}

// ixfr asks the DNS server at addr for demo.test.'s changes since serial from, and returns the
// SOA and A records of the answer in order.
func ixfr(t *testing.T, addr string, from uint32) []string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetIxfr("demo.test.", from, "ns1.demo.test.", "hostmaster.demo.test.")
	ch, err := (&mdns.Transfer{}).In(m, addr)
	if err != nil {
		return nil
	}
	var out []string
	for env := range ch {
		if env.Error != nil {
			return nil
		}
		for _, rr := range env.RR {
			switch rr := rr.(type) {
			case *mdns.SOA:
				out = append(out, fmt.Sprint("SOA ", rr.Serial))
			case *mdns.A:
				out = append(out, "A "+rr.A.String())
			}
		}
	}
	return out
}

// JetStream drops a message whose Nats-Msg-Id it stored within the stream's duplicate window,
// on whatever subject: another DNS server must not be able to store, on its own subject, the ids
// of this one's next zone versions first, and so cut this one's IXFR history.
func TestDeploymentIdentitiesADNSServerCannotDropAnothersZoneVersionsByPublishingTheirIDsFirst(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	ctx := context.Background()
	cfg, _, err := config.Apply(ctx, d.as("operator").js, "test.yaml", []byte(`
zones: [{name: demo.test, transfer_to: ["127.0.0.1"]}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    pools:
      - {name: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
      - {name: us-east, endpoints: [{name: e1, address: "127.0.0.12:8081"}]}
`), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := func() (*dnsupdater.Server, func()) {
		s, err := dnsupdater.New(dnsupdater.Options{JS: d.as("dns-1").js, Config: cfg, Addr: "127.0.0.1:0", DataDir: dir, Name: "dns-1",
			Log: zerolog.New(zerolog.NewTestWriter(t))})
		if err != nil {
			t.Fatal(err)
		}
		return s, eventstest.Run(t, "dns-1", s.Run)
	}
	transition := func(endpoint string, from, to events.Status) events.Envelope {
		typ := events.TypeEndpointDown
		if to == events.StatusUp {
			typ = events.TypeEndpointUp
		}
		e, err := events.New(typ, "decider-1", time.Now(), events.Transition{App: "shop", Pool: "us-west", Endpoint: endpoint, From: from, To: to, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	decide := func(e events.Envelope) {
		if _, err := events.Publish(ctx, d.as("decider-1").js, events.EndpointStateSubject("shop", "us-west", "w1"), e); err != nil {
			t.Fatal(err)
		}
	}
	dns2 := d.as("dns-2")
	st, err := dns2.js.Stream(ctx, events.StreamDNS)
	if err != nil {
		t.Fatal(err)
	}
	recorded := func(serial uint32) bool {
		e, _, ok, err := events.Last(ctx, st, events.ZoneSubject("demo.test.", "dns-1"))
		var zc events.ZoneChanged
		return err == nil && ok && e.Payload(&zc) == nil && zc.Serial == serial
	}

	s, stop := start()
	s0 := soaSerialOf(t, s.Addr())
	decide(transition("w1", events.StatusUp, events.StatusDown))
	var s1 uint32
	eventstest.Eventually(t, 5*time.Second, func() bool { s1 = soaSerialOf(t, s.Addr()); return s1 != s0 }, "the serial does not move")
	eventstest.Eventually(t, 5*time.Second, func() bool { return recorded(s1) }, "the change to serial %d is not recorded", s1)

	// dns-2 reads dns-1's server id from its last version, sees the next STATE event (here it
	// is handed its id before it is published: an attacker that wins the race), and stores on
	// its own subject an event under each id dns-1's version of the next serials would take.
	last, _, _, err := events.Last(ctx, st, events.ZoneSubject("demo.test.", "dns-1"))
	if err != nil {
		t.Fatal(err)
	}
	var zc events.ZoneChanged
	if err := last.Payload(&zc); err != nil {
		t.Fatal(err)
	}
	up := transition("w1", events.StatusDown, events.StatusUp)
	serials := map[uint32]bool{}
	for i := range uint32(5) {
		serials[s1+1+i] = true
	}
	for i := -2; i < 60; i++ {
		serials[dnsupdater.NextSerial(s1, time.Now().Add(time.Duration(i)*time.Second))] = true
	}
	for serial := range serials {
		key := "dns-1|" + zc.Server + "|demo.test.@" + fmt.Sprint(serial)
		forged, err := events.New(events.TypeZoneChanged, "dns-2", time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: serial, Server: "forged"})
		if err != nil {
			t.Fatal(err)
		}
		forged.ID = events.DerivedID(up.ID, events.TypeZoneChanged+"|"+key)
		if _, err := events.Publish(ctx, dns2.js, events.ZoneSubject("demo.test.", "dns-2"), forged); err != nil {
			t.Fatal(err)
		}
	}
	if v := dns2.errors(); len(v) > 0 {
		t.Fatalf("dns-2 ran into its permissions: %q", v)
	}

	decide(up)
	var s2 uint32
	eventstest.Eventually(t, 5*time.Second, func() bool { s2 = soaSerialOf(t, s.Addr()); return s2 != s1 }, "the serial does not move again")
	eventstest.Eventually(t, 5*time.Second, func() bool { return recorded(s2) },
		"dns-1's change to serial %d is not on its subject: dropped as a duplicate of dns-2's event", s2)
	stop()

	s, _ = start()
	want := []string{fmt.Sprint("SOA ", s2), fmt.Sprint("SOA ", s1), "A 127.0.0.12", fmt.Sprint("SOA ", s2), "A 127.0.0.11", fmt.Sprint("SOA ", s2)}
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = ixfr(t, s.Addr(), s1)
		return fmt.Sprint(got) == fmt.Sprint(want)
	}, "after a restart, an IXFR from serial %d answers %q, want its one step %q", s1, &got, want)
}
