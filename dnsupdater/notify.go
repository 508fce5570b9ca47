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

// maxNotifyExchanges bounds the NOTIFY exchanges in flight at once, across zones and
// secondaries. Each holds a UDP socket for up to notifyAttempts seconds: without a bound, a start
// with 10,000 new serials and a secondary that does not answer would hold 10,000 sockets for 3 s.
// A secondary that answers takes a slot for a round trip, so 64 still send thousands a second;
// exchanges past the bound wait for a slot, and one that does not answer holds its slot for 3 s,
// slowing the others in a mass start (BIND sends at most 20 NOTIFYs a second at start anyway,
// its startup-notify-rate).
const maxNotifyExchanges = 64

// notifier sends NOTIFYs (RFC 1996) to the secondaries of the zones offered to it, coalesced as
// BIND and Knot do: at most one exchange in flight per zone and secondary, and when it ends the
// newest version offered meanwhile is announced, the ones between skipped. A burst of serials
// so costs a slow secondary about one NOTIFY per round trip rather than one per serial, and the
// newest serial is sent once the exchange in flight ends. At most maxNotifyExchanges exchanges
// are in flight across all zones and secondaries.
type notifier struct {
	// send carries out one exchange: Server.notify, or a fake in tests.
	send func(ctx context.Context, z *zone.Zone, target string)
	// slots holds a token per exchange in flight (maxNotifyExchanges at most).
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	// ctx is run's (nil until it starts: what is offered before waits for it); stopped is set
	// once ctx ends, after which nothing is kept and no sender starts (so none starts while run
	// waits for them).
	ctx     context.Context
	stopped bool
	// zones holds, per zone name, the newest version offered and the secondaries that have a
	// sender (exchanging, or waiting for a slot): a zone is dropped when its last sender ends.
	// Before run starts, it holds what was offered, with no sender yet.
	zones map[string]*notifying
}

// notifying is one zone's NOTIFY state: the newest version offered, and the secondaries with a
// sender. It is dropped once none has.
type notifying struct {
	newest *zone.Zone
	busy   map[string]bool
}

// newNotifier returns a notifier that carries out each exchange with send.
func newNotifier(send func(ctx context.Context, z *zone.Zone, target string)) *notifier {
	return &notifier{send: send, slots: make(chan struct{}, maxNotifyExchanges), zones: map[string]*notifying{}}
}

// offer asks for z to be announced to its secondaries (z.Config.Notify). It never blocks: a
// secondary still busy with an earlier version is told of z, or of a later one, once it is done.
// Once run has stopped, it does nothing.
func (n *notifier) offer(z *zone.Zone) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return
	}
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
// last is still the newest, the zone no longer names target, or ctx ends. Each exchange waits
// for a slot first, and then sends the version newest by then.
func (n *notifier) sendNewest(name, target string) {
	var last *zone.Zone
	for {
		if n.pending(name, target, last) == nil {
			return
		}
		select {
		case n.slots <- struct{}{}:
		case <-n.ctx.Done():
			continue // pending ends the sender
		}
		z := n.pending(name, target, last)
		if z == nil {
			<-n.slots
			return
		}
		n.send(n.ctx, z, target)
		<-n.slots
		last = z
	}
}

// pending returns the version of a zone to announce to target, given the one announced last
// (nil: none yet); when there is none to announce, it ends target's sender and returns nil.
func (n *notifier) pending(name, target string, last *zone.Zone) *zone.Zone {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.zones[name]
	z := e.newest
	if n.ctx.Err() != nil || (last != nil && z.Serial == last.Serial) || !slices.Contains(z.Config.Notify, target) {
		delete(e.busy, target)
		if len(e.busy) == 0 {
			delete(n.zones, name)
		}
		return nil
	}
	return z
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

// notify sends one zone's NOTIFY to target until it is acknowledged, the attempts run out or ctx
// ends.
func (s *Server) notify(ctx context.Context, z *zone.Zone, target string) {
	m := new(dns.Msg)
	m.SetNotify(z.Name)
	m.Authoritative = true
	m.Answer = []dns.RR{z.SOA}
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	var err error
	for range notifyAttempts {
		var r *dns.Msg
		r, err = exchangeUntil(ctx, c, m, target)
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

// exchangeUntil is c.ExchangeContext(ctx, m, target) cut short when ctx ends: miekg/dns only
// takes ctx's deadline, so a stop would otherwise wait for the attempt's timeout.
func exchangeUntil(ctx context.Context, c *dns.Client, m *dns.Msg, target string) (*dns.Msg, error) {
	conn, err := c.DialContext(ctx, target)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	return r, err
}

// rcodeError is a reply's error code as an error.
type rcodeError int

func (e rcodeError) Error() string { return "answered " + dns.RcodeToString[int(e)] }
