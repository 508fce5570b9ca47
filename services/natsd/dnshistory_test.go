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
