package dnsupdater

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/knottest"
	"github.com/detourdev/detour/dnsupdater/internal/proctest"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

func TestAZoneTakesASerialPastASecondaryAheadOnceWithinOneStepOfSerialArithmetic(t *testing.T) {
	const own = 1796700000 // the clock in December 2026
	a, b := zoneTarget{zone: "demo.test.", target: "127.0.0.1:53"}, zoneTarget{zone: "demo.test.", target: "127.0.0.2:53"}
	type ask struct {
		zt          zoneTarget
		own, theirs uint32
		// clock is the time of the ask in Unix seconds; own's when 0.
		clock    uint32
		want     aheadVerdict
		wantTold bool
	}
	for _, tc := range []struct {
		name string
		asks []ask
	}{
		{name: "a secondary behind or at the serial served asks for nothing", asks: []ask{
			{zt: a, own: own, theirs: own - 1, want: aheadNot},
			{zt: a, own: own, theirs: own, want: aheadNot},
		}},
		{name: "a secondary up to a day past the serial served or the clock is left to the other servers and the clock", asks: []ask{
			{zt: a, own: own, theirs: own + reserveAhead, want: aheadNear},
			{zt: a, own: own, theirs: own + maxPeerLead, want: aheadNear},
			{zt: a, own: own - 1000, clock: own, theirs: own + maxPeerLead, want: aheadNear},
			{zt: a, own: 2026120801, theirs: 2026120801 + maxPeerLead, want: aheadNear},
			{zt: a, own: own, theirs: own + maxPeerLead + 1, want: aheadPass},
		}},
		{name: "a secondary migrated with a date serial is passed", asks: []ask{
			{zt: a, own: own, theirs: 2026120801, want: aheadPass},
		}},
		{name: "the same secondary ahead again is refused until a restart", asks: []ask{
			{zt: a, own: own, theirs: 2026120801, want: aheadPass},
			{zt: a, own: 2026120802, theirs: 2027010101, want: aheadAgain, wantTold: true},
			{zt: a, own: 2026120802, theirs: 2027020101, want: aheadAgain},
		}},
		{name: "a serial half the serial space ahead is refused", asks: []ask{
			{zt: a, own: own, theirs: own + 1<<31 - 1, want: aheadTooFar, wantTold: true},
		}},
		{name: "a serial wrapped past zero is ahead and passed", asks: []ask{
			{zt: a, own: 1<<32 - 10, clock: 1<<32 - 10, theirs: 1 << 20, want: aheadPass},
		}},
		{name: "a second secondary may not carry the zone further than one step past the serial before the first re-stamp", asks: []ask{
			{zt: a, own: own, theirs: own + 1<<30, want: aheadPass},
			{zt: b, own: own + 1<<30 + 1, theirs: own + 1<<31 - 1, want: aheadTooFar, wantTold: true},
		}},
		{name: "a later run may not carry the zone further than one step past the clock", asks: []ask{
			{zt: a, own: own + 1<<30 + 1, theirs: own + 1<<31, want: aheadTooFar, wantTold: true},
			{zt: b, own: own + 1<<30 + 1, theirs: own + 1<<31 - 2, want: aheadPass},
		}},
		{name: "a second secondary further ahead within the step is passed too", asks: []ask{
			{zt: a, own: own, theirs: 2026120801, want: aheadPass},
			{zt: b, own: 2026120802, theirs: 2027010101, want: aheadPass},
		}},
		{name: "each secondary's refusal is told once", asks: []ask{
			{zt: a, own: own, theirs: own + 1<<31 - 1, want: aheadTooFar, wantTold: true},
			{zt: a, own: own, theirs: own + 1<<31 - 1, want: aheadTooFar},
			{zt: b, own: own, theirs: own + 1<<31 - 1, want: aheadTooFar, wantTold: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newAheadGuard()
			for i, q := range tc.asks {
				now := time.Unix(int64(cmp.Or(q.clock, own)), 0)
				if got := g.check(q.zt, q.own, q.theirs, now); got != q.want {
					t.Fatalf("ask %d (%s at %d, serial served %d): verdict %d, want %d", i, q.zt.target, q.theirs, q.own, got, q.want)
				}
				if q.want == aheadTooFar || q.want == aheadAgain {
					if got := g.tell(q.zt); got != q.wantTold {
						t.Fatalf("ask %d: told %t, want %t", i, got, q.wantTold)
					}
				}
			}
		})
	}
}

// migratedZone is demo.test as BIND served it before the migration: a date serial, and shop at
// an address Detour does not answer.
const migratedZone = `$ORIGIN demo.test.
$TTL 300
@    SOA ns1.demo.test. hostmaster.demo.test. 2026120801 3600 900 604800 300
@    NS  ns1.demo.test.
ns1  A   127.0.0.53
shop A   192.0.2.99
`

func TestAKnotSecondaryMigratedWithADateSerialFollowsDetourAndItsFailovers(t *testing.T) {
	migratedKnotFollows(t, false)
}

// TestAKnotSecondaryMigratedWithADateSerialAndATransferKeyFollowsDetour: Knot answers the SOA
// query signed with the zone's transfer key, signed, and the zone passes its serial.
func TestAKnotSecondaryMigratedWithADateSerialAndATransferKeyFollowsDetour(t *testing.T) {
	migratedKnotFollows(t, true)
}

// migratedKnotFollows runs a Knot secondary of demo.test from BIND's copy at a date serial,
// with xfrKey as the zone's transfer key when keyed, and Detour as its primary, and checks that
// Knot takes Detour's zone and follows a failover.
func migratedKnotFollows(t *testing.T, keyed bool) {
	knottest.Skip(t)
	const migrated = 2026120801
	js := eventstest.Start(t)
	detourAddr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	knotPort := proctest.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	cfg := fmt.Sprintf(secondaryConfig, knotAddr, `"www IN A 192.0.2.1"`, "")
	secondary := knottest.Zone{Name: "demo.test", Primary: detourAddr, File: migratedZone}
	records := func(addr string) []string { return zoneRecords(t, addr, "demo.test.") }
	if keyed {
		cfg = strings.Replace(cfg, `    notify:`, `    transfer_tsig: {name: `+xfrKey+`, secret: "`+xfrSecret+`"}
    notify:`, 1)
		secondary.Key = &knottest.Key{Name: strings.TrimSuffix(xfrKey, "."), Algorithm: "hmac-sha256", Secret: xfrSecret}
		records = func(addr string) []string { return signedZoneRecords(t, addr, "demo.test.", xfrKey, xfrSecret) }
	}
	// The secondary runs first, with the copy BIND left it, as a migration finds it.
	knottest.StartOn(t, knotPort, secondary)
	if got := soaSerial(knotAddr, "demo.test."); got != migrated {
		t.Fatalf("Knot starts at serial %d, want the migrated %d", got, migrated)
	}
	srv, err := New(Options{JS: js.JS, Config: eventstest.Config(t, cfg),
		Addr: detourAddr, DataDir: t.TempDir(), Name: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 1})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	following := func(what string) uint32 {
		t.Helper()
		var want, got uint32
		// Polled by hand, so that a failure tells both serials as they were last.
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			want, got = serial(t, detourAddr), soaSerial(knotAddr, "demo.test.")
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Knot holds serial %d, not Detour's %d, after 15s", what, got, want)
			}
		}
		if detour, secondary := records(detourAddr), zoneRecords(t, knotAddr, "demo.test."); !slices.Equal(detour, secondary) {
			t.Fatalf("%s: the secondary's zone differs from Detour's\ndetour:\n%s\nknot:\n%s", what, strings.Join(detour, "\n"), strings.Join(secondary, "\n"))
		}
		return want
	}
	first := following("the migrated secondary takes Detour's zone")
	if !serialAfter(first, migrated) {
		t.Fatalf("Detour serves serial %d, not after the migrated %d", first, migrated)
	}
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, followBound, func() bool { return serial(t, detourAddr) != first }, "Detour serves the failover")
	if next := following("the failover to us-east"); !serialAfter(next, first) {
		t.Fatalf("the failover's serial %d is not after %d", next, first)
	}
}

func TestAnotherServersSerialPastTheClockCountsUpToADayPastASecondarysTheZonePassed(t *testing.T) {
	now := time.Unix(1_796_700_000, 0)
	const migrated = 2026120801
	c := newPeerClock("m")
	if c.see(peerVersion{zone: "demo.test.", serial: migrated + 1, digest: "theirs", server: "z"}, now) {
		t.Fatal("a serial years past the clock counted before any secondary was found holding one")
	}
	c.runsPast("demo.test.", migrated)
	if !c.see(peerVersion{zone: "demo.test.", serial: migrated + 61, digest: "theirs", server: "z"}, now) {
		t.Fatal("another server's serial a minute past the secondary's the zone passed refused")
	}
	if f, _ := c.floor("demo.test."); f != migrated+61 {
		t.Fatalf("floor %d, want %d", f, migrated+61)
	}
	if c.see(peerVersion{zone: "demo.test.", serial: migrated + maxPeerLead + 1, digest: "theirs", server: "z"}, now) {
		t.Fatal("a serial more than a day past the secondary's the zone passed counted")
	}
	if c.see(peerVersion{zone: "other.test.", serial: migrated, digest: "theirs", server: "z"}, now) {
		t.Fatal("a serial years past the clock counted for a zone that passed no secondary")
	}
}

// startAt runs a DNS server named name on addr with dataDir, and returns what stops it.
func startAt(t *testing.T, js *eventstest.Server, cfg *config.Config, addr, dataDir, name string) func() {
	t.Helper()
	srv, err := New(Options{JS: js.JS, Config: cfg, Addr: addr, DataDir: dataDir, Name: name,
		Log: zerolog.New(zerolog.NewTestWriter(t)).With().Str("instance", name).Logger(), UDPSockets: 1})
	if err != nil {
		t.Fatalf("new server %s: %v", name, err)
	}
	return eventstest.Run(t, name, srv.Run)
}

// TestAKnotSecondaryMigratedWithTwoDetourMastersFollowsTheOneLeft: both servers pass the
// migrated secondary's date serial; one then restarts after a crash past the serials it had
// reserved, and Knot takes that serial from it. It stops, the zone changes: the server left
// read the other's serial, years past the clock, from the DNS stream, and serves the change at
// a serial after it, which Knot follows.
func TestAKnotSecondaryMigratedWithTwoDetourMastersFollowsTheOneLeft(t *testing.T) {
	knottest.Skip(t)
	const migrated = 2026120801
	js := eventstest.Start(t)
	knotPort := proctest.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	addrA, addrB := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cfg := eventstest.Config(t, fmt.Sprintf(secondaryConfig, knotAddr, `"www IN A 192.0.2.1"`, ""))
	knot := knottest.StartOn(t, knotPort, knottest.Zone{Name: "demo.test", Primary: addrB, Also: []string{addrA}, File: migratedZone})
	startAt(t, js, cfg, addrA, t.TempDir(), "dns-a")
	dirB := t.TempDir()
	stopB := startAt(t, js, cfg, addrB, dirB, "dns-b")
	eventstest.Eventually(t, 10*time.Second, func() bool {
		return serialAfter(serial(t, addrA), migrated) && serialAfter(serial(t, addrB), migrated)
	}, "both servers pass the migrated secondary's serial %d", migrated)
	// B crashes: what survives is its serials file as it ran, reserving past its serial.
	marks := filepath.Join(dirB, serialsFile)
	var reserved []byte
	eventstest.Eventually(t, followBound, func() bool {
		m, err := loadSerialMarks(dirB)
		if err != nil || !serialAfter(m["demo.test."], serial(t, addrB)) {
			return false
		}
		reserved, err = os.ReadFile(marks)
		return err == nil
	}, "dns-b reserves serials past the one it serves")
	stopB()
	if err := os.WriteFile(marks, reserved, 0o644); err != nil {
		t.Fatal(err)
	}
	stopB = startAt(t, js, cfg, addrB, dirB, "dns-b")
	held := serial(t, addrB)
	if sa := serial(t, addrA); !serialAfter(held, sa) {
		t.Fatalf("want dns-b's serial after dns-a's for the same zone, got %d and %d", held, sa)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return soaSerial(knotAddr, "demo.test.") == held },
		"Knot at dns-b's serial %d", held)
	old := zoneRecords(t, knotAddr, "demo.test.")

	stopB()
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left, secondary := zoneRecords(t, addrA, "demo.test."), zoneRecords(t, knotAddr, "demo.test.")
		if slices.Equal(left, secondary) && !slices.Equal(secondary, old) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Knot holds serial %d, dns-a serves %d (dns-b served %d); the secondary's zone differs from dns-a's\ndns-a:\n%s\nknot:\n%s\nknot's log:\n%s",
				soaSerial(knotAddr, "demo.test."), serial(t, addrA), held, strings.Join(left, "\n"), strings.Join(secondary, "\n"), knot.Log())
		}
	}
}

// startClaimingSecondary runs a broken secondary on loopback: it acknowledges every NOTIFY and
// answers every SOA query with a serial lead past the last one it was NOTIFYed.
func startClaimingSecondary(t *testing.T, lead uint32) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var notified atomic.Uint32
	secondary := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		switch {
		case r.Opcode == dns.OpcodeNotify && len(r.Answer) == 1:
			notified.Store(r.Answer[0].(*dns.SOA).Serial)
			m.SetReply(r)
		case r.Opcode == dns.OpcodeQuery && notified.Load() != 0:
			m.SetReply(r)
			m.Authoritative = true
			m.Answer = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
				Ns: "ns1.demo.test.", Mbox: "hostmaster.demo.test.", Serial: notified.Load() + lead, Refresh: 3600, Retry: 900, Expire: 604800, Minttl: 300}}
		default:
			m.SetRcode(r, dns.RcodeRefused)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = secondary.ActivateAndServe() }()
	t.Cleanup(func() { _ = secondary.Shutdown() })
	return pc.LocalAddr().String()
}

// TestASecondaryThatAlwaysClaimsALaterSerialMovesTheZonesSerialOnce: a broken secondary answers
// every SOA query with a serial a quarter of the serial space past the one it was NOTIFYed. The
// zone passes its first claim, and refuses the one that follows the re-stamp's NOTIFY, logged:
// its serial then moves by one a change.
func TestASecondaryThatAlwaysClaimsALaterSerialMovesTheZonesSerialOnce(t *testing.T) {
	const lead = 1 << 30
	js := eventstest.Start(t)
	target := startClaimingSecondary(t, lead)
	// The serial NOTIFYed is at or after the clock before the start, and the clock may pass a
	// second before the check below.
	before := uint32(time.Now().Unix())
	srv, logs := startLogged(t, js, eventstest.Config(t, withNotify(demoConfig, target)), t.TempDir(), nil)
	const passed = "a secondary holds a later serial of this zone than the one served (a zone migrated from another primary); the zone takes a later one"
	const again = "a secondary holds a later serial of this zone again, after the zone passed its serial once; not passed again until a restart: check what else feeds it"
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count(again) == 1 },
		"the secondary's claim after the re-stamp's NOTIFY refused, logged")
	if got := logs.Count(passed); got != 1 {
		t.Fatalf("the zone passed the secondary's serial %d times, want once", got)
	}
	first := serial(t, srv.Addr())
	if ahead := first - before; ahead <= lead || first-uint32(time.Now().Unix()) > lead+reserveAhead {
		t.Fatalf("the zone serves serial %d, %d past the clock at the start; want one just past the secondary's first claim, %d past it", first, ahead, lead)
	}

	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, followBound, func() bool { return serial(t, srv.Addr()) != first }, "the failover served")
	if got := serial(t, srv.Addr()); got != first+1 {
		t.Fatalf("after the failover the zone serves serial %d, want %d", got, first+1)
	}
}

// startSigningClaimingSecondary is startClaimingSecondary for demo.test with xfrKey: it
// acknowledges every NOTIFY signed with the key, answers every SOA query with a serial lead
// past the last one it was NOTIFYed (over UDP only truncated, with no answer, when truncate is
// set: it answers over TCP on the same port), signed with the key when sign is set and the
// query was, and hands over, for each SOA query, whether its signature verified.
func startSigningClaimingSecondary(t *testing.T, lead uint32, sign, truncate bool) (string, <-chan error) {
	t.Helper()
	queries := make(chan error, 16)
	var notified atomic.Uint32
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch {
		case r.Opcode == dns.OpcodeNotify && len(r.Answer) == 1:
			notified.Store(r.Answer[0].(*dns.SOA).Serial)
		case r.Opcode == dns.OpcodeQuery && notified.Load() != 0:
			status := w.TsigStatus()
			if r.IsTsig() == nil {
				status = errors.New("unsigned")
			}
			select {
			case queries <- status:
			default:
			}
			m.Authoritative = true
			if truncate && w.RemoteAddr().Network() == "udp" {
				m.Truncated = true
			} else {
				m.Answer = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
					Ns: "ns1.demo.test.", Mbox: "hostmaster.demo.test.", Serial: notified.Load() + lead, Refresh: 3600, Retry: 900, Expire: 604800, Minttl: 300}}
			}
			if !sign {
				_ = w.WriteMsg(m)
				return
			}
		default:
			m.SetRcode(r, dns.RcodeRefused)
		}
		if sig := r.IsTsig(); sig != nil {
			m.SetTsig(sig.Hdr.Name, sig.Algorithm, 300, time.Now().Unix())
		}
		_ = w.WriteMsg(m)
	})
	addr := serveUDPAndTCP(t, handler, func(secondary *dns.Server) {
		secondary.TsigSecret = map[string]string{xfrKey: xfrSecret}
		secondary.MsgAcceptFunc = func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }
	})
	return addr, queries
}

// serveUDPAndTCP serves handler on one loopback port over UDP and TCP, each server set up by
// configure first, until the test ends, and returns the address.
func serveUDPAndTCP(t *testing.T, handler dns.Handler, configure func(*dns.Server)) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
		configure(srv)
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return addr
}

// TestAZoneWithATransferKeyAsksItsSecondarysSerialSignedAndPassesOnlyASignedAnswer: the SOA
// query that can move a zone's serial is signed with the zone's transfer key, as its NOTIFY is,
// and an answer the key did not sign (anyone's who guessed the port and id) moves nothing. A
// query asked again over TCP, the answer over UDP truncated, is signed too.
func TestAZoneWithATransferKeyAsksItsSecondarysSerialSignedAndPassesOnlyASignedAnswer(t *testing.T) {
	const lead = 1 << 20
	const passed = "a secondary holds a later serial of this zone than the one served (a zone migrated from another primary); the zone takes a later one"
	for _, tc := range []struct{ sign, truncate bool }{{true, false}, {false, false}, {true, true}} {
		sign := tc.sign
		t.Run(fmt.Sprintf("answer signed %t, truncated over udp %t", sign, tc.truncate), func(t *testing.T) {
			js := eventstest.Start(t)
			target, queries := startSigningClaimingSecondary(t, lead, sign, tc.truncate)
			before := uint32(time.Now().Unix()) // at or before the serial NOTIFYed
			srv, logs := startLogged(t, js, eventstest.Config(t, signedConfig(target)), t.TempDir(), nil)
			select {
			case status := <-queries:
				if status != nil {
					t.Fatalf("the secondary holding the zone's key did not verify the SOA query: %v", status)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the secondary was asked for no SOA after 10s")
			}
			pastLead := func() bool { return int32(serial(t, srv.Addr())-before) > lead }
			eventstest.Eventually(t, followBound, func() bool {
				return pastLead() || logs.Count("secondary serial not read") > 0
			}, "the secondary's answer weighed")
			switch {
			case sign && !pastLead():
				t.Fatalf("a signed answer %d past the serial NOTIFYed: want it passed, the zone serves %d\n%s", lead, serial(t, srv.Addr()), logs.String())
			case !sign && (pastLead() || logs.Count(passed) != 0):
				t.Fatalf("an unsigned answer %d past the serial NOTIFYed moved the zone's serial to %d", lead, serial(t, srv.Addr()))
			}
			for len(queries) > 0 {
				if status := <-queries; status != nil {
					t.Errorf("the secondary holding the zone's key did not verify a later SOA query: %v", status)
				}
			}
		})
	}
}

// startFollowingSecondary runs a secondary on loopback that holds the zone at serial from (0:
// none), takes every serial NOTIFYed to it after the one it holds, as a secondary transferring
// it would, and answers SOA queries with the serial it holds; held tells it.
func startFollowingSecondary(t *testing.T, from uint32) (addr string, held func() uint32) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serial atomic.Uint32
	serial.Store(from)
	secondary := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch {
		case r.Opcode == dns.OpcodeNotify && len(r.Answer) == 1:
			if s := r.Answer[0].(*dns.SOA).Serial; serial.Load() == 0 || serialAfter(s, serial.Load()) {
				serial.Store(s)
			}
		case r.Opcode == dns.OpcodeQuery && serial.Load() != 0:
			m.Authoritative = true
			m.Answer = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
				Ns: "ns1.demo.test.", Mbox: "hostmaster.demo.test.", Serial: serial.Load(), Refresh: 3600, Retry: 900, Expire: 604800, Minttl: 300}}
		default:
			m.SetRcode(r, dns.RcodeRefused)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = secondary.ActivateAndServe() }()
	t.Cleanup(func() { _ = secondary.Shutdown() })
	return pc.LocalAddr().String(), serial.Load
}

// startLoggedNamed runs a DNS server named name with dataDir, and returns it, its logs and
// what stops it.
func startLoggedNamed(t *testing.T, js *eventstest.Server, cfg *config.Config, dataDir, name string) (*Server, *eventstest.Logs, func()) {
	t.Helper()
	logs := &eventstest.Logs{}
	srv, err := New(Options{JS: js.JS, Config: cfg, Addr: "127.0.0.1:0", DataDir: dataDir, Name: name, UDPSockets: 1,
		Log: zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs)).With().Str("instance", name).Logger()})
	if err != nil {
		t.Fatalf("new server %s: %v", name, err)
	}
	return srv, logs, eventstest.Run(t, name, srv.Run)
}

// TestARestartOfOneOfTwoDetourServersKeepsItsSerialWhenTheSecondaryHoldsTheOthersOfTheSameRecords:
// two Detour servers serve the same records at different serials (each takes its own), and the
// secondary listing both holds the later, the other's. The one behind restarts and NOTIFYs its
// serial, which the secondary ignores: that is no zone migrated from another primary, and the
// server keeps its serial (another's of the same records asks for nothing, peers.go), rather
// than take one past the other's and have every secondary transfer every zone again.
func TestARestartOfOneOfTwoDetourServersKeepsItsSerialWhenTheSecondaryHoldsTheOthersOfTheSameRecords(t *testing.T) {
	js := eventstest.Start(t)
	target, held := startFollowingSecondary(t, 0)
	cfg := eventstest.Config(t, withNotify(demoConfig, target))
	dirA, dirB := t.TempDir(), t.TempDir()
	a, _, stopA := startLoggedNamed(t, js, cfg, dirA, "dns-a")
	b, _, stopB := startLoggedNamed(t, js, cfg, dirB, "dns-b")
	// dns-b restarts after a crash past the serials it reserved, on the same records.
	b, _ = crashRestart(t, js, cfg, b, dirB, "dns-b", stopB)
	servedA, servedB := serial(t, a.Addr()), serial(t, b.Addr())
	if !serialAfter(servedB, servedA) {
		t.Fatalf("dns-b serves serial %d, not after dns-a's %d", servedB, servedA)
	}
	eventstest.Eventually(t, followBound, func() bool { return held() == servedB }, "the secondary at dns-b's serial %d", servedB)

	stopA()
	a, logs, _ := startLoggedNamed(t, js, cfg, dirA, "dns-a")
	const passed = "a secondary holds a later serial of this zone than the one served (a zone migrated from another primary); the zone takes a later one"
	const near = "a secondary holds a serial of this zone less than a day past the one served or the clock; left to the other dns servers and the clock"
	eventstest.Eventually(t, followBound, func() bool { return logs.Count(passed)+logs.Count(near) > 0 },
		"dns-a weighs the secondary's serial %d", servedB)
	if got := serial(t, a.Addr()); logs.Count(passed) != 0 || got != servedA {
		t.Fatalf("dns-a, restarted on the same records, serves serial %d, want its own %d: it passed dns-b's %d that the secondary holds\n%s", got, servedA, servedB, logs.String())
	}
}

// crashRestart stops srv, whose data dir is dir, with stop, as a crash leaves it (its serials
// file as it ran, reserving past its serial), and starts it again as name.
func crashRestart(t *testing.T, js *eventstest.Server, cfg *config.Config, srv *Server, dir, name string, stop func()) (*Server, func()) {
	t.Helper()
	marks := filepath.Join(dir, serialsFile)
	var reserved []byte
	eventstest.Eventually(t, followBound, func() bool {
		m, err := loadSerialMarks(dir)
		if err != nil || !serialAfter(m["demo.test."], serial(t, srv.Addr())) {
			return false
		}
		reserved, err = os.ReadFile(marks)
		return err == nil
	}, "%s reserves serials past the one it serves", name)
	stop()
	if err := os.WriteFile(marks, reserved, 0o644); err != nil {
		t.Fatal(err)
	}
	srv, _, stop = startLoggedNamed(t, js, cfg, dir, name)
	return srv, stop
}

// TestTwoDetourServersThatPassedAMigratedSecondaryPassEachOthersSerialsAfterARestart: both
// servers pass the secondary's date serial; one restarts, then the other restarts after a
// crash, past the serials it reserved, and the secondary takes that serial, years past the
// clock. It stops and the zone changes: the one left, though this run passed no secondary,
// serves the change at a serial after the other's, which the secondary takes.
func TestTwoDetourServersThatPassedAMigratedSecondaryPassEachOthersSerialsAfterARestart(t *testing.T) {
	const migrated = 2026120801
	js := eventstest.Start(t)
	target, held := startFollowingSecondary(t, migrated)
	cfg := eventstest.Config(t, withNotify(demoConfig, target))
	dirA, dirB := t.TempDir(), t.TempDir()
	a, _, stopA := startLoggedNamed(t, js, cfg, dirA, "dns-a")
	b, _, stopB := startLoggedNamed(t, js, cfg, dirB, "dns-b")
	eventstest.Eventually(t, 10*time.Second, func() bool {
		return serialAfter(serial(t, a.Addr()), migrated) && serialAfter(serial(t, b.Addr()), migrated)
	}, "the servers pass the migrated secondary's serial %d", migrated)
	stopA()
	a, _, _ = startLoggedNamed(t, js, cfg, dirA, "dns-a")
	b, stopB = crashRestart(t, js, cfg, b, dirB, "dns-b", stopB)
	servedA, servedB := serial(t, a.Addr()), serial(t, b.Addr())
	if !serialAfter(servedB, servedA) {
		t.Fatalf("dns-b serves serial %d, not after dns-a's %d", servedB, servedA)
	}
	eventstest.Eventually(t, followBound, func() bool { return held() == servedB }, "the secondary at dns-b's serial %d", servedB)

	stopB()
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, followBound, func() bool { return serial(t, a.Addr()) != servedA }, "dns-a serves the change")
	for deadline := time.Now().Add(10 * time.Second); held() != serial(t, a.Addr()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the secondary holds dns-b's serial %d, dns-a serves the change at %d", held(), serial(t, a.Addr()))
		}
	}
}

// TestAnAnswerThatIsNotTheSecondarysSOAOfTheZoneGivesNoSerial: only an authoritative answer
// from the address and port asked, with the zone's own SOA, tells a secondary's serial (over
// TCP when truncated over UDP); an answer from another port, another zone's SOA, another
// record or the SOA in authority gives none, and a query whose answer is junk ends without one.
func TestAnAnswerThatIsNotTheSecondarysSOAOfTheZoneGivesNoSerial(t *testing.T) {
	const ahead = 2026120801
	soa := func(name string) dns.RR {
		return &dns.SOA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
			Ns: "ns1.demo.test.", Mbox: "hostmaster.demo.test.", Serial: ahead, Refresh: 3600, Retry: 900, Expire: 604800, Minttl: 300}
	}
	other, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	for _, tc := range []struct {
		name string
		// answer fills m, the reply to r, and reports whether the handler writes it.
		answer  func(w dns.ResponseWriter, r, m *dns.Msg) bool
		want    uint32
		wantErr bool
	}{
		{name: "the zone's SOA, authoritative, gives its serial", want: ahead, answer: func(_ dns.ResponseWriter, r, m *dns.Msg) bool {
			m.Authoritative, m.Answer = true, []dns.RR{soa(r.Question[0].Name)}
			return true
		}},
		{name: "from another port", wantErr: true, answer: func(w dns.ResponseWriter, r, m *dns.Msg) bool {
			m.Authoritative, m.Answer = true, []dns.RR{soa(r.Question[0].Name)}
			p, _ := m.Pack()
			_, _ = other.WriteTo(p, w.RemoteAddr())
			return false
		}},
		{name: "another zone's SOA", wantErr: true, answer: func(_ dns.ResponseWriter, _, m *dns.Msg) bool {
			m.Authoritative, m.Answer = true, []dns.RR{soa("other.test.")}
			return true
		}},
		{name: "another record", wantErr: true, answer: func(_ dns.ResponseWriter, r, m *dns.Msg) bool {
			m.Authoritative, m.Answer = true, []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: []string{"2026120801"}}}
			return true
		}},
		{name: "not authoritative", wantErr: true, answer: func(_ dns.ResponseWriter, r, m *dns.Msg) bool {
			m.Answer = []dns.RR{soa(r.Question[0].Name)}
			return true
		}},
		{name: "the SOA in authority only", wantErr: true, answer: func(_ dns.ResponseWriter, r, m *dns.Msg) bool {
			m.Authoritative, m.Ns = true, []dns.RR{soa(r.Question[0].Name)}
			return true
		}},
		{name: "truncated over UDP, the serial over TCP", want: ahead, answer: func(w dns.ResponseWriter, r, m *dns.Msg) bool {
			m.Authoritative, m.Answer = true, []dns.RR{soa(r.Question[0].Name)}
			if w.RemoteAddr().Network() == "udp" {
				m.Truncated, m.Answer[0].(*dns.SOA).Serial = true, 1
			}
			return true
		}},
		{name: "junk", wantErr: true, answer: func(w dns.ResponseWriter, _, _ *dns.Msg) bool {
			_, _ = w.Write([]byte{0xde, 0xad})
			return false
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
				m := new(dns.Msg)
				m.SetReply(r)
				if tc.answer(w, r, m) {
					_ = w.WriteMsg(m)
				}
			})
			addr := serveUDPAndTCP(t, handler, func(*dns.Server) {})
			s := &Server{}
			s.table.Store(&table{})
			got, err := s.secondarySerial(t.Context(), zoneTarget{zone: "demo.test.", target: addr})
			if tc.wantErr != (err != nil) || got != tc.want {
				t.Fatalf("serial %d, error %v; want %d, an error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestASecondaryThatAlwaysClaimsALaterSerialCannotCarryTheSerialsOffAcrossRestarts: a broken
// secondary claims a serial a quarter of the serial space past each one NOTIFYed, and the
// server restarts (a crash loop): the second run may not pass its claim, which would take the
// zone's serial half the serial space past the clock, where a secondary that held a serial of
// the clock's before the first would take it as earlier.
func TestASecondaryThatAlwaysClaimsALaterSerialCannotCarryTheSerialsOffAcrossRestarts(t *testing.T) {
	const lead = 1 << 30
	const tooFar = "a secondary holds a serial of this zone too far ahead to pass in one step of serial arithmetic; not passed: reset its copy of the zone"
	js := eventstest.Start(t)
	target := startClaimingSecondary(t, lead)
	cfg := eventstest.Config(t, withNotify(demoConfig, target))
	dir := t.TempDir()
	before := uint32(time.Now().Unix()) // at or before the serial NOTIFYed
	srv, _, stop := startLoggedNamed(t, js, cfg, dir, "dns-a")
	eventstest.Eventually(t, 10*time.Second, func() bool { return int32(serial(t, srv.Addr())-before) > lead },
		"the first run passes the secondary's claim")
	first := serial(t, srv.Addr())
	stop()
	srv, logs, _ := startLoggedNamed(t, js, cfg, dir, "dns-a")
	const passed = "a secondary holds a later serial of this zone than the one served (a zone migrated from another primary); the zone takes a later one"
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count(tooFar)+logs.Count(passed) > 0 },
		"the second run weighs the secondary's claim past %d", first)
	// The restart may take a serial past first (its reservation), not the claim past it.
	if got := serial(t, srv.Addr()); logs.Count(passed) != 0 || int32(got-first) > reserveAhead {
		t.Fatalf("a restart passed the secondary's claim past %d, %d past the clock: the zone serves %d\n%s", first, first-uint32(time.Now().Unix()), got, logs.String())
	}
}
