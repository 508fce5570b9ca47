package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

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
	// Writer is the token of this server's own subject of the zone's events (events.ZoneSubject).
	// Default: events.WriterToken of JS's connection and Source.
	Writer string
	Log    zerolog.Logger
	// Metrics, when set, counts the pushes and their outcome.
	Metrics *metrics.Metrics
}

// Desired is the state of a zone to push: Detour's serial and the RRsets it owns.
type Desired struct {
	Serial uint32
	RRsets map[zone.Key][]dns.RR
}

// Pusher keeps a primary server's copy of Detour's records up to date. Offer hands it the
// newest state; Run sends it, retrying failed updates every retry_interval.
type Pusher struct {
	o      Options
	log    zerolog.Logger
	offers chan Desired
	client *dns.Client
	key    *tsig.Key
	// events stores the pushed and push_failed events beside the pushes (nil without JS).
	recorder *events.Recorder
}

// New returns a pusher for one zone. Its error names the field at fault below the zone's
// (push.tsig.secret_file…), never the secret.
func New(o Options) (*Pusher, error) {
	key, err := tsig.New(o.Push.TSIG, o.CredentialDirs, o.Log.With().Str("component", "dns_push").Str("zone", o.Zone).Logger())
	if err != nil {
		return nil, fmt.Errorf("push.%w", err)
	}
	p := &Pusher{
		o: o, log: o.Log.With().Str("component", "dns_push").Str("zone", o.Zone).Str("server", o.Push.Server).Logger(),
		offers: make(chan Desired, 1), key: key,
		client: &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigProvider: key},
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
		case <-p.offers:
		default:
		}
	}
}

// Run pushes every offered state until ctx is cancelled. The first push after start rewrites
// every owned name whole, since what the primary holds is unknown; later ones send differences.
func (p *Pusher) Run(ctx context.Context) {
	if p.recorder != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wg.Go(func() { p.recorder.Run(ctx) })
	}
	var pushed map[zone.Key][]dns.RR
	var failures failureNotes
	retry := p.o.Push.RetryInterval.D()
	for {
		var want Desired
		select {
		case <-ctx.Done():
			return
		case want = <-p.offers:
		}
		for attempt := 1; ; attempt++ {
			n, err := p.push(ctx, pushed, want)
			if err == nil {
				pushed = want.RRsets
				failures = failureNotes{}
				if n > 0 {
					p.o.Metrics.Pushed(p.o.Zone, nil)
					p.log.Info().Uint32("serial", want.Serial).Int("rrsets", n).Int("attempt", attempt).Msg("zone pushed")
					p.report(events.TypeZonePushed, events.ZonePush{Zone: p.o.Zone, Server: p.o.Push.Server, Serial: want.Serial, Attempt: attempt, RRsets: n})
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			// The primary may have applied the update it did not confirm: what it holds is
			// unknown again, so the next push rewrites every name owned before or now.
			pushed = unknown(pushed, want.RRsets)
			p.o.Metrics.Pushed(p.o.Zone, err)
			if failures.tell(reason(err), time.Now()) {
				p.log.Warn().Err(err).Uint32("serial", want.Serial).Int("attempt", attempt).Dur("retry_in", retry).Msg("zone push failed")
				p.report(events.TypeZonePushFailed, events.ZonePush{Zone: p.o.Zone, Server: p.o.Push.Server, Serial: want.Serial, Attempt: attempt, Error: err.Error()})
			}
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			// A newer state replaces the one that failed.
			select {
			case newer := <-p.offers:
				want, attempt = newer, 0
			default:
			}
		}
	}
}

// failureRepeat is how often a push failing for the same reason is logged and recorded again.
const failureRepeat = time.Minute

// failureNotes decides which failed pushes are logged and recorded as push_failed events: the
// first, one whose error differs from the last told, and then one a failureRepeat. A primary
// down for a day, retried every 2 s, would otherwise add 43,200 lines to the log and events to
// the DNS stream, which keeps them; the metrics count every attempt.
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

// push sends the update from pushed to want, and returns how many RRsets it changed. An update
// too large for one TCP message goes in several, each replacing its names whole.
func (p *Pusher) push(ctx context.Context, pushed map[zone.Key][]dns.RR, want Desired) (int, error) {
	m, n := Update(p.o.Zone, pushed, want.RRsets)
	if m == nil {
		return 0, nil
	}
	for _, part := range split(m, maxUpdate) {
		if err := p.send(ctx, part); err != nil {
			return 0, fmt.Errorf("send update to %s: %w", p.o.Push.Server, err)
		}
	}
	return n, nil
}

// send signs one UPDATE and sends it to the primary.
func (p *Pusher) send(ctx context.Context, m *dns.Msg) error {
	m.SetTsig(p.key.Name, p.key.Algorithm, 300, time.Now().Unix())
	// The UPDATE and its answer with one secret, though the key's file rotates meanwhile.
	client := *p.client
	client.TsigProvider = p.key.Snapshot()
	conn, err := client.DialContext(ctx, p.o.Push.Server)
	if err != nil {
		return err
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
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("primary %w", tsig.AnswerError(r))
	}
	// The client verifies only a signed answer: an unsigned one may come from anything but
	// the primary (RFC 8945 §5.3).
	if r.IsTsig() == nil {
		return errors.New("the answer is not signed")
	}
	return nil
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
