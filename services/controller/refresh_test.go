package controller

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/logs"
	"github.com/rs/zerolog"
)

// TestARouteFallsDueOnceROUTESTookHalfItsBoundSinceItsCopy: routeAges ages each route's last
// copy by the bytes ROUTES took since, rounded towards older: a copy read at start, which may be
// ROUTES's oldest, as old as ROUTES's bytes then; a copy stored since, from the bytes written
// after it. A route falls due at half of max_bytes, long before ROUTES could discard it.
func TestARouteFallsDueOnceROUTESTookHalfItsBoundSinceItsCopy(t *testing.T) {
	const maxBytes = 1 << 20
	stable, fresh, flapping := routeKey{"edge-a", "stable"}, routeKey{"edge-a", "fresh"}, routeKey{"edge-b", "flapping"}
	due := func(a *routeAges) []routeKey {
		d, _ := a.due(maxBytes, 0)
		slices.SortFunc(d, cmpKey)
		return d
	}
	// ROUTES held a quarter of its bound at start: the copies read then fall due after another
	// quarter.
	a := newRouteAges(maxBytes / 4)
	a.seen(stable, 10)
	a.stored(fresh, 20, false, 1000, maxBytes)
	if d := due(a); len(d) != 0 {
		t.Fatalf("due at start: %v, want none", d)
	}
	seq := uint64(20)
	for a.written < maxBytes/4-1000 {
		seq++
		a.stored(flapping, seq, false, 1000, maxBytes)
	}
	if d := due(a); len(d) != 0 {
		t.Fatalf("due before a quarter of the bound was written: %v, want none", d)
	}
	for a.written < maxBytes/4+1000 {
		seq++
		a.stored(flapping, seq, false, 1000, maxBytes)
	}
	if d := due(a); !slices.Equal(d, []routeKey{stable}) {
		t.Fatalf("due once a quarter of the bound was written since the start: %v, want %v, read at start", d, []routeKey{stable})
	}
	// Stored again: fresh until another half of the bound is written after it; the copy stored
	// after start falls due half a bound after it, the flapping route never.
	seq++
	a.stored(stable, seq, false, 1000, maxBytes)
	_, next := a.due(maxBytes, 0)
	for a.written < maxBytes/2+2000 {
		seq++
		a.stored(flapping, seq, false, 1000, maxBytes)
	}
	if d := due(a); !slices.Equal(d, []routeKey{fresh}) {
		t.Fatalf("due once half the bound was written since the start: %v, want %v", d, []routeKey{fresh})
	}
	if next > 20_000+maxBytes/2 { // fresh's copy: rounded towards older by a mark at most
		t.Errorf("next due at %d written, want by %d (fresh's copy)", next, 20_000+maxBytes/2)
	}
	if len(a.marks) > 2*marksPerBound {
		t.Errorf("%d marks for %d bytes written, want at most %d", len(a.marks), a.written, 2*marksPerBound)
	}
	a.forget(fresh)
	if d := due(a); len(d) != 0 {
		t.Errorf("due after the route was forgotten: %v, want none", d)
	}
}

func cmpKey(x, y routeKey) int {
	return cmp.Or(cmp.Compare(x.edge, y.edge), cmp.Compare(x.app, y.app))
}

// BenchmarkRouteRefreshCheck is what the controller's loop spends looking for routes to store
// again, with 10,000 edge apps' routes of 1 KiB whose copies are spread over ROUTES, none due.
func BenchmarkRouteRefreshCheck(b *testing.B) {
	const apps = 10_000
	c := &controller{log: zerolog.Nop(), routesRead: true, routesMax: events.RoutesMaxBytes, ages: newRouteAges(0),
		published: map[string]map[string][]byte{"edge-a": {}}, routesSmall: logs.NewRepeats(time.Hour)}
	route := make([]byte, 1<<10)
	for i := range apps {
		k := routeKey{"edge-a", fmt.Sprint("app", i)}
		c.published[k.edge][k.app] = route
		c.ages.stored(k, uint64(i+1), false, routeSize(k, route), c.routesMax)
	}
	b.ResetTimer()
	for range b.N {
		c.refreshAt = math.MinInt64
		c.refreshRoutes(b.Context(), nil)
	}
	if c.refreshing {
		b.Fatal("routes were due")
	}
}

// TestARouteIsNeverStoredAgainOverANewerOneAnotherReplicaStored: a replica whose last known copy
// of a route is old (another replica stored a new route since, one this replica has not computed
// yet) stores nothing when that copy falls due: the subject moved on, and the replica reads the
// new route and takes it for the one stored, to compute its own against it.
func TestARouteIsNeverStoredAgainOverANewerOneAnotherReplicaStored(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	k := routeKey{"edge-west", "shop"}
	subject := events.AppRouteSubject(k.edge, k.app)
	store := func(r events.AppRoute) uint64 {
		t.Helper()
		e, err := events.New(events.TypeRouteComputed, "controller-2", time.Now(), events.EdgeRoute{Edge: k.edge, Route: r})
		if err != nil {
			t.Fatal(err)
		}
		ack, err := events.Publish(ctx, ns.JS, subject, e)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	old := events.AppRoute{App: "shop", Pool: "west", Available: true}
	newer := events.AppRoute{App: "shop", Pool: "west"}
	oldSeq := store(old)
	newSeq := store(newer)
	b, _ := json.Marshal(old)
	env, err := events.Derived(events.TypeRouteComputed, "controller-1", "", refreshKey(subject, oldSeq), time.Now(),
		events.EdgeRoute{Edge: k.edge, Route: old, RefreshOf: oldSeq})
	if err != nil {
		t.Fatal(err)
	}
	out := storeRefreshes(ctx, ns.JS, []refreshSend{{key: k, subject: subject, seq: oldSeq, route: b, size: routeSize(k, b), env: env}})
	want, _ := json.Marshal(newer)
	if len(out) != 1 || !out[0].moved || out[0].seq != newSeq || !bytes.Equal(out[0].route, want) {
		var got []string
		for _, r := range out {
			got = append(got, fmt.Sprintf("seq %d moved %v route %s", r.seq, r.moved, r.route))
		}
		t.Fatalf("refreshing seq %d after seq %d was stored: %q; want the route at seq %d read back, %s", oldSeq, newSeq, got, newSeq, want)
	}
	m, err := ns.Stream(t, events.StreamRoutes).GetLastMsgForSubject(ctx, subject)
	if err != nil || m.Sequence != newSeq {
		t.Fatalf("last of %s: %v, %v; want seq %d, the newer route", subject, m, err, newSeq)
	}
}

// TestTheControllerWarnsWhenTheRoutesThemselvesCrowdROUTESsBound: routes that take over a quarter
// of ROUTES's max_bytes are stored again as often as their own bytes fill half of it, and ROUTES
// keeps little history: the controller says so, and how to raise the bound.
func TestTheControllerWarnsWhenTheRoutesThemselvesCrowdROUTESsBound(t *testing.T) {
	var lines eventstest.Logs
	k := routeKey{"edge-west", "shop"}
	route := make([]byte, 1500)
	c := &controller{log: zerolog.New(&lines), routesRead: true, routesMax: 4096, ages: newRouteAges(0),
		published: map[string]map[string][]byte{k.edge: {k.app: route}}, routesSmall: logs.NewRepeats(time.Hour)}
	c.ages.stored(k, 1, false, routeSize(k, route), c.routesMax)
	c.refreshRoutes(context.Background(), nil)
	if c.refreshing {
		t.Fatal("a route stored just now is due")
	}
	if got := lines.String(); !strings.Contains(got, `"routes_bytes":2040,"max_bytes":4096,"message":"routes take over a quarter of the routes stream's max_bytes: raise it (nats stream edit ROUTES --max-bytes)"`) {
		t.Errorf("logs: %s; want the warning with the routes' bytes and the bound", got)
	}
}

// TestAReplicaBehindOnSTATEStoresNoOlderRouteOverTheNewerOneItReadsBack: a replica that has not
// yet folded the transition another replica stored a new route for finds, storing its own copy
// again, that the subject moved on, and reads the new route back. It took it for stored and
// computed its own against it from its older view: it stored the older route over the newer
// one, and the edge served an endpoint STATE holds down until the replica caught up. It now
// takes the newer route for stored and computes its own once it has folded what that one was
// computed from.
func TestAReplicaBehindOnSTATEStoresNoOlderRouteOverTheNewerOneItReadsBack(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, routesDoc())
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	ahead, behind := handDriven(ns, cfg, "controller-1", log), handDriven(ns, cfg, "controller-2", log)
	for _, c := range []*controller{ahead, behind} {
		c.publishRoutes()
		settleRoutes(t, c)
	}
	subject := events.AppRouteSubject("edge-0", "app0")
	down, err := events.New(events.TypeEndpointDown, "decider-1", time.Now(), events.Transition{App: "app0", Pool: "west", Endpoint: "a",
		From: events.StatusUp, To: events.StatusDown, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	fold := func(c *controller) {
		t.Helper()
		if err := c.fold(events.EndpointStateSubject("app0", "west", "a"), 1, down); err != nil {
			t.Fatal(err)
		}
	}
	last := func() (uint64, events.EdgeRoute) {
		t.Helper()
		m, err := ns.Stream(t, events.StreamRoutes).GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		var r events.EdgeRoute
		if e, err := events.Decode(m.Data); err != nil || e.Payload(&r) != nil {
			t.Fatalf("%s holds %q", subject, m.Data)
		}
		return m.Sequence, r
	}
	refresh := func(c *controller) []refreshed {
		t.Helper()
		c.routesMax, c.refreshAt, c.routesSmall = 1, math.MinInt64, logs.NewRepeats(time.Hour) // every copy due
		c.refreshes = make(chan []refreshed)
		var wg sync.WaitGroup
		c.refreshRoutes(ctx, &wg)
		if !c.refreshing {
			return nil
		}
		rs := <-c.refreshes
		wg.Wait()
		c.refreshesStored(rs)
		return rs
	}

	// The replica ahead folds a's fall; until it has computed app0's route, it does not repeat
	// the route stored as the one it computes at that STATE position.
	fold(ahead)
	for _, r := range refresh(ahead) {
		if r.send.key.app == "app0" {
			t.Errorf("%s stored again, seq %d, with a's fall folded and app0's route not yet computed from it", r.send.subject, r.send.seq)
		}
	}
	ahead.publishRoutes()
	settleRoutes(t, ahead)
	newer, r := last()
	if r.RefreshOf != 0 || r.Route.Endpoints[0].Status != events.StatusDown {
		t.Fatalf("%s after a's fall: %+v; want a down", subject, r)
	}

	// The replica behind stores its copies again, and reads app0's back.
	refresh(behind)
	behind.publishRoutes()
	settleRoutes(t, behind)
	if seq, r := last(); seq != newer {
		t.Fatalf("%s after the replica behind stored its routes again: seq %d, %+v; want seq %d, a down", subject, seq, r.Route, newer)
	}
	// Once it has folded a's fall, it computes the route stored, and stores nothing.
	fold(behind)
	behind.publishRoutes()
	settleRoutes(t, behind)
	if seq, r := last(); seq != newer {
		t.Errorf("%s after the replica behind folded a's fall: seq %d, %+v; want seq %d", subject, seq, r.Route, newer)
	}
}

// TestRouteAgesKeepNoMarksWhileROUTESHasNoByteBound: a controller beside a ROUTES without a byte
// bound (an earlier version's, before detour apply bounds it, or one an operator unbounded)
// kept a mark for every route it stored, and looked for none to store again: its memory grew
// with every route change, for as long as it ran. Without a bound no copy ages; once one is
// set, every copy is as old as all that was stored since the start.
func TestRouteAgesKeepNoMarksWhileROUTESHasNoByteBound(t *testing.T) {
	k := routeKey{"edge-a", "shop"}
	a := newRouteAges(0)
	for seq := range uint64(100_000) {
		a.stored(k, seq+1, false, 1000, -1)
	}
	if len(a.marks) != 0 {
		t.Errorf("%d marks after 100,000 routes stored on a ROUTES without a byte bound; want none", len(a.marks))
	}
	a.seen(routeKey{"edge-a", "stable"}, 1)
	if d, _ := a.due(1<<20, 0); len(d) != 2 {
		t.Errorf("due once a bound of 1 MiB is set, 100 MB stored since the start: %v; want both routes", d)
	}
}

// TestRoutesTakingNearHalfROUTESsBoundAreStoredAgainOnceEachOldestFirst: a controller starting
// on a full ROUTES stores every route again. Where the routes took more than half its
// max_bytes, as counted, the copies stored first were due again before the round ended, and
// rounds followed one another for as long as the controller ran (1,900 copies a second with
// 10,000 routes taking 60% of it); stored in no order, the copies ROUTES held oldest waited
// behind younger ones, and 844 of the 10,000 routes were discarded. Each route is now stored
// again once, the oldest copies first, and ROUTES holds every one.
func TestRoutesTakingNearHalfROUTESsBoundAreStoredAgainOnceEachOldestFirst(t *testing.T) {
	const n = 2000
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, bigEdgeDoc(n))
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	first := handDriven(ns, cfg, "controller-1", log)
	first.publishRoutes()
	settleRoutes(t, first)
	st := ns.Stream(t, events.StreamRoutes)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rc := info.Config
	rc.MaxBytes = int64(info.State.Bytes) * 100 / 45 // the routes take 45% of it
	if _, err := ns.JS.UpdateStream(ctx, rc); err != nil {
		t.Fatal(err)
	}

	// A replica starting on a long-running cluster's ROUTES, full of their history.
	c := handDriven(ns, cfg, "controller-2", log)
	published, seqs, err := readPublished(ctx, ns.JS, ns.Stream(t, events.StreamRoutes), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.readRoutes(openedRoutes{published: published, seqs: seqs, held: uint64(rc.MaxBytes), maxBytes: rc.MaxBytes})
	c.publishRoutes()
	c.routesSmall, c.refreshes = logs.NewRepeats(time.Hour), make(chan []refreshed)
	stored, rounds := 0, 0
	var prev uint64
	for ; stored <= 3*n; rounds++ {
		var wg sync.WaitGroup
		c.refreshRoutes(ctx, &wg)
		if !c.refreshing {
			break
		}
		rs := <-c.refreshes
		wg.Wait()
		slices.SortFunc(rs, func(a, b refreshed) int { return cmp.Compare(a.seq, b.seq) })
		for _, r := range rs {
			if r.moved {
				t.Fatalf("%s moved on: nothing else stores routes", r.send.subject)
			}
			if r.send.seq < prev {
				t.Errorf("the copy at seq %d stored again after the one at seq %d: ROUTES discards the oldest first", r.send.seq, prev)
			}
			prev = r.send.seq
		}
		c.refreshesStored(rs)
		stored += len(rs)
	}
	if stored != n {
		t.Errorf("%d routes stored again in %d rounds; want each of the %d once", stored, rounds, n)
	}
	if _, subjects := routesStored(t, ns, "edge-big"); subjects != n {
		t.Errorf("ROUTES holds the routes of %d apps, want all %d", subjects, n)
	}
}

// TestADuplicateAcknowledgedMakesNoOldCopyLookYoung: a replica that stores a route another
// replica stored under the same id is answered with that copy's sequence, which may be far
// older than ROUTES's last. Marking it with the bytes written so far made every copy after it
// look stored just now: a replica starting on a full ROUTES, whose first route was such a
// duplicate, stored none of the copies it read again, and ROUTES discarded them. The copy
// acknowledged is the route's, but marks nothing.
func TestADuplicateAcknowledgedMakesNoOldCopyLookYoung(t *testing.T) {
	const n = 50
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, bigEdgeDoc(n))
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	first := handDriven(ns, cfg, "controller-1", log)
	first.publishRoutes()
	settleRoutes(t, first)
	info, err := ns.Stream(t, events.StreamRoutes).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	maxBytes := int64(info.State.Bytes) * 4

	// A replica starting on a full ROUTES reads every route but the oldest (its read timed out,
	// say), and stores that one as the first replica did: a duplicate.
	c := handDriven(ns, cfg, "controller-2", log)
	published, seqs, err := readPublished(ctx, ns.JS, ns.Stream(t, events.StreamRoutes), cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldest := routeKey{}
	for k, seq := range seqs {
		if oldest.app == "" || seq < seqs[oldest] {
			oldest = k
		}
	}
	delete(published[oldest.edge], oldest.app)
	delete(seqs, oldest)
	c.readRoutes(openedRoutes{published: published, seqs: seqs, held: uint64(maxBytes), maxBytes: maxBytes})
	c.publishRoutes()
	settleRoutes(t, c)
	if got := c.ages.seqs[oldest]; got != 1 {
		t.Fatalf("%v's copy taken at seq %d, want 1, the first replica's", oldest, got)
	}

	c.routesSmall, c.refreshes = logs.NewRepeats(time.Hour), make(chan []refreshed)
	var wg sync.WaitGroup
	c.refreshRoutes(ctx, &wg)
	var rs []refreshed
	if c.refreshing {
		rs = <-c.refreshes
	}
	wg.Wait()
	if len(rs) != n {
		t.Errorf("%d of the %d routes stored again, each copy as old as ROUTES's bytes; want all", len(rs), n)
	}
}

// TestARouteWhoseOnlyCopyROUTESDiscardedIsStoredAgain: a flood faster than the refreshes, or a
// max_bytes lowered, may discard the only copy of a route. Storing it again expecting that copy
// to be the subject's last conflicted, the read back found nothing, and the next round tried the
// same copy again, for as long as the controller ran: the route stayed out of ROUTES (an edge
// starting then served the app from its configuration alone) until the app's route changed,
// and with the oldest copies first the same round came every tick. It is now stored again
// where its subject still holds nothing.
func TestARouteWhoseOnlyCopyROUTESDiscardedIsStoredAgain(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, bigEdgeDoc(3))
	c := handDriven(ns, cfg, "controller-1", zerolog.New(zerolog.NewTestWriter(t)))
	c.publishRoutes()
	settleRoutes(t, c)
	k := routeKey{"edge-big", "app0"}
	subject := events.AppRouteSubject(k.edge, k.app)
	st := ns.Stream(t, events.StreamRoutes)
	if err := st.DeleteMsg(ctx, c.ages.seqs[k]); err != nil {
		t.Fatal(err)
	}
	c.routesMax, c.routesSmall, c.refreshes = 1, logs.NewRepeats(time.Hour), make(chan []refreshed) // every copy due
	for round := range 2 {
		var wg sync.WaitGroup
		c.refreshAt = math.MinInt64
		c.refreshRoutes(ctx, &wg)
		if !c.refreshing {
			t.Fatalf("round %d: nothing stored again", round)
		}
		rs := <-c.refreshes
		wg.Wait()
		c.refreshesStored(rs)
		c.publishRoutes()
		settleRoutes(t, c)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatalf("%s after its only copy was discarded and two rounds: %v; want its route stored again", subject, err)
	}
	var r events.EdgeRoute
	if e, err := events.Decode(m.Data); err != nil || e.Payload(&r) != nil || r.Route.App != "app0" {
		t.Fatalf("%s holds %q", subject, m.Data)
	}
}

// TestAReplicaKeepsTheRouteItStoredAfterTheCopyItsRefreshReadBack: a replica behind on STATE
// whose refresh conflicted reads back the newer route another replica stored, then, before that
// outcome reaches its loop, folds the first of that route's transitions and stores the route
// between the two. It took the route read back, older in ROUTES than its own, for the one stored:
// once it folded the second transition it computed the route read back, stored nothing, and
// ROUTES kept the route between (b up, which STATE holds down) until a later refresh. A copy read
// back before one the replica knows stored after it is not taken.
func TestAReplicaKeepsTheRouteItStoredAfterTheCopyItsRefreshReadBack(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, routesDoc())
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	ahead, behind := handDriven(ns, cfg, "controller-1", log), handDriven(ns, cfg, "controller-2", log)
	for _, c := range []*controller{ahead, behind} {
		c.publishRoutes()
		settleRoutes(t, c)
	}
	downs := make([]events.Envelope, 2)
	for i, ep := range []string{"a", "b"} {
		e, err := events.New(events.TypeEndpointDown, "decider-1", time.Now(), events.Transition{App: "app0", Pool: "west", Endpoint: ep,
			From: events.StatusUp, To: events.StatusDown, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		downs[i] = e
	}
	fold := func(c *controller, falls ...int) {
		t.Helper()
		for _, i := range falls {
			if err := c.fold(events.EndpointStateSubject("app0", "west", []string{"a", "b"}[i]), uint64(i+1), downs[i]); err != nil {
				t.Fatal(err)
			}
		}
		c.publishRoutes()
		settleRoutes(t, c)
	}
	subject := events.AppRouteSubject("edge-0", "app0")
	last := func() events.AppRoute {
		t.Helper()
		m, err := ns.Stream(t, events.StreamRoutes).GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		var r events.EdgeRoute
		if e, err := events.Decode(m.Data); err != nil || e.Payload(&r) != nil {
			t.Fatalf("%s holds %q", subject, m.Data)
		}
		return r.Route
	}

	// The replica ahead folds both falls at once and stores app0's route.
	fold(ahead, 0, 1)
	want := last()

	// The replica behind stores its copies again: app0's conflicts and reads that route back.
	behind.routesMax, behind.refreshAt, behind.routesSmall = 1, math.MinInt64, logs.NewRepeats(time.Hour) // every copy due
	behind.refreshes = make(chan []refreshed)
	var wg sync.WaitGroup
	behind.refreshRoutes(ctx, &wg)
	if !behind.refreshing {
		t.Fatal("nothing stored again")
	}
	rs := <-behind.refreshes
	wg.Wait()
	// Before its loop takes the outcome, it folds a's fall and stores the route between.
	fold(behind, 0)
	behind.refreshesStored(rs)
	fold(behind, 1)
	if got := last(); !reflect.DeepEqual(got, want) {
		t.Errorf("%s once the replica behind folded both falls: %+v; want %+v, b down", subject, got, want)
	}
}

// TestRefreshesStoredInAROUTESSinceCreatedAgainLeaveItsRoutesAges: a round of refreshes stored
// in ROUTES before it was deleted and created again, whose outcome the loop took after it had
// stored the routes in the new one, marked the old stream's sequences, far past the new one's:
// no copy stored after that was marked, each was taken to be as old as all written since, and
// once half of max_bytes was written every route was stored again every round, for as long as
// the new stream's sequences stayed below the old one's. Such an outcome is dropped.
func TestRefreshesStoredInAROUTESSinceCreatedAgainLeaveItsRoutesAges(t *testing.T) {
	const n = 3
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, bigEdgeDoc(n))
	c := handDriven(ns, cfg, "controller-1", zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	c.caught = true
	c.publishRoutes()
	settleRoutes(t, c)
	// ROUTES's sequence runs far ahead of the routes': an edge of another cluster stores there.
	for range 500 {
		e, err := events.New(events.TypeRouteComputed, "controller-9", time.Now(), events.EdgeRoute{Edge: "edge-other"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, ns.JS, events.AppRouteSubject("edge-other", "app0"), e); err != nil {
			t.Fatal(err)
		}
	}
	c.routesSmall, c.refreshes = logs.NewRepeats(time.Hour), make(chan []refreshed)
	round := func() []refreshed {
		t.Helper()
		var wg sync.WaitGroup
		c.refreshAt = math.MinInt64
		c.refreshRoutes(ctx, &wg)
		if !c.refreshing {
			return nil
		}
		rs := <-c.refreshes
		wg.Wait()
		return rs
	}
	c.routesMax = 1 // every copy due
	stale := round()
	if len(stale) != n {
		t.Fatalf("%d routes stored again, want %d", len(stale), n)
	}

	// ROUTES is created again, and the routes stored in it, before the loop takes that outcome.
	if err := ns.JS.DeleteStream(ctx, events.StreamRoutes); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	c.routesRecreated()
	settleRoutes(t, c)
	c.refreshesStored(stale)

	// Past half of max_bytes written, each route is stored again once.
	c.routesMax = 64 << 10
	c.ages.wrote(n+1, false, c.routesMax, c.routesMax)
	stored := 0
	for range 5 {
		rs := round()
		stored += len(rs)
		c.refreshesStored(rs)
	}
	if stored != n {
		t.Errorf("%d routes stored again in 5 rounds past half of max_bytes; want each of the %d once", stored, n)
	}
}
