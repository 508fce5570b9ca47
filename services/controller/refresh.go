package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// ROUTES keeps the last routes of each edge's app within a byte bound, past which JetStream
// discards the oldest messages whatever their subject: an app whose route has not changed for
// months has only an old copy, which other apps' changes would push out, and an edge starting
// then would find no route for it. The controller stores such a route again (a refresh, marked
// with events.EdgeRoute.RefreshOf) once ROUTES has taken half its max_bytes since the copy:
// ROUTES discards a copy only after taking about max_bytes since it (the whole stream is then
// newer), so every current route stays with half the bound to spare, whatever the others' churn.
//
// routeAges counts the bytes ROUTES took from this replica's routes and refreshes since it
// started, and marks where in the stream's sequence the count stood, so that the age of any copy
// (this replica's, another replica's, or one from before its start) is known in bytes, rounded
// towards older. It does no I/O.
type routeAges struct {
	written int64     // bytes ROUTES took from this replica's writes since it started
	marks   []ageMark // ascending seq and written
	// floor is the written count given to a copy older than every mark: a copy from before the
	// start is taken to have as many bytes after it as ROUTES held then (it may be the oldest).
	floor int64
	seqs  map[routeKey]uint64 // the sequence of each route's last copy known
}

// ageMark tells that the copy stored at seq had written bytes before it, or more.
type ageMark struct {
	seq     uint64
	written int64
}

// marksPerBound is how many marks routeAges keeps within one max_bytes of writes: a copy's age
// is rounded towards older by at most max_bytes/marksPerBound.
const marksPerBound = 1024

// routeOverhead bounds what ROUTES stores of a route besides its subject and the route's JSON:
// the envelope and payload fields around it, the headers and the store's own bytes.
const routeOverhead = 512

func newRouteAges(held uint64) *routeAges {
	return &routeAges{floor: -int64(min(held, math.MaxInt64)), seqs: map[routeKey]uint64{}}
}

// routeSize is what ROUTES stores, at most, for k's route (as JSON) on its subject,
// detour.routes.<edge>.<app>.
func routeSize(k routeKey, route []byte) int64 {
	return int64(len("detour.routes..") + len(k.edge) + len(k.app) + len(route) + routeOverhead)
}

// stored notes that ROUTES stored a copy of k's route, the one the controller takes for stored,
// at seq (or, dup, acknowledged one as a duplicate of the copy at seq), taking size bytes, under
// a bound of maxBytes.
func (a *routeAges) stored(k routeKey, seq uint64, dup bool, size, maxBytes int64) {
	a.wrote(seq, dup, size, maxBytes)
	a.seen(k, seq)
}

// wrote notes that ROUTES stored size bytes at seq, under a bound of maxBytes, or, dup, that a
// write was acknowledged as a duplicate of the message at seq. Without a bound (maxBytes 0 or
// less) no mark is kept: no copy ages, and once a bound is set every copy is taken to be as old
// as all that was written since the start. A duplicate's bytes count (another writer stored
// them, uncounted), but its seq marks nothing: it may be far older than the stream's last, and
// every copy after it would look stored just now.
func (a *routeAges) wrote(seq uint64, dup bool, size, maxBytes int64) {
	a.written += size
	if maxBytes <= 0 || dup {
		return
	}
	n := len(a.marks)
	if n == 0 || seq > a.marks[n-1].seq && a.written-a.marks[n-1].written >= max(maxBytes/marksPerBound, 1) {
		a.marks = append(a.marks, ageMark{seq, a.written})
	}
}

// seen notes that the copy of k's route the controller takes for stored is at seq. The two go
// together: a refresh repeats that route after seq, and only if seq is still the last.
func (a *routeAges) seen(k routeKey, seq uint64) { a.seqs[k] = seq }

// forget drops k: no edge routes that app any more.
func (a *routeAges) forget(k routeKey) { delete(a.seqs, k) }

// at is the written count before the copy at seq, or less.
func (a *routeAges) at(seq uint64) int64 {
	i := sort.Search(len(a.marks), func(i int) bool { return a.marks[i].seq > seq })
	if i == 0 {
		return a.floor
	}
	return a.marks[i-1].written
}

// due returns, oldest copy first, the routes whose last copy ROUTES took dueAfter(maxBytes,
// routes) or more since, routes being what the routes themselves take, and the written count at
// which the next falls due (math.MaxInt64 when none would).
func (a *routeAges) due(maxBytes, routes int64) (due []routeKey, next int64) {
	after := dueAfter(maxBytes, routes)
	for len(a.marks) > 1 && a.marks[0].written <= a.written-maxBytes {
		a.floor, a.marks = a.marks[0].written, a.marks[1:] // what is older is due in any case
	}
	next = math.MaxInt64
	for k, seq := range a.seqs {
		if at := a.at(seq); a.written-at >= after {
			due = append(due, k)
		} else {
			next = min(next, at+after)
		}
	}
	sort.Slice(due, func(i, j int) bool { return a.seqs[due[i]] < a.seqs[due[j]] })
	return due, next
}

// dueAfter is how much ROUTES takes after a copy before it is stored again: halfway from what
// the routes themselves take to maxBytes, so that once every route was stored again the first
// copy of the round is not due before other writes come (at half of maxBytes, routes taking
// more than half stored again round after round for as long as the controller ran), and half
// of maxBytes at least, three quarters at most, leaving a quarter for what is written while a
// copy waits for its turn.
func dueAfter(maxBytes, routes int64) int64 {
	return min(max(maxBytes/2+routes/2, maxBytes/2), maxBytes/4*3)
}

// refreshSend is a route to store again after the copy at seq.
type refreshSend struct {
	key     routeKey
	subject string
	seq     uint64
	route   []byte // as JSON
	size    int64
	env     events.Envelope
}

// refreshed is the outcome of a refreshSend that ROUTES answered: the copy stored (seq), or,
// when the subject had moved on (another replica stored the route again, or a new one), its
// last copy as read (route, as JSON, its seq, and the STATE sequence it was computed at).
type refreshed struct {
	send     refreshSend
	seq      uint64
	dup      bool // acknowledged as a duplicate of the copy at seq
	moved    bool
	route    []byte
	stateSeq uint64
}

// refreshChunk bounds the refreshes of one round, in flight at once beside the routes the loop
// sends: the oldest copies due, the next round, on the tick after, taking the next. Rounds of
// every route due, in no order, stored copies that ROUTES held young while older ones waited
// their turn, which ROUTES discarded meanwhile where the routes took over half its max_bytes.
const refreshChunk = 256

// storeRefreshes stores each of sends after the copy it repeats, in order, expecting that copy
// to be still the last of its subject: a replica that refreshed it first, or stored a new
// route, wins, and the copy it stored is read instead (16 subjects at a time, see
// events.LastOf). A subject found holding nothing lost its only copy (ROUTES discarded it
// before its turn came, past a flood faster than the refreshes or a bound lowered): the route is
// stored there again, expecting the subject to still hold nothing. Two replicas refreshing one
// copy store one message (its id derives from the copy). What ROUTES does not answer is left
// out: a later scan sends it again. It runs beside the loop.
func storeRefreshes(ctx context.Context, js jetstream.JetStream, sends []refreshSend) []refreshed {
	out, moved := appendRefreshes(ctx, js, sends, func(s refreshSend) uint64 { return s.seq })
	if len(moved) == 0 {
		return out
	}
	var mu sync.Mutex
	read := map[string]bool{}
	err := events.LastOf(ctx, js, events.StreamRoutes, slices.Collect(maps.Keys(moved)), func(subject string, seq uint64, e events.Envelope) {
		mu.Lock()
		defer mu.Unlock()
		read[subject] = true
		var r events.EdgeRoute
		if e.Type != events.TypeRouteComputed || e.Payload(&r) != nil {
			return
		}
		if b, err := json.Marshal(r.Route); err == nil {
			out = append(out, refreshed{send: moved[subject], seq: seq, moved: true, route: b, stateSeq: r.StateSeq})
		}
	})
	if err != nil {
		return out // a subject not read is refreshed again, conflicts and is read again on a later scan
	}
	var gone []refreshSend
	for subject, s := range moved {
		if !read[subject] {
			gone = append(gone, s)
		}
	}
	stored, _ := appendRefreshes(ctx, js, gone, func(refreshSend) uint64 { return 0 })
	return append(out, stored...)
}

// appendRefreshes stores each of sends expecting its subject's last sequence to be after(it),
// and returns those stored and, by subject, those another writer got to first.
func appendRefreshes(ctx context.Context, js jetstream.JetStream, sends []refreshSend, after func(refreshSend) uint64) ([]refreshed, map[string]refreshSend) {
	var out []refreshed
	moved := map[string]refreshSend{}
	fs := make([]jetstream.PubAckFuture, len(sends))
	for i, s := range sends {
		fs[i], _ = events.AppendAsync(js, s.subject, s.env, after(s))
	}
	actx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	for i, s := range sends {
		if fs[i] == nil {
			continue
		}
		ack, err := events.AppendResult(actx, fs[i], s.env, after(s))
		switch {
		case err == nil:
			out = append(out, refreshed{send: s, seq: ack.Sequence, dup: ack.Duplicate})
		case errors.Is(err, events.ErrConflict):
			moved[s.subject] = s
		}
	}
	return out, moved
}

// refreshKey is the key of the id of a refresh of the copy at seq on subject.
func refreshKey(subject string, seq uint64) string {
	return subject + "|refresh|" + strconv.FormatUint(seq, 10)
}

// refreshRoutes stores again, beside the loop, the routes due (see routeAges), once ROUTES has
// taken enough since the last look for one to be, or when told ROUTES's state: not a route that
// is on its way already, nor while an earlier round is. It warns when the routes themselves take
// over a quarter of ROUTES's max_bytes: refreshes then come as often as the routes' own bytes
// fill half of it, and ROUTES keeps less history.
func (c *controller) refreshRoutes(ctx context.Context, wg *sync.WaitGroup) {
	if !c.routesRead || c.refreshing || c.routesMax <= 0 || c.ages.written < c.refreshAt {
		return
	}
	var total int64
	for edge, apps := range c.published {
		for app, b := range apps {
			total += routeSize(routeKey{edge, app}, b)
		}
	}
	due, next := c.ages.due(c.routesMax, total)
	c.refreshAt = next
	if total > c.routesMax/4 {
		c.routesSmall.Gate(c.log.Warn(), "small").Int64("routes_bytes", total).Int64("max_bytes", c.routesMax).
			Msg("routes take over a quarter of the routes stream's max_bytes: raise it (nats stream edit ROUTES --max-bytes)")
	}
	var sends []refreshSend
	for _, k := range due {
		if len(sends) == refreshChunk {
			break // the next, once this round is stored
		}
		b := c.published[k.edge][k.app]
		var a events.AppRoute
		if c.sending[k] != nil || c.dirty || c.dirtyApps[k.edge][k.app] || b == nil || json.Unmarshal(b, &a) != nil {
			// A new copy is on its way, or may be once computed (a copy stored again says it is
			// the route computed at the replica's STATE position), or none is known.
			continue
		}
		s := refreshSend{key: k, subject: events.AppRouteSubject(k.edge, k.app), seq: c.ages.seqs[k], route: b}
		s.size = routeSize(k, b)
		r := events.EdgeRoute{Edge: k.edge, StateSeq: c.view.LastSeq(), Route: a, RefreshOf: s.seq}
		var err error
		if s.env, err = events.Derived(events.TypeRouteComputed, c.o.Name, "", refreshKey(s.subject, s.seq), c.o.Now(), r); err != nil {
			continue
		}
		sends = append(sends, s)
	}
	if len(sends) == 0 {
		return
	}
	c.refreshing = true
	wg.Go(func() {
		out := storeRefreshes(ctx, c.o.JS, sends)
		select {
		case c.refreshes <- out:
		case <-ctx.Done():
		}
	})
}

// refreshesStored takes the outcome of a round of refreshes, and has the next tick look for
// routes due again. A subject that had moved on holds a copy another replica stored: its route
// is taken for the one stored (never refreshed over it), unless this replica has stored a copy
// after it since it was read (taken, its own later route was never stored again where the
// replica computed the one read back), and computed again should it differ,
// but only when it was computed from less of STATE than this replica folded: one computed from
// more (STATE events this replica has yet to fold, which mark its app once folded) is newer than
// what this replica would compute, and one from as much, under another configuration, is no
// older than it either. An outcome from before ROUTES was created again is dropped: marked, the
// old stream's sequences, past the new one's, left every copy after them unmarked, as old as
// all written since, and every route was stored again every round.
func (c *controller) refreshesStored(rs []refreshed) {
	stale := c.refreshStale
	c.refreshing, c.refreshStale, c.refreshAt = false, false, math.MinInt64
	if stale {
		return
	}
	n := 0
	for _, r := range rs {
		k := r.send.key
		if c.o.Config.EdgeApp(k.edge, k.app) == nil || c.published[k.edge] == nil {
			continue // no longer routed, or taken from the edge and back since
		}
		if !r.moved {
			c.ages.wrote(r.seq, r.dup, r.send.size, c.routesMax)
			if bytes.Equal(r.send.route, c.published[k.edge][k.app]) {
				c.ages.seen(k, r.seq) // else a new route was stored after it meanwhile
			}
			n++
			continue
		}
		if r.seq < c.ages.seqs[k] {
			continue // read before a copy this replica stored since, which holds the later route
		}
		c.ages.seen(k, r.seq)
		if !bytes.Equal(r.route, c.published[k.edge][k.app]) {
			c.published[k.edge][k.app] = r.route
			if r.stateSeq < c.view.LastSeq() {
				c.markApp(k.edge, k.app)
			}
		}
	}
	if n > 0 {
		c.log.Info().Int("routes", n).Int64("max_bytes", c.routesMax).Msg("unchanged routes stored again before the routes stream discards them")
	}
}
