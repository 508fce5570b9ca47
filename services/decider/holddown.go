package decider

import (
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// A hold-down under way is recorded in STATE, on the endpoint's events.HoldDownSubject: when it
// began (events.TypeHoldDownStarted, dated when the voting regions turned healthy, caused by the
// result that made them) and when it was cancelled before it ended (events.TypeHoldDownCancelled).
// A starting decider reads back less than a hold-down of PROBES; it reads the last of these
// events with the last of every STATE subject, and resumes the hold-down from when it began
// (decide.Endpoint.Resume), so that the endpoint comes back when it would have had no decider
// restarted. The events' ids derive from the result that began the hold-down, so replicas
// appending one store one copy (JetStream's duplicate window); they are appended without an
// expected sequence, as they record no status and the last one wins.

// rearm notes when a tick must next look at s (index.rearm), and records in STATE a hold-down
// of s that began or was cancelled since STATE last recorded one.
func (d *decider) rearm(s *endpointSlot) {
	d.ix.rearm(s)
	if d.live {
		d.noteHoldDown(s)
	}
}

// readBack is Options.replay of the configuration in force, without a walk of its apps: the fold
// loop asks it at each result of an endpoint in a hold-down.
func (d *decider) readBack() time.Duration {
	if d.o.Replay > 0 {
		return d.o.Replay
	}
	return d.ix.replay
}

// holdAppend is a hold-down event sent to STATE whose answer has not come, or that failed at once
// (f nil, err set). since and cause are the hold-down it records (zero for a cancellation),
// heldSince and heldCause the one this replica's view had before; logged is set once its failure
// was logged, so that an append failing again and again logs once.
type holdAppend struct {
	subject          string
	ev               events.Envelope
	f                jetstream.PubAckFuture
	err              error
	since, heldSince time.Time
	cause, heldCause string
	logged           bool
}

// noteHoldDown appends the start or the cancellation of s's hold-down when this replica's view of
// it changed since it last looked, unless STATE records that already (another replica's copy, or
// the hold-down resumed at start). A hold-down that ended with the endpoint up needs none: the up
// transition follows it on the endpoint's subject. One that ran out while an override or a drill
// keeps the endpoint out is still this replica's view until the endpoint comes up, or its regions
// turn unhealthy and cancel it: no up transition follows it, and a decider starting after a
// failure it does not read back would otherwise resume it and bring the endpoint up at once.
func (d *decider) noteHoldDown(s *endpointSlot) {
	since, cause := s.st.HoldDown()
	if since.IsZero() && s.st.Probed == events.StatusUp && s.st.Status != events.StatusUp {
		return
	}
	if !since.IsZero() && d.streamNow(d.o.Now()).Sub(since) < d.readBack()/2 {
		// A starting decider reads this hold-down back whole from PROBES: it is recorded at a
		// result once it has lasted half the read-back (of the configuration in force), so that
		// an endpoint flapping appends nothing (STATE refuses appends once its reserve is full).
		since, cause = time.Time{}, ""
	}
	if since.Equal(s.hold.heldSince) && cause == s.hold.heldCause {
		return
	}
	heldSince, began := s.hold.heldSince, s.hold.heldCause
	s.hold.heldSince, s.hold.heldCause = since, cause
	switch {
	case !since.IsZero() && since.Equal(s.hold.since) && cause == s.hold.cause:
		return
	case !since.IsZero() && (cause == s.hold.cancelled || since.Before(s.hold.since)):
		// STATE records this hold-down cancelled, or a later one begun: this replica lags behind
		// the one that recorded it by more than STATE's duplicate window, and its copy would be
		// stored after that record, to be resumed by the next decider starting.
		return
	case since.IsZero() && s.st.Probed == events.StatusUp:
		s.hold.since, s.hold.cause = time.Time{}, ""
		return
	}
	a := holdAppend{subject: s.holdSubject, since: since, cause: cause, heldSince: heldSince, heldCause: began}
	p := s.pool
	typ, evCause, at, note := events.TypeHoldDownStarted, cause, since, "hold-down began"
	if since.IsZero() {
		typ, evCause, at, note = events.TypeHoldDownCancelled, began, d.streamNow(d.o.Now()), "hold-down cancelled"
	}
	h := events.HoldDown{App: p.app.cfg.Name, Pool: p.cfg.Name, Endpoint: s.cfg.Name, Address: s.cfg.Address, HoldDown: p.app.policy.HoldDown.String(),
		Reason: s.st.Explain(s.status, at, p.app.policy, evCause, note).Reason}
	s.hold.since, s.hold.cause = since, cause
	ev, err := events.Derived(typ, d.o.Name, evCause, s.holdSubject, at, h)
	if err != nil {
		d.log.Error().Err(err).Str("subject", s.holdSubject).Msg("build hold-down event failed")
		return
	}
	a.ev = ev
	if a.f, a.err = events.PublishAsync(d.js, s.holdSubject, ev); a.err != nil {
		a.f = nil
	}
	d.holdAppends = append(d.holdAppends, a)
}

// landHoldDowns forgets the hold-down events STATE answered, and appends again those it refused or
// did not answer in time (events.AsyncAckTimeout) where the endpoint's view still differs from
// what STATE records: a cancellation lost would have a decider starting after a silence resume the
// hold-down it cancelled, and bring the endpoint up at once.
func (d *decider) landHoldDowns() {
	var failed []holdAppend
	kept := d.holdAppends[:0]
	for _, a := range d.holdAppends {
		if a.f != nil {
			select {
			case <-a.f.Ok():
				continue
			case a.err = <-a.f.Err():
			default:
				kept = append(kept, a)
				continue
			}
		}
		failed = append(failed, a)
	}
	clear(d.holdAppends[len(kept):])
	d.holdAppends = kept
	for _, a := range failed {
		if !a.logged {
			d.log.Warn().Err(a.err).Str("subject", a.subject).Str("type", a.ev.Type).Str("event_id", a.ev.ID).Msg("append hold-down failed")
		}
		s := d.ix.holdDowns[a.subject]
		if s == nil || !s.hold.since.Equal(a.since) || s.hold.cause != a.cause {
			continue // the endpoint is gone, or STATE records a newer hold-down event
		}
		// STATE records what it did before: the view this replica had then, as far as it knows.
		s.hold.since, s.hold.cause, s.hold.heldSince, s.hold.heldCause = a.heldSince, a.heldCause, a.heldSince, a.heldCause
		n := len(d.holdAppends)
		d.noteHoldDown(s)
		if len(d.holdAppends) > n && d.holdAppends[n].ev.ID == a.ev.ID {
			d.holdAppends[n].logged = true
		}
	}
}

// recordHoldDown notes a hold-down event STATE holds on s's hold-down subject at seq, unless a
// newer one is known.
func (s *endpointSlot) recordHoldDown(seq uint64, e events.Envelope) {
	if seq <= s.hold.seq {
		return
	}
	s.hold.holdRecord = holdRecord{seq: seq}
	var h events.HoldDown
	switch {
	case e.Type == events.TypeHoldDownStarted && e.Payload(&h) == nil:
		s.hold.since, s.hold.cause, s.hold.address = e.Time, e.Cause, h.Address
		s.hold.length, _ = time.ParseDuration(h.HoldDown)
	case e.Type == events.TypeHoldDownCancelled:
		s.hold.cancelled = e.Cause
	}
}

// resumeHoldDown hands the hold-down STATE records under way to s's pure state, once STATE is
// read and s restored, at now on the streams' clock: one begun at the endpoint's address, that
// may still be under way. Where the endpoint's last transition took it down, it may follow the
// start: an override that forced the endpoint up and was cleared, or a drill, changes its status,
// not the probes' view, and leaves the hold-down under way (the probes turning unhealthy cancel
// it, and STATE records that); one that may have run out (by the hold_down it was begun under or
// the one in force, whichever is shorter) before the endpoint went down again is over: the
// endpoint came up, and a failure took it down. Where an override is in force, or the drill
// whose failure STATE records last (restoreDrill), the status STATE records is theirs and says
// nothing of the probes, and a hold-down that runs out under it records nothing: it is under way unless the hold_down in force, which a version lengthening
// it applies to a hold-down under way, has run out by now; the override cleared then leaves the
// endpoint down until it ends. It is this replica's view from then on, so that the results read
// back cancelling it record that.
func (s *endpointSlot) resumeHoldDown(now time.Time) {
	if s.hold.since.IsZero() || s.hold.address != s.cfg.Address {
		return
	}
	hold := s.pool.app.policy.HoldDown
	switch {
	case s.st.Own != nil || s.st.Pool != nil || s.st.Drill != nil:
		if !now.Before(s.hold.since.Add(hold)) {
			return
		}
	case s.status != events.StatusDown:
		return
	default:
		if s.hold.length > 0 && s.hold.length < hold {
			hold = s.hold.length
		}
		if !s.since.Before(s.hold.since.Add(hold)) {
			return
		}
	}
	s.st.Resume(s.hold.since, s.hold.cause)
	s.hold.heldSince, s.hold.heldCause = s.hold.since, s.hold.cause
}
