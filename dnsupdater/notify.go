package dnsupdater

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/source"
	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/miekg/dns"
)

// notifyAttempts is how often one exchange sends a NOTIFY before it takes the secondary for
// silent. The attempts share one socket and go out notifyWait apart: a reply to any of them, up
// to notifyLate after the first, acknowledges the NOTIFY. When none was answered (nothing heard
// at all), the exchange goes on sending it notifyWait apart until notifyLate, so that a
// secondary coming back meanwhile is told within notifyWait, or until a later serial of the zone
// is offered, which is sent at once. An exchange none of whose attempts is answered is not the
// end: the secondary is sent the newest serial again after notifyRetry, then twice as long each
// time, up to maxNotifyRetry, or at once when a later serial is offered, until it answers (it
// polls the SOA only at the zone's refresh interval, an hour).
const notifyAttempts = 3

// notifyRetry is how long a sender waits after an exchange no attempt of which was answered
// before it starts the next; each such exchange doubles it, up to maxNotifyRetry.
const notifyRetry = time.Second

// maxNotifyRetry bounds the wait between two exchanges to a secondary that does not answer: one
// that comes back is told the serial served within this (and an exchange) of its return.
const maxNotifyRetry = time.Minute

// notifyWait is how long an attempt waits for its answer, and so the time between attempts
// unless the secondary answers with an error code: a secondary whose port is closed while it
// restarts refuses each datagram at once, and three attempts in a millisecond would all be
// refused.
const notifyWait = time.Second

// notifyLate bounds how long after its first attempt an exchange none of whose attempts was
// answered keeps sending the NOTIFY, notifyWait apart, and listening on its socket for an answer
// to any of them: a secondary that takes longer than the attempts to answer is still heard, and
// one that comes back meanwhile is told within notifyWait.
const notifyLate = 10 * time.Second

// notifyFailureWindow is how often a secondary's failed NOTIFYs are logged at most: one line,
// with the count of those held back since the last.
const notifyFailureWindow = 10 * time.Second

// maxNotifyPerSecondary bounds the NOTIFY exchanges in flight to one secondary that answers,
// across its zones. A secondary that answers takes a slot for a round trip, so 32 still send it
// thousands a second; one that does not answer, or whose port or host refuses the datagrams,
// has a single exchange in flight (see secondary.probe), each holding its socket
// notifyLate (notifyAttempts × notifyWait when the port refuses), until one is answered; its
// other zones wait, coalesced.
const maxNotifyPerSecondary = 32

// maxNotifySockets bounds the NOTIFY exchanges in flight across zones and secondaries. Each
// holds a UDP socket for up to notifyLate: without a bound, a start with 10,000 new
// serials and many secondaries would open a socket per zone and secondary at once. An exchange
// takes its secondary's slot before a socket, and a secondary that has not answered yet, or
// left its last exchange unanswered, has one slot (its probe) rather than maxNotifyPerSecondary:
// k secondaries that are down hold k sockets, not 32k (with the old bound, eight took them all).
const maxNotifySockets = 256

// notifier sends NOTIFYs (RFC 1996) to the secondaries of the zones offered to it, coalesced as
// BIND and Knot do: at most one exchange in flight per zone and secondary, and when it ends the
// newest version offered meanwhile is announced, the ones between skipped. A burst of serials
// so costs a slow secondary about one NOTIFY per round trip rather than one per serial, and the
// newest serial is sent once the exchange in flight ends. At most maxNotifyPerSecondary
// exchanges are in flight to one secondary, and maxNotifySockets in all.
type notifier struct {
	// send carries out one exchange, Server.notify or a fake in tests, and reports whether the
	// secondary answered it (an acknowledgement or an error code other than SERVFAIL): one that
	// did not is sent the newest version again later.
	send func(ctx context.Context, z *zone.Zone, target string) bool
	// sockets holds a token per exchange in flight (maxNotifySockets at most).
	sockets chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	// ctx is run's (nil until it starts: what is offered before waits for it); stopped is set
	// once ctx ends, after which nothing is kept and no sender starts (so none starts while run
	// waits for them).
	ctx     context.Context
	stopped bool
	// zones holds, per zone name, the newest version offered and the secondaries that have a
	// sender (exchanging, or waiting for a slot): a zone is dropped when its last sender ends.
	// Before run starts, it holds what was offered, with no sender yet.
	zones map[string]*notifying
	// secondaries holds, per target, the slots of the secondaries that have a sender: one is
	// dropped when its last sender ends.
	secondaries map[string]*secondary
}

// notifying is one zone's NOTIFY state: the newest version offered (nil once the zone is
// forgotten), and the secondaries with a sender. It is dropped once none has.
type notifying struct {
	newest *zone.Zone
	busy   map[string]bool
	// newer is closed when a version of another serial than newest's is offered, or the zone
	// forgotten (nil until superseded asks for it).
	newer chan struct{}
	// held is the highest serial each secondary's address is known to hold (it transferred
	// it), and holding the exchanges in flight waiting to learn it (see holding).
	held    map[netip.Addr]uint32
	holding map[*heldWait]bool
}

// heldWait is an exchange in flight that ends once the secondary at addr holds serial.
type heldWait struct {
	addr   netip.Addr
	serial uint32
	done   chan struct{}
}

// secondary is one secondary's share of the exchanges, kept while it has a sender.
type secondary struct {
	target string
	// slots holds a token per exchange in flight to target (maxNotifyPerSecondary at most),
	// taken before a socket, once target has answered.
	slots chan struct{}
	// probe holds the token of the one exchange in flight to a target that has not answered
	// yet, or whose last exchange went unanswered: such a target holds one socket, not
	// maxNotifyPerSecondary, so that secondaries that are down cannot take every socket.
	probe chan struct{}
	// answering is set once an exchange to target is answered, cleared when one is not.
	answering atomic.Bool
	// senders counts the zones with a sender to target.
	senders int
}

// acquire takes a slot of sec's for one exchange, or its probe while sec is not answering,
// and returns the channel to release it to; nil once ctx ends. One that finds sec's state
// changed while it waited gives back what it took and takes the other: a secondary that stops
// answering is left its probe, and one that answers again gets its slots.
func (sec *secondary) acquire(ctx context.Context) chan struct{} {
	for {
		answering := sec.answering.Load()
		ch := sec.probe
		if answering {
			ch = sec.slots
		}
		select {
		case ch <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		if sec.answering.Load() == answering {
			return ch
		}
		<-ch
	}
}

// newNotifier returns a notifier that carries out each exchange with send.
func newNotifier(send func(ctx context.Context, z *zone.Zone, target string) bool) *notifier {
	return &notifier{send: send, sockets: make(chan struct{}, maxNotifySockets),
		zones: map[string]*notifying{}, secondaries: map[string]*secondary{}}
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
	if e.newer != nil && (e.newest == nil || e.newest.Serial != z.Serial) {
		close(e.newer)
		e.newer = nil
	}
	e.newest = z
	n.start(e)
}

// superseded returns a channel closed once a version of z's zone of another serial than z's is
// offered, or the zone forgotten: an exchange to a silent secondary ends, and the next starts
// at once. It never closes on a nil n (a server that only sends, in tests).
func (n *notifier) superseded(z *zone.Zone) <-chan struct{} {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.zones[z.Name]
	if e == nil || e.newest == nil || e.newest.Serial != z.Serial {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	if e.newer == nil {
		e.newer = make(chan struct{})
	}
	return e.newer
}

// holding returns a channel closed once the secondary at target (an address and port) is known
// to hold z's serial or a later one, because it transferred it (see held), and a function to
// call once the exchange ends. It never closes for a target that is no address, one whose
// address another of z's secondaries shares (a transfer from there may be the other's: two
// name servers on one host, or behind one NAT), or on a nil n.
func (n *notifier) holding(z *zone.Zone, target string) (<-chan struct{}, func()) {
	ap, err := netip.ParseAddrPort(target)
	if n == nil || err != nil {
		return nil, func() {}
	}
	for _, other := range z.Config.Notify {
		if o, err := netip.ParseAddrPort(other); err == nil && other != target && o.Addr().Unmap() == ap.Addr().Unmap() {
			return nil, func() {}
		}
	}
	w := &heldWait{addr: ap.Addr().Unmap(), serial: z.Serial, done: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.zones[z.Name]
	if e == nil {
		return nil, func() {}
	}
	if h, ok := e.held[w.addr]; ok && !serialAfter(w.serial, h) {
		close(w.done)
		return w.done, func() {}
	}
	if e.holding == nil {
		e.holding = map[*heldWait]bool{}
	}
	e.holding[w] = true
	return w.done, func() {
		n.mu.Lock()
		delete(e.holding, w)
		n.mu.Unlock()
	}
}

// held tells the notifier that the secondary at addr holds serial of the zone name, as a zone
// transfer it took ends: an exchange announcing that serial or an earlier one to it ends,
// acknowledged, however its NOTIFY's answers fare (a secondary answering from another of its
// addresses is never heard on the NOTIFY's socket). It never blocks.
func (n *notifier) held(name string, serial uint32, addr netip.Addr) {
	if n == nil {
		return
	}
	addr = addr.Unmap()
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.zones[name]
	if e == nil {
		return // no exchange in flight, nor waiting
	}
	if h, ok := e.held[addr]; !ok || serialAfter(serial, h) {
		if e.held == nil {
			e.held = map[netip.Addr]uint32{}
		}
		e.held[addr] = serial
	}
	for w := range e.holding {
		if w.addr == addr && !serialAfter(w.serial, serial) {
			close(w.done)
			delete(e.holding, w)
		}
	}
}

// forget drops what is offered of the zone name: its senders stop once their exchanges in
// flight end, and none sends it again unless it is offered again. It never blocks.
func (n *notifier) forget(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.zones[name]
	if e == nil {
		return
	}
	e.newest = nil
	if e.newer != nil {
		close(e.newer)
		e.newer = nil
	}
	if len(e.busy) == 0 { // offered before run: no sender to end
		delete(n.zones, name)
	}
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
			sec := n.secondaries[target]
			if sec == nil {
				sec = &secondary{target: target, slots: make(chan struct{}, maxNotifyPerSecondary), probe: make(chan struct{}, 1)}
				n.secondaries[target] = sec
			}
			sec.senders++
			n.wg.Go(func() { n.sendNewest(name, sec) })
		}
	}
	if len(e.busy) == 0 {
		delete(n.zones, name)
	}
}

// sendNewest announces the newest version of a zone to sec until the version it announced last
// is still the newest, the zone no longer names sec or is forgotten, or ctx ends. Each exchange
// waits for a slot of sec's and then a socket, and then sends the version newest by then. An
// exchange the secondary did not answer is followed, after a wait that holds neither slot nor
// socket (notifyRetry, doubling to maxNotifyRetry, cut short by a later serial), by another of
// the version newest then.
func (n *notifier) sendNewest(name string, sec *secondary) {
	var last *zone.Zone
	retry := notifyRetry
	for {
		if n.pending(name, sec, last) == nil {
			return
		}
		slot := sec.acquire(n.ctx)
		if slot == nil {
			continue // pending ends the sender
		}
		select {
		case n.sockets <- struct{}{}:
		case <-n.ctx.Done():
			<-slot
			continue
		}
		z := n.pending(name, sec, last)
		if z == nil {
			<-n.sockets
			<-slot
			return
		}
		answered := n.send(n.ctx, z, sec.target)
		sec.answering.Store(answered)
		<-n.sockets
		<-slot
		if answered {
			last, retry = z, notifyRetry
			continue
		}
		last = nil // the newest version, whatever it is then, goes next
		wait := time.NewTimer(retry)
		select {
		case <-wait.C:
		case <-n.superseded(z): // a later serial is news the secondary waits for: at once
			wait.Stop()
		case <-n.ctx.Done():
			wait.Stop()
		}
		retry = min(2*retry, maxNotifyRetry)
	}
}

// pending returns the version of a zone to announce to sec, given the one announced last (nil:
// none yet); when there is none to announce, it ends sec's sender and returns nil.
func (n *notifier) pending(name string, sec *secondary, last *zone.Zone) *zone.Zone {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.zones[name]
	z := e.newest
	if n.ctx.Err() != nil || z == nil || (last != nil && z.Serial == last.Serial) || !slices.Contains(z.Config.Notify, sec.target) {
		delete(e.busy, sec.target)
		if len(e.busy) == 0 {
			delete(n.zones, name)
		}
		if sec.senders--; sec.senders == 0 {
			delete(n.secondaries, sec.target)
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
// ends, and reports whether the secondary answered (or ctx ended): false asks the notifier to
// send it again later. After notifyAttempts silent attempts it goes on sending a second apart
// until notifyLate, unless a later serial of the zone is offered (see notifier.superseded).
// Whichever the attempt, once the first is written, the secondary transferring the serial ends
// the exchange, acknowledged (see notifier.held). A zone with a transfer key signs its NOTIFY
// with it (RFC 8945), once: every attempt sends the same message, so that a late answer to any
// of them verifies. A secondary that acknowledges it without transferring has its serial asked
// for, and passed if later (see ahead.go).
func (s *Server) notify(ctx context.Context, z *zone.Zone, target string) bool {
	m := new(dns.Msg)
	m.SetNotify(z.Name)
	m.Authoritative = true
	m.Answer = []dns.RR{z.SOA}
	n, err := newNotifyMsg(m, transferKey(loadKeys(&s.keys), z), time.Now())
	// transferred says that the secondary took the serial (or a later one) during the exchange.
	transferred := false
	if err == nil {
		c := &dns.Client{Net: "udp", Timeout: notifyWait}
		if from, ok := source.For(s.addr, target); ok {
			c.Dialer = &net.Dialer{Timeout: notifyWait, LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
		}
		newer := s.notifier.superseded(z)
		has, release := s.notifier.holding(z, target)
		defer release()
		err = exchangeUntil(ctx, c, target, func(conn *dns.Conn) error {
			var err error
			first := time.Now()
			late := first.Add(notifyLate)
			// The secondary holding the serial ends the exchange once its first attempt is
			// written, and, once its attempts are out, a later serial does: its socket is
			// closed. Not before that write: a transfer from the secondary's address may be
			// another client's (an operator's dig, a monitor), and a serial it took first must
			// still be announced, once.
			sent, listening, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-sent:
				case <-done:
					return
				}
				select {
				case <-has:
				case <-listening:
					select {
					case <-has:
					case <-newer:
					case <-done:
						return
					}
				case <-done:
					return
				}
				_ = conn.Close()
			}()
			for i := 0; ; i++ {
				now := time.Now()
				deadline := now.Add(notifyWait)
				if i >= notifyAttempts {
					// Nothing heard but junk or an unsigned answer: a slow secondary may yet
					// answer, and one coming back is told within a second. One whose port
					// refused the last attempt, or that answered SERVFAIL, is not waited for,
					// nor one whose zone has a later serial to send.
					silent := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errUnsigned)
					if !silent || !now.Before(late) || closed(newer) {
						return err
					}
					if deadline.After(late) {
						deadline = late
					}
				}
				if i == notifyAttempts {
					close(listening)
				}
				err = notifyAttempt(conn, n, deadline, sent)
				switch {
				case closed(has):
					transferred = true
					return nil // the secondary holds the serial: acknowledged
				case i >= notifyAttempts && errors.Is(err, net.ErrClosed) && closed(newer):
					return errSuperseded
				}
				var rc tsig.RcodeError
				if err == nil || ctx.Err() != nil || errors.As(err, &rc) && rc.Rcode != dns.RcodeServerFailure {
					return err // an error code is the secondary's answer: it is not asked again
				}
			}
		})
	}
	var rc tsig.RcodeError
	switch {
	case err == nil:
		s.o.Metrics.Notified(z.Name, nil)
		s.log.Debug().Str("zone", z.Name).Uint32("serial", z.Serial).Str("secondary", target).Msg("notify acknowledged")
		if !transferred {
			// A secondary that holds a later serial (a zone migrated from another primary)
			// ignores the NOTIFY: its serial is asked for, and passed (see ahead.go).
			s.ahead.ask(z.Name, target)
		}
	case ctx.Err() != nil: // stopping: neither a failure nor an acknowledgement
	default:
		s.o.Metrics.Notified(z.Name, err)
		s.notifyFailures.Gate(s.log.Warn(), target).Err(err).Str("zone", z.Name).Uint32("serial", z.Serial).Str("secondary", target).Msg("notify not acknowledged")
	}
	return err == nil || ctx.Err() != nil || errors.As(err, &rc) && rc.Rcode != dns.RcodeServerFailure
}

// notifyMsg is a NOTIFY as sent: its wire form and id, and, when it is signed, the key and the
// MAC that an acknowledgement must be signed over.
type notifyMsg struct {
	wire []byte
	id   uint16
	key  *tsig.Key
	mac  string
}

// newNotifyMsg packs m, signed at now with key when key is not nil.
func newNotifyMsg(m *dns.Msg, key *tsig.Key, now time.Time) (*notifyMsg, error) {
	if key != nil {
		// The NOTIFY and its answer with one secret, though the key's file rotates meanwhile.
		key = key.Snapshot()
	}
	n := &notifyMsg{id: m.Id, key: key}
	var err error
	if key == nil {
		n.wire, err = m.Pack()
	} else {
		m.SetTsig(key.Name, key.Algorithm, 300, now.Unix())
		n.wire, n.mac, err = dns.TsigGenerateWithProvider(m, key, "", false)
	}
	if err != nil {
		return nil, fmt.Errorf("pack notify: %w", err)
	}
	return n, nil
}

// errSuperseded ends an exchange none of whose attempts was answered when a later serial of its
// zone is offered: that one is sent instead, at once.
var errSuperseded = errors.New("no answer before a later serial was offered")

// errUnsigned is an acknowledgement of a signed NOTIFY that the key did not sign: it may come
// from anyone (RFC 8945 §5.1), so it acknowledges nothing.
var errUnsigned = errors.New("answered NOERROR without the key's signature")

// acknowledges reports whether r, decoded from p, a NOERROR answer to n, acknowledges it: any
// does when n is unsigned, else only one signed with n's key over n's MAC, in its fudge.
func (n *notifyMsg) acknowledges(p []byte, r *dns.Msg) bool {
	if n.key == nil {
		return true
	}
	sig := r.IsTsig()
	return sig != nil && n.key.Signs(sig) && dns.TsigVerifyWithProvider(p, n.key, n.mac, false) == nil
}

// maxAttemptErrors bounds the socket errors one attempt reads past: each reports an ICMP error
// once, so more are a fault that would otherwise spin until the deadline.
const maxAttemptErrors = 64

// notifyAttempt sends n on conn, closes sent (unless an earlier attempt did) once the send is
// done, and reads until deadline for the answer: nil for an acknowledgement, a tsig.RcodeError
// for an answer with an error code. Every attempt of an exchange sends n with its id, so a late
// answer to an earlier one counts; a reply to another id, a message that is no reply, and a
// datagram that does not parse are skipped (a stray or forged datagram does not end the
// attempt), and so is a NOERROR answer to a signed n that n's key did not sign (reported at
// deadline, unless an answer comes first). An ICMP error (the secondary's port closed, its
// host unreachable or refusing) and SERVFAIL (often a secondary still loading) are kept and
// reported at deadline, unless an answer comes first; another error code ends the exchange,
// signed or not: a secondary that does not hold the key answers NOTAUTH with an unsigned TSIG
// error (RFC 8945 §5.2), and a forger who guessed the port and id could as well have dropped
// the NOTIFY.
func notifyAttempt(conn *dns.Conn, n *notifyMsg, deadline time.Time, sent chan struct{}) error {
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	var failed error
	_, err := conn.Write(n.wire)
	if err != nil && !timeoutOrClosed(err) {
		// An earlier datagram's ICMP error, told on this send instead of sending it: again.
		failed = err
		_, err = conn.Write(n.wire)
	}
	if err != nil {
		if timeoutOrClosed(err) {
			return err
		}
		failed = err
	}
	if !closed(sent) {
		close(sent)
	}
	return awaitAnswer(conn, n, deadline, failed)
}

// awaitAnswer reads conn until deadline for the answer to n, as notifyAttempt does after its
// send; failed is what to report at deadline when nothing else is kept.
func awaitAnswer(conn *dns.Conn, n *notifyMsg, deadline time.Time, failed error) error {
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	for errs := 0; ; {
		p, err := conn.ReadMsgHeader(nil)
		r := new(dns.Msg)
		if err == nil && r.Unpack(p) != nil {
			continue // a datagram that is no DNS message
		}
		var ne net.Error
		switch {
		case err == nil && r.Id == n.id && r.Response:
			switch r.Rcode {
			case dns.RcodeSuccess:
				if n.acknowledges(p, r) {
					return nil
				}
				failed = errUnsigned
			case dns.RcodeServerFailure:
				failed = tsig.AnswerError(r)
			default:
				return tsig.AnswerError(r)
			}
		case err == nil: // a reply to another id, or no reply
		case timeoutOrClosed(err):
			if failed != nil && !errors.Is(err, net.ErrClosed) {
				return failed
			}
			return err
		case errors.As(err, &ne):
			if errs++; errs > maxAttemptErrors {
				return err
			}
			failed = err
		default: // a datagram too short for a DNS header
		}
	}
}

// timeoutOrClosed reports whether err ends an attempt: its deadline passed, or the socket was
// closed (a stop).
func timeoutOrClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout()
}

// exchangeUntil dials target with c and runs exchange on the connection, which it closes when
// ctx ends: miekg/dns only takes ctx's deadline, so a stop would otherwise wait for an
// attempt's timeout.
func exchangeUntil(ctx context.Context, c *dns.Client, target string, exchange func(*dns.Conn) error) error {
	conn, err := c.DialContext(ctx, target)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	return exchange(conn)
}

// closed reports whether ch is closed; a nil ch never is.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
