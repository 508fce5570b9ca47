package dnsupdater

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// TestANotifyEndsAsSoonAsTheSecondaryHasTransferredTheSerial: a secondary whose answers to
// NOTIFY never come back (it answers from another of its addresses, which the NOTIFY's
// connected socket drops) transfers the zone after the first attempt. That transfer tells the
// server the secondary holds the serial: the exchange ends, acknowledged, within its first
// attempt, rather than sending the NOTIFY again for ten seconds and then logging it
// unacknowledged and sending it again later for ever.
func TestANotifyEndsAsSoonAsTheSecondaryHasTransferredTheSerial(t *testing.T) {
	notifies := make(chan uint32, 64)
	secondary := serveDatagrams(t, func(_ net.PacketConn, _ net.Addr, q *dns.Msg) {
		if q.Opcode == dns.OpcodeNotify && len(q.Answer) == 1 {
			notifies <- q.Answer[0].(*dns.SOA).Serial
		}
	})
	conf := strings.Replace(withNotify(demoConfig, secondary), "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1)
	js := eventstest.Start(t)
	srv, logs := startLogged(t, js, eventstest.Config(t, conf), t.TempDir(), nil)
	var serial uint32
	select {
	case serial = <-notifies:
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY of the first serial within 5 s")
	}
	axfr := new(dns.Msg)
	axfr.SetAxfr("demo.test.")
	env, err := (&dns.Transfer{}).In(axfr, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var transferred uint32
	for e := range env {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
		if soa, ok := e.RR[0].(*dns.SOA); ok {
			transferred = soa.Serial
		}
	}
	if transferred != serial {
		t.Fatalf("transferred serial %d, notified %d", transferred, serial)
	}
	held := time.Now()
	eventstest.Eventually(t, notifyWait/2, func() bool { return logs.Count("notify acknowledged") > 0 },
		"the NOTIFY of serial %d acknowledged within %v of the secondary's transfer", serial, notifyWait/2)
	t.Logf("acknowledged %v after the transfer", time.Since(held))
}

// TestATransferFromAnAddressTwoSecondariesShareDoesNotEndEitherOnesNotify: two secondaries
// listen on one address (two name servers on one host, or behind one NAT) and neither answers
// NOTIFY. A transfer from that address may be either one's: it must not end the other's
// exchange, which goes on sending the serial a second apart, or a secondary that lost the
// first datagram stays on its old serial until its SOA refresh.
func TestATransferFromAnAddressTwoSecondariesShareDoesNotEndEitherOnesNotify(t *testing.T) {
	notifies := make(chan uint32, 64)
	first := serveDatagrams(t, func(_ net.PacketConn, _ net.Addr, q *dns.Msg) {
		if q.Opcode == dns.OpcodeNotify && len(q.Answer) == 1 {
			notifies <- q.Answer[0].(*dns.SOA).Serial
		}
	})
	second := serveDatagrams(t, func(net.PacketConn, net.Addr, *dns.Msg) {})
	conf := strings.Replace(withNotify(demoConfig, first, second), "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1)
	js := eventstest.Start(t)
	srv, _ := startLogged(t, js, eventstest.Config(t, conf), t.TempDir(), nil)
	var serial uint32
	select {
	case serial = <-notifies:
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY of the first serial within 5 s")
	}
	axfr := new(dns.Msg)
	axfr.SetAxfr("demo.test.")
	env, err := (&dns.Transfer{}).In(axfr, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	for e := range env {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
	}
	// The attempt in flight when the transfer ended may have been sent just before it: the one
	// after it must come too.
	for range 2 {
		select {
		case got := <-notifies:
			if got != serial {
				t.Fatalf("NOTIFY of serial %d, want %d", got, serial)
			}
		case <-time.After(3 * notifyWait):
			t.Fatalf("the first secondary was sent no NOTIFY of serial %d within %v after a transfer from the address it shares with the second", serial, 3*notifyWait)
		}
	}
}
