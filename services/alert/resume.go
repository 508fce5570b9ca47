package alert

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// A sender that starts owes the alerts of the STATE events appended while no sender ran, and
// the retries of the deliveries that were failing when the one before it stopped. It learns
// what was sent from the attempts on ALERTS: a delivery whose attempts ended delivered or
// abandoned is done; one whose last attempt failed is tried again, with its Detour-Delivery id,
// the next attempt number and the retry_for left since its first attempt; an event after the
// last one every delivery had been tried for (AlertAttempt.Tried) is sent to the webhooks no
// attempt tells of. Nothing appended more than its group's retry_for before the start is owed.
// The drill results of DRILLS alike (AlertAttempt.TriedDrills): a drill that ended after the
// last one every drill_result delivery had been tried for is sent to the webhooks no attempt or
// claim tells of, so that one whose sender stopped before it claimed it is sent.

// owed is an event (of STATE, or of DRILLS) the sender owes first attempts for.
type owed struct {
	t   *tried // that follows the event's stream
	seq uint64
	id  string
	n   int // deliveries not tried yet
}

// tried follows which events of one stream (STATE or DRILLS) every delivery has been tried for
// at least once: through is the last event up to which (in the stream's order) each has.
type tried struct {
	mu   sync.Mutex
	open []*owed // by seq
	// held keeps through where it was while the events appended before the start are not yet
	// dispatched: the events dispatched meanwhile come after them.
	held    bool
	through string
}

// add counts n deliveries owed for the event id at seq. An event that owes none (no group is
// told of it, or what it owed was sent before) is tried as it is added: through passes it, so
// that a group or a webhook added since is not sent it.
func (t *tried) add(seq uint64, id string, n int) *owed {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := &owed{t: t, seq: seq, id: id, n: n}
	i, _ := slices.BinarySearchFunc(t.open, seq, func(o *owed, seq uint64) int { return cmp.Compare(o.seq, seq) })
	t.open = slices.Insert(t.open, i, o)
	if n == 0 {
		t.advance()
	}
	return o
}

// settle counts one of o's deliveries tried (or stopped before it could be).
func (o *owed) settle() {
	o.t.mu.Lock()
	defer o.t.mu.Unlock()
	o.n--
	o.t.advance()
}

// release lets through follow the deliveries once those owed from before the start are
// dispatched.
func (t *tried) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held = false
	t.advance()
}

func (t *tried) advance() {
	for !t.held && len(t.open) > 0 && t.open[0].n == 0 {
		t.through = t.open[0].id
		t.open = t.open[1:]
	}
}

// hand counts one of o's deliveries tried (none for a nil o) and calls record with the events
// up to which every delivery has been tried, of STATE (r.tried) and of DRILLS (r.triedDrills),
// all at once: the attempt record hands over is the last of o's event's first attempts to be
// stored, or comes after them, so that a stored attempt never tells of an event whose first
// attempts were not all handed before it.
func (r *runner) hand(o *owed, record func(state, drills string)) {
	r.tried.mu.Lock() // always before r.triedDrills.mu
	defer r.tried.mu.Unlock()
	r.triedDrills.mu.Lock()
	defer r.triedDrills.mu.Unlock()
	if o != nil {
		o.n--
		o.t.advance()
	}
	record(r.tried.through, r.triedDrills.through)
}

// sent is what ALERTS tells of one delivery. It is replaced, never changed, as attempts are
// folded: one handed over stays as it was.
type sent struct {
	done bool // an attempt delivered it, or gave up on it
	// attempt is the last attempt made; first when the first was claimed or recorded; next is
	// when the one after the last failed one was due, wait the backoff after that one. Times are
	// when ALERTS stored the claims and records, by the sender's clock, never their writers'.
	attempt     int
	first, next time.Time
	retryIn     time.Duration
	// claimed is the last attempt claimed, by the sender named claimedBy at claimedAt (by its
	// clock).
	claimed   int
	claimedBy string
	claimedAt time.Time
	// seen is when the sender last heard of the delivery, by its own clock.
	seen time.Time
}

// told reports whether an attempt of the delivery was recorded: a claim alone tells of none.
func (s *sent) told() bool { return s != nil && (s.done || s.attempt > 0) }

// tells reports whether an attempt recorded tells of attempt n: the delivery is done, or attempt
// n or a later one was made.
func (s *sent) tells(n int) bool { return s.told() && (s.done || s.attempt >= n) }

// history is what the attempts stored on ALERTS tell.
type history struct {
	deliveries map[string]*sent
	// tried holds every AlertAttempt.Tried, triedDrills every AlertAttempt.TriedDrills; nil when
	// they are not kept.
	tried, triedDrills map[string]bool
	// unsent holds the deliveries a sender abandoned unsent, for want of room (attempt 0): its
	// records tell of their events as tried, but another sender with room owes them still. Nil
	// when they are not kept, as tried.
	unsent map[string]bool
}

// entry returns a copy of what h tells of delivery id, to change and store again.
func (h history) entry(id string) sent {
	if s := h.deliveries[id]; s != nil {
		return *s
	}
	return sent{}
}

// fold adds one attempt, stored at at, heard of at seen.
func (h history) fold(a events.AlertAttempt, at, seen time.Time) {
	if a.Tried != "" && h.tried != nil {
		h.tried[a.Tried] = true
	}
	if a.TriedDrills != "" && h.triedDrills != nil {
		h.triedDrills[a.TriedDrills] = true
	}
	if a.Attempt == 0 {
		if h.unsent != nil {
			h.unsent[a.Delivery] = true
		}
		return // abandoned by a sender with no room for it, untried: another with room makes it
	}
	s := h.entry(a.Delivery)
	s.seen = seen
	defer func() { h.deliveries[a.Delivery] = &s }()
	if a.Result != events.AlertFailed {
		s.done, s.attempt = true, max(s.attempt, a.Attempt)
		return
	}
	if s.first.IsZero() || at.Before(s.first) {
		s.first = at
	}
	if a.Attempt > s.attempt {
		s.attempt, s.retryIn = a.Attempt, time.Duration(a.RetryInMS)*time.Millisecond
		s.next = at.Add(s.retryIn)
	}
}

// claim adds one claim, made by the sender named by at at (by its clock), stored at stored,
// heard of at seen.
func (h history) claim(c events.AlertClaim, by string, at, stored, seen time.Time) {
	s := h.entry(c.Delivery)
	s.seen = seen
	if s.first.IsZero() || stored.Before(s.first) {
		s.first = stored
	}
	if c.Attempt > s.claimed {
		s.claimed, s.claimedBy, s.claimedAt = c.Attempt, by, at
	}
	h.deliveries[c.Delivery] = &s
}

// backlog holds the facts of STATE appended before the sender started, within the longest
// retry_for of its groups, until ALERTS tells which of their deliveries were made.
type backlog []backlogged

// backlogged is a fact of the STATE event at seq, stored at stamp.
type backlogged struct {
	fact  Fact
	seq   uint64
	stamp time.Time
}

func (b *backlog) add(f Fact, seq uint64, stamp time.Time) {
	*b = append(*b, backlogged{f, seq, stamp})
}

// longestRetry is the longest retry_for of c's groups: no alert of an event older than that is
// owed at the start.
func longestRetry(c *config.Config) time.Duration {
	var d time.Duration
	for _, a := range c.Alerts {
		d = max(d, a.RetryFor.D())
	}
	return d
}

// resume dispatches what b's facts owe, as h tells: each delivery no attempt tells of, to a
// group whose retry_for has not run out at now (by the stream's clock) since the event was
// stored, when the event comes after the last one every delivery had been tried for, or another
// sender abandoned it unsent for want of room; and each delivery whose last attempt failed.
func (r *runner) resume(b *backlog, h history, now time.Time) {
	defer r.tried.release()
	after := uint64(0) // every delivery of an event up to this one was tried
	for _, x := range *b {
		if h.tried[x.fact.Event.ID] {
			after = x.seq
		}
	}
	// The deliveries done are noted first, so that an earlier alert of their subject resumed is
	// not sent after them.
	r.mu.Lock()
	for _, x := range *b {
		for _, d := range r.deliveries(x.fact, x.seq) {
			if s := h.deliveries[d.id]; s != nil && s.done {
				d.noteDone()
			}
		}
	}
	r.mu.Unlock()
	var fresh, resumed, skipped int
	for _, x := range *b {
		seq := x.seq
		r.dispatch(x.fact, &r.tried, seq, func(a *config.Alert, d *delivery) bool {
			if now.Sub(x.stamp) > a.RetryFor.D() {
				return false
			}
			s := h.deliveries[d.id]
			if !s.told() {
				s = nil // claimed at most: its claimer stopped before recording an attempt
			}
			switch {
			case s == nil && (seq > after || h.unsent[d.id]):
				fresh++
				return true
			case s == nil || s.done:
				skipped++ // sent, or owed to no webhook of the group then
				return false
			}
			d.resumed = s
			resumed++
			return true
		})
	}
	r.log.Info().Int("new", fresh).Int("resumed", resumed).Int("skipped", skipped).Int("events", len(*b)).
		Msg("alerts owed from before the start dispatched")
}

// resumeDrills dispatches the drill_result deliveries of b's facts (drills that ended before
// the sender started) whose last attempt, as the ledger tells, failed, or was claimed and never
// recorded (its sender stopped while making it), those no claim or attempt tells of when the
// drill ended after the last one every delivery had been tried for (AlertAttempt.TriedDrills:
// its sender stopped before it claimed them), and those another sender abandoned unsent for want
// of room, to groups whose retry_for has not run out at now (by the stream's clock) since the
// drill ended.
func (r *runner) resumeDrills(b backlog, now time.Time) {
	defer r.triedDrills.release()
	unsent, tried := r.ledger.drillsAtStart()
	after := uint64(0) // every delivery of a drill result up to this one was tried
	for _, x := range b {
		if tried[x.fact.Event.ID] {
			after = x.seq
		}
	}
	fresh, resumed := 0, 0
	for _, x := range b {
		seq := x.seq
		r.dispatch(x.fact, &r.triedDrills, seq, func(a *config.Alert, d *delivery) bool {
			s := r.ledger.get(d.id)
			switch {
			case now.Sub(x.stamp) > a.RetryFor.D():
				return false
			case s == nil && (seq > after || unsent[d.id]):
				fresh++
				return true
			case s == nil || s.done:
				return false
			}
			d.resumed = s
			resumed++
			return true
		})
	}
	r.log.Info().Int("new", fresh).Int("resumed", resumed).Int("events", len(b)).Msg("drill results owed from before the start dispatched")
}
