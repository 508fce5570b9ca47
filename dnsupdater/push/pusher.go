package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mathrand "math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/source"
	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/metrics"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure a Pusher.
type Options struct {
	// Zone is the canonical zone name, e.g. "demo.test.".
	Zone string
	// Push is the zone's push configuration (defaults applied).
	Push config.Push
	// CredentialDirs are the directories its TSIG key's secret_file may name a file in.
	CredentialDirs config.CredentialDirs
	// JS receives the pushed and push_failed events; nil publishes none.
	JS jetstream.JetStream
	// Source names this worker in its events.
	Source string
	// Listen is the ip:port the DNS server listens on: an UPDATE leaves from its address, as a
	// NOTIFY does (see source.For). Default: the address the routing table prefers.
	Listen string
	// Writer is the token of this server's own subject of the zone's events (events.ZoneSubject).
	// Default: events.WriterToken of JS's connection and Source.
	Writer string
	Log    zerolog.Logger
	// Metrics, when set, counts the pushes and their outcome.
	Metrics *metrics.Metrics
	// Live, when set, returns the STATE stream's position as the stream tells it now: the
	// sequence of its last event, and when it was created. A primary's marker of a later
	// position than the pusher's is checked against it (see unheld); nil believes every marker.
	Live func(context.Context) (Position, error)
}

// Desired is the state of a zone to push: Detour's serial, the RRsets it owns, and the STATE
// position they reflect.
type Desired struct {
	Serial uint32
	RRsets map[zone.Key][]dns.RR
	State  Position
	// Recheck says that nothing changed: the server offers its records again, at the position
	// it has read to, so that the pusher reads the primary's marker again. Another server may
	// have pushed since an earlier state, which this server folded away with its reversal and
	// so never offered, and then stopped: the primary would keep that state until the next
	// change. A recheck goes out over a marker of an earlier position than its own (or none, or
	// this pusher's own of other records), and stands aside for another server's of the same
	// position or a later one, which holds its records unless the two servers' configurations
	// differ, and for another server's recheck's of any position: were either pushed over, two
	// servers whose configurations differ would take the primary from each other at every
	// recheck while STATE moves on; they do only at changes. Its marker says it was a recheck.
	// It does not cut short the wait before a retry.
	Recheck bool
}

// Pusher keeps a primary server's copy of Detour's records up to date. Offer hands it the
// newest state; Run sends it, unless the primary's marker says that another server pushed a
// later one, and retries failed updates with a growing wait.
type Pusher struct {
	o      Options
	log    zerolog.Logger
	offers chan Desired
	client *dns.Client
	key    *tsig.Key
	// events stores the pushed and push_failed events beside the pushes (nil without JS).
	recorder *events.Recorder
	// run tells this pusher's marks from those of every other pusher, this server's earlier
	// runs too.
	run string
	// expiry is how long another server's claim holds this pusher back: claimExpiry (tests
	// shorten it). claim is the claim last read on the primary, and claimSeen when this pusher
	// first read it, from when expiry counts: not from the claim's since, which the clock of
	// another server wrote. Only push touches them.
	expiry    time.Duration
	claim     string
	claimSeen time.Time
	// overruled is the last marker pushed over for naming a position STATE does not hold, told
	// once. Only push touches it.
	overruled string
	// pushed is what this pusher last brought the primary to, and digest its digest; digest is
	// "" while what the primary holds is unknown (before the first push, after a failure), and
	// pushed then names the RRsets to rewrite (see unknown). Only push touches them.
	pushed map[zone.Key][]dns.RR
	digest string
}

// New returns a pusher for one zone. Its error names the field at fault below the zone's
// (push.tsig.secret_file…), never the secret.
func New(o Options) (*Pusher, error) {
	key, err := tsig.New(o.Push.TSIG, o.CredentialDirs, o.Log.With().Str("component", "dns_push").Str("zone", o.Zone).Logger())
	if err != nil {
		return nil, fmt.Errorf("push.%w", err)
	}
	run := make([]byte, 8)
	_, _ = rand.Read(run) // crypto/rand's Read never fails
	p := &Pusher{
		o: o, log: o.Log.With().Str("component", "dns_push").Str("zone", o.Zone).Str("server", o.Push.Server).Logger(),
		offers: make(chan Desired, 1), key: key, run: hex.EncodeToString(run), expiry: claimExpiry,
		client: &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigProvider: key},
	}
	if from, ok := source.For(o.Listen, o.Push.Server); ok {
		p.client.Dialer = &net.Dialer{Timeout: p.client.Timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
	}
	if o.JS != nil {
		p.recorder = events.NewRecorder(o.JS, p.log)
		if p.o.Writer == "" {
			p.o.Writer = events.WriterToken(o.JS.Conn(), o.Source)
		}
	}
	return p, nil
}

// Offer hands the pusher the zone's newest state, replacing any it has not sent yet.
func (p *Pusher) Offer(d Desired) {
	for {
		select {
		case p.offers <- d:
			return
		default:
		}
		select {
		case old := <-p.offers:
			// A state offered before a recheck, not yet sent, is sent as it would have been.
			d.Recheck = d.Recheck && old.Recheck
		default:
		}
	}
}

// Run pushes every offered state until ctx is cancelled. The first push after start rewrites
// every owned name whole, since what the primary holds is unknown; later ones send differences
// from what the primary's marker says it holds. A failed push is retried after a wait that
// grows at each failure (see backoff), with the newest state; a push held back by another
// server's claim is tried again once the claim expires, as that server may have stopped in the
// middle of its push; a state offered meanwhile goes out at once.
func (p *Pusher) Run(ctx context.Context) {
	if p.recorder != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wg.Go(func() { p.recorder.Run(ctx) })
	}
	var failures failureNotes
	retry := backoff{base: p.o.Push.RetryInterval.D()}
	behind := false // the last push was held back (see went)
	for {
		var want Desired
		select {
		case <-ctx.Done():
			return
		case want = <-p.offers:
		}
		for attempt := 1; ; attempt++ {
			out, err := p.push(ctx, want)
			var wait time.Duration
			if err == nil {
				retry = backoff{base: retry.base}
				failures = failureNotes{}
				var again bool
				if wait, again = p.went(want, out, attempt, &behind); !again {
					break
				}
			} else {
				if ctx.Err() != nil {
					return
				}
				p.o.Metrics.Pushed(p.o.Zone, err)
				wait = retry.next()
				if failures.tell(reason(err), time.Now()) {
					p.log.Warn().Err(err).Uint32("serial", want.Serial).Int("attempt", attempt).Dur("retry_in", wait).Msg("zone push failed")
					p.report(events.TypeZonePushFailed, events.ZonePush{Zone: p.o.Zone, Server: p.o.Push.Server, Serial: want.Serial, Attempt: attempt, Error: err.Error()})
				}
			}
			if !p.await(ctx, wait, &want, &attempt) {
				return
			}
		}
	}
}

// await waits d before *want is tried again, and reports whether to go on (false: ctx ended). A
// newer state offered meanwhile replaces *want, and goes out at once (*attempt starts over); a
// recheck does not, and is dropped: *want holds the records it holds, and goes out by then.
func (p *Pusher) await(ctx context.Context, d time.Duration, want *Desired, attempt *int) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case newer := <-p.offers:
			if newer.Recheck {
				continue
			}
			*want, *attempt = newer, 0
			return true
		}
	}
}

// went tells what a push of want that went through did (attempt, its number), and returns
// whether to try want again and how long after: only a push held back by another server's claim
// is, once the claim expires. *behind says that the last push was held back, told once.
func (p *Pusher) went(want Desired, out outcome, attempt int, behind *bool) (time.Duration, bool) {
	switch {
	case out.ahead != nil:
		p.o.Metrics.PushBehind(p.o.Zone)
		if !*behind {
			p.log.Info().Uint32("serial", want.Serial).Uint64("stream_seq", want.State.Seq).
				Uint64("primary_stream_seq", out.ahead.at.Seq).Time("primary_stream_created", out.ahead.at.Created).
				Str("primary_pushed_by", out.ahead.server).Bool("primary_push_under_way", out.ahead.claim).
				Msg("zone not pushed: the primary holds a later state")
		}
		*behind = true
	case out.rrsets > 0:
		*behind = false
		p.o.Metrics.Pushed(p.o.Zone, nil)
		if m := out.over; m != nil {
			p.log.Warn().Str("primary_pushed_by", m.server).Uint64("primary_stream_seq", m.at.Seq).
				Uint64("stream_seq", want.State.Seq).Msg(pushedOverMessage)
		}
		p.log.Info().Uint32("serial", want.Serial).Uint64("stream_seq", want.State.Seq).Int("rrsets", out.rrsets).Int("attempt", attempt).Msg("zone pushed")
		p.report(events.TypeZonePushed, events.ZonePush{Zone: p.o.Zone, Server: p.o.Push.Server, Serial: want.Serial, Attempt: attempt, RRsets: out.rrsets})
	case out.stood:
	default:
		*behind = false
	}
	if out.ahead == nil || !out.ahead.claim {
		return 0, false
	}
	return out.claimLeft, true
}

// maxDoublings caps the backoff: the wait before a retry grows to 2^maxDoublings (16) times
// retry_interval, 32 s by default.
const maxDoublings = 4

// backoff spaces the retries of a failing push: the first comes retry_interval after the
// failure, each next one twice as long after the one before, up to 16 times retry_interval;
// each wait is drawn within a quarter either side, so that servers failing alike (a primary
// restarting) do not retry in step. A push that goes out, or is held back, starts it over.
type backoff struct {
	base     time.Duration
	failures int
}

// next returns the wait before the next retry, and counts a failure. The wait saturates at the
// longest time.Duration where doubling or drawing it would overflow to a negative wait, which
// would retry in a tight loop; the configuration bounds retry_interval far below that.
func (b *backoff) next() time.Duration {
	n := min(b.failures, maxDoublings)
	b.failures++
	d := time.Duration(math.MaxInt64)
	if b.base <= d>>n {
		d = b.base << n
	}
	if w := float64(d) * (0.75 + mathrand.Float64()/2); w < math.MaxInt64 {
		return time.Duration(w)
	}
	return math.MaxInt64
}

// failureRepeat is how often a push failing for the same reason is logged and recorded again.
const failureRepeat = time.Minute

// failureNotes decides which failed pushes are logged and recorded as push_failed events: the
// first, one whose error differs from the last told, and then one a failureRepeat. A primary
// down for a day, retried every 32 s once the backoff is at its cap (or at every new state),
// would otherwise add thousands of lines to the log and events to the DNS stream, which keeps
// them; the metrics count every attempt.
type failureNotes struct {
	last string
	at   time.Time
}

// tell reports whether the failure err, at now, is to be told, and notes it if so.
func (f *failureNotes) tell(err string, now time.Time) bool {
	if f.at.IsZero() || err != f.last || now.Sub(f.at) >= failureRepeat {
		f.last, f.at = err, now
		return true
	}
	return false
}

// reason is err as failures compare it: without the local address of the connection it failed
// on, a new port at every retry, so that a primary resetting or timing out every connection
// fails for the same reason each time.
func reason(err error) string {
	s := err.Error()
	if oe := (*net.OpError)(nil); errors.As(err, &oe) && oe.Source != nil && oe.Addr != nil {
		s = strings.Replace(s, oe.Source.String()+"->", "", 1)
	}
	return s
}

// outcome is what a push did.
type outcome struct {
	// rrsets is how many RRsets the update removed or replaced.
	rrsets int
	// ahead is the mark of the later state the primary holds, which held the push back; nil
	// when the push went out, or had nothing to send. claimLeft is how long the claim that held
	// it back holds pushes back still.
	ahead     *mark
	claimLeft time.Duration
	// unmarked says that the marker's name answered records, none of them a mark.
	unmarked bool
	// stood says that a recheck left another server's marker of its position or a later one.
	stood bool
	// over is the marker of another server's other records that a recheck pushed over.
	over *mark
}

// pushedOverMessage is what a pusher logs, at warn level, when a recheck pushes its records over
// another server's other records of an earlier position: a server that stopped before it pushed
// the end of a change, or a live server whose configuration differs.
const pushedOverMessage = "recheck pushed over another server's other records of an earlier state: that server stopped part-way, or the two servers' configurations differ"

// maxRaces is how many times in a row a push reads the marker again after another server
// changed it between the read and the update, before it counts as failed.
const maxRaces = 5

// push brings the primary to want, unless its marker says that it holds a later state: it reads
// the marker, and sends the update from what the marker says the primary holds, conditional on
// the marker (see conditional). When another server changed the marker meanwhile, it reads it
// again and decides again. An update too large for one TCP message goes in several, each
// replacing its names whole.
//
// Records without a mark answered for the marker's name may be a wildcard's (RFC 4592), which
// answers for a name that holds no TXT RRset: an update requiring them is refused, every time.
// So when such an update is refused, the next requires the RRset to be absent, and the one
// after that, if that is refused too, the records read again.
func (p *Pusher) push(ctx context.Context, want Desired) (outcome, error) {
	digest := digestOf(want.RRsets)
	absent := false
	for races := 1; ; races++ {
		out, err := p.try(ctx, want, digest, absent)
		if err == nil || !lostRace(err) || races == maxRaces {
			return out, err
		}
		absent = out.unmarked && !absent
		p.log.Debug().Err(err).Msg("marker changed since it was read; reading it again")
	}
}

// lostRace reports whether err is the primary's refusal of an update for its prerequisite: the
// marker changed since it was read.
func lostRace(err error) bool {
	var rc tsig.RcodeError
	return errors.As(err, &rc) && (rc.Rcode == dns.RcodeNXRrset || rc.Rcode == dns.RcodeYXRrset)
}

// try is one round of push: read the marker, decide, send. absent takes records without a mark
// at the marker's name for none (see push).
func (p *Pusher) try(ctx context.Context, want Desired, digest string, absent bool) (outcome, error) {
	h, err := p.read(ctx)
	if err != nil {
		return outcome{}, fmt.Errorf("read marker %s from %s: %w", p.o.Push.Marker, p.o.Push.Server, err)
	}
	unmarked := h.marker == nil && h.claim == nil && len(h.rrs) > 0
	if unmarked && absent {
		h.rrs = nil
	}
	var claimLeft time.Duration
	if h.claim != nil {
		if c := h.claim.rr(p.o.Push.Marker).String(); c != p.claim {
			p.claim, p.claimSeen = c, time.Now()
		}
		claimLeft = p.expiry - time.Since(p.claimSeen)
	}
	if h.marker != nil && want.State.Before(h.marker.at) {
		unheld, err := p.unheld(ctx, *h.marker, want.State)
		if err != nil {
			return outcome{}, err
		}
		if unheld {
			// Pushed over as another server's records are: every name rewritten.
			h.marker = nil
		}
	}
	if want.Recheck && h.marker != nil && h.marker.run != p.run && (h.marker.recheck || !h.marker.at.Before(want.State)) {
		return outcome{stood: true}, nil // another server's recheck, or its push of this position or a later one, stands
	}
	if m := h.ahead(want.State, p.o.Source, p.run, claimLeft > 0); m != nil {
		return outcome{ahead: m, claimLeft: claimLeft}, nil
	}
	// The update goes from what the marker says the primary holds: what this pusher last
	// pushed, or what it pushes now, when another server pushed it since (and the names of its
	// last push it no longer owns, which that server may never have known: see leftOver).
	// Another server's records, a claim (a push cut short) or a first push rewrite every name.
	before := unknown(p.pushed, want.RRsets)
	if h.marker != nil && h.claim == nil && p.digest != "" {
		switch h.marker.digest {
		case digest:
			before = leftOver(p.pushed, want.RRsets)
		case p.digest:
			before = p.pushed
		}
	}
	u, n := Update(p.o.Zone, before, want.RRsets)
	if u == nil {
		p.log.Debug().Uint32("serial", want.Serial).Uint64("stream_seq", want.State.Seq).Msg("zone not pushed: the primary holds its records")
		p.pushed, p.digest = want.RRsets, digest
		return outcome{}, nil
	}
	marker := mark{at: want.State, digest: digest, server: p.o.Source, run: p.run, recheck: want.Recheck}
	claim := mark{claim: true, at: want.State, server: p.o.Source, run: p.run, since: time.Now()}
	for i, part := range conditional(p.o.Zone, p.o.Push.Marker, h, u, marker, claim, maxUpdate) {
		if err := p.send(ctx, part); err != nil {
			// A part refused for its prerequisite applies nothing, but the primary may have
			// applied any other without confirming it, and the parts before: what it holds is
			// unknown, and the next push rewrites every name owned before or now.
			if i > 0 || !lostRace(err) {
				p.pushed, p.digest = unknown(p.pushed, want.RRsets), ""
			}
			return outcome{unmarked: unmarked}, fmt.Errorf("send update to %s: %w", p.o.Push.Server, err)
		}
	}
	p.pushed, p.digest = want.RRsets, digest
	out := outcome{rrsets: n}
	if want.Recheck && h.marker != nil && h.marker.run != p.run && h.marker.digest != digest {
		out.over = h.marker
	}
	return out, nil
}

// unheld reports whether m, the primary's marker of a later position than at, names a position
// that the live STATE stream, whose position at is, does not hold: a sequence beyond its last (a
// marker edited by hand, or left before STATE was restored from a backup) or a stream created
// after it (stamped by a clock that was ahead, before the stream was deleted and created again).
// Such a marker was never true: the stream it names is the live one, which has not reached it,
// or one deleted before the live one was created, whatever its creation time says. The stream is
// asked once the marker has been read, so a marker another server pushed is of a position the
// stream held then, and holds now. Pushing over one is logged once. A pusher on another stream
// than the live one believes the marker, and so does one without Live. An error says that the
// stream could not be asked: the push fails, to be tried again.
func (p *Pusher) unheld(ctx context.Context, m mark, at Position) (bool, error) {
	if p.o.Live == nil {
		return false, nil
	}
	live, err := p.o.Live(ctx)
	if err != nil {
		return false, fmt.Errorf("check the primary's marker against STATE: %w", err)
	}
	if !live.Created.Equal(at.Created) || !live.Before(m.at) {
		return false, nil
	}
	if rr := m.rr(p.o.Push.Marker).String(); rr != p.overruled {
		p.overruled = rr
		p.log.Warn().Uint64("stream_seq", at.Seq).Uint64("primary_stream_seq", m.at.Seq).Time("primary_stream_created", m.at.Created).
			Str("primary_pushed_by", m.server).Uint64("state_last_seq", live.Seq).Time("state_stream_created", live.Created).
			Msg("the primary's marker names a position STATE does not hold; pushing over it")
	}
	return true, nil
}

// read returns the primary's marker RRset.
func (p *Pusher) read(ctx context.Context) (held, error) {
	q := new(dns.Msg)
	q.SetQuestion(p.o.Push.Marker, dns.TypeTXT)
	q.RecursionDesired = false
	r, err := p.exchange(ctx, q)
	if err != nil {
		return held{}, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return held{}, fmt.Errorf("primary %w", tsig.AnswerError(r))
	}
	var rrs []dns.RR
	for _, rr := range r.Answer {
		if h := rr.Header(); h.Rrtype == dns.TypeTXT && strings.EqualFold(h.Name, p.o.Push.Marker) {
			rrs = append(rrs, rr)
		}
	}
	return readHeld(rrs), nil
}

// send sends one UPDATE to the primary.
func (p *Pusher) send(ctx context.Context, m *dns.Msg) error {
	r, err := p.exchange(ctx, m)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("primary %w", tsig.AnswerError(r))
	}
	return nil
}

// exchange signs m, sends it to the primary and returns its answer, signed by the primary.
func (p *Pusher) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	m.SetTsig(p.key.Name, p.key.Algorithm, 300, time.Now().Unix())
	// The message and its answer with one secret, though the key's file rotates meanwhile.
	client := *p.client
	client.TsigProvider = p.key.Snapshot()
	conn, err := client.DialContext(ctx, p.o.Push.Server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// The client bounds an exchange by its timeout and ctx's deadline, but not by ctx's end:
	// closing the connection then stops a DNS server whose primary does not answer at once.
	defer context.AfterFunc(ctx, func() { _ = conn.Close() })()
	r, _, err := client.ExchangeWithConnContext(ctx, m, conn)
	if errors.Is(err, dns.ErrAuth) && r != nil && r.Id == m.Id {
		// The client does not verify a NOTAUTH that carries a TSIG (a key the primary does not
		// know, a bad signature or time, or a zone it does not serve): its code says why.
		err = fmt.Errorf("primary %w", tsig.AnswerError(r))
	}
	if err != nil {
		return nil, err
	}
	// The client verifies only a signed answer: an unsigned one may come from anything but
	// the primary (RFC 8945 §5.3), and is believed only when it refuses.
	if r.IsTsig() == nil && (r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError) {
		return nil, errors.New("the answer is not signed")
	}
	return r, nil
}

// report records a push event beside the pushes: while the DNS stream elects a leader, the next
// push does not wait for it.
func (p *Pusher) report(typ string, payload events.ZonePush) {
	if p.recorder == nil {
		return
	}
	e, err := events.New(typ, p.o.Source, time.Now(), payload)
	if err != nil {
		p.log.Warn().Err(err).Str("type", typ).Msg("push event not published")
		return
	}
	p.recorder.Record(events.ZoneSubject(p.o.Zone, p.o.Writer), e)
}
