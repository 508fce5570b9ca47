package dnsupdater

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/push"
	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go/jetstream"
)

// follow keeps the answers in step with the STATE stream, through an events.Follower: the last
// event of every subject, then every new one. While the stream cannot be reached the server
// answers from its last state, and the follower tries again. A stream deleted and created again
// replaces the state: the answers follow the new stream's events alone.
func (s *Server) follow(ctx context.Context) {
	saves := make(chan *snapshotSave, 1)
	if s.o.DataDir != "" {
		done := make(chan struct{})
		defer func() { <-done }()
		defer close(saves)
		go func() {
			defer close(done)
			s.writeSnapshots(saves)
		}()
	}
	var refresher sync.WaitGroup
	defer refresher.Wait()
	refresher.Go(func() { s.refreshLoop(ctx, saves) })
	// The renewer stops with the refresher, before the last save releases the serials.
	refresher.Go(func() { s.serials.renewLoop(ctx, s.log) })
	s.projMu.Lock()
	created := s.proj.created // the snapshot's, if any: a STATE created since is a new one
	// A snapshot of an older version does not say when its STATE was created: the stream met
	// first is checked for its newest event instead.
	unsure, kept := created.IsZero() && len(s.proj.latest) > 0, s.proj.newest()
	s.projMu.Unlock()
	f := events.Follower{JS: s.o.JS, Stream: events.StreamState, Log: s.log, Bridge: events.BridgeNext, Created: created,
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectState}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	// rebuilding is set from a stream created again until its events are all folded.
	dirty, rebuilding := false, false
	f.Run(ctx, func(d events.Delivery) {
		if d.Recreated || !d.Created.Equal(created) {
			// Starting over costs a rebuild, never an answer: the stream delivers the last event
			// of every subject from here anyway.
			other := false
			if unsure {
				same, err := s.holds(ctx, kept)
				switch {
				case err != nil:
					s.log.Warn().Err(err).Msg("snapshot not checked against the state stream; starting over from the stream")
				case !same:
					s.log.Info().Uint64("stream_seq", kept.Seq).Msg("snapshot of another state stream; starting over from the stream")
				}
				other, unsure = !same, false
			}
			s.projMu.Lock()
			if d.Recreated || other {
				s.proj.reset()
				dirty, rebuilding = true, true
			}
			s.proj.created, created = d.Created, d.Created
			s.projMu.Unlock()
		}
		if d.Msg == nil { // nothing stored: the stream is read to its end
			if !s.readToEnd || dirty {
				dirty, s.readToEnd, rebuilding = false, true, false
				s.kickRefresh("")
			}
			return
		}
		s.o.Metrics.Lag("dns", events.StreamState, d.Pending)
		env, err := events.Decode(d.Data)
		if err != nil {
			s.o.Metrics.DecodeFailed("dns", events.StreamState)
		}
		if err == nil {
			var changed bool
			s.projMu.Lock()
			s.noteUnexpected(d.Subject, d.Seq, env)
			changed, err = s.proj.apply(d.Subject, d.Seq, env, d.Data)
			if changed {
				s.folded.note(time.Now(), d.Stamp)
				if s.readToEnd {
					s.folded.cause = env.ID
				}
			}
			s.projMu.Unlock()
			dirty = dirty || changed
		}
		if err != nil {
			s.malformed.Skip(s.log, err, d.Subject, d.Seq)
		}
		// While catching up, or rebuilding from a stream created again, the refresh waits for
		// the end of the stream, so that no answer rests on half of it; once live, each change
		// asks for one at once: the refresher takes whatever has been folded when it starts,
		// so the versions of a burst are as few as refreshes fit in it.
		if d.Pending > 0 && (!s.readToEnd || rebuilding) {
			return
		}
		rebuilding = false
		if dirty || !s.readToEnd {
			dirty, s.readToEnd = false, true
			s.kickRefresh(env.ID)
		}
	})
}

// holds reports whether the STATE stream holds e at its sequence, as the stream e was folded
// from did: a stream deleted and created again since holds another event there, or none. An
// error says that it cannot tell.
func (s *Server) holds(ctx context.Context, e storedEvent) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.o.JS.Stream(ctx, events.StreamState)
	if err != nil {
		return false, fmt.Errorf("open stream %s: %w", events.StreamState, err)
	}
	if st.CachedInfo().State.LastSeq < e.Seq {
		return false, nil
	}
	m, err := st.GetMsg(ctx, e.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s at seq %d: %w", events.StreamState, e.Seq, err)
	}
	got, err := events.Decode(m.Data)
	return err == nil && m.Subject == e.Subject && got.ID == e.Event.ID, nil
}

// kick asks the refresher for a new projection, caused by the event of id cause (a STATE event,
// or the configuration a reload applies; "" for none). The follower goes on folding events
// meanwhile: what arrives before the refresher starts joins this projection, so a burst of
// transitions makes one zone version rather than one each.
type kick struct {
	cause string
	// synced says that the state stream has been read to its end.
	synced bool
}

// kickRefresh hands the refresher a kick, merged with the one it has not taken yet.
func (s *Server) kickRefresh(cause string) {
	k := kick{cause: cause, synced: s.readToEnd}
	select {
	case old := <-s.kicks:
		if k.cause == "" {
			k.cause = old.cause
		}
	default:
	}
	s.kicks <- k // never blocks: the follower is the only sender, and the buffer was just emptied
}

// refreshLoop projects the state, prepares the answers and tells of the changes each time the
// follower asks, until ctx ends.
func (s *Server) refreshLoop(ctx context.Context, saves chan *snapshotSave) {
	read := make(chan histories)
	var reader sync.WaitGroup
	defer reader.Wait()
	// Without a data dir the id is this run's, and no version recorded leads to the serial; but
	// the stream still tells the serials served before, which the zones must pass.
	reader.Go(func() { s.readBack(ctx, s.readAgain, read) })
	var snaps snapshotPacer
	// restampDue fires when a zone whose re-stamp waits (restampGrace, restampEvery) may take it.
	var restampDue <-chan time.Time
	// The recheck ticks whether or not a zone is pushed: a reload may add a push.
	recheck := time.NewTicker(s.pushRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			// Stopping: the changes since the last snapshot are saved now, not dropped, and
			// the base written again with the digests of the serials served last.
			s.snapshotNow(saves, &snaps, true)
			return
		case h := <-read:
			s.installHistories(h.steps)
			// Before the state is read to its end the new serial waits for the refresh that
			// end asks for, so that no version rests on half of the stream.
			if s.passServed(h.served) && s.synced {
				s.refresh(ctx, kick{synced: true}, saves, &snaps)
			}
		case k := <-s.kicks:
			s.refresh(ctx, k, saves, &snaps)
		case <-s.peerPoke:
			restampDue = s.restampPeers(ctx, saves, &snaps)
		case <-restampDue:
			restampDue = s.restampPeers(ctx, saves, &snaps)
		case <-s.ahead.poke:
			s.passAhead(ctx, saves, &snaps)
		case <-recheck.C:
			s.recheckPushes(ctx)
		case <-snaps.due:
			// The snapshot held back: with the refresh asked for, if one is (so that its version
			// names its cause), or of the state as it is.
			snaps.due = nil
			select {
			case k := <-s.kicks:
				s.refresh(ctx, k, saves, &snaps)
			default:
				s.snapshotNow(saves, &snaps, false)
			}
		case c := <-s.o.Configs:
			before := s.table.Load().zones
			if started, ok := s.reconfigure(ctx, c); ok {
				// The refresh folds the STATE events waiting too: when one asked for it, the
				// version names that transition as its cause (as a replay links answers to
				// transitions), else the configuration applied.
				k := kick{cause: c.Event, synced: s.synced}
				select {
				case waiting := <-s.kicks:
					k = kick{cause: cmp.Or(waiting.cause, c.Event), synced: waiting.synced}
				default:
				}
				changes := s.refresh(ctx, k, saves, &snaps)
				s.announceReload(ctx, before, changes)
				s.offerStarted(ctx, started)
				s.readBackNow() // a zone the reload added reads what the stream records of it
			}
		}
	}
}

// restampPeers folds the versions other servers recorded since it last ran, re-stamps the zones
// they ask for (see restamps) and returns when to look again at those held back (nil: none
// is). Only the refresher calls it.
func (s *Server) restampPeers(ctx context.Context, saves chan *snapshotSave, snaps *snapshotPacer) <-chan time.Time {
	past, wait := s.restamps(s.now())
	if len(past) > 0 {
		s.restamp(past)
		s.refresh(ctx, kick{synced: true}, saves, snaps)
	}
	if wait > 0 {
		return time.After(wait)
	}
	return nil
}

// markSynced records that the state stream has been read to its end, and sends every zone to
// its primary: pushes wait for it, so that a restart does not push a state older than the
// primary's. Only the refresher calls it.
func (s *Server) markSynced() {
	s.synced = true
	for _, z := range s.table.Load().zones {
		s.offer(z, s.statePosition(), false)
	}
	s.readBackNow() // NATS answers: the zones whose read failed need not wait for the next try
	// The secondaries found ahead of the serial served meanwhile are passed now (see passAhead).
	signal(s.ahead.poke)
}

// readBackNow has the reader of the DNS stream read the zones it has not read yet at once,
// rather than at its next try (see readBack).
func (s *Server) readBackNow() {
	select {
	case s.readAgain <- struct{}{}:
	default: // already asked
	}
}

// offer hands a zone's current records, which reflect the STATE position at and the
// configuration version in force, to its pusher, if it has one; recheck says that they are
// offered again, nothing having changed (see push.Desired.Recheck).
func (s *Server) offer(z *zone.Zone, at push.Position, recheck bool) {
	if p := s.pusherOf(z.Name); p != nil {
		cfg := s.cfg.Load()
		p.Offer(push.Desired{Serial: z.Serial, RRsets: push.Owned(cfg, z), State: at, Recheck: recheck, Config: cfg.Version,
			ConfigTime: cfg.Applied})
	}
}

// pushRecheckEvery is how often a server that pushes offers its zones' records again while
// nothing changes, so that each pusher reads the primary's marker and SOA serial again: two
// signed queries over TCP a zone (and two an owned name when the serial moved by more than this
// server's own pushes, see push.serialGate), and an UPDATE only where another server left an
// earlier state or a hand edit changed an owned record.
const pushRecheckEvery = time.Minute

// recheckPushes has the reporter offer every zone served to its pusher again, at the STATE
// position read to, once STATE has been read to its end: through the reporter, after the
// changes before it, so that no recheck offers records older than a change's. Only the
// refresher calls it.
func (s *Server) recheckPushes(ctx context.Context) {
	if !s.synced || !s.pushing() {
		return
	}
	select {
	case s.reports <- report{recheck: s.table.Load().zones, state: s.statePosition()}:
	case <-ctx.Done():
	}
}

// offerStarted has the reporter offer each zone served whose pusher a reload started (named in
// started) to it, at the STATE position read to, once STATE has been read to its end (until
// then markSynced offers every zone): a push added or moved to another primary or key sends
// the zone's records at once, not at the zone's next change. Only the refresher calls it.
func (s *Server) offerStarted(ctx context.Context, started []string) {
	if !s.synced || len(started) == 0 {
		return
	}
	var zones []*zone.Zone
	for _, z := range s.table.Load().zones {
		if _, ok := slices.BinarySearch(started, z.Name); ok {
			zones = append(zones, z)
		}
	}
	select {
	case s.reports <- report{offer: zones, state: s.statePosition()}:
	case <-ctx.Done():
	}
}

// statePosition is the STATE position of the zones served: the last event folded into them, in
// the stream created when. Only the refresher calls it.
func (s *Server) statePosition() push.Position {
	return push.Position{Seq: s.proj.position, Created: s.proj.positionCreated}
}

// liveState returns the STATE stream's position as the stream tells it now: the sequence of its
// last event, and when it was created. The pushers check a primary's marker of a later position
// than theirs against it.
func (s *Server) liveState(ctx context.Context) (push.Position, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.o.JS.Stream(ctx, events.StreamState)
	if err != nil {
		return push.Position{}, fmt.Errorf("open stream %s: %w", events.StreamState, err)
	}
	info := st.CachedInfo()
	return push.Position{Seq: info.State.LastSeq, Created: info.Created}, nil
}

// refresh recomputes the zones and swaps in their prepared answers: from here on queries get
// the new answers, and queries never wait for the preparation. Zones whose answers changed are
// handed to the reporter, and what changed since the last save to the snapshot writer, so that
// neither delays the next event. It returns the zone changes handed to the reporter.
func (s *Server) refresh(ctx context.Context, k kick, saves chan *snapshotSave, snaps *snapshotPacer) []zoneChange {
	s.projMu.Lock()
	start, batch := time.Now(), s.folded
	s.folded = folded{}
	d := s.proj.decide()
	s.projMu.Unlock()
	// The follower folds the next events while the zones are made.
	zones, changes := s.proj.finish(d)
	projected := time.Now()
	if prev := s.table.Load(); len(changes) > 0 || !slices.Equal(zones, prev.zones) {
		t := buildTable(zones, prev)
		for _, c := range changes {
			if c.unstepped {
				t.history[c.zone.Name] = nil
			}
		}
		// The serials file reserves a serial before it is served (a crash may lose the
		// snapshot's last second, never a serial); a write here waits only for a zone new to
		// the file, or when a burst of versions outran the renewer.
		if err := s.serials.cover(zones); err != nil {
			s.log.Error().Err(err).Msg("serials not reserved; a restart after a crash may serve an earlier serial")
		}
		s.table.Store(t)
		if served := time.Now(); len(changes) > 0 && batch.events > 0 {
			s.log.Debug().Int("events", batch.events).Int("zones", len(changes)).
				Dur("waited", start.Sub(batch.last)).Dur("project", projected.Sub(start)).Dur("table", served.Sub(projected)).
				Dur("since_first", served.Sub(batch.first)).Dur("since_last", served.Sub(batch.last)).
				Dur("delivered", batch.last.Sub(batch.stored)).Msg("zone version served")
		}
		at := s.now() // the zones changed now: their events carry this time, however late told
		s.proj.describe(changes)
		for i, c := range changes {
			changes[i].at, changes[i].position = at, s.proj.position
			if h := t.history[c.zone.Name]; len(h) > 0 && h[len(h)-1].To == c.zone.Serial {
				changes[i].step = stepOf(h[len(h)-1])
			}
		}
	}
	// The snapshot is taken once the answers are served: it holds the follower back (projMu)
	// and copies every event folded since the last one.
	if (len(changes) > 0 || snaps.pending) && s.o.DataDir != "" && snaps.take(time.Now()) {
		s.projMu.Lock()
		snap := s.proj.save(!snaps.based)
		s.projMu.Unlock()
		snaps.based = true
		// Handed over whether or not an answer changed: the save has taken the state's
		// changes, which no later save holds.
		handOver(saves, snap)
	}
	for _, z := range zones {
		s.o.Metrics.Serial(z.Name, z.Serial)
	}
	push := s.synced
	if k.synced && !s.synced {
		s.markSynced()
	}
	if len(changes) == 0 {
		return nil
	}
	select {
	case s.reports <- report{cause: cmp.Or(k.cause, batch.cause), changes: changes, push: push, state: s.statePosition()}:
	case <-ctx.Done():
	}
	return changes
}

// announceReload has the reporter offer the notifier every zone served that a reload added or
// whose notify list it changed, at the serial served, and forget every zone the reload removed.
// The content of a zone offered may be the same: a secondary added would otherwise wait for the
// zone's next serial, and one removed would still be sent what was queued for it (its sender
// stops once the newest version no longer names it). A zone removed is sent nothing after the
// exchanges in flight. before is the zones served before the reload, changes those the reload's
// refresh reported (offered by the reporter already). The secondaries the zone named before get
// the serial again, which costs each an SOA query: the notifier keeps no record of what each was
// sent. Only the refresher calls it.
func (s *Server) announceReload(ctx context.Context, before []*zone.Zone, changes []zoneChange) {
	was := make(map[string]*zone.Zone, len(before))
	for _, z := range before {
		was[z.Name] = z
	}
	reported := make(map[string]bool, len(changes))
	for _, c := range changes {
		reported[c.zone.Name] = true
	}
	var announce []*zone.Zone
	for _, z := range s.table.Load().zones {
		old := was[z.Name]
		delete(was, z.Name) // what is left was removed
		if reported[z.Name] {
			continue
		}
		// A changed list is offered too when it only lost a secondary: the sender to that one
		// reads the newest version's list and so stops after its exchange in flight.
		if old == nil || !sameSecondaries(z.Config.Notify, old.Config.Notify) {
			announce = append(announce, z)
		}
	}
	var forget []string
	for name := range was {
		forget = append(forget, name)
	}
	if len(announce) == 0 && len(forget) == 0 {
		return
	}
	// Through the reporter, so that it never offers a version older than these after them, nor
	// a zone removed after it is forgotten.
	select {
	case s.reports <- report{announce: announce, forget: forget}:
	case <-ctx.Done():
	}
}

// snapshotNow hands the writer what changed since the last save, as the projection is. Events
// folded since the last refresh may be in it ahead of the zones: a restart from it then takes
// a later serial, never an earlier one. final says the server is stopping. Only the refresher
// calls it.
func (s *Server) snapshotNow(saves chan *snapshotSave, snaps *snapshotPacer, final bool) {
	if s.o.DataDir == "" {
		return
	}
	s.projMu.Lock()
	snap := s.proj.save(!snaps.based)
	s.projMu.Unlock()
	snap.final = final
	snaps.last, snaps.pending, snaps.based = time.Now(), false, true
	handOver(saves, snap)
}

// handOver gives the snapshot writer snap, merged into the save it has not taken yet (the
// later winning), so that the writer is never waited for and no change is left out.
func handOver(saves chan *snapshotSave, snap *snapshotSave) {
	select {
	case old := <-saves:
		snap = old.merge(snap)
	default:
	}
	saves <- snap // never blocks: the refresher is the only sender, and the buffer was just emptied
}

// writeSnapshots writes every save handed over until saves is closed; once the last, a
// stopping server's, is written, the serials it holds are released (a start with the same
// content keeps them).
func (s *Server) writeSnapshots(saves chan *snapshotSave) {
	w := &snapshotWriter{dir: s.o.DataDir}
	defer w.close()
	var last *snapshotSave
	var err error
	for snap := range saves {
		if err = w.write(snap); err != nil {
			s.log.Error().Err(err).Msg("snapshot not saved")
		}
		last = snap
	}
	if last != nil && last.final && err == nil {
		if err := s.serials.release(last.serials); err != nil {
			s.log.Error().Err(err).Msg("serials not released; the next start takes a later serial")
		}
	}
}

// snapshotEvery is the shortest time between two snapshots: in a region's failure a snapshot of
// every STATE subject (tens of megabytes at 10,000 apps) per zone version took most of the
// server's CPU, beside the answering.
const snapshotEvery = time.Second

// snapshotPacer takes a snapshot at most once per snapshotEvery; a change meanwhile is taken when
// due fires, or when the server stops. Only the refresher touches it.
type snapshotPacer struct {
	last    time.Time
	pending bool
	due     <-chan time.Time
	// based says that the writer was handed the whole state once: later saves hand it what
	// changed.
	based bool
}

// take reports whether a snapshot may be taken at now; if not, it is pending until due.
func (p *snapshotPacer) take(now time.Time) bool {
	if now.Sub(p.last) >= snapshotEvery {
		p.last, p.pending = now, false
		return true
	}
	p.pending = true
	if p.due == nil {
		p.due = time.After(p.last.Add(snapshotEvery).Sub(now))
	}
	return false
}

// folded counts the STATE events that changed the view since the last projection, and when
// the first and the last of them were folded; stored is when the stream stored the last.
type folded struct {
	events      int
	first, last time.Time
	stored      time.Time
	// cause is the last event folded once the stream was read to its end: the cause of the
	// version made of them when its kick names none. The refresh that the stream's end asks
	// for (cause "") may start after a transition that came just then was folded, and take it:
	// the transition's own kick then finds nothing to change, and its version named no cause.
	cause string
}

func (f *folded) note(at, stored time.Time) {
	if f.events == 0 {
		f.first = at
	}
	f.events++
	f.last, f.stored = at, stored
}

// sameSecondaries reports whether two notify lists name the same secondaries, in any order
// (the configuration keeps each in one spelling).
func sameSecondaries(a, b []string) bool {
	return len(a) == len(b) && slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// report is a set of zone changes caused by one STATE event, or the zones whose secondaries a
// reload asks to be told of their serial and those it removed.
type report struct {
	cause   string
	changes []zoneChange
	// push says whether to send the zones to their primaries (once STATE has been read), and
	// state is the STATE position they reflect.
	push  bool
	state push.Position
	// announce holds zones to NOTIFY at their served serial (see announceReload).
	announce []*zone.Zone
	// forget names zones a reload removed, whose NOTIFYs not yet sent are dropped.
	forget []string
	// recheck holds the zones served, to offer their pushers again at state (see
	// recheckPushes).
	recheck []*zone.Zone
	// offer holds the zones whose pushers a reload started, to offer them at state (see
	// offerStarted).
	offer []*zone.Zone
}

// reportLoop tells of every zone change, in order: a log line, a ZoneChanged event caused by
// the STATE event, a NOTIFY to the zone's secondaries, and a push to its primary; and it has
// the notifier forget the zones a reload removes and NOTIFY those it announces. The event is
// handed to a recorder: while the DNS stream elects a leader, neither the NOTIFY nor the push
// waits for it.
func (s *Server) reportLoop(ctx context.Context) {
	for {
		var r report
		select {
		case <-ctx.Done():
			return
		case r = <-s.reports:
		}
		for _, c := range r.changes {
			s.log.Info().Str("zone", c.zone.Name).Uint32("serial", c.zone.Serial).Int("changes", len(c.changes)).Str("event_id", r.cause).Msg("zone changed")
			// The digest is made here, off the refresher's path: a zone of 10,000 apps takes
			// milliseconds.
			c.digest = c.zone.Digest()
			s.digests.own(c.zone.Name, c.zone.Serial, c.digest)
			s.recordChange(r.cause, c)
			s.notifier.offer(c.zone)
			if r.push {
				s.offer(c.zone, r.state, false)
			}
		}
		for _, z := range r.recheck {
			s.offer(z, r.state, true)
		}
		for _, z := range r.offer {
			s.offer(z, r.state, false)
		}
		for _, name := range r.forget {
			s.notifier.forget(name)
			s.digests.forget(name)
		}
		for _, z := range r.announce {
			s.notifier.offer(z)
		}
	}
}

// recordChange records the zone's ZoneChanged event, in parts when it outgrows one NATS message
// or the most DNS takes in one, events.MaxDNSMessage (see splitZoneChange). Its id derives,
// under the server's IDKey, from the cause, this server's name and id, the zone and its serial
// (and the part): JetStream drops a second message of one id within its duplicate window, so a
// redelivered cause does not record a version twice, while every version is kept that would
// share the id otherwise: two without a cause (reloads of configurations no event carried), a
// restart's first and the last one before it (both caused by the last STATE event), and each
// DNS server's own. The key, this run's secret, keeps the id from every other writer of the DNS
// stream: JetStream drops a duplicate id whatever its subject, so another server that could
// compute this one's next ids could store them first on its own subject and have this one's
// versions dropped, its IXFR history cut. A restart loses nothing by a new key: its versions
// take serials after every one recorded before (serialsFile).
func (s *Server) recordChange(cause string, c zoneChange) {
	payload := events.ZoneChanged{Zone: c.zone.Name, Serial: c.zone.Serial, Changes: c.changes, Step: c.step, Server: s.id,
		Digest: c.digest, StateSeq: c.position}
	parts, numbered := splitZoneChange(payload, int(min(s.o.JS.Conn().MaxPayload(), events.MaxDNSMessage)))
	for i, p := range parts {
		part := 0
		if numbered {
			part = i + 1
		}
		key := changeKey(s.o.Name, s.id, c.zone.Name, c.zone.Serial, part)
		env := s.idKey.DerivedJSON(events.TypeZoneChanged, s.o.Name, cause, key, cmp.Or(c.at, s.now()), p)
		s.changes.Record(events.ZoneSubject(c.zone.Name, s.writer), env)
	}
}

// changeKey is the key a ZoneChanged event's id derives from (see recordChange): the server's
// name and id, the zone, its serial, and the part when the version is told in parts (0: not).
func changeKey(name, id, zone string, serial uint32, part int) string {
	key := name + "|" + id + "|" + zone + "@" + strconv.FormatUint(uint64(serial), 10)
	if part > 0 {
		key += "#" + strconv.Itoa(part)
	}
	return key
}

// reconfigure makes c the configuration the next refresh projects, with its pushers running
// under ctx, and reports whether it could, and the zones whose pushers it started (a push added,
// or its server, key or settings changed); one that does not compile, or whose keys cannot be
// read, is logged and the last good one kept.
func (s *Server) reconfigure(ctx context.Context, c *config.Config) ([]string, bool) {
	static, err := zone.Compile(c)
	if err != nil {
		s.log.Error().Err(err).Msg("configuration not applied; keeping the last good one")
		return nil, false
	}
	keys, err := transferKeys(c, s.o.CredentialDirs, s.log)
	if err != nil {
		s.log.Error().Err(err).Msg("configuration not applied; keeping the last good one")
		return nil, false
	}
	pushers, err := s.makePushers(c, s.runningPushers())
	if err != nil {
		s.log.Error().Err(err).Msg("configuration not applied; keeping the last good one")
		return nil, false
	}
	s.keys.Store(&keys)
	s.projMu.Lock()
	s.proj.setStatic(static)
	s.static = static
	s.projMu.Unlock()
	s.cfg.Store(c)
	started := s.runPushers(ctx, pushers)
	s.log.Info().Int("zones", len(c.Zones)).Int("apps", len(c.Apps)).Msg("configuration applied")
	return started, true
}
