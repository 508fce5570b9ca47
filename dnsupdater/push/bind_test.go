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
	olderLeavesNewer(t, startBIND(t))
}

func TestOnARealBINDPrimaryTheLoserOfARaceForTheMarkerLeavesTheNewerState(t *testing.T) {
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
	wildcardDoesNotStopPushes(t, bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: primaryZone + wildcardTXT, KeyName: "detour-key", Secret: testSecret}))
}
