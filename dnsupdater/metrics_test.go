package dnsupdater

import (
	"net/netip"
	"testing"

	"github.com/detourdev/detour/events/metrics"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRepliesAreCountedByRcodeAndQueryType(t *testing.T) {
	tab := testTable(t)
	m := metrics.New()
	w := newWorker(1)
	w.metrics = newQueryMetrics(m)
	remote := netip.MustParseAddr("10.1.2.3")
	for _, q := range []struct {
		name string
		typ  uint16
	}{
		{"shop.demo.test.", dns.TypeA}, {"shop.demo.test.", dns.TypeA}, {"demo.test.", dns.TypeSOA},
		{"nothing.demo.test.", dns.TypeAAAA}, {"shop.demo.test.", dns.TypeNAPTR}, {"elsewhere.example.", dns.TypeA},
	} {
		p, err := newQuery(q.name, q.typ).Pack()
		if err != nil {
			t.Fatal(err)
		}
		if w.respond(tab, p, remote, false) == nil {
			t.Fatalf("no reply to %s %s", q.name, dns.TypeToString[q.typ])
		}
	}
	for _, c := range []struct {
		rcode, typ string
		want       float64
	}{
		{"NOERROR", "A", 2}, {"NOERROR", "SOA", 1}, {"NXDOMAIN", "AAAA", 1}, {"NOERROR", "other", 1}, {"REFUSED", "A", 1},
	} {
		if got := testutil.ToFloat64(m.DNSQueries.WithLabelValues(c.rcode, c.typ)); got != c.want {
			t.Errorf("detour_dns_queries_total{rcode=%q,type=%q} = %v, want %v", c.rcode, c.typ, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.DNSQueries); n != 5 {
		t.Errorf("%d query series, want 5", n)
	}
}
