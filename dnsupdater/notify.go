package dnsupdater

import (
	"context"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/miekg/dns"
)

// notifyAttempts is how often a NOTIFY is sent before the secondary is given up on for this
// serial (it still polls the SOA at its refresh interval).
const notifyAttempts = 3

// notifyLoop sends a NOTIFY (RFC 1996) to every secondary of a zone whose serial changed.
func (s *Server) notifyLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case z := <-s.notifyQ:
			for _, target := range z.Config.Notify {
				wg.Go(func() { s.notify(ctx, z, target) })
			}
		}
	}
}

// notify sends one zone's NOTIFY to target until it is acknowledged or the attempts run out.
func (s *Server) notify(ctx context.Context, z *zone.Zone, target string) {
	m := new(dns.Msg)
	m.SetNotify(z.Name)
	m.Authoritative = true
	m.Answer = []dns.RR{z.SOA}
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	var err error
	for range notifyAttempts {
		var r *dns.Msg
		r, _, err = c.ExchangeContext(ctx, m, target)
		if err == nil && r.Rcode == dns.RcodeSuccess {
			s.o.Metrics.Notified(z.Name, nil)
			s.log.Debug().Str("zone", z.Name).Uint32("serial", z.Serial).Str("secondary", target).Msg("notify acknowledged")
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = rcodeError(r.Rcode)
		}
	}
	s.o.Metrics.Notified(z.Name, err)
	s.log.Warn().Err(err).Str("zone", z.Name).Uint32("serial", z.Serial).Str("secondary", target).Msg("notify not acknowledged")
}

// rcodeError is a reply's error code as an error.
type rcodeError int

func (e rcodeError) Error() string { return "answered " + dns.RcodeToString[int(e)] }
