package alert

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Several controllers run a sender each on one STATE, and each would deliver every alert. So a
// sender claims each attempt on ALERTS before it makes it: an AlertClaim on a subject of its own
// for that attempt of that delivery (events.AlertClaimSubject), appended only while the subject
// holds nothing, so that JetStream stores the first claim and refuses the others, however late
// they come (a sender whose connection came back after ALERTS' duplicate window, a window an
// operator shortened), and for as long as ALERTS keeps the claim. The one whose claim is stored
// makes the attempt, without waiting for anything more; the others wait for its record, which
// they read on ALERTS (the ledger), and go on as it tells: delivered or abandoned ends the
// delivery, failed has each claim the next attempt when it is due. The record is stored on the
// claim's subject, after the claim (attemptSubject), so that a sender that heard of none within
// TakeOver reads it there, from ALERTS' leader, before it takes the attempt over (recorded): its
// consumer of ALERTS may have stopped reading, its node hung, or read a replica that lags, while
// the record was stored. An attempt claimed and not recorded within TakeOver (its sender
// stopped, or lost NATS, while making it) is taken over: the others claim the next one, so that
// the alert is still sent, at least once. A sender that
// finds an attempt claimed under its own name before it started (by its run before a restart)
// takes it over at once.

// claimTimeout bounds storing a claim. A claim not answered by then (ALERTS electing a leader,
// NATS away) lets the sender make the attempt all the same: while ALERTS does not answer, two
// senders may both deliver, never none. The next attempt of that delivery is claimed again,
// within a tenth of claimTimeout, so that its retries do not each wait a second while ALERTS is
// away, and are made once again as soon as it answers.
const claimTimeout = time.Second

// ledger is what ALERTS tells of the deliveries, followed for as long as the sender runs: the
// attempts recorded and claimed by every sender.
type ledger struct {
	mu sync.Mutex
	h  history
	// changed is closed, and replaced, when an attempt or a claim is folded.
	changed chan struct{}
	// swept is when deliveries not heard of for long were last forgotten.
	swept time.Time
	// caught is closed once the ledger holds what ALERTS held when the sender began reading it.
	caught chan struct{}
	// unsent are the deliveries abandoned unsent that ALERTS held then (history.unsent),
	// triedDrills its marks of DRILLS (AlertAttempt.TriedDrills) and groups the groups of its
	// attempts (history.groups), from told on until resumeDrills takes them.
	unsent      map[string]bool
	triedDrills map[mark]bool
	groups      map[string][]string
}

func newLedger() *ledger {
	return &ledger{h: history{deliveries: map[string]*sent{}, tried: map[mark]bool{}, triedDrills: map[mark]bool{}, unsent: map[string]bool{},
		groups: map[string][]string{}},
		changed: make(chan struct{}), caught: make(chan struct{})}
}

// add folds e, stored on ALERTS at stored (by the sender's clock, whatever the clock of
// the sender that wrote it), the zero Envelope for a message that does not decode, heard of at
// now, and wakes those waiting for it. Once a minute it forgets the deliveries not heard of for
// keep(), asked then only, and not under the ledger's lock: keep takes the runner's, which the
// dispatch of the drill results owed at the start holds while it reads the ledger
// (resumeDrills). Asked under the ledger's lock, a fold that came as that dispatch ran left
// both waiting for ever: the sender sent no alert more and did not stop.
func (l *ledger) add(e events.Envelope, stored, now time.Time, keep func() time.Duration) {
	l.mu.Lock()
	switch e.Type {
	case events.TypeAlertAttempted:
		var a events.AlertAttempt
		if e.Payload(&a) == nil {
			l.h.fold(a, e.Source, e.Cause, stored, now)
		}
	case events.TypeAlertClaimed:
		var c events.AlertClaim
		if e.Payload(&c) == nil {
			l.h.claim(c, e.Source, e.Time, stored, now)
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
	sweep := now.Sub(l.swept) > time.Minute
	if sweep {
		l.swept = now
	}
	l.mu.Unlock()
	if !sweep {
		return
	}
	kept := keep()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, s := range l.h.deliveries {
		if now.Sub(s.seen) > kept {
			delete(l.h.deliveries, id)
		}
	}
}

// told hands over what the attempts folded so far tell, for resume; from then on the ledger
// keeps no AlertAttempt.Tried nor TriedDrills, nor the deliveries abandoned unsent, nor the
// groups of the attempts.
func (l *ledger) told() history {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := history{deliveries: make(map[string]*sent, len(l.h.deliveries)), tried: l.h.tried, unsent: l.h.unsent, groups: l.h.groups}
	for id, s := range l.h.deliveries {
		h.deliveries[id] = s // a sent is replaced, never changed, as attempts are folded
	}
	l.unsent, l.triedDrills, l.groups = l.h.unsent, l.h.triedDrills, l.h.groups
	l.h.tried, l.h.triedDrills, l.h.unsent, l.h.groups = nil, nil, nil, nil
	return h
}

// drillsAtStart hands over, once told, the deliveries abandoned unsent that ALERTS held when the
// sender began reading it, the AlertAttempt.TriedDrills and the groups of the attempts it held,
// and forgets them.
func (l *ledger) drillsAtStart() (unsent map[string]bool, tried map[mark]bool, groups map[string][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	unsent, tried, groups = l.unsent, l.triedDrills, l.groups
	l.unsent, l.triedDrills, l.groups = nil, nil, nil
	return unsent, tried, groups
}

// get returns what the ledger tells of delivery id, nil when nothing.
func (l *ledger) get(id string) *sent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.h.deliveries[id]
}

// await waits until the ledger tells of attempt n of delivery id, or a later one, or that the
// delivery is done, and returns what it tells. It returns nil when nothing is told within
// bound, at once when attempt n was claimed by name before started (the run of this sender
// before a restart, which will record nothing), and when ctx ends.
func (l *ledger) await(ctx context.Context, id string, n int, bound time.Duration, name string, started time.Time) *sent {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		l.mu.Lock()
		s, changed := l.h.deliveries[id], l.changed
		l.mu.Unlock()
		switch {
		case s.tells(n):
			return s
		case s != nil && s.claimed >= n && s.claimedBy == name && s.claimedAt.Before(started):
			return nil
		}
		select {
		case <-changed:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// watch follows ALERTS from since on into r.ledger until ctx ends, skew being how far the
// stream's clock is ahead of r.o.Now. Once it has read what ALERTS held when it began it hands
// what that tells to told, when told is not nil, and closes r.ledger.caught. It waits for ALERTS
// while it does not answer (its follower says so), so that neither the role nor the alerts of
// events appended since wait for it. It warns, once for each, of the controllers of an earlier
// version that record attempts once it has read what ALERTS held when it began (see earlier):
// those run now.
func (r *runner) watch(ctx context.Context, since time.Time, skew time.Duration, told chan<- history) {
	f := events.Follower{JS: r.o.JS, Stream: events.StreamAlerts, Log: r.log, Reader: "alerts", Bridge: events.BridgeNext, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectAlerts}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since}}
	caught := false
	warned := map[string]bool{} // the earlier controllers warned of
	f.Run(ctx, func(d events.Delivery) {
		if d.Msg != nil {
			e, _ := events.Decode(d.Data)
			r.ledger.add(e, d.Stamp.Add(-skew), r.o.Now(), r.keep)
			if group, ok := r.earlier(d.Subject, e); ok && caught && !warned[e.Source] {
				warned[e.Source] = true
				r.log.Warn().Str("recorded_by", e.Source).Str("alert", group).
					Msg("a controller of an earlier version sends alerts beside this one: each alert is sent twice until it stops")
			}
		}
		if d.CaughtUp && !caught {
			caught = true
			if h := r.ledger.told(); told != nil {
				told <- h
			}
			close(r.ledger.caught)
		}
	})
}

// earlier reports whether e, stored on subject and folded into the ledger, is an attempt an
// earlier controller recorded, one that claims no attempt and sends every alert, and returns its
// group: an attempt made (1 or later) recorded on the group's subject, where this version records
// only those abandoned unsent, and not claimed by its recorder. The versions between claiming
// attempts and recording them on their claim's subject claimed the attempt first: the ledger
// holds their claim. An attempt another controller claimed and this one recorded was sent twice.
func (r *runner) earlier(subject string, e events.Envelope) (string, bool) {
	var a events.AlertAttempt
	if e.Type != events.TypeAlertAttempted || e.Payload(&a) != nil || a.Attempt < 1 {
		return "", false
	}
	if tok := events.SplitSubject(subject, "detour.alert"); len(tok) != 1 || tok[0] != a.Alert {
		return "", false
	}
	// Asked only then: the ledger's lock is wanted by every delivery waiting for a record.
	s := r.ledger.get(a.Delivery)
	return a.Alert, s == nil || s.claimed < a.Attempt || s.claimedBy != e.Source
}

// keep is how long the ledger remembers a delivery it has not heard of since: past it, no
// sender retries the delivery.
func (r *runner) keep() time.Duration {
	return longestRetry(r.current()) + r.o.MaxBackoff + r.o.TakeOver
}

// claim takes attempt n of d for this sender before it makes it, and reports whether it did:
// false when another sender's claim of it was stored first (refused, answered as a duplicate, or
// as being stored), or when the ledger tells of that attempt or a later one already (a sender
// that came to the delivery late). A claim not stored within claimTimeout is logged, once until
// a claim of d is answered again, and the attempt made.
func (r *runner) claim(ctx context.Context, d *delivery, n int) bool {
	if s := r.ledger.get(d.id); s.tells(n) {
		return false
	}
	c := events.AlertClaim{Alert: d.group.Name, Kind: d.kind, Webhook: target(d.url), Delivery: d.id, Attempt: n}
	e, err := events.Derived(events.TypeAlertClaimed, r.o.Name, d.fact.Event.ID, d.id+"|"+strconv.Itoa(n), r.o.Now(), c)
	if err == nil {
		bound := claimTimeout
		if d.unclaimed {
			bound /= 10
		}
		cctx, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		var ack *jetstream.PubAck
		ack, err = events.Append(cctx, r.o.JS, events.AlertClaimSubject(d.group.Name, d.id, n), e, 0)
		switch {
		case err == nil:
			d.unclaimed = false
			return !ack.Duplicate
		case errors.Is(err, events.ErrConflict):
			d.unclaimed = false
			return false // another sender's claim of it was stored first, or is being stored
		}
	}
	if ctx.Err() == nil && !d.unclaimed {
		r.log.Warn().Err(err).Str("alert", c.Alert).Str("webhook", c.Webhook).Str("delivery", c.Delivery).Int("attempt", n).
			Msg("alert attempt not claimed: the delivery goes on without asking the other controllers")
	}
	d.unclaimed = true
	return true
}
