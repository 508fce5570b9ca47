package push

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/bindtest"
	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// delegatedShop is a zone in which shop, a name Detour owns, is delegated with its glue at the
// name itself.
const delegatedShop = `$TTL 300
@       IN SOA ns1 hostmaster 1 3600 600 604800 5
@       IN NS  ns1
ns1     IN A   127.0.0.1
shop    IN NS  shop
shop    IN A   192.0.2.53
shop    IN AAAA 2001:db8::53
`

// A pusher that starts (or restarts) against a primary that delegates an owned name with its
// glue at that name leaves the glue as it is: its first push, which rewrites every owned name
// whole, leaves out the names the primary answers with a referral. Before, only a recheck's read
// found them, after the first push had replaced the glue with Detour's addresses; each restart
// did it again.
func TestOnARealBINDPrimaryARestartedPusherLeavesTheGlueAtADelegatedOwnedName(t *testing.T) {
	addr := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: delegatedShop, KeyName: "detour-key", Secret: testSecret})
	glueBefore := glueRRs(t, addr, "shop.demo.test.")
	if len(glueBefore) != 3 {
		t.Fatalf("the referral for shop.demo.test. carries %v, want its NS and its A and AAAA glue", glueBefore)
	}
	var mu sync.Mutex
	var touched []string // the owned names' records the UPDATEs named
	relay := startRelay(t, addr, func(m *dns.Msg) func() {
		if m.Opcode == dns.OpcodeUpdate {
			mu.Lock()
			defer mu.Unlock()
			for _, rr := range m.Ns {
				if strings.EqualFold(rr.Header().Name, "shop.demo.test.") {
					touched = append(touched, rr.String())
				}
			}
		}
		return nil
	})
	rrsets := map[zone.Key][]dns.RR{}
	own(rrsets, "app.demo.test.", "10.0.0.1")
	own(rrsets, "shop.demo.test.", "10.0.0.2")
	want := Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}}

	const refused = "owned name lies below a delegation on the primary, which answers it with a referral: not pushed"
	for run := range 2 {
		// Each run is a start of the DNS server: a new pusher, knowing nothing of the primary.
		cfg := parsePushConfig(t, relay)
		logs := &eventstest.Logs{}
		p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); p.Run(ctx) }()
		p.Offer(want)
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return logs.Count("zone pushed") == 1 || logs.Count("zone not pushed: the primary holds its records") == 1
		}, "run %d's first push", run+1)
		cancel()
		<-done
		if n := logs.Count(refused); n != 1 {
			t.Errorf("run %d logged %q %d times, want once:\n%s", run+1, refused, n, logs.String())
		}
		if got := glueRRs(t, addr, "shop.demo.test."); !slices.Equal(got, glueBefore) {
			t.Errorf("after run %d the glue of the delegation shop.demo.test. is %v, want %v as written on the primary", run+1, got, glueBefore)
		}
		mu.Lock()
		if len(touched) > 0 {
			t.Errorf("run %d's first push sent UPDATEs naming shop.demo.test.: %v, want none", run+1, touched)
		}
		touched = nil
		mu.Unlock()
		if got := dig(t, addr, "app.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
			t.Errorf("after run %d app.demo.test A is %v, want Detour's [10.0.0.1]", run+1, got)
		}
	}
}

// glueRRs returns the records at name that the primary at addr gives with its referrals for
// name's A and AAAA (the delegation's NS and its glue), as text with their TTLs, sorted.
func glueRRs(t *testing.T, addr, name string) []string {
	t.Helper()
	var out []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, addr)
		if err != nil {
			t.Fatalf("ask %s %s: %v", name, dns.TypeToString[qtype], err)
		}
		for _, rr := range append(r.Ns, r.Extra...) {
			if strings.EqualFold(rr.Header().Name, name) && rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, rr.String())
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// A pusher that starts against a primary across a wide area link pushes within a few round
// trips, not one a name: its first push, which rewrites every owned name whole, learns the
// delegations among them with queries pipelined on one connection. Before, it asked them one
// after the other, waiting out a round trip each before the update that may carry a failover
// went out: 6 s for 300 apps 20 ms away, 300 s for 10,000 apps 30 ms away; as long before each
// retry of a failed push.
func TestOnARealBINDPrimaryAcrossAWideAreaLinkAFirstPushWaitsAFewRoundTripsNotOneAName(t *testing.T) {
	t.Parallel()
	const names, oneWay = 300, 10 * time.Millisecond
	addr := startLink(t, startBIND(t), oneWay)
	cfg := parsePushConfig(t, addr)
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	rrsets := map[zone.Key][]dns.RR{}
	for i := range names {
		own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), "10.0.0.1")
	}
	start := time.Now()
	if _, err := p.push(t.Context(), Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if rtt := 2 * oneWay; took > 100*rtt {
		t.Errorf("the first push of %d apps took %v, %.0f round trips of %v: want fewer than 100, not one an app", names, took, float64(took)/float64(rtt), rtt)
	}
	if got := ask(t, addr, "app-299.demo.test.", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("app-299.demo.test A: %v, want the pushed [10.0.0.1]", got)
	}
}

// startLink starts a TCP relay to upstream that delivers what either side sends delay later,
// as a wide area link does: what follows is not held back meanwhile, so that queries pipelined
// on a connection take one delay each way together.
func startLink(t *testing.T, upstream string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	// carry copies from src to dst, each read delivered delay after it was read (the wait is
	// the link's latency, not a synchronisation).
	carry := func(dst, src net.Conn) {
		type chunk struct {
			b  []byte
			at time.Time
		}
		chunks := make(chan chunk, 4096)
		go func() {
			defer close(chunks)
			for {
				buf := make([]byte, 64<<10)
				n, err := src.Read(buf)
				if n > 0 {
					chunks <- chunk{buf[:n], time.Now().Add(delay)}
				}
				if err != nil {
					return
				}
			}
		}()
		for c := range chunks {
			<-time.After(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				break
			}
		}
		_ = dst.(*net.TCPConn).CloseWrite()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() {
				var wg sync.WaitGroup
				wg.Go(func() { carry(up, c) })
				wg.Go(func() { carry(c, up) })
				wg.Wait()
				_ = c.Close()
				_ = up.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// An app a reload adds at a name the primary delegates, with its glue at that name, leaves the
// glue as it is: the push that writes the new name whole (as at a start) learns first whether
// the primary delegates it. Before, only a start, a retry or a push over another server's
// records asked; the reload's push replaced the glue with Detour's addresses, and the recheck
// that found the referral then left them there for good.
func TestOnARealBINDPrimaryAnAppAReloadAddsAtADelegatedNameLeavesTheGlue(t *testing.T) {
	t.Parallel()
	addr := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", File: delegatedShop, KeyName: "detour-key", Secret: testSecret})
	glueBefore := glueRRs(t, addr, "shop.demo.test.")
	p, logs := startLogging(t, addr)
	rrsets := map[zone.Key][]dns.RR{}
	own(rrsets, "app.demo.test.", "10.0.0.1")
	p.Offer(Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the first push")

	// A reload hands Detour shop.demo.test, which the primary delegates.
	reloaded := map[zone.Key][]dns.RR{}
	own(reloaded, "app.demo.test.", "10.0.0.3")
	own(reloaded, "shop.demo.test.", "10.0.0.2")
	p.Offer(Desired{Serial: 11, RRsets: reloaded, State: Position{Seq: 11, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return logs.Count("zone pushed") == 2 || logs.Count("zone push failed") > 0
	}, "the reload's push")
	if got := glueRRs(t, addr, "shop.demo.test."); !slices.Equal(got, glueBefore) {
		t.Errorf("the glue of the delegation shop.demo.test. is %v, want %v as written on the primary", got, glueBefore)
	}
	const refused = "owned name lies below a delegation on the primary, which answers it with a referral: not pushed"
	if n := logs.Count(refused); n != 1 {
		t.Errorf("logged %q %d times, want once:\n%s", refused, n, logs.String())
	}
	if got := dig(t, addr, "app.demo.test", "A"); !slices.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("app.demo.test A: %v, want Detour's [10.0.0.3]", got)
	}
}
