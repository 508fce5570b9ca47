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
