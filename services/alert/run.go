package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/events/state"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure the alert sender.
type Options struct {
	// JS reaches STATE (followed) and ALERTS (where attempts are recorded).
	JS jetstream.JetStream
	// Config holds the alert groups at start.
	Config *config.Config
	// Configs, when set, delivers later configuration versions: their alert groups apply to the
	// events that follow. A version whose webhook URLs or secrets cannot be read is refused
	// whole, and the groups before it kept. Optional.
	Configs <-chan *config.Config
	// Name is the source of the attempt events, e.g. "controller-1".
	Name string
	Log  zerolog.Logger
	// Client sends the deliveries. Default: a client with no redirects followed.
	Client *http.Client
	// Timeout bounds one attempt. Default 10s.
	Timeout time.Duration
	// TakeOver is how long a sender waits for the record of an attempt another sender claimed
	// (another controller's) before it makes the next attempt itself: the claimer stopped, or
	// lost NATS, while making it. Default Timeout + 5s.
	TakeOver time.Duration
	// Backoff is the wait after the first failed attempt; it doubles up to MaxBackoff.
	// Defaults 1s and 1m.
	Backoff, MaxBackoff time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// CredentialDirs are the directories a webhook's url_file and secret_file may name a file
	// in; a version naming one elsewhere is refused. Default: none.
	CredentialDirs config.CredentialDirs
	// Metrics, when set, counts the attempts this sender records, by group, result and reason,
	// and times those it sends. Optional.
	Metrics *metrics.Metrics
}

type runner struct {
	o   Options
	log zerolog.Logger
	wg  sync.WaitGroup
	// attempts stores the delivery attempts on ALERTS beside the deliveries.
	attempts *events.Recorder
	// ledger is what ALERTS tells of every sender's attempts and claims (see claim).
	ledger *ledger
	// started is when the sender started: a claim made under its name before then was made by
	// its run before a restart.
	started time.Time
	// tried follows the first attempts of STATE events' deliveries, triedDrills those of DRILLS
	// events'; each attempt's record tells up to which event of each every one was made.
	tried, triedDrills tried

	// mu guards groups and sinks: the followers read them for every event, and a new version
	// replaces them.
	mu sync.Mutex
	// groups is the configuration whose alert groups deliveries go to.
	groups *config.Config
	// hooks are the URLs and signing secrets of groups' webhooks.
	hooks map[*config.Webhook]hook
	// set is the digest of groups' deliveries (deliverySet), which the marks name.
	set string
	// sinks are groups' webhooks, by sinkKey.
	sinks map[string]*sink
}

// sink is one webhook of one alert group, with the context its deliveries run under: a version
// without the group, or without the webhook in it, ends that context.
type sink struct {
	alert, url string
	ctx        context.Context
	cancel     context.CancelCauseFunc
	// slots holds one token for each delivery to it being tried or waiting to be tried again:
	// one webhook's deliveries wait for its own, never another's.
	slots chan struct{}
	// inFlight counts the deliveries to it that are being tried, waiting to be tried again or
	// waiting for a slot; guarded by the runner's mu.
	inFlight int
	// latest is, by STATE subject, the sequence of the latest event whose alert is done with it
	// (see supersede), replaced when STATE is created again (see forgetLatest); guarded by the
	// runner's mu.
	latest map[string]uint64
}

// errLeft ends the deliveries to a webhook a version no longer names.
var errLeft = errors.New("the webhook left the configuration")

// sinkKey names the webhook at url of the alert group named alert.
func sinkKey(alert, url string) string { return alert + "|" + url }

// maxInFlight bounds the deliveries to one webhook being tried, or waiting to be tried again,
// at once; maxQueued those in flight, with the ones that wait for a slot. A delivery beyond
// maxQueued is abandoned at once, and recorded so.
const (
	maxInFlight = 256
	maxQueued   = 4096
)

// Run follows STATE and DRILLS (once it has a group) and delivers the
// alerts of its events until ctx ends; then it returns nil. It returns an error at once when a
// webhook's secret in o.Config cannot be read. Started with groups, it first sends what is owed
// from before it started, as ALERTS tells (see resume): the alerts of STATE events, and the
// drill results of DRILLS, appended within a group's retry_for that no attempt tells of, and the
// retries of failed deliveries. Each attempt is claimed on ALERTS first (see claim), so that the senders
// of several controllers make it once.
//
// A version from o.Configs applies to the events handled after it: deliveries in flight to a
// webhook its groups still name go on, those to a webhook of a group it removed (or a webhook
// it removed from a group) stop. A sender that started without groups starts following STATE
// when a version brings some.
func Run(ctx context.Context, o Options) error {
	if o.JS == nil || o.Config == nil || o.Name == "" {
		return errors.New("alert options: JS, Config and Name are required")
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.TakeOver <= 0 {
		o.TakeOver = o.Timeout + 5*time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &runner{o: o, log: o.Log.With().Str("component", "alerts").Logger(), sinks: map[string]*sink{}, ledger: newLedger(), started: o.Now()}
	r.attempts = events.NewRecorder(o.JS, r.log)
	hooks, err := readHooks(o.Config, o.CredentialDirs, o.Now, r.log)
	if err != nil {
		return err
	}
	r.use(ctx, o.Config, hooks)
	// The recorder stops after the deliveries, to store the records they made last.
	recording, stopRecording := context.WithCancel(context.WithoutCancel(ctx))
	var recorder sync.WaitGroup
	recorder.Go(func() { r.attempts.Run(recording) })
	defer recorder.Wait()
	defer stopRecording()
	var followers sync.WaitGroup
	followingState, followingDrills := false, false
	follow := func(c *config.Config) {
		if !followingState && len(c.Alerts) > 0 {
			followingState = true
			resume := c == o.Config
			followers.Go(func() { r.followState(ctx, resume) })
		}
		// DRILLS is followed with any group, told about drill_result or not, so that the
		// attempts' tried_drills pass the drills that ended while none was: a group told about
		// them later is not sent those (see resumeDrills).
		if !followingDrills && len(c.Alerts) > 0 {
			followingDrills = true
			resume := c == o.Config
			followers.Go(func() { r.followDrills(ctx, resume) })
		}
	}
	r.tried.held = len(o.Config.Alerts) > 0       // until followState dispatched what is owed from before
	r.triedDrills.held = len(o.Config.Alerts) > 0 // until followDrills did
	follow(o.Config)
	for {
		select {
		case <-ctx.Done():
			followers.Wait()
			r.wg.Wait()
			return nil
		case c := <-o.Configs:
			hooks, err := readHooks(c, r.o.CredentialDirs, r.o.Now, r.log)
			if err != nil {
				// The sender runs in the controller: its refusal is the controller's, on the
				// subject the controller's NATS user may publish (named for that user).
				config.Reject(ctx, o.JS, c.Version, fmt.Errorf("alerts: %w", err), r.log, "controller", events.WriterToken(o.JS.Conn(), o.Name))
				continue
			}
			before := r.current()
			r.use(ctx, c, hooks)
			r.log.Info().Uint64("version", c.Version).Int("groups", len(c.Alerts)).
				Strs("added", groupsNotIn(c, before)).Strs("removed", groupsNotIn(before, c)).
				Msg("alert groups follow a new configuration version")
			follow(c)
		}
	}
}

// use makes c's alert groups, whose webhooks' URLs and secrets are hooks, those the events
// handled from now on are delivered to, stops the deliveries to webhooks c does not name, and
// drops the metrics' series of the groups c removed.
func (r *runner) use(ctx context.Context, c *config.Config, hooks map[*config.Webhook]hook) {
	for _, a := range c.Alerts {
		r.o.Metrics.AlertGroup(a.Name, attemptSeries)
	}
	keep := map[string]bool{}
	for _, a := range c.Alerts {
		for j := range a.Webhooks {
			keep[sinkKey(a.Name, hooks[&a.Webhooks[j]].url)] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, s := range r.sinks {
		if keep[key] {
			continue
		}
		s.cancel(errLeft)
		delete(r.sinks, key)
		if s.inFlight > 0 {
			r.log.Info().Str("alert", s.alert).Str("webhook", target(s.url)).Int("deliveries", s.inFlight).Uint64("version", c.Version).
				Msg("alert deliveries stopped: their group or webhook left the configuration")
		}
	}
	for _, a := range c.Alerts {
		for j := range a.Webhooks {
			url := hooks[&a.Webhooks[j]].url
			if key := sinkKey(a.Name, url); r.sinks[key] == nil {
				sctx, cancel := context.WithCancelCause(ctx)
				r.sinks[key] = &sink{alert: a.Name, url: url, ctx: sctx, cancel: cancel, slots: make(chan struct{}, maxInFlight), latest: map[string]uint64{}}
			}
		}
	}
	if r.groups != nil {
		for _, name := range groupsNotIn(r.groups, c) {
			r.o.Metrics.AlertGroupGone(name)
		}
	}
	r.groups, r.hooks, r.set = c, hooks, deliverySet(c, hooks)
}

// deliverySet is a digest of what c's groups, their webhooks' URLs read into hooks, are sent:
// each group's name, what it is told about, its apps and its webhooks' URLs, whatever their
// order in the document. Two senders whose digests are equal owe each event the same deliveries.
func deliverySet(c *config.Config, hooks map[*config.Webhook]hook) string {
	type group struct {
		Name            string
		On, Apps, Hooks []string
	}
	gs := make([]group, 0, len(c.Alerts))
	for i := range c.Alerts {
		a := &c.Alerts[i]
		g := group{Name: a.Name, On: slices.Sorted(slices.Values(a.On)), Apps: slices.Sorted(slices.Values(a.Apps))}
		for j := range a.Webhooks {
			g.Hooks = append(g.Hooks, hooks[&a.Webhooks[j]].url)
		}
		slices.Sort(g.Hooks)
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b group) int { return strings.Compare(a.Name, b.Name) })
	doc, _ := json.Marshal(gs) // strings and lists of them: it cannot fail
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:8])
}

// deliverySet returns the digest of the deliveries of the groups deliveries go to now.
func (r *runner) deliverySet() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set
}

// groupsNotIn names the alert groups of c that other has no group of the same name for.
func groupsNotIn(c, other *config.Config) []string {
	out := []string{}
	for _, a := range c.Alerts {
		if !slices.ContainsFunc(other.Alerts, func(b config.Alert) bool { return b.Name == a.Name }) {
			out = append(out, a.Name)
		}
	}
	return out
}

// current returns the configuration whose groups deliveries go to now.
func (r *runner) current() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.groups
}

// followState follows STATE and delivers the alerts of its events. Those appended before it
// caught up are owed only when resume is set (the sender started with groups): it dispatches
// those of them appended within the longest retry_for, once ALERTS tells which were sent (see
// resume), and goes on with the later ones meanwhile. Without resume (a version brought the
// first groups), only the later ones are alerted.
//
// The stream stamps its events by the NATS server's clock: which are owed is told by that
// clock, as STATE's information tells it at the start, so that a sender whose clock is ahead
// does not leave owed alerts unsent, nor one whose clock is behind page for transitions older
// than retry_for.
func (r *runner) followState(ctx context.Context, resume bool) {
	view := state.NewView()
	var skew time.Duration // how far the stream's clock is ahead of r.o.Now
	if resume {
		st, err := events.WaitStream(ctx, r.o.JS, events.StreamState, r.log)
		if err != nil {
			return // ctx ended first
		}
		if ts := st.CachedInfo().TimeStamp; !ts.IsZero() {
			skew = ts.Sub(r.o.Now())
		}
	}
	since := r.o.Now().Add(skew - longestRetry(r.current()))
	b, caught := &backlog{}, false
	var told chan history // what ALERTS tells, once read
	if resume {
		told = make(chan history, 1)
	}
	r.wg.Go(func() { r.watch(ctx, since, skew, told) })
	catchUp := func() {
		if caught {
			return
		}
		caught = true
		if !resume {
			return
		}
		if len(*b) == 0 {
			// Nothing from before the start is owed a first attempt: the attempts recorded from
			// now on tell of the transitions they were made for as tried, though ALERTS is not
			// read yet. Held until then, they told of none, and a webhook added to the group at
			// the next restart was sent the transitions the group had been told.
			r.tried.release()
		}
		r.wg.Go(func() {
			select {
			case h := <-told:
				r.resume(b, h, r.o.Now().Add(skew))
			case <-ctx.Done():
			}
		})
	}
	r.log.Info().Int("groups", len(r.current().Alerts)).Bool("resume", resume).Time("since", since).Msg("alerts started")
	drills := newDrilled()
	r.follow(ctx, events.StreamState, events.SubjectState, func(d events.Delivery) {
		if d.Recreated {
			view.Reset() // every event of the new stream is new, and alerted
			drills = newDrilled()
			r.forgetLatest()
			catchUp()
		}
		if d.Msg != nil {
			if e, err := events.Decode(d.Data); err == nil {
				drill := drills.fold(d.Subject, e)
				if fact, ok := Classify(r.current(), view, d.Subject, d.Seq, e); ok {
					fact.DrillID = drill
					switch {
					case caught:
						r.dispatch(fact, &r.tried, d.Seq, nil)
					case resume && !d.Stamp.Before(since):
						b.add(fact, d.Seq, d.Stamp)
					}
				}
			}
		}
		if d.CaughtUp {
			catchUp()
		}
	})
}

// followDrills delivers the alerts of the drill events appended to DRILLS after it started.
// With resume (the sender started with groups) it also sends what is owed of the drills that
// ended before it started, within their group's retry_for by the stream's clock, once ALERTS is
// read (see resumeDrills).
func (r *runner) followDrills(ctx context.Context, resume bool) {
	// Without DRILLS yet (a role started with --config before any apply), every drill event is
	// new: follow retries until the stream exists.
	after, stamp, err := lastSeq(ctx, r.o.JS, events.StreamDrills, r.log)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return // ctx ended first
	}
	var skew time.Duration // how far the stream's clock is ahead of r.o.Now
	if !stamp.IsZero() {
		skew = stamp.Sub(r.o.Now())
	}
	since := r.o.Now().Add(skew - longestRetry(r.current()))
	seen, b := drills{}, backlog{}
	r.follow(ctx, events.StreamDrills, events.SubjectDrills, func(d events.Delivery) {
		if d.Recreated {
			seen, after, b = drills{}, 0, backlog{}
		}
		if d.Msg != nil {
			if e, err := events.Decode(d.Data); err == nil {
				if fact, ok := seen.Classify(d.Subject, e); ok {
					switch {
					case d.Seq > after:
						r.dispatch(fact, &r.triedDrills, d.Seq, nil)
					case resume && !d.Stamp.Before(since):
						b.add(fact, d.Seq, d.Stamp)
					}
				}
			}
		}
		if d.CaughtUp && resume {
			resume = false
			if len(b) == 0 {
				// Nothing from before the start is owed a first attempt: as for STATE (see
				// followState), the attempts recorded from now on tell of the drills they were
				// made for as tried, though ALERTS is not read yet.
				r.triedDrills.release()
			}
			owed := b
			r.wg.Go(func() {
				select {
				case <-r.ledger.caught:
					r.resumeDrills(owed, r.o.Now().Add(skew))
				case <-ctx.Done():
				}
			})
		}
	})
}

// lastSeq is the sequence of the last message in stream, and the time by the stream's clock:
// alerts are about what comes after it.
// While the stream does not answer (only its leader does, and it elects one for 4 to 9 s after
// the JetStream node leading it died; or NATS is away) it asks again every half second, saying
// so once: the process this sender is part of (a controller) must not stop for it. It returns
// an error wrapping jetstream.ErrStreamNotFound at once, and ctx's error when ctx ends.
func lastSeq(ctx context.Context, js jetstream.JetStream, stream string, log zerolog.Logger) (uint64, time.Time, error) {
	warned := false
	for {
		seq, stamp, err := readLastSeq(ctx, js, stream)
		switch {
		case err == nil:
			if warned {
				log.Info().Str("stream", stream).Msg("stream answers; alerts start")
			}
			return seq, stamp, nil
		case errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil:
			return 0, time.Time{}, err
		case !warned:
			log.Warn().Err(err).Str("stream", stream).Msg("stream does not answer; alerts wait for it")
			warned = true
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

// readLastSeq asks once, for at most a second, for the sequence of stream's last message and
// the time by the stream's clock (zero when its server does not tell).
func readLastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("run alerts: open stream %s: %w", stream, err)
	}
	info := st.CachedInfo() // opening it read its state
	return info.State.LastSeq, info.TimeStamp, nil
}

// follow hands every delivery of stream on subject to handle, in order, until ctx ends, through
// an events.Follower: it resumes after the last one handled when the consumer fails. When the
// stream was deleted and created again, the delivery is Recreated: every event of the new one is
// new, and alerted. While the consumer's creation goes unanswered it reads by direct gets
// (events.BridgeNext), so that a consumer JetStream places on a hung node does not hold alerts.
func (r *runner) follow(ctx context.Context, stream, subject string, handle func(events.Delivery)) {
	f := events.Follower{JS: r.o.JS, Stream: stream, Log: r.log, Reader: "alerts", Bridge: events.BridgeNext, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}}
	f.Run(ctx, handle)
}

// dispatch starts a delivery to every webhook of every group fact matches, those owe keeps when
// it is given. It never waits: a delivery waits for a slot of its own webhook, and one that
// finds maxQueued to its webhook in flight is abandoned. seq is the fact's on its stream, whose
// events' first attempts t follows (r.tried, r.triedDrills), so that a sender that starts knows
// which events no attempt tells of.
func (r *runner) dispatch(fact Fact, t *tried, seq uint64, owe func(*config.Alert, *delivery) bool) {
	var ds, full []*delivery
	r.mu.Lock()
	set := r.set
	for _, d := range r.deliveries(fact, seq) {
		if owe != nil && !owe(d.group, d) {
			continue
		}
		body, err := Body(d.group, d.hook, d.kind, d.fact)
		if err != nil {
			r.log.Error().Err(err).Str("alert", d.group.Name).Msg("alert not built")
			continue
		}
		d.body = body
		if d.sink.inFlight >= maxQueued {
			full = append(full, d)
			continue
		}
		d.sink.inFlight++
		ds = append(ds, d)
	}
	r.mu.Unlock()
	var first []*delivery
	for _, d := range append(full, ds...) {
		if d.resumed == nil {
			first = append(first, d)
		}
	}
	o := t.add(seq, fact.Event.ID, len(first), set)
	for _, d := range first {
		d.owed = o
	}
	for _, d := range full {
		r.record(d, events.AlertAttempt{Alert: d.group.Name, Kind: d.kind, Webhook: target(d.url), Delivery: d.id,
			Text: Text(d.kind, d.fact), Result: events.AlertAbandoned,
			Error: fmt.Sprintf("not sent: %d deliveries to this webhook are in flight already", maxQueued)}, reasonQueueFull)
	}
	for _, d := range ds {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.done(d)
			select {
			case d.sink.slots <- struct{}{}:
			case <-d.sink.ctx.Done():
				return
			}
			defer func() { <-d.sink.slots }()
			r.deliver(d.sink.ctx, d)
		}()
	}
}

// deliveries builds a delivery of fact, the event at seq on its stream, to every webhook of every
// group it matches, as that group is told it (Fact.toldTo), without its body; under r.mu.
func (r *runner) deliveries(fact Fact, seq uint64) []*delivery {
	var out []*delivery
	for i := range r.groups.Alerts {
		a := &r.groups.Alerts[i]
		kind := Matches(a, fact)
		if kind == "" {
			continue
		}
		for j := range a.Webhooks {
			w := &a.Webhooks[j]
			h := r.hooks[w]
			s := r.sinks[sinkKey(a.Name, h.url)]
			out = append(out, &delivery{group: a, hook: *w, url: h.url, secret: h.secret, kind: kind, fact: fact.toldTo(a), seq: seq,
				id: events.DerivedID(fact.Event.ID, a.Name+"|"+h.url), sink: s, latest: s.latest})
		}
	}
	return out
}

// done counts d out of its webhook's deliveries in flight, and as tried if a version that no
// longer names its webhook stopped it before its first attempt was recorded: one the sender
// stopped for ending stays owed, so that no later record tells of its event as tried.
func (r *runner) done(d *delivery) {
	if d.owed != nil && context.Cause(d.sink.ctx) == errLeft {
		d.owed.settle()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d.sink.inFlight--
}

// CheckHooks reads every webhook's URL and signing secret, as Run does (a file only in one of
// dirs), so that one that cannot be read stops the controller at start.
func CheckHooks(c *config.Config, dirs config.CredentialDirs) error {
	_, err := readHooks(c, dirs, time.Now, zerolog.Nop())
	return err
}

// hook is where a webhook is and what signs its deliveries, read where the sender runs.
type hook struct {
	url    string
	secret *secret
}

// secret is what signs a webhook's deliveries: given inline or in the environment, read with
// the version; or in a file, read again as it changes (config.WatchedFile), each attempt signed
// with what it holds then.
type secret struct {
	s    string
	file *config.WatchedFile
}

// value returns the secret as it is now, "" when the webhook has none.
func (s *secret) value() string {
	if s.file != nil {
		// Never read well, the version would have been refused; a later failed read keeps the
		// value before.
		return s.file.Load().S
	}
	return s.s
}

// readHooks reads every webhook's URL and signing secret (a file only in one of dirs; a
// secret_file looked at again at most every config.FileRecheck of now, logged to log), so that
// one that cannot be read stops a role at start, not at its first alert.
func readHooks(c *config.Config, dirs config.CredentialDirs, now func() time.Time, log zerolog.Logger) (map[*config.Webhook]hook, error) {
	out := map[*config.Webhook]hook{}
	for i := range c.Alerts {
		a := &c.Alerts[i]
		for j := range a.Webhooks {
			url, err := a.Webhooks[j].Target(dirs)
			if err != nil {
				return nil, fmt.Errorf("alerts[%d].webhooks[%d]: %w", i, j, err)
			}
			s := &secret{}
			if w := a.Webhooks[j]; w.SecretFile != "" {
				s.file = config.WatchFile(w.SecretFile, dirs, config.SecretFileValue, now, config.FileRecheck, config.FileLog{
					Log:     log.With().Str("alert", a.Name).Logger(),
					Changed: "webhook secret file changed: deliveries are signed with what it holds now",
					Kept:    "webhook secret file not read again: deliveries are signed with what it held",
					Refused: "webhook secret file refused: not in a credential directory",
				})
				err = s.file.Load().Err
				if err != nil {
					err = fmt.Errorf("webhook secret_file: %w", err)
				}
			} else {
				s.s, err = w.Key(dirs)
			}
			if err != nil {
				return nil, fmt.Errorf("alerts[%d].webhooks[%d]: %w", i, j, err)
			}
			out[&a.Webhooks[j]] = hook{url, s}
		}
	}
	return out, nil
}
