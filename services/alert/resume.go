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
// the next attempt number and the retry_for left since its first attempt; an event that no
// mark vouches for (see marks) is sent to the webhooks no attempt tells of. Nothing appended
// more than its group's retry_for before the start is owed. The drill results of DRILLS alike
// (AlertAttempt.TriedDrills): a drill's end no mark vouches for is sent to the webhooks no
// attempt or claim tells of, so that one whose sender stopped before it claimed it is sent.
//
// A mark vouches only for the deliveries its sender owed: a sender whose groups differ (one
// that took a configuration version the other has not yet, a replica started with another
// file) tried none of this one's, and a mark of its taken for this one's lost them. So a mark
// vouches, to a sender whose groups have its digest (AlertAttempt.TriedFor), for the events
// from its since through its through; and the sender's own marks from before its restart, of
// whatever groups, for every event through theirs: a webhook or group it holds now that it did
// not then is taken as added since, and not sent what came before.

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
	held       bool
	through    string
	throughSeq uint64
	// set is the digest of the groups (deliverySet) the last event was dispatched for, since
	// the first event (in the stream's order) dispatched for them after from: the events up to
	// from are those the sender skipped at the start on its own marks alone (see resume), and
	// those up to the last one dispatched (top) when the groups changed, which vouch for nothing
	// to another sender: an event owed from before the start may be dispatched for the new
	// groups after a later one was for the groups before.
	set, since string
	sinceSeq   uint64
	from, top  uint64
}

// add counts n deliveries owed for the event id at seq, dispatched for the groups whose digest
// is set. An event that owes none (no group is told of it, or what it owed was sent before) is
// tried as it is added: through passes it, so that a group or a webhook added since is not sent
// it.
func (t *tried) add(seq uint64, id string, n int, set string) *owed {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := &owed{t: t, seq: seq, id: id, n: n}
	i, _ := slices.BinarySearchFunc(t.open, seq, func(o *owed, seq uint64) int { return cmp.Compare(o.seq, seq) })
	t.open = slices.Insert(t.open, i, o)
	if set != t.set {
		t.set, t.since, t.sinceSeq, t.from = set, "", 0, max(t.from, t.top)
	}
	t.top = max(t.top, seq)
	if seq > t.from && (t.since == "" || seq < t.sinceSeq) {
		t.since, t.sinceSeq = id, seq
	}
	if n == 0 {
		t.advance()
	}
	return o
}

// vouchAfter keeps the events up to seq out of what the marks vouch for to other senders.
func (t *tried) vouchAfter(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.from = max(t.from, seq)
	if t.sinceSeq <= seq {
		t.since, t.sinceSeq = "", 0
	}
}

// mark returns what t vouches for to a record made for the groups whose digest is set: since
// only when the events from it through through were dispatched for them; under t.mu.
func (t *tried) mark(set string) mark {
	m := mark{through: t.through, set: set}
	if t.set == set && t.since != "" && t.sinceSeq <= t.throughSeq {
		m.since = t.since
	}
	return m
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
		t.through, t.throughSeq = t.open[0].id, t.open[0].seq
		t.open = t.open[1:]
	}
}

// hand counts one of o's deliveries tried (none for a nil o) and calls record with the marks of
// STATE (r.tried) and of DRILLS (r.triedDrills), all at once: the attempt record hands over is
// the last of o's event's first attempts to be stored, or comes after them, so that a stored
// attempt never tells of an event whose first attempts were not all handed before it.
func (r *runner) hand(o *owed, record func(state, drills mark)) {
	r.mu.Lock()
	set := r.set
	r.mu.Unlock()
	r.tried.mu.Lock() // always before r.triedDrills.mu
	defer r.tried.mu.Unlock()
	r.triedDrills.mu.Lock()
	defer r.triedDrills.mu.Unlock()
	if o != nil {
		o.n--
		o.t.advance()
	}
	record(r.tried.mark(set), r.triedDrills.mark(set))
}

// mark is what an attempt's record tells of the events of one stream tried (AlertAttempt.Tried
// and TriedDrills): every delivery its sender, by, owed to the groups whose digest is set was
// tried for the events from since through through (in the stream's order); since is empty when
// it vouches for none to another sender.
type mark struct{ through, since, set, by string }

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
	// tried holds the marks of STATE of every attempt, triedDrills those of DRILLS; nil when
	// they are not kept.
	tried, triedDrills map[mark]bool
	// unsent holds the deliveries a sender abandoned unsent, for want of room (attempt 0): its
	// records tell of their events as tried, but another sender with room owes them still. Nil
	// when they are not kept, as tried.
	unsent map[string]bool
	// groups names, by event (an attempt's cause), the groups of the attempts made for it
	// (see hadUnder); nil when they are not kept, as tried.
	groups map[string][]string
}

// entry returns a copy of what h tells of delivery id, to change and store again.
func (h history) entry(id string) sent {
	if s := h.deliveries[id]; s != nil {
		return *s
	}
	return sent{}
}

// fold adds one attempt made for the event cause, recorded by the sender named by, stored at at,
// heard of at seen.
func (h history) fold(a events.AlertAttempt, by, cause string, at, seen time.Time) {
	if a.Tried != "" && h.tried != nil {
		h.tried[mark{through: a.Tried, since: a.TriedSince, set: a.TriedFor, by: by}] = true
	}
	if a.TriedDrills != "" && h.triedDrills != nil {
		h.triedDrills[mark{through: a.TriedDrills, since: a.TriedDrillsSince, set: a.TriedFor, by: by}] = true
	}
	if a.Attempt > 0 && h.groups != nil && !slices.Contains(h.groups[cause], a.Alert) {
		h.groups[cause] = append(h.groups[cause], a.Alert)
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

// vouched is which events of a backlog the marks vouch for, by their sequence: those within
// spans (each a mark's since and through, of another sender with the same groups), and every
// one up to own, the last event the sender's own marks tell of.
type vouched struct {
	spans [][2]uint64
	own   uint64
}

// covers reports whether the event at seq is vouched for.
func (v vouched) covers(seq uint64) bool {
	return seq <= v.own || slices.ContainsFunc(v.spans, func(s [2]uint64) bool { return s[0] <= seq && seq <= s[1] })
}

// vouchedFor returns which events of b the marks vouch for to the sender named name whose
// groups' digest is set, as the top of this file says.
func vouchedFor(marks map[mark]bool, b backlog, set, name string) vouched {
	seqs := make(map[string]uint64, len(b))
	for _, x := range b {
		seqs[x.fact.Event.ID] = x.seq
	}
	var v vouched
	for m := range marks {
		through, ok := seqs[m.through]
		if !ok {
			continue // before what is owed, or an event this sender's groups are not told of
		}
		if m.by == name {
			v.own = max(v.own, through)
		}
		if m.set == set && m.since != "" {
			v.spans = append(v.spans, [2]uint64{seqs[m.since], through}) // a since before what is owed counts as 0
		}
	}
	return v
}

// hadUnder reports whether an attempt of fact's event to url was made (told tells, by delivery
// id) under one of groups, the groups ALERTS tells of attempts of it under, that does not send
// this sender the event at url: a group a version renamed, took the webhook from or no longer
// tells of the event (another group told of it at that webhook since), or another controller's.
// The webhook had the event, under another Detour-Delivery id: sent for this sender's group, no
// mark vouching for it, it would come twice. Under r.mu.
func (r *runner) hadUnder(groups []string, fact Fact, url string, told func(delivery string) bool) bool {
	return slices.ContainsFunc(groups, func(g string) bool {
		return !r.sends(g, fact, url) && told(events.DerivedID(fact.Event.ID, g+"|"+url))
	})
}

// sends reports whether this sender's group named g delivers fact to url; under r.mu.
func (r *runner) sends(g string, fact Fact, url string) bool {
	i := slices.IndexFunc(r.groups.Alerts, func(a config.Alert) bool { return a.Name == g })
	return i >= 0 && r.sinks[sinkKey(g, url)] != nil && Matches(&r.groups.Alerts[i], fact) != ""
}

// told reports whether an attempt of delivery id is told of.
func (h history) told(id string) bool { return h.deliveries[id].told() }

// resume dispatches what b's facts owe, as h tells: each delivery no attempt tells of, to a
// group whose retry_for has not run out at now (by the stream's clock) since the event was
// stored, when no mark vouches for the event, or another sender abandoned it unsent for want
// of room; and each delivery whose last attempt failed.
func (r *runner) resume(b *backlog, h history, now time.Time) {
	defer r.tried.release()
	v := vouchedFor(h.tried, *b, r.deliverySet(), r.o.Name)
	r.tried.vouchAfter(v.own)
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
			case s == nil && (h.unsent[d.id] || !v.covers(seq) && !r.hadUnder(h.groups[x.fact.Event.ID], x.fact, d.url, h.told)):
				fresh++
				return true
			case s == nil || s.done:
				skipped++ // sent (under this group or another), or owed to no webhook of the group then
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
// recorded (its sender stopped while making it), those no claim or attempt tells of when no
// mark vouches for the drill's end (AlertAttempt.TriedDrills: its sender stopped before it
// claimed them), and those another sender abandoned unsent for want of room, to groups whose
// retry_for has not run out at now (by the stream's clock) since the drill ended.
func (r *runner) resumeDrills(b backlog, now time.Time) {
	defer r.triedDrills.release()
	unsent, tried, groups := r.ledger.drillsAtStart()
	told := func(id string) bool { return r.ledger.get(id).told() }
	v := vouchedFor(tried, b, r.deliverySet(), r.o.Name)
	r.triedDrills.vouchAfter(v.own)
	fresh, resumed := 0, 0
	for _, x := range b {
		seq := x.seq
		r.dispatch(x.fact, &r.triedDrills, seq, func(a *config.Alert, d *delivery) bool {
			s := r.ledger.get(d.id)
			switch {
			case now.Sub(x.stamp) > a.RetryFor.D():
				return false
			case s == nil && (unsent[d.id] || !v.covers(seq) && !r.hadUnder(groups[x.fact.Event.ID], x.fact, d.url, told)):
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
