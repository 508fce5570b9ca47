package dnsupdater

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/miekg/dns"
)

// notifyAttempts is how often a NOTIFY is sent before the secondary is given up on for this
// serial (it still polls the SOA at its refresh interval).
const notifyAttempts = 3

// notifier sends NOTIFYs (RFC 1996) to the secondaries of the zones offered to it, coalesced as
// BIND and Knot do: at most one exchange in flight per zone and secondary, and when it ends the
// newest version offered meanwhile is announced, the ones between skipped. A burst of serials
// so costs a slow secondary about one NOTIFY per round trip rather than one per serial, and the
// last serial is never dropped.
type notifier struct {
	// send carries out one exchange: Server.notify, or a fake in tests.
	send func(ctx context.Context, z *zone.Zone, target string)
	wg   sync.WaitGroup
	mu   sync.Mutex
	// ctx is run's (nil until it starts: what is offered before waits for it); stopped is set
	// once ctx ends, after which no sender starts (so none starts while run waits for them).
	ctx     context.Context
	stopped bool
	// zones holds, per zone name, the zones offered and not yet announced to every secondary.
	zones map[string]*notifying
}

// notifying is one zone's NOTIFY state: the newest version offered, and the secondaries with an
// exchange in flight. It is dropped once none is.
type notifying struct {
	newest *zone.Zone
	busy   map[string]bool
}

// newNotifier returns a notifier that carries out each exchange with send.
func newNotifier(send func(ctx context.Context, z *zone.Zone, target string)) *notifier {
	return &notifier{send: send, zones: map[string]*notifying{}}
}

// offer asks for z to be announced to its secondaries (z.Config.Notify). It never blocks: a
// secondary still busy with an earlier version is told of z, or of a later one, once it is done.
func (n *notifier) offer(z *zone.Zone) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.zones[z.Name]
	if e == nil {
		if len(z.Config.Notify) == 0 {
			return
		}
		e = &notifying{busy: map[string]bool{}}
		n.zones[z.Name] = e
	}
	e.newest = z
	n.start(e)
}

// start starts a sender for every secondary of e's newest version that has none, and forgets
// e if it has no secondary left. n.mu is held.
func (n *notifier) start(e *notifying) {
	if n.ctx == nil || n.stopped {
		return
	}
	name := e.newest.Name
	for _, target := range e.newest.Config.Notify {
		if !e.busy[target] {
			e.busy[target] = true
			n.wg.Go(func() { n.sendNewest(name, target) })
		}
	}
	if len(e.busy) == 0 {
		delete(n.zones, name)
	}
}

// sendNewest announces the newest version of a zone to target until the version it announced
// last is still the newest, the zone no longer names target, or ctx ends.
func (n *notifier) sendNewest(name, target string) {
	var last *zone.Zone
	for {
		n.mu.Lock()
		e := n.zones[name]
		z := e.newest
		if n.ctx.Err() != nil || (last != nil && z.Serial == last.Serial) || !slices.Contains(z.Config.Notify, target) {
			delete(e.busy, target)
			if len(e.busy) == 0 {
				delete(n.zones, name)
			}
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
		n.send(n.ctx, z, target)
		last = z
	}
}

// run starts the senders of the zones offered so far and of every later offer, until ctx ends;
// then it waits for them.
func (n *notifier) run(ctx context.Context) {
	n.mu.Lock()
	n.ctx = ctx
	for _, e := range n.zones {
		n.start(e)
	}
	n.mu.Unlock()
	<-ctx.Done()
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	n.wg.Wait()
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
