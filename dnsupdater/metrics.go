package dnsupdater

import (
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events/metrics"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// queryTypes are the query types counted by name; every other type is counted as "other".
var queryTypes = [...]uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT,
	dns.TypeSRV, dns.TypePTR, dns.TypeCAA, dns.TypeHTTPS, dns.TypeANY, dns.TypeAXFR,
}

// queryMetrics counts replies by rcode and query type without allocating on the query path:
// each (rcode, type) counter is looked up in the vector once, then kept.
type queryMetrics struct {
	m        *metrics.Metrics
	counters [16][len(queryTypes) + 1]atomic.Pointer[counter]
}

type counter struct{ prometheus.Counter }

func newQueryMetrics(m *metrics.Metrics) *queryMetrics {
	if m == nil {
		return nil
	}
	return &queryMetrics{m: m}
}

// observe counts the reply resp and, when start is set, records the time since as its build
// time.
func (q *queryMetrics) observe(resp []byte, start time.Time) {
	if !start.IsZero() {
		q.m.DNSAnswerDuration.Observe(time.Since(start).Seconds())
	}
	if len(resp) < 12 {
		return
	}
	rcode := int(resp[3] & 0x0f)
	ti := len(queryTypes)
	if qt, ok := replyQType(resp); ok {
		for i, t := range queryTypes {
			if t == qt {
				ti = i
				break
			}
		}
	}
	p := &q.counters[rcode][ti]
	c := p.Load()
	if c == nil {
		name := "other"
		if ti < len(queryTypes) {
			name = dns.TypeToString[queryTypes[ti]]
		}
		c = &counter{q.m.DNSQueries.WithLabelValues(dns.RcodeToString[rcode], name)}
		p.Store(c)
	}
	c.Inc()
}

// replyQType reads the type of the first question of a reply.
func replyQType(resp []byte) (uint16, bool) {
	if resp[4] == 0 && resp[5] == 0 {
		return 0, false
	}
	off := 12
	for off < len(resp) {
		l := int(resp[off])
		switch {
		case l == 0:
			off++
			if off+2 > len(resp) {
				return 0, false
			}
			return uint16(resp[off])<<8 | uint16(resp[off+1]), true
		case l&0xc0 == 0xc0:
			off += 2
			if off+2 > len(resp) {
				return 0, false
			}
			return uint16(resp[off])<<8 | uint16(resp[off+1]), true
		default:
			off += 1 + l
		}
	}
	return 0, false
}
