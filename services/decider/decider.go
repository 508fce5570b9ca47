package decider

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/decide"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// maxAttempts bounds how often one decision is appended again after conflicts before it waits
// for the next tick.
const maxAttempts = 5

type decider struct {
	o     Options
	cfg   atomic.Pointer[config.Config] // o.Config, for watchOldProbers
	log   zerolog.Logger
	js    jetstream.JetStream
	state jetstream.Stream
	ix    *index
	// ticker is the default ticker, nil when Options.Ticks drive the decider, and tickEvery its
	// period, which each configuration version sets (Options.tickEvery).
	ticker    *time.Ticker
	tickEvery time.Duration
	// idKey derives the ids of the transitions of the slots whose append was preempted. A
	// transition's id is derived from its cause, so that two replicas deciding one change append
	// one event; but STATE has a writer of another role, the controller (edge transitions,
	// overrides), which reads what the id is made of and could store it first, on a subject of
	// its own: JetStream would drop the transition as a duplicate (events.ErrPreempted). Such a
	// slot's ids are derived under this replica's key from then on, which no other writer can
	// compute: a retry is still a duplicate, and a replica deciding the same change conflicts
	// (the expected subject sequence), re-reads and finds it made.
	idKey events.IDKey
	// drills are the drills in force, whose failures the decider simulates.
	drills *drill.View
	// foreign reports the results dropped for their region, at most once per foreignLogEvery.
	foreign foreignLog
	// regions interns region names, so that thousands of endpoints share one string per region.
	regions map[string]string
	live    bool
	started time.Time
	// malformed counts the messages skipped because they could not be decoded.
	malformed events.Malformed
	// drillsCaughtUp is set once DRILLS delivered every event it held at start: the drills in
	// force are known.
	drillsCaughtUp bool
	// failing is set when an append failed for another reason than a conflict during this tick.
	failing bool
	// appendsStalled is set when an append in flight failed for another reason than a conflict
	// (its answer timed out: STATE's leader stopped answering, NATS away) and none sent after it
	// has landed, until one lands or the next tick: flush keeps the decisions still queued.
	appendsStalled bool
	// readsStalled is set once a read of STATE's leader failed during this tick, or the reads
	// of this tick took appendTimeout in all (readSpent): the decisions that would read wait for
	// the next tick (see readUnanswered).
	readsStalled bool
	readSpent    time.Duration
	// clockStamp is the newest stream time seen, and clockLocal this host's time when it came.
	clockStamp, clockLocal time.Time
	// queued are the decisions the next flush appends; queuedSlots their endpoints.
	queued      []queued
	queuedSlots map[*endpointSlot]bool
	// keptMessages are the PROBES messages folded while decisions were kept queued (see
	// countMessage): counted in Stats.Messages once they are sent.
	keptMessages uint64
	// waiting are the probe messages heard on the wire that PROBES has not delivered yet, by
	// subject and Nats-Msg-Id, and waitOrder their keys in the order heard; fromWire is set while
	// results are folded as heard because PROBES did not deliver them in time.
	waiting   map[msgKey]heardMsg
	waitOrder []msgKey
	fromWire  bool
	// wireSync has the listener hand on what the connection received (listen); nil while
	// results are not heard on the wire.
	wireSync func()
	// early are the messages PROBES delivered before their copy was heard on the wire, the last
	// wireBuffer of them in earlyRing (the next to go at earlyNext).
	early     map[msgKey]struct{}
	earlyRing []msgKey
	earlyNext int
	// pipe are the appends in flight, in the order sent; sentKeys counts the appends sent;
	// landedAt is when one last landed; unanswered is set when a tick found the pipe overdue,
	// until an append lands or STATE delivers an event.
	pipe       []*sent
	sentKeys   uint64
	landedAt   time.Time
	unanswered bool
	// retrying are the pools whose transition the next tick appends again (poolSlot.retry).
	retrying []*poolSlot
	// held are the overrides STATE, the drill events DRILLS and the configuration versions
	// Options.Configs delivered before the results heard on the wire ahead of them were folded, in
	// the order delivered (see onState, onDrill and reconfigure); heardCount counts the messages
	// heard.
	held       []heldEvent
	heardCount uint64
	// holdAppends are the hold-down events sent to STATE whose answer has not come (landHoldDowns).
	holdAppends []holdAppend
	// probesQueued is how many PROBES messages the reader had taken but the loop had not folded
	// when the last tick came: while it is not zero this replica is behind in the probes, and no
	// endpoint's contradiction is re-asserted.
	probesQueued int
}

// Run decides endpoints and pools until ctx is cancelled, then returns nil. It first rebuilds its
// state: the last STATE event of every subject, then PROBES from now − Options.Replay; then it
// appends what the streams imply but STATE lacks, and from there on every transition the moment
// its threshold completes. It returns an error only for invalid options; while STATE cannot be
// opened (NATS away, streams not created yet) it waits.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	d := &decider{o: o, log: o.Log.With().Str("component", "decider").Str("replica", o.Name).Logger(),
		js: o.JS, ix: newIndex(o.Config), drills: drill.NewView(), regions: map[string]string{}, idKey: events.NewIDKey()}
	d.cfg.Store(o.Config)
	return d.run(ctx)
}

func (d *decider) run(ctx context.Context) error {
	d.started = d.o.Now()
	st, err := events.WaitStream(ctx, d.js, events.StreamState, d.log)
	if err != nil {
		return nil // ctx ended before the stream could be opened
	}
	d.state = st

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Small buffers: a PROBES delivery holds up to a whole decoded batch.
	stateCh, probeCh, drillCh := make(chan delivery, 256), make(chan delivery, 64), make(chan delivery, 64)
	from := d.started.Add(-d.o.replay(d.o.Config))
	wg.Go(func() {
		d.consume(ctx, events.StreamState, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.SubjectState}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}, events.BridgeNext, decodeState, stateCh)
	})
	// PROBES is read by direct gets while its consumer's creation goes unanswered (the decider
	// goes live only once PROBES has caught up), and heard on the wire while it delivers nothing.
	wg.Go(func() {
		d.consume(ctx, events.StreamProbes, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.EndpointProbeSubjects}, DeliverPolicy: jetstream.DeliverByStartTimePolicy,
			OptStartTime: &from}, events.BridgeNext, probeDecoder(), probeCh)
	})
	wg.Go(func() { d.consume(ctx, events.StreamDrills, drillConsumer(), events.BridgeNext, decodeState, drillCh) })
	oldProbers := time.NewTicker(oldProberEvery)
	defer oldProbers.Stop()
	wg.Go(func() {
		watchOldProbers(ctx, d.js, d.log, func() []string { return d.cfg.Load().ProbingRegions() }, oldProbers.C)
	})
	heardCh := make(chan heardMsg, wireBuffer)
	if stop, handedOn, err := listen(d.js, heardCh); err != nil {
		d.log.Warn().Err(err).Msg("probe results not heard on the wire; folding them from PROBES only")
	} else {
		defer stop()
		d.wireSync = handedOn
	}
	ticks := d.o.Ticks
	if ticks == nil {
		d.tickEvery = d.o.tickEvery(d.o.Config)
		d.ticker = time.NewTicker(d.tickEvery)
		defer d.ticker.Stop()
		ticks = d.ticker.C
	}

	// Until STATE is read, probes wait; until the PROBES backlog is folded, nothing is appended
	// and time does not tick.
	var probes, drillsIn <-chan delivery
	for {
		var tick <-chan time.Time
		if d.live {
			tick = ticks
		}
		acks, failed := d.front()
		select {
		case <-ctx.Done():
			return nil
		case m := <-stateCh:
			// What was heard on the wire by now was published before STATE delivered this, and
			// an override waits for the results among it (onState), the listener's included.
			d.hearQueued(heardCh, d.ix.epOverrides[m.subject] != nil || d.ix.poolOverrides[m.subject] != nil)
			d.observeClock(m.stamp)
			if m.recreated {
				d.restartState(ctx)
			}
			if m.subject != "" {
				d.onState(ctx, m)
			}
			if m.caughtUp {
				now := d.streamNow(d.o.Now())
				for _, s := range d.ix.endpoints {
					s.restoreDrill()
					s.st.Restore(s.status)
					s.resumeHoldDown(now)
				}
				probes, drillsIn = probeCh, drillCh
			}
		case m := <-drillsIn:
			// As for STATE: a drill event waits for the results heard before it (onDrill).
			d.hearQueued(heardCh, true)
			if m.recreated {
				d.restartDrills(ctx, m.stamp)
			}
			if m.subject != "" || m.caughtUp {
				d.onDrill(ctx, m)
			}
		case m := <-probes:
			d.onDelivery(ctx, m)
			if m.subject != "" {
				d.flush(ctx)
				d.countMessage()
			}
		case ack := <-acks:
			d.acked(ctx, ack, nil)
		case err := <-failed:
			d.acked(ctx, nil, err)
		case m := <-heardCh:
			d.heard(m)
		case now := <-tick:
			d.onTick(ctx, now, len(probeCh))
			d.tick(ctx, d.streamNow(now))
		case c := <-d.o.Configs:
			// As for STATE: a version waits for the results heard before it (reconfigure).
			d.hearQueued(heardCh, true)
			d.reconfigure(ctx, c)
		}
		d.flush(ctx)
	}
}

// onDelivery handles one delivery of the PROBES reader.
func (d *decider) onDelivery(ctx context.Context, m delivery) {
	d.observeClock(m.stamp)
	if m.subject != "" {
		d.onProbes(ctx, m)
	}
	if m.caughtUp {
		if !d.live && len(d.held) > 0 {
			d.releaseOverrides(ctx, endOfTime) // the drill events of the backlog (hold) first
		}
		d.reconcile(ctx)
	}
}

// endOfTime is later than any message is stored.
var endOfTime = time.Unix(1<<62, 0)

// onTick folds the results heard on the wire whose grace ended by local, this host's clock, and
// applies the overrides and drill events held whose turn came; queued is how many PROBES
// deliveries wait for the loop. A replica behind in PROBES leaves the results heard to PROBES
// beyond their grace (foldHeard), for as long as a storm of results keeps it behind; once an
// event has been held wireGrace, those it waits for are folded as heard, as if PROBES had stopped,
// and it is applied after them.
func (d *decider) onTick(ctx context.Context, local time.Time, queued int) {
	overdue := len(d.held) > 0 && local.Sub(d.held[0].at) >= wireGrace
	d.foldHeard(ctx, local, queued > 0 && !overdue)
	d.releaseOverrides(ctx, time.Time{})
	d.probesQueued = queued
}

// onProbes folds the results of one PROBES message.
func (d *decider) onProbes(ctx context.Context, m delivery) {
	if len(d.held) > 0 {
		d.releaseOverrides(ctx, m.stamp) // before m is taken off the results heard
	}
	d.o.Metrics.Lag("decider", events.StreamProbes, m.pending)
	if m.err != nil {
		d.o.Stats.Malformed.Add(1)
		d.o.Metrics.DecodeFailed("decider", events.StreamProbes)
		d.malformed.Skip(d.log, m.err, m.subject, m.seq)
		return
	}
	d.delivered(msgKey{m.subject, m.id})
	if region := probeRegion(m.subject); !d.drills.Region(region) {
		d.fold(ctx, m.results, m.stamp, region, false)
	}
	if len(d.held) > 0 {
		d.releaseOverrides(ctx, time.Time{})
	}
}

// fold folds results stored at stamp under a subject of region subjectRegion, and appends the
// transitions they complete. Results are timed by when the stream stored them, not by the
// probers' clocks: every replica sees the same stamp, and one clock orders the results of every
// region, the overrides and the decisions. A result is believed for the region of its subject
// (which the publisher's NATS permissions vouch for), never for the region its payload names: one
// naming another region, or from a region the configuration lacks, is dropped and counted.
// With heard, the results were heard on the wire and PROBES did not deliver them in time; stamp
// is when they were heard, and a result is folded once whichever way it comes (see
// endpointSlot.once).
func (d *decider) fold(ctx context.Context, rs []events.ProbeResult, stamp time.Time, subjectRegion string, heard bool) {
	for i := range rs {
		r := &rs[i]
		region := d.region(r.Region)
		if (region == "" || r.Region != subjectRegion) && heard {
			continue // counted when PROBES delivers it
		}
		if region == "" || r.Region != subjectRegion {
			d.o.Stats.Foreign.Add(1)
			d.foreign.drop(&d.log, d.o.Now(), r.Region, subjectRegion)
			continue
		}
		s := d.ix.byName[nameKey{r.App, r.Pool, r.Endpoint}]
		if s == nil && heard {
			continue
		}
		if s == nil {
			d.o.Stats.Unknown.Add(1)
			d.log.Debug().Str("app", r.App).Str("pool", r.Pool).Str("endpoint", r.Endpoint).Str("region", r.Region).
				Str("result_id", r.ID).Msg("result for no configured endpoint skipped")
			continue
		}
		if !s.once(region, r, heard) {
			continue
		}
		res := decide.Result{ID: r.ID, Region: region, At: stamp, OK: r.OK, Window: r.Window}
		if s.st.Counted(res) {
			continue // another prober of the region ran the same window's check
		}
		d.o.Stats.Results.Add(1)
		s.ownDate(res.ID, res.At)
		// The deadlines that passed before the result was stored are decided first, whether or
		// not a tick came between them and the result: what is decided follows from the streams
		// alone, as a replay of them decides it.
		d.passUntil(ctx, s, stamp)
		dec, ok := s.st.Observe(res, s.pool.app.policy)
		d.rearm(s)
		if ok {
			d.decided(ctx, s, dec)
		}
	}
}

// passUntil lets time pass on s until at: the staleness and hold-down deadlines that fell before
// it are decided in the order they fell.
func (d *decider) passUntil(ctx context.Context, s *endpointSlot, at time.Time) {
	for {
		dec, ok := s.st.Expire(at, s.pool.app.policy)
		if !ok {
			break
		}
		d.decided(ctx, s, dec)
	}
	d.rearm(s)
}

// region returns the interned region name, or "" when the configuration does not let name vote.
func (d *decider) region(name string) string {
	if r, ok := d.regions[name]; ok {
		return r
	}
	if !events.ValidToken(name) || !d.o.Config.RegionAllowed(name) || len(d.regions) >= 1024 {
		return ""
	}
	d.regions[name] = name
	return name
}

// restartState forgets what the decider folded of a STATE stream deleted since
// (events.Delivery.Recreated), whose sequences start over at 1: what STATE recorded on every
// endpoint and pool is unknown again, overrides are cleared, and the transitions sent to the old
// stream are no longer followed. The new stream's events fold from its first; once live, every
// status the probes decide that the new stream does not record is a contradiction, re-asserted
// reassertAfter later (watchEndpoint), and the pools follow their endpoints.
func (d *decider) restartState(ctx context.Context) {
	for _, a := range d.ix.apps {
		for _, p := range a.pools {
			p.status, p.seq, p.since, p.overrideSeq, p.contradicted = events.StatusUnknown, 0, time.Time{}, 0, time.Time{}
			p.sent = events.Sent[sentTransition]{}
		}
	}
	now := d.streamNow(d.o.Now())
	cleared := events.Override{By: d.o.Name, Reason: "state stream created again"}
	for _, s := range d.ix.endpoints {
		s.status, s.seq, s.eventID, s.cause, s.since, s.dated, s.overrideSeq = events.StatusUnknown, 0, "", "", time.Time{}, time.Time{}, 0
		s.sent, s.dropped = events.Sent[sentTransition]{}, nil
		s.hold = holdDowns{}
		if s.st.Own != nil {
			if dec, ok := s.st.SetOverride(decide.ScopeEndpoint, cleared, "", now, s.pool.app.policy); ok {
				d.decided(ctx, s, dec)
			}
		}
		if s.st.Pool != nil {
			if dec, ok := s.st.SetOverride(decide.ScopePool, cleared, "", now, s.pool.app.policy); ok {
				d.decided(ctx, s, dec)
			}
		}
		d.rearm(s)
		d.watchEndpoint(s)
	}
	d.dropHeld(false)
	d.log.Warn().Msg("state stream created again; folding it from its first message")
}

// onState applies one STATE event: another replica's (or this one's) transition, or an override.
func (d *decider) onState(ctx context.Context, m delivery) {
	defer d.o.Stats.StateSeq.Store(m.seq)
	// STATE delivering means it has a leader: appends found overdue are waited for once more.
	d.unanswered = false
	env := m.env
	d.o.Metrics.Lag("decider", events.StreamState, m.pending)
	if m.err != nil {
		d.o.Metrics.DecodeFailed("decider", events.StreamState)
		d.malformed.Skip(d.log, m.err, m.subject, m.seq)
		return
	}
	if s := d.ix.bySubject[m.subject]; s != nil {
		d.endpointStored(s, env.ID, s.sent.Delivered(env.ID, m.seq, env.Source == d.o.Name))
		if m.seq <= s.seq {
			return
		}
		d.noteUnexpected(m, recorded(s.status, s.seq, s.next), s.seq > 0)
		env = stamped(env, m.stamp)
		at := env.Time
		if s.next != nil {
			at = ownTime(env, s.next.ev.ID, s.next.dec.At) // another replica's copy of this one's append in flight
		}
		s.record(m.seq, env, at)
		d.watchEndpoint(s)
		// Another replica's transition: if it died before the pool's, append that (once this
		// replica's appends on the pool have landed). One that contradicts this replica's view
		// waits: re-asserted, or confirmed by the probes (whose commit then appends the pool's).
		if d.live && m.pending == 0 && s.contradicted.IsZero() {
			if s.pool.inFlight > 0 {
				s.pool.recheck = true
			} else {
				d.checkPool(ctx, s.pool)
			}
		}
		return
	}
	if s := d.ix.holdDowns[m.subject]; s != nil {
		s.recordHoldDown(m.seq, env)
		return
	}
	if p := d.ix.pools[m.subject]; p != nil {
		d.poolStored(p, env.ID, p.sent.Delivered(env.ID, m.seq, env.Source == d.o.Name))
		if m.seq > p.seq {
			d.noteUnexpected(m, recorded(p.status, p.seq, p.next), p.seq > 0)
		}
		p.record(m.seq, stamped(env, m.stamp))
		d.watchPool(p)
		return
	}
	// An override applies after the results stored before it, as detour replay applies it. PROBES
	// and STATE are read by two consumers, and STATE may deliver the override first: it waits
	// until the results heard on the wire before it came are folded (PROBES delivering them, or
	// their grace ending), at most wireGrace, and the overrides after it wait behind it.
	var o events.Override
	if env.Type != events.TypeOverrideSet && env.Type != events.TypeOverrideCleared {
		return // edges and what later versions add are not the decider's
	}
	if err := env.Payload(&o); err != nil {
		d.malformed.Skip(d.log, err, m.subject, m.seq)
		return
	}
	if env.Type == events.TypeOverrideCleared {
		o.Action = ""
	} else if o.Action != events.ActionForceUp && o.Action != events.ActionForceDown && o.Action != events.ActionDrain {
		d.log.Warn().Str("subject", m.subject).Str("action", o.Action).Uint64("stream_seq", m.seq).Msg("override with an unknown action skipped")
		return
	}
	d.hold(ctx, heldEvent{subject: m.subject, seq: m.seq, stamp: m.stamp, id: env.ID, o: o})
}

// heldEvent is an override STATE delivered, a drill event DRILLS delivered (drill), or a
// configuration version (config), waiting for the results heard on the wire before it (the first
// heard of them) to be folded, since at (this host's clock).
type heldEvent struct {
	subject string
	seq     uint64
	stamp   time.Time
	id      string
	o       events.Override
	drill   *delivery
	config  *config.Config
	heard   uint64
	at      time.Time
	// backlog is set on a drill event DRILLS delivered before the decider went live, which waits
	// for PROBES's backlog stored before it, not for the results heard on the wire.
	backlog bool
}

// hold applies h at once, or holds it when results heard on the wire before it are still to be
// folded, or events held before it are still held, or, before the decider goes live, when it is
// a drill event (see heldEvent.backlog).
func (d *decider) hold(ctx context.Context, h heldEvent) {
	h.heard, h.at = d.heardCount, d.o.Now()
	if !d.live && h.drill != nil {
		// Before going live the results stored before a drill event are those of PROBES's
		// backlog: it waits until PROBES delivers a result stored after it, or catches up.
		h.backlog = true
		d.held = append(d.held, h)
		return
	}
	if d.live && (len(d.held) > 0 || !d.heardFolded(h.heard)) {
		d.held = append(d.held, h)
		return
	}
	d.applyHeld(ctx, h)
}

// applyHeld applies a held override, drill event or configuration version.
func (d *decider) applyHeld(ctx context.Context, h heldEvent) {
	switch {
	case h.drill != nil:
		d.applyDrill(ctx, *h.drill)
	case h.config != nil:
		d.configure(ctx, h.config, h.stamp)
	default:
		d.applyOverride(ctx, h)
	}
}

// dropHeld forgets the held drill events (drills), or the held overrides, of a stream created
// again; the configuration versions held stay.
func (d *decider) dropHeld(drills bool) {
	kept := d.held[:0]
	for _, h := range d.held {
		if h.config != nil || (h.drill != nil) != drills {
			kept = append(kept, h)
		}
	}
	d.held = kept
	if len(d.held) == 0 {
		d.held = nil
	}
}

// heardFolded reports whether every probe message heard on the wire among the first n has been
// folded or dropped: delivered by PROBES, or folded as heard once its grace ended. It takes the
// messages PROBES delivered off the front of the wait order (foldHeard would skip them), so
// that while an override is held each PROBES message costs its check one look, not one per
// message delivered since the last tick.
func (d *decider) heardFolded(n uint64) bool {
	for len(d.waitOrder) > 0 {
		if m, ok := d.waiting[d.waitOrder[0]]; ok {
			return m.n > n
		}
		d.waitOrder = d.waitOrder[1:]
	}
	d.waitOrder = nil // let the backing array go after a burst
	return true
}

// releaseOverrides applies, in the order delivered, the overrides and drill events held (see
// hold) whose turn has come: the results heard on the wire before them have been folded, or
// PROBES delivered a message stored at stored or later (zero: none), after them.
func (d *decider) releaseOverrides(ctx context.Context, stored time.Time) {
	n := 0
	for _, h := range d.held {
		if (h.backlog || !d.heardFolded(h.heard)) && (stored.IsZero() || stored.Before(h.stamp)) {
			break
		}
		d.applyHeld(ctx, h)
		n++
	}
	d.held = d.held[n:]
	if len(d.held) == 0 {
		d.held = nil
	}
}

// applyOverride applies an override STATE stored, to its endpoint or to every endpoint of its
// pool. The deadlines that passed before it are decided first, as for a result.
func (d *decider) applyOverride(ctx context.Context, h heldEvent) {
	if s := d.ix.epOverrides[h.subject]; s != nil && h.seq > s.overrideSeq {
		s.overrideSeq = h.seq
		d.passUntil(ctx, s, overrideTime(s, h.stamp))
		dec, ok := s.st.SetOverride(decide.ScopeEndpoint, h.o, h.id, overrideTime(s, h.stamp), s.pool.app.policy)
		d.rearm(s)
		if ok {
			d.decided(ctx, s, dec)
		}
	}
	if p := d.ix.poolOverrides[h.subject]; p != nil && h.seq > p.overrideSeq {
		p.overrideSeq = h.seq
		for _, s := range p.endpoints {
			d.passUntil(ctx, s, overrideTime(s, h.stamp))
			dec, ok := s.st.SetOverride(decide.ScopePool, h.o, h.id, overrideTime(s, h.stamp), p.app.policy)
			d.rearm(s)
			if ok {
				d.decided(ctx, s, dec)
			}
		}
	}
}

// overrideTime dates an override's effect on an endpoint: when STATE stored it, or when the
// endpoint's last recorded event happened if that is later (the streams' leaders may be different
// servers, whose clocks differ a little). An override never looks older than what it overrides.
func overrideTime(s *endpointSlot, stamp time.Time) time.Time {
	if s.since.After(stamp) {
		return s.since
	}
	return stamp
}

// observeClock notes the stream time of a delivery, so that time passing between deliveries is
// measured on the streams' clock rather than this host's.
func (d *decider) observeClock(stamp time.Time) {
	if stamp.After(d.clockStamp) {
		d.clockStamp, d.clockLocal = stamp, d.o.Now()
	}
}

// streamNow is the streams' time when this host's clock reads local: the newest stamp seen, plus
// the time elapsed here since it arrived (so a little behind, by the delivery latency).
func (d *decider) streamNow(local time.Time) time.Time {
	if d.clockStamp.IsZero() {
		return local
	}
	return d.clockStamp.Add(local.Sub(d.clockLocal))
}

// decided queues a decision for the next flush, or keeps it for reconcile while the decider is
// not yet live.
func (d *decider) decided(ctx context.Context, s *endpointSlot, dec decide.Decision) {
	if !d.live {
		s.pending = &dec
		d.rearm(s)
		return
	}
	d.queue(ctx, s, dec)
}

// reconcile runs once the backlog is folded: it appends every effective status STATE does not
// show yet (a replica died between a threshold and its append), then goes live.
func (d *decider) reconcile(ctx context.Context) {
	d.live = true
	now := d.streamNow(d.o.Now())
	for _, s := range d.ix.endpoints {
		if dec, ok := s.st.Expire(now, s.pool.app.policy); ok {
			s.pending = &dec
		}
		dec := s.pending
		s.pending = nil
		d.rearm(s)
		if s.st.Status == events.StatusUnknown || s.st.Status == s.status && (dec == nil || !restates(s, *dec)) {
			continue
		}
		if dec == nil && s.st.Voting() == 0 && s.status != events.StatusUnknown {
			// Nothing this replica folded decides the endpoint now (every region it heard is
			// stale): what it believes is older than what STATE records, so STATE wins.
			s.st.Restore(s.status)
			continue
		}
		if dec == nil || dec.To != s.st.Status {
			dec = d.explain(s, now)
		}
		d.queue(ctx, s, *dec)
	}
	d.flush(ctx)
	d.settle(ctx)
	for _, a := range d.ix.apps {
		for _, p := range a.pools {
			d.checkPool(ctx, p)
		}
	}
	d.o.Stats.Live.Store(true)
	d.log.Info().Int("endpoints", len(d.ix.endpoints)).Uint64("results", d.o.Stats.Results.Load()).
		Dur("duration", d.o.Now().Sub(d.started)).Msg("decider live")
}

// explain builds a decision for an effective status that has no pending one.
func (d *decider) explain(s *endpointSlot, now time.Time) *decide.Decision {
	cause := s.st.LastResult()
	if cause == "" {
		cause = s.eventID
	}
	dec := s.st.Explain(s.status, now, s.pool.app.policy, cause, "STATE was behind the probes")
	return &dec
}

// tick lets time pass: staleness and hold-down deadlines, and retries of failed appends.
// Once an append fails for another reason than a conflict (NATS unreachable), the pool
// transitions wait for the next tick instead of each waiting for its own timeout. The appends
// in flight land as their acknowledgements come, without the tick waiting for them, unless they
// stopped landing (see overdue): then they are settled, and one that failed is retried on the
// next tick.
func (d *decider) tick(ctx context.Context, now time.Time) {
	d.failing, d.readsStalled, d.readSpent, d.appendsStalled = false, false, 0, false
	d.landHoldDowns()
	d.landReady(ctx)
	if d.overdue() {
		// Nothing landed for appendTimeout. The first time, the appends in flight are waited for
		// once more: acknowledgements that come that late in a storm land then, rather than
		// every append in flight being sent again. Once such a wait got none (STATE electing a
		// leader, NATS away), the retries are counted failed as soon as they are overdue, so
		// that a retry reaches STATE at most about appendTimeout after its last attempt.
		wait := appendTimeout
		if d.unanswered {
			wait = 0
		}
		d.unanswered = true
		d.settleWithin(ctx, wait)
	}
	// The decisions flush kept queued while the appends were stalled are judged before the
	// pending ones, older, of the appends that failed then, as they would have been had they
	// been sent: a pending decision that no longer matches the endpoint's status is explained
	// as made now (expire), and would be dated after them.
	d.flush(ctx)
	// Time passes up to the first override held, if any: the deadlines after it are decided
	// once it is applied, as they fell after it.
	until := now
	if len(d.held) > 0 && d.held[0].stamp.Before(until) {
		until = d.held[0].stamp
	}
	// Only the endpoints whose deadline passed or that hold a pending decision: Expire would
	// change nothing on the others (see decide.Endpoint.ExpiresAt).
	at := until.UnixNano()
	for i, due := range d.ix.due {
		if due > at {
			continue
		}
		s := d.ix.endpoints[i]
		d.expire(ctx, s, until)
		d.rearm(s)
	}
	d.flush(ctx)
	if !d.failing && len(d.retrying) > 0 {
		pools := d.retrying[:0:0]
		for _, p := range d.retrying {
			p.retry = false
			if p.inFlight > 0 {
				// The flush above sent its endpoints' transitions (and its own, built on them)
				// again: it is checked once they land, rather than the loop waiting here for
				// their acknowledgements, which a STATE electing a leader never sends.
				p.recheck = true
				continue
			}
			pools = append(pools, p)
		}
		d.retrying = nil
		d.sendPools(ctx, pools)
	}
	d.reassert(ctx, now)
}

// expire lets time pass on s until now and queues its pending decision, unless an append failed
// during this tick (then it waits for the next).
func (d *decider) expire(ctx context.Context, s *endpointSlot, now time.Time) {
	if dec, ok := s.st.Expire(now, s.pool.app.policy); ok {
		s.pending = &dec
	}
	if s.pending == nil || d.failing {
		return
	}
	dec := s.pending
	s.pending = nil
	if s.st.Status == events.StatusUnknown || s.st.Status == s.status && !s.sent.Unanswered(s.seq) && !restates(s, *dec) {
		return
	}
	switch dr := s.dropped; {
	case dec.To == s.st.Status:
	case dr != nil && dr.To == s.st.Status:
		// The decision that brought the endpoint to its status was dropped as older than what
		// STATE records (another replica ahead in the probes): explained as made now, it was
		// dated after the results still to fold, and appended against STATE's newer event,
		// which made every later decision of both replicas look older (flaps lost until
		// re-asserted). Dated as decided, it is dropped again, and re-asserted if it lasts.
		dec = dr
	default:
		dec = d.explain(s, now)
	}
	d.queue(ctx, s, *dec)
}

// commit appends the endpoint's transition unless STATE already records its status or a newer
// event, then the pool's if its availability changed. When another writer appended to the
// subject first, it re-reads it and decides again.
func (d *decider) commit(ctx context.Context, s *endpointSlot, dec decide.Decision) {
	p := s.pool
	if p.inFlight > 0 {
		d.settle(ctx)
	}
	// STATE already holding a newer event than this decision means another replica is ahead in
	// the probes: this decision is history already.
	s.dropped = droppedAsOlder(s, dec)
	for attempt := 0; due(s, dec); attempt++ {
		if attempt == maxAttempts {
			d.later(ctx, s, dec, errors.New("too many conflicting writers"))
			return
		}
		ev, ok := d.endpointEvent(s, dec)
		if !ok {
			return
		}
		s.sent.Add(s.seq, ev.ID, endpointSent(s, dec))
		ack, err := d.append(ctx, s.subject, ev, s.seq)
		if err == nil {
			d.endpointRecorded(s, ev, dec.At, ack)
			break
		}
		d.endpointStored(s, ev.ID, s.sent.Failed(ev.ID, err))
		if !d.conflicted(ctx, s, dec, ev, err) {
			return
		}
	}
	d.watchEndpoint(s)
	d.checkPool(ctx, p)
}

// due reports whether dec is still to be appended: STATE holds neither its status nor a newer
// event (another replica ahead in the probes made this decision history already). A decision
// found not due starts the clock of the contradiction it leaves, if any (watchEndpoint): when
// the replica that stored the newer event made it out of results this one folds too, this one
// comes to the same status, and the clock stops; when it dated one change later than this
// replica would and then died, with nothing else to append this replica's next transition, the
// transition is re-asserted reassertAfter later instead of lost.
func due(s *endpointSlot, dec decide.Decision) bool {
	return (dec.To != s.status && dec.From != dec.To || restates(s, dec)) && !s.since.After(dec.At)
}

// restates reports whether dec re-states the status STATE records on the endpoint: the same
// status, which a drill's simulated failure made there (endpointSlot.drilled) and the probes or
// an override keep now (decide.DrillOutlived). Once one replica's lands, the endpoint's status
// is no drill's and the others' are not due; nor is one once another replica's transition
// moved STATE on (its up at the drill's end, stored first): appended, it was a down over it.
func restates(s *endpointSlot, dec decide.Decision) bool {
	return dec.To == s.status && dec.From == dec.To && dec.Drill == nil && s.drilled != ""
}

// droppedAsOlder returns dec when it is not due only because STATE records an event dated after it,
// which reassert appends if the contradiction it leaves lasts, else nil.
func droppedAsOlder(s *endpointSlot, dec decide.Decision) *decide.Decision {
	if dec.To != s.status && s.since.After(dec.At) {
		d := dec
		return &d
	}
	return nil
}

// endpointEvent builds the transition event of dec, following what STATE last recorded.
func (d *decider) endpointEvent(s *endpointSlot, dec decide.Decision) (events.Envelope, bool) {
	p := s.pool
	t := events.Transition{App: p.app.cfg.Name, Pool: p.cfg.Name, Endpoint: s.cfg.Name, Address: s.cfg.Address,
		From: s.status, To: dec.To, Reason: dec.Reason, Results: dec.Results, Votes: dec.Votes,
		Thresholds: p.app.policy.Thresholds(), Drill: drill.ID(dec.Drill)}
	derive := events.Derived
	if s.keyed {
		derive = d.idKey.Derived
	}
	ev, err := derive(endpointType(dec.To), d.o.Name, dec.Cause, derivedKey(s.subject, dec.To, s.seq), notBefore(dec.At, s.dated), t)
	if err != nil {
		d.log.Error().Err(err).Str("subject", s.subject).Msg("build endpoint transition failed")
		return ev, false
	}
	return ev, true
}

// notBefore returns at, or floor when at is before it. A transition is dated no earlier than the
// event STATE holds before it on its subject, so that the history never runs backwards (a status
// page showing how long a status lasted would show a negative duration): the decision is made
// on this replica's clock (see ownTime), while the event it follows may be another replica's
// copy, dated on that one's.
func notBefore(at, floor time.Time) time.Time {
	if floor.After(at) {
		return floor
	}
	return at
}

// sentTransition is what this replica counts and logs of a transition it sent to STATE, once
// STATE is known to hold it: by its acknowledgement, or by STATE delivering the event with this
// replica as its source where the acknowledgement was lost or came too late (see events.Sent).
type sentTransition struct {
	from, to events.Status
	reason   string
	// streakSince is when the streak of failed results that took an endpoint down began (see
	// failover); zero for any other transition.
	streakSince time.Time
	// at is when this replica decided an endpoint's transition, which it dates another
	// replica's copy of it by (ownTime).
	at time.Time
}

func endpointSent(s *endpointSlot, dec decide.Decision) sentTransition {
	t := sentTransition{from: s.status, to: dec.To, reason: dec.Reason, at: dec.At}
	if failover(dec) {
		t.streakSince = dec.StreakSince
	}
	return t
}

// endpointRecorded notes that STATE stored ev, this replica's append on the endpoint of a
// decision made at at, at ack.
func (d *decider) endpointRecorded(s *endpointSlot, ev events.Envelope, at time.Time, ack *jetstream.PubAck) {
	s.record(ack.Sequence, ev, at)
	d.endpointStored(s, ev.ID, s.sent.Acked(ev.ID, ack.Sequence, ack.Duplicate))
}

// endpointStored counts and logs the transition id this replica sent on the endpoint, when
// events.Sent says STATE is known to hold it as this replica's (st is not nil).
func (d *decider) endpointStored(s *endpointSlot, id string, st *events.Stored[sentTransition]) {
	if st == nil {
		return
	}
	t := st.Info
	d.o.Stats.Transitions.Add(1)
	d.o.Metrics.Transition("endpoint", string(t.to))
	if !t.streakSince.IsZero() {
		d.o.Metrics.FailedOver(d.streamNow(d.o.Now()).Sub(t.streakSince).Seconds())
	}
	d.log.Info().Str("app", s.pool.app.cfg.Name).Str("pool", s.pool.cfg.Name).Str("endpoint", s.cfg.Name).
		Str("from", string(t.from)).Str("to", string(t.to)).Str("reason", t.reason).
		Str("event_id", id).Uint64("stream_seq", st.Seq).Msg("endpoint transition")
}

// failover reports whether dec is a failover the probes detected: an endpoint taken down by a
// streak of failed results (see decide.Decision.StreakSince, where its failover time starts). A
// down transition an override, a drill or staleness made is not timed.
func failover(dec decide.Decision) bool {
	return dec.To == events.StatusDown && !dec.StreakSince.IsZero()
}

// conflicted handles an append of dec, the event sent, that failed with err, and reports whether
// to decide again: after a conflict, once the subject has been re-read. Any other failure keeps
// dec for the next tick.
func (d *decider) conflicted(ctx context.Context, s *endpointSlot, dec decide.Decision, sent events.Envelope, err error) bool {
	if !errors.Is(err, events.ErrConflict) {
		d.later(ctx, s, dec, err)
		return false
	}
	s.keyed = s.keyed || errors.Is(err, events.ErrPreempted)
	d.o.Stats.Conflicts.Add(1)
	if err := d.reread(ctx, s, sent.ID, dec.At); err != nil {
		d.later(ctx, s, dec, err)
		return false
	}
	return true
}

// appendTimeout bounds one append or read, and how long the appends in flight are waited for
// (each, when the next needs it; all, once none landed for this long), so that an
// unreachable NATS does not stall the decider. While STATE elects a leader (after the node
// leading it died) an append goes unanswered and the next tick tries it again: the bound is also
// about how long a decision waits past the election. Trying again is safe: the same decision
// has the same event id and expected sequence, so a first attempt that was stored after all
// makes the retry a duplicate or a conflict, never a second event.
const appendTimeout = 500 * time.Millisecond

func (d *decider) append(ctx context.Context, subject string, e events.Envelope, lastSeq uint64) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	ack, err := events.Append(ctx, d.js, subject, e, lastSeq)
	if err == nil {
		err = events.Preempted(ctx, d.state, subject, e, ack)
	}
	if err != nil {
		return nil, err
	}
	return ack, nil
}

// preempted is events.Preempted for an append of e on subject sent ahead, whose ack came.
func (d *decider) preempted(ctx context.Context, subject string, e events.Envelope, ack *jetstream.PubAck) error {
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	return events.Preempted(ctx, d.state, subject, e, ack)
}

// last reads the last event STATE holds on subject, dated no later than maxSkew after now on the
// streams' clock, as stamped dates one STATE delivers: STATE stored it by now.
func (d *decider) last(ctx context.Context, subject string) (events.Envelope, uint64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	e, seq, ok, err := events.Last(ctx, d.state, subject)
	return stamped(e, d.streamNow(d.o.Now())), seq, ok, err
}

// later keeps a decision whose append failed for the next tick.
func (d *decider) later(ctx context.Context, s *endpointSlot, dec decide.Decision, err error) {
	s.pending = &dec
	d.rearm(s)
	d.failing = true
	d.o.Stats.Failed.Add(1)
	if ctx.Err() == nil {
		d.log.Error().Err(err).Str("subject", s.subject).Str("to", string(dec.To)).Msg("append endpoint transition failed, retrying")
	}
}

// reread updates what STATE last recorded on the endpoint's subject after this replica's append
// of the event sent, of a decision made at at, was refused, and starts the clock of a
// contradiction it shows (the STATE reader, delivering the same event later, finds it recorded
// already).
//
// An event read back that the STATE reader has not delivered yet may follow pool events it has
// not delivered either: the pool's subject is read back too. Judged against the pool's status
// as this replica last knew it, the pool's transition that the endpoint's event calls for could
// look made already (the pool had moved away from that status since), and the endpoint's next
// transition was appended without it: STATE showed a pool down all the while its only endpoint
// was up, where the replica that stored the endpoint's event died, or was slow, before the pool's.
func (d *decider) reread(ctx context.Context, s *endpointSlot, sent string, at time.Time) error {
	env, seq, ok, err := d.last(ctx, s.subject)
	if err != nil && !errors.Is(err, events.ErrMalformed) {
		return err
	}
	if !ok {
		return nil
	}
	s.record(seq, env, ownTime(env, sent, at))
	d.watchEndpoint(s)
	if seq <= d.o.Stats.StateSeq.Load() {
		return nil
	}
	p := s.pool
	env, seq, ok, err = d.last(ctx, p.subject)
	if err != nil && !errors.Is(err, events.ErrMalformed) {
		return err
	}
	if ok {
		p.record(seq, env)
	}
	return nil
}

// readUnanswered reads the endpoint's subject back from STATE's leader before dec is dropped as
// not due, where an append this replica sent on it went unanswered (its answer timed out, the
// connection was lost): STATE may hold it, while the slot shows what STATE recorded before it
// (unsent). Judged against that, the next transition looked recorded already: w1's up stored
// but unanswered, the failures that took w1 down again before the next tick tried the up again
// made a down that w1 showed already, dropped, and STATE showed w1 up through them (the other
// replica, its reader behind, dropped it too) until the contradiction was re-asserted a second
// later, or for good where w1 came back up before that. The leader answers the read: a replica
// behind it may not hold the up yet. The read is made at once: kept for the next tick, a
// decision was judged after those that followed it (w1 down and up again within the tick: the
// up was due and appended, the down read back after it, not due, and the pair never recorded).
// An event read back beyond what STATE delivered has the pool's subject read back too, as in
// reread. It reports whether dec is to be judged now; dec is kept for the next tick when the
// read fails, or once the reads stall (see leaderLast). A decision that is due needs no read:
// appended after what the slot shows, it conflicts with an unanswered append STATE stored, and
// re-reads.
func (d *decider) readUnanswered(ctx context.Context, s *endpointSlot, dec decide.Decision) bool {
	if due(s, dec) || !s.sent.Unanswered(s.seq) {
		return true
	}
	if d.readsStalled {
		s.pending = &dec
		d.rearm(s)
		return false
	}
	env, seq, ok, err := d.leaderLast(ctx, s.subject)
	if err != nil && !errors.Is(err, events.ErrMalformed) {
		d.later(ctx, s, dec, err)
		return false
	}
	if ok {
		env = stamped(env, d.streamNow(d.o.Now()))
		at := env.Time
		if t, own := s.sent.Info(env.ID); own {
			at = t.at // a copy of this replica's append, dated as it decided it (ownTime)
		}
		s.record(seq, env, at)
		d.watchEndpoint(s)
	}
	if !ok || seq <= d.o.Stats.StateSeq.Load() {
		return true
	}
	// Beyond what STATE delivered, as in reread: the pool's events before it may be too.
	if err := d.readPoolBack(ctx, s.pool); err != nil {
		d.later(ctx, s, dec, err)
		return false
	}
	return true
}

// readPoolBack records what STATE's leader last holds on the pool's subject (leaderLast), for
// readUnanswered and readPoolUnanswered; it returns the read's error, but for a malformed event.
func (d *decider) readPoolBack(ctx context.Context, p *poolSlot) error {
	env, seq, ok, err := d.leaderLast(ctx, p.subject)
	if err != nil && !errors.Is(err, events.ErrMalformed) {
		return err
	}
	if ok {
		p.record(seq, stamped(env, d.streamNow(d.o.Now())))
		d.watchPool(p)
	}
	return nil
}

// leaderLast reads the last event STATE's leader holds on subject, for at most appendTimeout.
// Once a read failed, or the reads since the last tick took appendTimeout in all, readsStalled
// keeps the reads after them for the next tick: a storm of 10,000 flaps on subjects whose
// appends went unanswered read one after another, stalling every decision for 10,000 round
// trips to a leader slow to answer (each up to appendTimeout); now a tick is stalled by less
// than twice appendTimeout.
func (d *decider) leaderLast(ctx context.Context, subject string) (events.Envelope, uint64, bool, error) {
	rctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	start := time.Now()
	env, seq, ok, err := events.LeaderLast(rctx, d.js, events.StreamState, subject)
	d.readSpent += time.Since(start)
	if err != nil && !errors.Is(err, events.ErrMalformed) || d.readSpent >= appendTimeout {
		d.readsStalled = true
	}
	return env, seq, ok, err
}

// ownTime returns when this replica judges e, an event STATE holds on an endpoint, happened: at,
// when it decided the change itself, if e is another replica's copy of its append sent (the same
// id: the same change, as ids derive from causes), else e's time. Replicas date one change
// differently (one folds its result as heard on the wire, dated when heard; the other as PROBES
// stored it), and STATE keeps the copy that came first. This replica judges its next decisions
// on its own clock and drops those made before what STATE last recorded (due): against a copy
// dated later by another replica, its next transition looked older than the change it follows,
// and was never appended.
func ownTime(e events.Envelope, sent string, at time.Time) time.Time {
	if sent != "" && e.ID == sent {
		return at
	}
	return e.Time
}

// checkPool appends the pool's transition when its endpoints' recorded statuses changed its
// availability. The transition is caused by, and dated as, the newest endpoint event the decider
// knows of the pool; when STATE holds a pool event newer than that (see superseded), a replica
// with a fresher view has decided already. On a conflict it re-reads the pool and decides again.
func (d *decider) checkPool(ctx context.Context, p *poolSlot) { d.poolTransition(ctx, p, false) }

// poolTransition is checkPool; with reassert, a pool event newer than the endpoints' does not
// stop it: that event contradicted them for longer than a race lasts.
func (d *decider) poolTransition(ctx context.Context, p *poolSlot, reassert bool) {
	if p.inFlight > 0 {
		d.settle(ctx)
	}
	if !d.readPoolUnanswered(ctx, p) {
		return
	}
	for attempt := 0; ; attempt++ {
		ev, t, ok := d.poolEvent(p, reassert)
		if !ok {
			return
		}
		if attempt == maxAttempts {
			d.poolLater(ctx, p, errors.New("too many conflicting writers"))
			return
		}
		p.sent.Add(p.seq, ev.ID, poolSent(t))
		ack, err := d.append(ctx, p.subject, ev, p.seq)
		if err == nil {
			d.poolRecorded(p, ev, ack)
			return
		}
		d.poolStored(p, ev.ID, p.sent.Failed(ev.ID, err))
		if !d.poolConflicted(ctx, p, err) {
			return
		}
	}
}

// poolEvent builds the pool's transition when its endpoints' recorded statuses changed its
// availability since STATE last recorded it; ok is false when there is none to append. With
// reassert, a pool event newer than the endpoints' does not stop it (see poolTransition).
func (d *decider) poolEvent(p *poolSlot, reassert bool) (events.Envelope, events.Transition, bool) {
	latest := p.latest()
	v := p.verdict()
	if latest == nil || v.Status == p.status && !p.restates(v) || (superseded(p, latest) && !reassert) {
		return events.Envelope{}, events.Transition{}, false
	}
	others := 0
	for _, q := range p.app.pools {
		if q != p && q.verdict().Status == events.StatusUp {
			others++
		}
	}
	cause := p.cause(latest, v)
	t := events.Transition{App: p.app.cfg.Name, Pool: p.cfg.Name, From: p.status, To: v.Status,
		Reason:     cause.cfg.Name + " " + string(cause.status) + ": " + decide.PoolReason(v, others, p.app.cfg.WhenAllDown),
		Thresholds: p.thresholds()}
	if v.Status == events.StatusDown {
		// Marked as its cause is: a replica reading STATE once the endpoint has moved on (its
		// re-statement stored, the pool's not: a replica died between the two) still knows
		// the pool's down for the drill's, and re-states it (poolSlot.restates).
		t.Drill = cause.drilled
	}
	derive := events.Derived
	if p.keyed {
		derive = d.idKey.Derived
	}
	ev, err := derive(poolType(v.Status), d.o.Name, cause.eventID, derivedKey(p.subject, v.Status, p.seq),
		notBefore(notBefore(cause.since, cause.dated), p.since), t)
	if err != nil {
		d.log.Error().Err(err).Str("subject", p.subject).Msg("build pool transition failed")
		return ev, t, false
	}
	return ev, t, true
}

// superseded reports whether STATE's pool event is newer than latest, the newest endpoint event
// the decider knows of the pool: dated later, or dated at the same instant (the results of one
// PROBES message are stored at one instant) and stored after it. The replica that appended it had
// folded the whole message, while this one may know only part of it: the endpoint events another
// replica stored before its pool's, re-read after a conflict or delivered while this replica is
// still behind in the probes.
//
// An endpoint event stored after the pool's is never superseded by it, however the two are
// dated: the pool's was decided without it. STATE is one stream, and its sequences order the
// events as every replica sees them; their times do not. Two replicas date one change
// differently (one folded its result as heard on the wire, dated when heard; the other as PROBES
// stored it) and append the same event (its id is derived from its cause), of which STATE keeps
// the copy that came first: a pool event can be dated after the endpoint transition stored next.
// Judged by its time, it superseded that transition for every replica, and none appended the
// pool's: a pool left up while its only endpoint was down. While latest is in flight, its
// sequence is not known yet: the times tell whether this replica is behind in the probes (its
// transition is then refused), and landed checks the pool again once it is stored.
func superseded(p *poolSlot, latest *endpointSlot) bool {
	if latest.next == nil && latest.seq > p.seq {
		return false
	}
	return p.since.After(latest.since) || p.since.Equal(latest.since) && p.seq > latest.order()
}

// readPoolUnanswered is readUnanswered for the pool: it reads the pool's subject back from
// STATE's leader before the pool's availability is judged recorded already, where an append this
// replica sent on it went unanswered (west's up stored but unanswered, w1's next down left west
// up in STATE, as its pool's down looked recorded already). It reports whether to judge the pool
// now; the pool is kept for the next tick (retryLater) when the read fails, or once the reads
// stall (see leaderLast).
func (d *decider) readPoolUnanswered(ctx context.Context, p *poolSlot) bool {
	if !p.sent.Unanswered(p.seq) || p.verdict().Status != p.status {
		return true
	}
	if d.readsStalled {
		d.retryLater(p)
		return false
	}
	if err := d.readPoolBack(ctx, p); err != nil {
		d.poolLater(ctx, p, err)
		return false
	}
	return true
}

func poolSent(t events.Transition) sentTransition {
	return sentTransition{from: t.From, to: t.To, reason: t.Reason}
}

// poolRecorded notes that STATE stored ev, this replica's append on the pool, at ack.
func (d *decider) poolRecorded(p *poolSlot, ev events.Envelope, ack *jetstream.PubAck) {
	p.record(ack.Sequence, ev)
	d.poolStored(p, ev.ID, p.sent.Acked(ev.ID, ack.Sequence, ack.Duplicate))
}

// poolStored is endpointStored for the pool's transitions.
func (d *decider) poolStored(p *poolSlot, id string, st *events.Stored[sentTransition]) {
	if st == nil {
		return
	}
	t := st.Info
	d.o.Stats.PoolTransitions.Add(1)
	d.o.Metrics.Transition("pool", string(t.to))
	d.log.Info().Str("app", p.app.cfg.Name).Str("pool", p.cfg.Name).Str("from", string(t.from)).Str("to", string(t.to)).
		Str("reason", t.reason).Str("event_id", id).Uint64("stream_seq", st.Seq).Msg("pool transition")
}

// poolConflicted handles a pool append that failed with err, and reports whether to decide
// again: after a conflict, once the subject has been re-read.
func (d *decider) poolConflicted(ctx context.Context, p *poolSlot, err error) bool {
	if !errors.Is(err, events.ErrConflict) {
		d.poolLater(ctx, p, err)
		return false
	}
	p.keyed = p.keyed || errors.Is(err, events.ErrPreempted)
	d.o.Stats.Conflicts.Add(1)
	env, seq, ok, err := d.last(ctx, p.subject)
	if err != nil && !errors.Is(err, events.ErrMalformed) {
		d.poolLater(ctx, p, err)
		return false
	}
	if ok {
		p.record(seq, env)
	}
	return true
}

func (d *decider) poolLater(ctx context.Context, p *poolSlot, err error) {
	d.retryLater(p)
	d.failing = true
	d.o.Stats.Failed.Add(1)
	if ctx.Err() == nil {
		d.log.Error().Err(err).Str("subject", p.subject).Msg("append pool transition failed, retrying")
	}
}

// derivedKey names a transition among those its cause may derive: the subject, the new status,
// and the sequence it follows. Replicas appending the same change after the same sequence derive
// the same id, so JetStream keeps one; a cause that leads to the same status again later (after
// other changes) derives a new id instead of being dropped as a copy of the old event.
func derivedKey(subject string, to events.Status, after uint64) string {
	return subject + "|" + string(to) + "|" + strconv.FormatUint(after, 10)
}

func endpointType(s events.Status) string {
	switch s {
	case events.StatusUp:
		return events.TypeEndpointUp
	case events.StatusDrained:
		return events.TypeEndpointDrained
	}
	return events.TypeEndpointDown
}

func poolType(s events.Status) string {
	if s == events.StatusUp {
		return events.TypePoolUp
	}
	return events.TypePoolDown
}
