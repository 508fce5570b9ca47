package push

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	mathrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
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
	// It does not cut short the wait before a retry. A marker of records of an older
	// configuration version than Config is not stood aside for (see olderConfig).
	Recheck bool
	// Config is the configuration version (the CONFIG stream's sequence) RRsets were projected
	// from, which the marker names; 0 for a configuration read from a file, and the marker then
	// names none.
	Config uint64
	// ConfigTime is when version Config was applied, which the marker names too: a version of
	// a CONFIG stream created again, whose numbers start over, is numbered lower than the old
	// stream's yet applied later (see olderConfig).
	ConfigTime time.Time
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
	// gate is a serial of the zone at which the primary held pushed, and how many rechecks may
	// still take it for that while its serial stays, sparing the reads (see serialGate). Only
	// push touches it.
	gate serialGate
	// delegated maps each owned name that the primary answers with a referral (it lies at or
	// below a delegation of the zone there) to that delegation: the primary never answers what
	// a push writes there, so such a name is neither pushed nor emptied (see setDelegated).
	// Only push touches it.
	delegated map[string]string
	// tuneMu guards tuned, a retry interval and a marker name Tune gave and Run has not taken
	// yet (see tune).
	tuneMu sync.Mutex
	tuned  *config.Push
	// retuned wakes a wait before a retry when Tune gave something (see await).
	retuned chan struct{}
	// moved is the name the marker had before Tune moved it, where the primary may hold this
	// pusher's marker still, until a push moves it to its new name (see try). Only Run touches it.
	moved string
}

// serialGate lets a recheck skip reading the owned names while the primary's SOA serial is one
// at which the primary is known to hold them as the marker says: every UPDATE, a hand edit's
// too, moves it. The pusher knows such a serial from a read of the owned names that found them
// as pushed, or from an update it sent from one (a full rewrite from any): moved by its own
// parts alone, the serial is the marker's it wrote (see mark.serial), which tells the primary's
// records to another server that pushes the same records too, so that each server's UPDATEs
// do not send the other reading every owned name. left counts the rechecks that may still skip
// the reads, so that a primary that does not move its serial at an UPDATE has them read every
// ownedReadEvery rechecks of a server all the same; 0: read them.
type serialGate struct {
	serial uint32
	left   int
}

// ownedReadEvery is how many rechecks in a row, at most, read the owned names only when the
// primary's serial moved: with the recheck every minute, one reads them every 10 minutes
// whatever the serial says.
const ownedReadEvery = 10

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
		offers: make(chan Desired, 1), retuned: make(chan struct{}, 1), key: key, run: hex.EncodeToString(run), expiry: claimExpiry,
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

// Tune changes the retry interval and the marker's name of the pusher in place, as a reload that
// changes nothing else of the push does: what the pusher knows of the primary stays, so that no
// owned name is rewritten or read for it. The next attempt waits by the new interval should it
// fail, and the next push moves the marker to its new name.
func (p *Pusher) Tune(retry config.Duration, marker string) {
	p.tuneMu.Lock()
	defer p.tuneMu.Unlock()
	p.tuned = &config.Push{RetryInterval: retry, Marker: marker}
	select {
	case p.retuned <- struct{}{}:
	default: // already told
	}
}

// tune takes what Tune gave, if anything, before an attempt: retry's base becomes the new
// interval, and a new marker name the one pushes read and write, the name before it noted as
// moved (the one the primary holds, should the name change twice before a push).
func (p *Pusher) tune(retry *backoff) {
	p.tuneMu.Lock()
	t := p.tuned
	p.tuned = nil
	select {
	case <-p.retuned:
	default:
	}
	p.tuneMu.Unlock()
	if t == nil {
		return
	}
	p.o.Push.RetryInterval, retry.base = t.RetryInterval, t.RetryInterval.D()
	if t.Marker == p.o.Push.Marker {
		return
	}
	switch {
	case p.moved == "":
		p.moved = p.o.Push.Marker
	case p.moved == t.Marker:
		p.moved = ""
	}
	p.o.Push.Marker = t.Marker
}

// Inherit has p, not yet run, take over the owned names that old, a pusher of the same zone and
// primary whose Run has returned, pushed there: p's first push, which rewrites every owned name,
// empties those it does not own, as old's next push would have (an app that the reload replacing
// old with p removed). Where p's marker has another name (the reload changed it too), p reads
// the marker where old left it, and its first push moves it, as a Tune would have.
func (p *Pusher) Inherit(old *Pusher) {
	p.pushed = unknown(old.pushed, nil)
	if at := cmp.Or(old.moved, old.o.Push.Marker); at != p.o.Push.Marker {
		p.moved = at
	}
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
			p.tune(&retry)
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
// recheck does not, and is dropped: *want holds the records it holds, and goes out by then. A
// Tune cuts the wait short: its retry interval, which may be far shorter, spaces the next ones.
func (p *Pusher) await(ctx context.Context, d time.Duration, want *Desired, attempt *int) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-p.retuned:
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
			w := p.log.Warn().Str("primary_pushed_by", m.server).Uint64("primary_stream_seq", m.at.Seq).Uint64("stream_seq", want.State.Seq)
			if olderConfig(*m, want) {
				w.Uint64("primary_config_version", m.config).Uint64("config_version", want.Config).Msg(olderConfigMessage)
			} else {
				w.Msg(pushedOverMessage)
			}
		}
		if len(out.restored) > 0 {
			p.log.Warn().Uint32("serial", want.Serial).Uint64("stream_seq", want.State.Seq).Int("rrsets", out.rrsets).Strs("restored", out.restored).
				Msg("zone pushed: owned records were changed on the primary under the marker, and are restored")
		} else {
			p.log.Info().Uint32("serial", want.Serial).Uint64("stream_seq", want.State.Seq).Int("rrsets", out.rrsets).Int("attempt", attempt).Msg("zone pushed")
		}
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
	// cleared are the owned names that the primary refused an update of and that asking them
	// then found not delegated (see push).
	cleared []string
	// stood says that a recheck left another server's marker of its position or a later one.
	stood bool
	// over is the marker of another server's other records that a recheck pushed over: of an
	// earlier position, or of an older configuration version.
	over *mark
	// restored names the owned RRsets ("name type") a recheck found changed on the primary
	// under a marker that said it held them, and pushed back.
	restored []string
}

// pushedOverMessage is what a pusher logs, at warn level, when a recheck pushes its records over
// another server's other records of an earlier position: a server that stopped before it pushed
// the end of a change, or a live server whose configuration differs.
const pushedOverMessage = "recheck pushed over another server's other records of an earlier state: that server stopped part-way, or the two servers' configurations differ"

// olderConfigMessage is what a pusher logs, at warn level, when a recheck pushes its records over
// another server's records of an older configuration version (see olderConfig).
const olderConfigMessage = "recheck pushed over another server's records of an older configuration version"

// maxRaces is how many times in a row a push reads the marker again after another server
// changed it between the read and the update, before it counts as failed.
const maxRaces = 5

// push brings the primary to want, unless its marker says that it holds a later state: it reads
// the marker, and sends the update from what the marker says the primary holds, conditional on
// the marker and, when it goes from there, on no name it writes being delegated (see
// conditional, notDelegated).
// When another server changed the marker meanwhile, or a human delegated a name (which try then
// learns), it reads the marker again and decides again. An update too large for one TCP message
// goes in several, each replacing its names whole.
//
// Records without a mark answered for the marker's name may be a wildcard's (RFC 4592), which
// answers for a name that holds no TXT RRset: an update requiring them is refused, every time.
// So when such an update is refused, the next requires the RRset to be absent, and the one
// after that, if that is refused too, the records read again.
//
// A primary may hold an NS RRset at a name an update writes, or above it, and yet answer the
// name with authority, never a referral: it serves the child zone too. Asking the names then
// finds no delegation, and an update requiring none there would be refused every time, every
// failover of the zone with it; so the names asked after a refusal and found not delegated
// (cleared) go without it in the tries after it in this push, as in a full rewrite, which has
// just asked every name.
func (p *Pusher) push(ctx context.Context, want Desired) (outcome, error) {
	absent, cleared := false, map[string]bool{}
	for races := 1; ; races++ {
		out, err := p.try(ctx, want, absent, cleared)
		if err == nil || !lostRace(err) || races == maxRaces {
			return out, err
		}
		absent = out.unmarked && !absent
		for _, name := range out.cleared {
			cleared[name] = true
		}
		p.log.Debug().Err(err).Msg("update refused for its prerequisites: the marker changed since it was read, or a name was delegated; reading it again")
	}
}

// lostRace reports whether err is the primary's refusal of an update for its prerequisites: the
// marker changed since it was read, or a name the update writes was delegated (see try).
func lostRace(err error) bool {
	var rc tsig.RcodeError
	return errors.As(err, &rc) && (rc.Rcode == dns.RcodeNXRrset || rc.Rcode == dns.RcodeYXRrset)
}

// try is one round of push: read the marker, decide, send. absent takes records without a mark
// at the marker's name for none (see push). The owned names the primary delegates are left out
// (see delegated).
func (p *Pusher) try(ctx context.Context, want Desired, absent bool, cleared map[string]bool) (outcome, error) {
	// The digest is of every owned name, delegated or not: what the primary holds at a
	// delegated one is left as it was, so a marker of the records as they were before the
	// delegation was found still says what the primary holds.
	all := want.RRsets
	want.RRsets = p.undelegated(all)
	digest := digestOf(all)
	h, err := p.read(ctx, p.o.Push.Marker)
	if err != nil {
		return outcome{}, fmt.Errorf("read marker %s from %s: %w", p.o.Push.Marker, p.o.Push.Server, err)
	}
	// A marker Tune moved is read where the primary holds it until a push moves it: under its
	// name of before, while its new name holds no mark; at is what the new name holds then
	// (records of no mark, which the move replaces, or none).
	from, at := p.o.Push.Marker, []dns.RR(nil)
	if p.moved != "" && h.marker == nil && h.claim == nil {
		old, err := p.read(ctx, p.moved)
		if err != nil {
			return outcome{}, fmt.Errorf("read marker %s from %s: %w", p.moved, p.o.Push.Server, err)
		}
		if old.marker != nil || old.claim != nil {
			h, from, at = old, p.moved, h.rrs
		}
	}
	// Records of no mark where the marker goes (a wildcard's, perhaps) are taken for none when
	// absent says so; read keeps what the primary answered at from.
	read := h.rrs
	unmarked := h.marker == nil && h.claim == nil && len(h.rrs) > 0
	switch {
	case from != p.o.Push.Marker:
		unmarked = len(at) > 0
		if absent {
			at = nil
		}
	case unmarked && absent:
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
	if want.Recheck && h.marker != nil && h.marker.run != p.run && (h.marker.recheck || !h.marker.at.Before(want.State)) &&
		!olderConfig(*h.marker, want) {
		// Another server's recheck, or its push of this position or a later one, stands, unless
		// its records are of an older configuration version: that server rechecks the primary.
		// But it may have stopped, and a marker of this pusher's records that says the serial
		// its update left vouches for the primary only while the serial is that one: once it
		// moved (a hand edit), this recheck reads the owned names, and puts back what differs,
		// lest the edit stay until STATE next changes the records.
		// A marker of a later position stands all the same (the push would be held back by
		// it): this server reads STATE on to that position, and rechecks at it.
		stand := true
		if h.marker.digest == digest && h.marker.serialSet && !want.State.Before(h.marker.at) {
			serial, ok, err := p.serial(ctx)
			if err != nil {
				return outcome{}, fmt.Errorf("read the zone's serial from %s: %w", p.o.Push.Server, err)
			}
			stand = ok && serial == h.marker.serial
		}
		if stand {
			return outcome{stood: true}, nil
		}
	}
	if m := h.ahead(want.State, p.o.Source, p.run, claimLeft > 0); m != nil {
		return outcome{ahead: m, claimLeft: claimLeft}, nil
	}
	// The update goes from what the marker says the primary holds: what this pusher last
	// pushed, or what it pushes now, when another server pushed it since (and the names of its
	// last push it no longer owns, which that server may never have known: see leftOver).
	// Another server's records, a claim (a push cut short) or a first push rewrite every name.
	before := unknown(p.pushed, want.RRsets)
	known := false
	if h.marker != nil && h.claim == nil && p.digest != "" {
		switch h.marker.digest {
		case digest:
			before, known = leftOver(p.pushed, want.RRsets), true
		case p.digest:
			before, known = p.pushed, true
		}
	}
	// Every name of before is rewritten whole when what the primary holds there is unknown (a
	// first push after start, a push after a failure, over another server's records): the
	// names the primary delegates among them are learnt first, so that no such push replaces
	// a delegation's glue, whatever a recheck found before (or has not yet, after a start).
	if !known {
		if err := p.learnDelegations(ctx, &want, all, unknown(p.pushed, all), true); err != nil {
			return outcome{}, err
		}
	}
	// vouched are the zone's serials at which the primary is known to have held before: this
	// pusher's gate's, where before is its last push, and the marker's.
	var vouched []uint32
	if known {
		if h.marker.digest == p.digest && p.gate.left > 0 {
			vouched = append(vouched, p.gate.serial)
		}
		if h.marker.serialSet {
			vouched = append(vouched, h.marker.serial)
		}
	}
	// A recheck does not take the marker's word for the owned records: a hand edit on the
	// primary leaves the marker as it was. It reads them, and sends what differs, unless the
	// serial says they are as before has them.
	var restored []string
	gate, held := serialGate{}, false // the update's: the serial it goes from, and whether before is held there
	if want.Recheck && known {
		var cuts map[string]string
		if before, restored, gate, held, cuts, err = p.readOwned(ctx, before, all, vouched); err != nil {
			return outcome{}, fmt.Errorf("read owned records from %s: %w", p.o.Push.Server, err)
		}
		if cuts != nil && p.setDelegated(cuts) {
			want.RRsets = p.undelegated(all)
		}
	}
	// A name before does not hold (an app a reload added) is rewritten whole too, over what the
	// primary holds there (see Update): whether the primary delegates it, its glue there
	// perhaps, is learnt first as well.
	if known {
		fresh := map[zone.Key][]dns.RR{}
		for k, rrs := range want.RRsets {
			if _, ok := before[k]; !ok {
				fresh[k] = rrs
			}
		}
		if len(fresh) > 0 {
			if err := p.learnDelegations(ctx, &want, all, fresh, false); err != nil {
				return outcome{}, err
			}
		}
	}
	// A name the primary delegates is left as it holds it, whatever this pusher wrote there
	// before: its A or AAAA may be the delegation's glue now.
	before = p.undelegated(before)
	u, n := Update(p.o.Zone, before, want.RRsets)
	// An update from what the marker says (a failover) asks nothing before it goes: it requires
	// that the primary delegates none of the names it writes, which a human may have done since
	// the last reading. A full rewrite has just asked every name, and goes without.
	if known && u != nil {
		names := slices.DeleteFunc(written(u), func(name string) bool { return cleared[name] })
		u.Answer = notDelegated(p.o.Zone, names)
	}
	if u == nil && from == p.o.Push.Marker {
		p.log.Debug().Uint32("serial", want.Serial).Uint64("stream_seq", want.State.Seq).Msg("zone not pushed: the primary holds its records")
		p.pushed, p.digest = want.RRsets, digest
		switch {
		case want.Recheck:
			p.gate = gate
		case h.marker != nil && h.marker.serialSet && h.marker.digest == digest:
			// Another server pushed these records (or this pusher did): the marker's serial
			// is one at which the primary held them.
			p.gate.serial = h.marker.serial
		}
		return outcome{}, nil
	}
	// The serial the update goes from, read now unless the recheck just did, or no serial is
	// vouched for (the update then says none): before is held there where the serial is one
	// vouched for, and whatever it held when every name is rewritten whole (a full rewrite is
	// as good as a read of every name).
	if !known || !want.Recheck && len(vouched) > 0 {
		serial, ok, err := p.serial(ctx)
		if err != nil {
			return outcome{}, fmt.Errorf("read the zone's serial from %s: %w", p.o.Push.Server, err)
		}
		gate, held = serialGate{serial: serial, left: p.gate.left}, ok && (!known || slices.Contains(vouched, serial))
		if !known {
			gate.left = ownedReadEvery - 1
		}
	}
	marker := mark{at: want.State, digest: digest, server: p.o.Source, run: p.run, recheck: want.Recheck, config: want.Config, configTime: want.ConfigTime}
	claim := mark{claim: true, at: want.State, server: p.o.Source, run: p.run, since: time.Now()}
	parts := conditional(p.o.Zone, from, p.o.Push.Marker, at, h, u, marker, claim, maxUpdate)
	// The marker says the serial its update leaves: moved by one at each part. The parts are
	// cut again should the serial's length change their number. A part between the first (which
	// adds the claim) and the last (which replaces the marker) may change nothing, where every
	// name is rewritten as the primary holds it already (a first push after a start): BIND does
	// not move the serial for it, and a hand edit could then move it to the one the marker says.
	// So an update of more than two parts says no serial.
	for range 3 {
		if !held || len(parts) > 2 || marker.serialSet && marker.serial == gate.serial+uint32(len(parts)) {
			break
		}
		marker.serial, marker.serialSet = gate.serial+uint32(len(parts)), true
		parts = conditional(p.o.Zone, from, p.o.Push.Marker, at, h, u, marker, claim, maxUpdate)
	}
	if marker.serialSet && marker.serial != gate.serial+uint32(len(parts)) {
		marker.serial, marker.serialSet = 0, false
		parts = conditional(p.o.Zone, from, p.o.Push.Marker, at, h, u, marker, claim, maxUpdate)
	}
	l := &link{p: p}
	defer l.close()
	for i, part := range parts {
		if err := p.send(ctx, l, part); err != nil {
			// A part refused for its prerequisite applies nothing, but the primary may have
			// applied any other without confirming it, and the parts before: what it holds is
			// unknown, and the next push rewrites every name owned before or now, learning
			// their delegations first.
			if i > 0 || !lostRace(err) {
				p.pushed, p.digest, p.gate = unknown(p.pushed, want.RRsets), "", serialGate{}
				return outcome{unmarked: unmarked}, fmt.Errorf("send update to %s: %w", p.o.Push.Server, err)
			}
			// The first part refused: the marker changed since it was read, or, where the
			// update went from what the marker says, a name the part writes, or one above it, is
			// delegated on the primary now (see notDelegated). The primary does not say which,
			// so the marker is read again: changed, another server's update went first, and the
			// next try decides from it, asking nothing of the names (they were an A query each
			// of the part's names, 1,100 for a failover of 10,000, at every race lost). Else the
			// owned names the part writes are asked: a delegation found is left out of the next
			// try, which reads the marker again as after any refusal. Where both happened, a
			// refusal of the next try's update, the marker as it read it, asks them.
			var asked []string
			if u != nil && len(u.Answer) > 0 {
				now, rerr := p.read(ctx, from)
				if rerr != nil {
					return outcome{}, fmt.Errorf("read marker %s from %s: %w", from, p.o.Push.Server, rerr)
				}
				if !sameData(now.rrs, read) {
					return outcome{unmarked: unmarked}, fmt.Errorf("send update to %s: %w", p.o.Push.Server, err)
				}
				names := map[zone.Key][]dns.RR{}
				for _, rr := range part.Ns {
					if h := rr.Header(); slices.Contains(ownedTypes, h.Rrtype) && !cleared[h.Name] {
						names[zone.Key{Name: h.Name}] = nil
					}
				}
				if err := p.learnDelegations(ctx, &want, all, names, false); err != nil {
					return outcome{}, err
				}
				for k := range names {
					if _, ok := p.delegated[k.Name]; !ok {
						asked = append(asked, k.Name)
					}
				}
			}
			return outcome{unmarked: unmarked, cleared: asked}, fmt.Errorf("send update to %s: %w", p.o.Push.Server, err)
		}
	}
	p.pushed, p.digest, p.moved = want.RRsets, digest, ""
	p.gate = serialGate{}
	if marker.serialSet && marker.serial == gate.serial+uint32(len(parts)) {
		p.gate = serialGate{serial: marker.serial, left: gate.left}
	}
	out := outcome{rrsets: n, restored: restored}
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

// read returns the primary's marker RRset at name; an error when name lies below a delegation
// there.
func (p *Pusher) read(ctx context.Context, name string) (held, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeTXT)
	q.RecursionDesired = false
	r, err := p.exchange(ctx, q)
	if err != nil {
		return held{}, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return held{}, fmt.Errorf("primary %w", tsig.AnswerError(r))
	}
	// The primary answers a name below a delegation with a referral, never with the marker a
	// push writes there: every push after the first would be refused for its prerequisite.
	if cut := referral(r, p.o.Zone, name); cut != "" {
		return held{}, fmt.Errorf("it lies below the delegation %s on the primary: choose a marker name outside it", cut)
	}
	var rrs []dns.RR
	for _, rr := range r.Answer {
		if h := rr.Header(); h.Rrtype == dns.TypeTXT && strings.EqualFold(h.Name, name) {
			rrs = append(rrs, rr)
		}
	}
	return readHeld(rrs), nil
}

// readOwned returns before with the RRsets of want's names (every type Detour may own there) as
// the primary holds them where their records differ from what before said of them (a TTL alone
// does not), and names those, sorted; the gate for the next recheck should before turn out
// to be what the primary holds, and whether the primary holds the records returned at its
// serial (false when it answered no SOA); and the names answered with a referral, each with its
// delegation (nil when it read no name). It asks for the zone's SOA serial first, and reads
// nothing more while the serial is one of vouched and p.gate has rechecks left (see
// serialGate); else it asks for each name's A and AAAA records (a CNAME answers either), two
// signed queries a name, pipelined (see pipeline). A name want leaves empty (a
// fail_closed app with every pool down) is not read: a wildcard of the zone would answer for
// it, what no push removes. A name answered with a referral is left as before has it.
func (p *Pusher) readOwned(ctx context.Context, before, want map[zone.Key][]dns.RR, vouched []uint32) (map[zone.Key][]dns.RR, []string, serialGate, bool, map[string]string, error) {
	filled := map[string]bool{}
	for k, rrs := range want {
		if len(rrs) > 0 {
			filled[k.Name] = true
		}
	}
	names := slices.Collect(maps.Keys(filled))
	slices.SortFunc(names, zone.Compare)
	var soa *dns.Msg
	if err := p.pipeline(ctx, []dns.Question{question(p.o.Zone, dns.TypeSOA)}, func(_ dns.Question, r *dns.Msg) { soa = r }); err != nil {
		return nil, nil, serialGate{}, false, nil, err
	}
	serial, ok := soaSerial(p.o.Zone, soa.Answer)
	if ok && p.gate.left > 0 && slices.Contains(vouched, serial) {
		return before, nil, serialGate{serial: serial, left: p.gate.left - 1}, true, nil, nil
	}
	gate := serialGate{}
	if ok {
		gate = serialGate{serial: serial, left: ownedReadEvery - 1}
	}
	qs := make([]dns.Question, 0, 2*len(names))
	for _, name := range names {
		qs = append(qs, question(name, dns.TypeA), question(name, dns.TypeAAAA))
	}
	// Each answer is kept as what it says of its name: the records of the type asked (a CNAME
	// answering A too), or the delegation it refers to.
	held := map[string]map[uint16][]dns.RR{}
	referred := map[dns.Question]string{}
	if err := p.pipeline(ctx, qs, func(q dns.Question, r *dns.Msg) {
		if cut := referral(r, p.o.Zone, q.Name); cut != "" {
			referred[q] = cut
			return
		}
		for _, rr := range r.Answer {
			h := rr.Header()
			if t := h.Rrtype; strings.EqualFold(h.Name, q.Name) && (t == q.Qtype || t == dns.TypeCNAME && q.Qtype == dns.TypeA) {
				if held[q.Name] == nil {
					held[q.Name] = map[uint16][]dns.RR{}
				}
				held[q.Name][t] = append(held[q.Name][t], rr)
			}
		}
	}); err != nil {
		return nil, nil, serialGate{}, false, nil, err
	}
	out := maps.Clone(before)
	var changed []string
	cuts := map[string]string{}
	for _, name := range names {
		if cut := cmp.Or(referred[question(name, dns.TypeA)], referred[question(name, dns.TypeAAAA)]); cut != "" {
			cuts[name] = cut
			continue
		}
		for _, t := range ownedTypes {
			k := zone.Key{Name: name, Type: t}
			// A TTL is the primary's to lower (BIND's max-zone-ttl caps an update's): pushed
			// again, it would be lowered again, at every recheck.
			if !sameData(before[k], held[name][t]) {
				changed = append(changed, name+" "+dns.TypeToString[t])
				out[k] = held[name][t]
			}
		}
	}
	return out, changed, gate, ok, cuts, nil
}

// question is the question of a query for name's records of type qtype.
func question(name string, qtype uint16) dns.Question {
	return dns.Question{Name: name, Qtype: qtype, Qclass: dns.ClassINET}
}

// pipelineWindow is how many of pipeline's queries are in flight at once on a connection.
const pipelineWindow = 64

// learnDelegations asks the primary which names of rrsets it delegates, and leaves those out of
// want (all being every owned name), with every owned name below a delegation found, asked or
// not: a failover's first part, refused for a subdomain of thousands of owned names delegated
// since, is not followed by a part refused for the next ones, and so on. Where every owned name
// is asked (whole), a name delegated before and not now is pushed again; else the delegations
// known of the others are kept.
func (p *Pusher) learnDelegations(ctx context.Context, want *Desired, all, rrsets map[zone.Key][]dns.RR, whole bool) error {
	cuts, err := p.delegations(ctx, rrsets)
	if err != nil {
		return fmt.Errorf("read owned names' delegations from %s: %w", p.o.Push.Server, err)
	}
	found := map[string]string{}
	for _, cut := range cuts {
		found[strings.ToLower(cut)] = cut
	}
	for k := range all {
		for _, i := range dns.Split(k.Name) {
			if cut, ok := found[strings.ToLower(k.Name[i:])]; ok {
				cuts[k.Name] = cut
				break
			}
		}
	}
	if !whole {
		maps.Copy(cuts, p.delegated)
	}
	if p.setDelegated(cuts) {
		want.RRsets = p.undelegated(all)
	}
	return nil
}

// delegations returns the names of rrsets that the primary answers with a referral, each with
// its delegation: one signed A query a name, pipelined (see pipeline), so that a primary across
// a wide area link is not kept a round trip a name from a push (300 s for 10,000 apps 30 ms
// away) that may carry a failover.
func (p *Pusher) delegations(ctx context.Context, rrsets map[zone.Key][]dns.RR) (map[string]string, error) {
	set := map[string]bool{}
	for k := range rrsets {
		set[k.Name] = true
	}
	var qs []dns.Question
	for _, name := range slices.SortedFunc(maps.Keys(set), zone.Compare) {
		qs = append(qs, question(name, dns.TypeA))
	}
	cuts := map[string]string{}
	if err := p.pipeline(ctx, qs, func(q dns.Question, r *dns.Msg) {
		if cut := referral(r, p.o.Zone, q.Name); cut != "" {
			cuts[q.Name] = cut
		}
	}); err != nil {
		return nil, err
	}
	return cuts, nil
}

// pipeline asks the primary qs over one TCP connection, each query signed, up to pipelineWindow
// of them in flight (RFC 7766 §6.2.1.1), and calls each with every answer; an error for an
// answer other than NOERROR or NXDOMAIN. A primary across a wide area link so answers a few
// thousand queries in a few dozen round trips, not one a query. A primary that closes the
// connection after answering some (miekg/dns servers do after 128 queries) is connected to
// again for the rest; one that answers none on a connection, or leaves one unanswered for the
// client's timeout, fails them.
func (p *Pusher) pipeline(ctx context.Context, qs []dns.Question, each func(q dns.Question, r *dns.Msg)) error {
	for len(qs) > 0 {
		var err error
		if qs, err = p.pipelineOn(ctx, qs, each); err != nil {
			return err
		}
	}
	return nil
}

// pipelineOn is pipeline on one connection: it returns the questions left unasked or unanswered
// when the primary closed the connection after answering some; an error when it answered none,
// or left one unanswered for the client's timeout.
func (p *Pusher) pipelineOn(ctx context.Context, qs []dns.Question, each func(q dns.Question, r *dns.Msg)) ([]dns.Question, error) {
	client, conn, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { _ = conn.Close() })()
	type asked struct {
		q    dns.Question
		mac  string
		sent int // its place in qs
	}
	flying := map[uint16]asked{}
	id := dns.Id()
	sent, answered := 0, 0
	// named is err of the query in flight the longest, the one whose answer is awaited.
	named := func(err error) error {
		first := asked{sent: len(qs)}
		for _, a := range flying {
			if a.sent < first.sent {
				first = a
			}
		}
		return fmt.Errorf("%s %s: %w", first.q.Name, dns.TypeToString[first.q.Qtype], err)
	}
	// rest returns the questions unanswered on a connection that ended with err: to be asked
	// on another when this one answered some.
	rest := func(err error) ([]dns.Question, error) {
		if answered == 0 || ctx.Err() != nil {
			return nil, err
		}
		var out []dns.Question
		for _, a := range flying {
			out = append(out, a.q)
		}
		return append(out, qs[sent:]...), nil
	}
	// unwritable is the error of a write that failed: the primary closed the connection, perhaps
	// after answering queries whose answers are yet to be read, which are read before the rest
	// are asked on another (a primary that answers one query a connection failed them all).
	var unwritable error
	for answered < len(qs) {
		for unwritable == nil && sent < len(qs) && len(flying) < pipelineWindow {
			for _, used := flying[id]; used; _, used = flying[id] {
				id++
			}
			q := new(dns.Msg)
			q.Question = []dns.Question{qs[sent]}
			q.RecursionDesired = false
			q.Id = id
			q.SetTsig(p.key.Name, p.key.Algorithm, 300, time.Now().Unix())
			out, mac, err := dns.TsigGenerateWithProvider(q, client.TsigProvider, "", false)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", qs[sent].Name, dns.TypeToString[qs[sent].Qtype], err)
			}
			_ = conn.SetWriteDeadline(time.Now().Add(client.Timeout))
			if _, err := conn.Write(out); err != nil {
				unwritable = fmt.Errorf("%s %s: %w", qs[sent].Name, dns.TypeToString[qs[sent].Qtype], err)
				break
			}
			flying[id] = asked{q: qs[sent], mac: mac, sent: sent}
			sent++
			id++
		}
		if len(flying) == 0 {
			return rest(unwritable)
		}
		_ = conn.SetReadDeadline(time.Now().Add(client.Timeout))
		b, err := conn.ReadMsgHeader(nil)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A primary that answers no more on an open connection, asked again on another,
			// may do the same there: a timeout a query, hours for a recheck of 1,000 names.
			return nil, named(err)
		}
		if err != nil {
			return rest(named(err))
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			return nil, fmt.Errorf("an answer to the queries: %w", err)
		}
		a, ok := flying[r.Id]
		if !ok {
			return nil, fmt.Errorf("an answer of id %d, to no query in flight", r.Id)
		}
		delete(flying, r.Id)
		answered++
		name := a.q.Name + " " + dns.TypeToString[a.q.Qtype]
		// As ask: an answer is believed signed by the primary, or when it refuses.
		switch {
		case r.IsTsig() == nil && (r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError):
			return nil, fmt.Errorf("%s: the answer is not signed", name)
		case r.IsTsig() != nil:
			if err := dns.TsigVerifyWithProvider(b, client.TsigProvider, a.mac, false); err != nil {
				if r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				return nil, fmt.Errorf("%s: primary %w", name, tsig.AnswerError(r))
			}
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			return nil, fmt.Errorf("%s: primary %w", name, tsig.AnswerError(r))
		}
		each(a.q, r)
	}
	return nil, nil
}

// referral returns the delegation of zoneName at or above name that r, the primary's answer to a
// query for name, refers to; "" when r is no referral.
func referral(r *dns.Msg, zoneName, name string) string {
	if r.Rcode != dns.RcodeSuccess || r.Authoritative || len(r.Answer) > 0 {
		return ""
	}
	for _, rr := range r.Ns {
		cut := rr.Header().Name
		if rr.Header().Rrtype == dns.TypeNS && !strings.EqualFold(cut, zoneName) && dns.IsSubDomain(zoneName, cut) && dns.IsSubDomain(cut, name) {
			return cut
		}
	}
	return ""
}

// setDelegated makes cuts, the owned names a full read found answered with a referral, the
// names not pushed (nor emptied: what the primary holds there is the delegation's, its glue
// perhaps), and reports whether they changed. The names newly found below a delegation are
// logged once, at error level, in one line a delegation (the first and how many): what Detour
// owns there is never answered until the delegation is removed on the primary or the name from
// the configuration; those found no longer below one are pushed again.
func (p *Pusher) setDelegated(cuts map[string]string) bool {
	found, gone := map[string][]string{}, map[string][]string{}
	for name, cut := range cuts {
		if p.delegated[name] != cut {
			found[cut] = append(found[cut], name)
		}
	}
	for name, cut := range p.delegated {
		if _, ok := cuts[name]; !ok {
			gone[cut] = append(gone[cut], name)
		}
	}
	// One line a delegation, not a name: a subdomain holding 7,000 owned names was 7,000 lines.
	for _, cut := range slices.Sorted(maps.Keys(found)) {
		names := slices.SortedFunc(slices.Values(found[cut]), zone.Compare)
		p.log.Error().Str("name", names[0]).Int("names", len(names)).Str("delegation", cut).
			Msg("owned name lies below a delegation on the primary, which answers it with a referral: not pushed")
	}
	for _, cut := range slices.Sorted(maps.Keys(gone)) {
		names := slices.SortedFunc(slices.Values(gone[cut]), zone.Compare)
		p.log.Info().Str("name", names[0]).Int("names", len(names)).Str("delegation", cut).
			Msg("owned name no longer lies below a delegation on the primary: pushed again")
	}
	p.delegated = cuts
	return len(found) > 0 || len(gone) > 0
}

// undelegated returns rrsets without the names the primary delegates (see delegated); rrsets
// itself when there are none.
func (p *Pusher) undelegated(rrsets map[zone.Key][]dns.RR) map[zone.Key][]dns.RR {
	if len(p.delegated) == 0 {
		return rrsets
	}
	out := make(map[zone.Key][]dns.RR, len(rrsets))
	for k, rrs := range rrsets {
		if _, ok := p.delegated[k.Name]; !ok {
			out[k] = rrs
		}
	}
	return out
}

// serial asks the primary for the zone's SOA serial, signed; false when it answers no SOA.
func (p *Pusher) serial(ctx context.Context) (uint32, bool, error) {
	q := new(dns.Msg)
	q.SetQuestion(p.o.Zone, dns.TypeSOA)
	q.RecursionDesired = false
	r, err := p.exchange(ctx, q)
	if err != nil {
		return 0, false, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, false, fmt.Errorf("primary %w", tsig.AnswerError(r))
	}
	serial, ok := soaSerial(p.o.Zone, r.Answer)
	return serial, ok, nil
}

// soaSerial returns the serial of the zone's SOA record among answer; false when it holds none.
func soaSerial(zoneName string, answer []dns.RR) (uint32, bool) {
	for _, rr := range answer {
		if s, ok := rr.(*dns.SOA); ok && strings.EqualFold(s.Hdr.Name, zoneName) {
			return s.Serial, true
		}
	}
	return 0, false
}

// send sends one UPDATE to the primary over l.
func (p *Pusher) send(ctx context.Context, l *link, m *dns.Msg) error {
	r, err := l.exchange(ctx, m)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("primary %w", tsig.AnswerError(r))
	}
	return nil
}

// exchange signs m, sends it to the primary on a connection of its own and returns its answer,
// signed by the primary.
func (p *Pusher) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	l := &link{p: p}
	defer l.close()
	return l.exchange(ctx, m)
}

// link is a TCP connection to the primary that carries exchanges one after the other (RFC 1035
// §4.2.2), dialled at the first: the parts of one update go over one, where each paid a
// handshake (a round trip across a wide area link). A connection that carried an exchange and
// that the primary closed since (an idle timeout, a limit of messages a connection) is dialled
// again, and the message that found it closed sent again on the new one: a part of an update
// after its first writes its names whole under the claim its first added, which an UPDATE
// applied twice leaves as it was, but for the last, whose prerequisite the marker it wrote
// fails then, as a part sent and never answered fails.
type link struct {
	p    *Pusher
	conn *dns.Conn
	stop func() bool
	// answered says that conn carried an exchange.
	answered bool
}

// exchange signs m, sends it to the primary over l and returns its answer, signed by the primary
// with the secret m was signed with, though the key's file rotates meanwhile.
func (l *link) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	if l.conn == nil {
		if err := l.dial(ctx); err != nil {
			return nil, err
		}
	}
	client := *l.p.client
	client.TsigProvider = l.p.key.Snapshot()
	// Each message goes on a fresh dns.Conn: one signs a message after its first with the MAC
	// of the answer before, as the messages of one transfer are.
	r, err := l.p.ask(ctx, &client, &dns.Conn{Conn: l.conn.Conn}, m)
	if err != nil && l.answered && ctx.Err() == nil && closedByPeer(err) {
		l.close()
		if err := l.dial(ctx); err != nil {
			return nil, err
		}
		r, err = l.p.ask(ctx, &client, &dns.Conn{Conn: l.conn.Conn}, m)
	}
	if err != nil {
		return nil, err
	}
	l.answered = true
	return r, nil
}

// dial connects l to the primary.
func (l *link) dial(ctx context.Context) error {
	_, conn, err := l.p.dial(ctx)
	if err != nil {
		return err
	}
	// The client bounds an exchange by its timeout and ctx's deadline, but not by ctx's end:
	// closing the connection then stops a DNS server whose primary does not answer at once.
	l.conn, l.stop, l.answered = conn, context.AfterFunc(ctx, func() { _ = conn.Close() }), false
	return nil
}

// close closes l's connection, if any.
func (l *link) close() {
	if l.conn != nil {
		l.stop()
		_ = l.conn.Close()
		l.conn = nil
	}
}

// closedByPeer reports whether err says that the other end had closed the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || slices.ContainsFunc(closedErrnos, func(e error) bool { return errors.Is(err, e) })
}

// dial connects to the primary, and returns the connection and a client whose key signs and
// verifies every message on it with one secret, though the key's file rotates meanwhile.
func (p *Pusher) dial(ctx context.Context) (*dns.Client, *dns.Conn, error) {
	client := *p.client
	client.TsigProvider = p.key.Snapshot()
	conn, err := client.DialContext(ctx, p.o.Push.Server)
	if err != nil {
		return nil, nil, err
	}
	return &client, conn, nil
}

// ask signs m, sends it to the primary on conn, which client dialled, and returns its answer,
// signed by the primary.
func (p *Pusher) ask(ctx context.Context, client *dns.Client, conn *dns.Conn, m *dns.Msg) (*dns.Msg, error) {
	m.SetTsig(p.key.Name, p.key.Algorithm, 300, time.Now().Unix())
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
