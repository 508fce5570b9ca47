package alert

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go/jetstream"
)

// A sender that starts owes the alerts of the STATE events appended while no sender ran, and
// the retries of the deliveries that were failing when the one before it stopped. It learns
// what was sent from the attempts on ALERTS: a delivery whose attempts ended delivered or
// abandoned is done; one whose last attempt failed is tried again, with its Detour-Delivery id,
// the next attempt number and the retry_for left since its first attempt; an event after the
// last one every delivery had been tried for (AlertAttempt.Tried) is sent to the webhooks no
// attempt tells of. Nothing appended more than its group's retry_for before the start is owed.

// owed is a STATE event the sender owes first attempts for.
type owed struct {
	seq uint64
	id  string
	n   int // deliveries not tried yet
}

// tried follows which STATE events every delivery has been tried for at least once: through is
// the last event up to which (in STATE order) each has.
type tried struct {
	mu   sync.Mutex
	open []*owed // by seq
	// held keeps through where it was while the events appended before the start are not yet
	// dispatched: the events dispatched meanwhile come after them.
	held    bool
	through string
}

// add counts n deliveries owed for the event id at seq.
func (t *tried) add(seq uint64, id string, n int) *owed {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := &owed{seq: seq, id: id, n: n}
	i, _ := slices.BinarySearchFunc(t.open, seq, func(o *owed, seq uint64) int { return cmp.Compare(o.seq, seq) })
	t.open = slices.Insert(t.open, i, o)
	return o
}

// settle counts one of o's deliveries tried (or stopped before it could be).
func (t *tried) settle(o *owed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o.n--
	t.advance()
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

// hand counts one of o's deliveries tried (none for a nil o) and calls record with the event
// up to which every delivery has been tried, all at once: the attempt record hands over is the
// last of o's event's first attempts to be stored, or comes after them, so that a stored
// attempt never tells of an event whose first attempts were not all handed before it.
func (t *tried) hand(o *owed, record func(through string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o != nil {
		o.n--
		t.advance()
	}
	record(t.through)
}

// sent is what ALERTS tells of one delivery.
type sent struct {
	done bool // an attempt delivered it, or gave up on it
	// attempt is the last attempt made; first when the first was recorded; next is when the
	// one after the last failed one was due, wait the backoff after that one.
	attempt     int
	first, next time.Time
	retryIn     time.Duration
}

// history is what the attempts stored on ALERTS tell.
type history struct {
	deliveries map[string]*sent
	// tried holds every AlertAttempt.Tried.
	tried map[string]bool
}

// fold adds one attempt, recorded at at.
func (h history) fold(a events.AlertAttempt, at time.Time) {
	if a.Tried != "" {
		h.tried[a.Tried] = true
	}
	s := h.deliveries[a.Delivery]
	if s == nil {
		s = &sent{}
		h.deliveries[a.Delivery] = s
	}
	if a.Result != events.AlertFailed {
		s.done = true
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

// readHistory reads the attempts stored on ALERTS from since on, until it has read those stored
// when it began. It waits for ALERTS while it does not answer (its follower says so), so that
// the alerts owed from before the start wait for it, never the role nor the alerts of events
// appended since. ok is false when ctx ended first.
func (r *runner) readHistory(ctx context.Context, since time.Time) (history, bool) {
	h := history{deliveries: map[string]*sent{}, tried: map[string]bool{}}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	caught := false
	f := events.Follower{JS: r.o.JS, Stream: events.StreamAlerts, Log: r.log, Reader: "alerts", Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectAlerts}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since}}
	f.Run(rctx, func(d events.Delivery) {
		if d.Msg != nil {
			var a events.AlertAttempt
			if e, err := events.Decode(d.Data); err == nil && e.Type == events.TypeAlertAttempted && e.Payload(&a) == nil {
				h.fold(a, e.Time)
			}
		}
		if d.CaughtUp {
			caught = true
			stop()
		}
	})
	return h, caught
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
// stored, when the event comes after the last one every delivery had been tried for; and each
// delivery whose last attempt failed.
func (r *runner) resume(b *backlog, h history, now time.Time) {
	defer r.tried.release()
	after := uint64(0) // every delivery of an event up to this one was tried
	for _, x := range *b {
		if h.tried[x.fact.Event.ID] {
			after = x.seq
		}
	}
	var fresh, resumed, skipped int
	for _, x := range *b {
		seq := x.seq
		r.dispatch(x.fact, seq, func(a *config.Alert, d *delivery) bool {
			if now.Sub(x.stamp) > a.RetryFor.D() {
				return false
			}
			s := h.deliveries[d.id]
			switch {
			case s == nil && seq > after:
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
