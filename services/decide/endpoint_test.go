package decide

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

var t0 = time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)

func testPolicy() Policy {
	return Policy{Fall: 3, Rise: 2, Quorum: 0.5, StaleAfter: 3 * time.Second, Interval: time.Second}
}

// run plays a sequence in the notation of the tables and returns the effective status after each
// group ('?' unknown, 'U' up, 'D' down, 'X' drained) and the decisions made.
//
// A sequence without spaces is one region's results, one per interval: '+' a pass, '-' a failure,
// '_' no result. With spaces, each group is one interval: one character per region (a, b, c, …),
// or an override: !up, !down, !drain, !clear, and !pool-up, !pool-down, !pool-drain, !pool-clear.
// Before each group, time passes to the group's instant (Expire); then its results are folded.
func run(t *testing.T, seq string, p Policy) (string, []Decision) {
	t.Helper()
	groups := strings.Fields(seq)
	if !strings.Contains(seq, " ") {
		groups = strings.Split(seq, "")
	}
	var e Endpoint
	var got strings.Builder
	var ds []Decision
	keep := func(d Decision, ok bool) {
		if ok {
			ds = append(ds, d)
		}
	}
	for i, g := range groups {
		at := t0.Add(time.Duration(i) * p.Interval)
		keep(e.Expire(at, p))
		if action, ok := strings.CutPrefix(g, "!"); ok {
			scope := ScopeEndpoint
			if a, ok := strings.CutPrefix(action, "pool-"); ok {
				scope, action = ScopePool, a
			}
			o := events.Override{By: "alice", Reason: "test", Action: map[string]string{
				"up": events.ActionForceUp, "down": events.ActionForceDown, "drain": events.ActionDrain, "clear": ""}[action]}
			keep(e.SetOverride(scope, o, fmt.Sprintf("override-%d", i), at, p))
		} else {
			for j, c := range g {
				if c == '_' {
					continue
				}
				r := Result{ID: fmt.Sprintf("r%d%c", i, 'a'+j), Region: string(rune('a' + j)), At: at, OK: c == '+'}
				keep(e.Observe(r, p))
			}
		}
		got.WriteByte(map[events.Status]byte{events.StatusUnknown: '?', events.StatusUp: 'U',
			events.StatusDown: 'D', events.StatusDrained: 'X'}[e.Status])
	}
	return got.String(), ds
}

func TestAnEndpointFollowsItsResults(t *testing.T) {
	hold := func(d time.Duration) Policy { p := testPolicy(); p.HoldDown = d; return p }
	quorum := func(q float64) Policy { p := testPolicy(); p.Quorum = q; return p }
	fast := testPolicy()
	fast.Fall, fast.Rise = 1, 1
	tests := []struct {
		name    string
		policy  Policy
		results string
		want    string
	}{
		{name: "two successes bring a new endpoint up", results: "++", want: "?U"},
		{name: "three failures take it down", results: "+++---", want: "?UUUUD"},
		{name: "a single success does not bring it back", results: "---+-", want: "??DDD"},
		{name: "two successes bring it back", results: "---++", want: "??DDU"},
		{name: "flapping input from the start decides nothing", results: "+-+-+-", want: "??????"},
		{name: "flapping input keeps an up endpoint up", results: "++" + "-+-+-+", want: "?UUUUUUU"},
		{name: "flapping input keeps a down endpoint down", results: "---" + "+-+-+-", want: "??DDDDDDD"},
		{name: "fall and rise of one follow every result", policy: fast, results: "+-+", want: "UDU"},
		{name: "one region failing of three does not take it down",
			results: "+++ +++ ++- ++- ++- ++-", want: "?UUUUU"},
		{name: "one region dark of three does not take it down",
			results: "+++ +++ ++_ ++_ ++_ ++_ ++_", want: "?UUUUUU"},
		{name: "two regions failing of three take it down",
			results: "+++ +++ +-- +-- +--", want: "?UUUD"},
		{name: "a tie of two regions counts as up at quorum 0.5",
			results: "++ ++ +- +- +- +-", want: "?UUUUU"},
		{name: "a tie of two regions is down at quorum 0.51",
			policy: quorum(0.51), results: "++ ++ +- +- +-", want: "?UUUD"},
		{name: "quorum 1 needs every voting region",
			policy: quorum(1), results: "+++ +++ ++- ++- ++-", want: "?UUUD"},
		{name: "a failing region that goes dark stops voting after stale_after",
			policy: quorum(1), results: "++ ++ +- +- +- +_ +_ +_ +_", want: "?UUUDDDDU"},
		{name: "a stale region starts its streak again",
			policy: quorum(1), results: "++ ++ +- +- +_ +_ +_ +_ +-", want: "?UUUUUUUU"},
		{name: "every region dark keeps the last decision",
			results: "++ ++ __ __ __ __ __ __", want: "?UUUUUUU"},
		{name: "hold-down keeps a recovered endpoint down until it expires",
			policy: hold(3 * time.Second), results: "---+++++", want: "??DDDDDU"},
		{name: "hold-down expires between results",
			policy: hold(2 * time.Second), results: "---++__", want: "??DDDDU"},
		{name: "hold-down restarts when the endpoint fails again",
			policy: hold(4 * time.Second), results: "---++---++++++", want: "??DDDDDDDDDDDU"},
		{name: "hold-down does not delay the first decision",
			policy: hold(time.Minute), results: "++", want: "?U"},
		{name: "force_down wins over passing probes until cleared",
			results: "+ + !down + + !clear +", want: "?UDDDUU"},
		{name: "force_up wins over failing probes until cleared",
			results: "- - - !up - - !clear", want: "??DUUUD"},
		{name: "drain takes it out of the answer until cleared",
			results: "+ + !drain + !clear", want: "?UXXU"},
		{name: "an endpoint's override wins over its pool's",
			results: "+ + !pool-drain !down !clear !pool-clear", want: "?UXDXU"},
		{name: "a pool force_up wins over failing probes",
			results: "- - - !pool-up - !pool-clear", want: "??DUUD"},
		{name: "clearing an override on an undecided endpoint waits for the probes",
			results: "!down !clear + +", want: "D??U"},
		{name: "probes fold under an override and decide when it is cleared",
			results: "+ + !down - - - !clear", want: "?UDDDDD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p.Fall == 0 {
				p = testPolicy()
			}
			got, ds := run(t, tt.results, p)
			if got != tt.want {
				t.Fatalf("%q: got %s, want %s", tt.results, got, tt.want)
			}
			if want := changes(tt.want); len(ds) != want {
				t.Errorf("%q: %d decisions, want one per change: %d", tt.results, len(ds), want)
			}
		})
	}
}

// changes counts the decided status changes of a want string.
func changes(want string) int {
	n := 0
	prev := byte('?')
	for i := range len(want) {
		if want[i] != prev && want[i] != '?' {
			n++
		}
		prev = want[i]
	}
	return n
}

func TestATransitionNamesTheResultsTheVotesAndTheThresholds(t *testing.T) {
	p := testPolicy()
	_, ds := run(t, "+++ +++ +-- +-- +--", p)
	if len(ds) != 2 {
		t.Fatalf("got %d decisions, want up then down", len(ds))
	}
	want := Decision{
		From: events.StatusUp, To: events.StatusDown, At: t0.Add(4 * time.Second), Cause: "r4c",
		Reason:  "c: 3 consecutive failures (fall 3); 1 of 3 voting regions see it up (quorum 0.5)",
		Results: []string{"r2c", "r3c", "r4c"}, StreakSince: t0.Add(2 * time.Second),
		Votes: []events.Vote{{Region: "a", Status: events.StatusUp}, {Region: "b", Status: events.StatusDown},
			{Region: "c", Status: events.StatusDown}},
	}
	if !reflect.DeepEqual(ds[1], want) {
		t.Errorf("down decision:\n got %+v\nwant %+v", ds[1], want)
	}
	if got := p.Thresholds(); got != (events.Thresholds{Fall: 3, Rise: 2, Quorum: 0.5, StaleAfterMS: 3000, IntervalMS: 1000}) {
		t.Errorf("thresholds = %+v", got)
	}
}

func TestAStaleRegionIsNamedInTheDecision(t *testing.T) {
	p := testPolicy()
	p.Quorum = 1
	_, ds := run(t, "++ ++ +- +- +- +_ +_ +_ +_", p)
	last := ds[len(ds)-1]
	want := Decision{
		From: events.StatusDown, To: events.StatusUp, At: t0.Add(7 * time.Second), Cause: "r4b",
		Reason: "b: no result for over stale_after 3s; 1 of 1 voting regions see it up (quorum 1); not voting: b",
		Votes:  []events.Vote{{Region: "a", Status: events.StatusUp}},
	}
	if !reflect.DeepEqual(last, want) {
		t.Errorf("stale decision:\n got %+v\nwant %+v", last, want)
	}
}

func TestHoldDownNamesTheResultThatMadeItHealthyAndTheMomentItExpired(t *testing.T) {
	p := testPolicy()
	p.HoldDown = 2 * time.Second
	_, ds := run(t, "---++__", p)
	last := ds[len(ds)-1]
	if last.Cause != "r4a" || !last.At.Equal(t0.Add(6*time.Second)) ||
		last.Reason != "healthy for the hold_down of 2s; 1 of 1 voting regions see it up (quorum 0.5)" {
		t.Errorf("hold-down decision = %+v", last)
	}
}

func TestAnOverrideDecisionSaysWhoAndWhy(t *testing.T) {
	_, ds := run(t, "+ + !pool-drain", testPolicy())
	last := ds[len(ds)-1]
	if last.Cause != "override-2" || last.To != events.StatusDrained || last.Reason != "pool override drain by alice: test" {
		t.Errorf("override decision = %+v", last)
	}
}

func TestARedeliveredResultChangesNothing(t *testing.T) {
	p := testPolicy()
	var e Endpoint
	for i, id := range []string{"1", "1", "1", "2", "2", "3"} {
		d, ok := e.Observe(Result{ID: id, Region: "a", At: t0.Add(time.Duration(i) * time.Millisecond)}, p)
		if ok != (i == 5) {
			t.Fatalf("result %d (id %s): decided %v %+v; only the third distinct failure may take it down", i, id, ok, d)
		}
	}
}

func TestRestoreContinuesFromTheRecordedStatus(t *testing.T) {
	p := testPolicy()
	p.HoldDown = 2 * time.Second
	var e Endpoint
	e.Restore(events.StatusDown)
	for i := range 3 {
		r := Result{ID: fmt.Sprint(i), Region: "a", At: t0.Add(time.Duration(i) * time.Second), OK: true}
		if d, ok := e.Observe(r, p); ok {
			t.Fatalf("result %d decided %+v while hold-down should hold a restored down endpoint", i, d)
		}
	}
	if d, ok := e.Expire(t0.Add(3*time.Second), p); !ok || d.From != events.StatusDown || d.To != events.StatusUp {
		t.Fatalf("hold-down expiry = %+v, %v; want down → up", d, ok)
	}
}

// TestAResumedHoldDownEndsWhenItWouldHaveEndedUnlessTheRegionsTurnUnhealthyFirst: a decider
// starting cold reads back less than a hold-down; STATE says the hold-down began at t0, by r0.
func TestAResumedHoldDownEndsWhenItWouldHaveEndedUnlessTheRegionsTurnUnhealthyFirst(t *testing.T) {
	p := testPolicy()
	p.HoldDown = 10 * time.Second
	pass := func(e *Endpoint, i int, ok bool) (Decision, bool) {
		return e.Observe(Result{ID: fmt.Sprint("s", i), Region: "a", At: t0.Add(time.Duration(i) * time.Second), OK: ok}, p)
	}
	var e Endpoint
	e.Restore(events.StatusDown)
	e.Resume(t0, "r0")
	for i := 7; i < 9; i++ { // rise 2 is met 8 s into the hold-down
		if d, ok := pass(&e, i, true); ok {
			t.Fatalf("result %d decided %+v before the hold-down resumed ran its course", i, d)
		}
	}
	if !e.HealthySince.Equal(t0) {
		t.Fatalf("hold-down since %s, want since %s, when STATE says it began", e.HealthySince, t0)
	}
	if d, ok := e.Expire(t0.Add(10*time.Second), p); !ok || d.To != events.StatusUp || d.Cause != "r0" || !d.At.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("hold-down expiry = %+v, %v; want up at t0 + 10s, caused by r0", d, ok)
	}

	// The results read back begin before the hold-down STATE recorded: they lack the vote that
	// kept the endpoint unhealthy until then, and the hold-down still runs from when it began.
	var g Endpoint
	g.Restore(events.StatusDown)
	g.Resume(t0.Add(5*time.Second), "r5")
	for i := 1; i < 15; i++ {
		if d, ok := pass(&g, i, true); ok {
			t.Fatalf("result %d decided %+v before the hold-down STATE recorded ran its course", i, d)
		}
	}
	if d, ok := g.Expire(t0.Add(15*time.Second), p); !ok || d.To != events.StatusUp || d.Cause != "r5" {
		t.Fatalf("hold-down expiry = %+v, %v; want up at t0 + 15s, caused by r5", d, ok)
	}

	var f Endpoint
	f.Restore(events.StatusDown)
	f.Resume(t0, "r0")
	for i := 7; i < 10; i++ { // fall 3: the region votes it down
		pass(&f, i, false)
	}
	pass(&f, 10, true)
	pass(&f, 11, true)
	if since, cause := f.HoldDown(); !since.Equal(t0.Add(11*time.Second)) || cause != "s11" {
		t.Fatalf("hold-down since %s by %q, want since %s by s11: a failure cancels the hold-down resumed", since, cause, t0.Add(11*time.Second))
	}
}

// TestAHoldDownResumedUnderAForceUpHoldsTheEndpointDownOnceTheOverrideClears: a decider
// starting cold finds w1 forced up (STATE records the override's up) and its hold-down under way
// since t0; the results read back pass. Clearing the override takes the endpoint down, as its
// hold-down of 10s has not run its course, and it comes up when that ends.
func TestAHoldDownResumedUnderAForceUpHoldsTheEndpointDownOnceTheOverrideClears(t *testing.T) {
	p := testPolicy()
	p.HoldDown = 10 * time.Second
	var e Endpoint
	e.SetOverride(ScopeEndpoint, events.Override{Action: events.ActionForceUp, By: "alice"}, "o1", t0, p)
	e.Restore(events.StatusUp)
	e.Resume(t0, "r0")
	for i := 6; i < 8; i++ {
		if d, ok := e.Observe(Result{ID: fmt.Sprint("s", i), Region: "a", At: t0.Add(time.Duration(i) * time.Second), OK: true}, p); ok {
			t.Fatalf("result %d decided %+v while the override is in force", i, d)
		}
	}
	if d, ok := e.SetOverride(ScopeEndpoint, events.Override{By: "alice"}, "o2", t0.Add(8*time.Second), p); !ok || d.To != events.StatusDown {
		t.Fatalf("clearing the override decided %+v, %v; want down until the hold-down ends at t0 + 10s", d, ok)
	}
	if d, ok := e.Expire(t0.Add(10*time.Second), p); !ok || d.To != events.StatusUp || d.Cause != "r0" {
		t.Fatalf("hold-down expiry = %+v, %v; want up at t0 + 10s, caused by r0", d, ok)
	}
}

func TestTheSameResultsInTheSameOrderYieldTheSameDecisions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		var b strings.Builder
		for i := range 60 {
			if i > 0 {
				b.WriteByte(' ')
			}
			switch rng.IntN(20) {
			case 0:
				b.WriteString([]string{"!up", "!down", "!drain", "!clear", "!pool-drain", "!pool-clear"}[rng.IntN(6)])
				continue
			}
			for range 3 {
				b.WriteByte("++++---_"[rng.IntN(8)])
			}
		}
		p := testPolicy()
		p.HoldDown = time.Duration(rng.IntN(4)) * time.Second
		s1, d1 := run(t, b.String(), p)
		s2, d2 := run(t, b.String(), p)
		if s1 != s2 || !reflect.DeepEqual(d1, d2) {
			t.Fatalf("trial %d: %q decided differently twice:\n%s\n%s", trial, b.String(), s1, s2)
		}
		for i, d := range d1 {
			if d.From == d.To || d.Cause == "" || d.Reason == "" {
				t.Fatalf("trial %d: incomplete decision %+v", trial, d)
			}
			if i > 0 && d.From != d1[i-1].To && d.From != events.StatusUnknown {
				t.Fatalf("trial %d: decision %d goes from %s but the one before went to %s", trial, i, d.From, d1[i-1].To)
			}
		}
	}
}

func TestOnlyRegionsWithAFreshViewVote(t *testing.T) {
	p := Policy{Fall: 2, Rise: 2, Quorum: 0.5, StaleAfter: time.Second}
	var e Endpoint
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, r := range []Result{
		{ID: "eu-1", Region: "eu", OK: true, At: at},
		{ID: "us-1", Region: "us", OK: false, At: at},
		{ID: "eu-2", Region: "eu", OK: true, At: at.Add(100 * time.Millisecond)},
	} {
		e.Observe(r, p)
		if want := []int{0, 0, 1}[i]; e.Voting() != want {
			t.Fatalf("after %s: %d voting regions, want %d (a region votes once it reached fall or rise)", r.ID, e.Voting(), want)
		}
	}
	e.Expire(at.Add(2*time.Second), p)
	if e.Voting() != 0 {
		t.Fatalf("after stale_after with no results: %d voting regions, want 0", e.Voting())
	}
}

func TestAFailoverIsDatedFromTheStreakThatMadeItAndAnOverridesIsNot(t *testing.T) {
	tests := []struct {
		name, results string
		want          []time.Time // StreakSince of each decision
	}{
		{name: "a down is dated from its streak's first failure, not the previous outage's",
			results: "++---++---", want: []time.Time{t0, t0.Add(2 * time.Second), t0.Add(5 * time.Second), t0.Add(7 * time.Second)}},
		{name: "a down made by clearing an override is not dated",
			results: "+ + !up - - - !clear", want: []time.Time{t0, {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ds := run(t, tt.results, testPolicy())
			var got []time.Time
			for _, d := range ds {
				got = append(got, d.StreakSince)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%q: StreakSince %v, want %v", tt.results, got, tt.want)
			}
		})
	}
}

func TestARegionKeepsAtMostMaxFallRiseResultIDsAfterTheThresholdsAreLowered(t *testing.T) {
	p := testPolicy()
	p.Fall = 5
	var e Endpoint
	at := t0
	observe := func(n int, p Policy) {
		for range n {
			at = at.Add(time.Second)
			e.Observe(Result{ID: at.Format(time.RFC3339), Region: "a", At: at, OK: false}, p)
		}
	}
	observe(5, p)
	// A new configuration lowers fall to 3 while the endpoint keeps failing.
	p.Fall = 3
	observe(100, p)
	if n := len(e.Regions[0].IDs); n > 3 {
		t.Errorf("region a holds %d result ids after 105 failures under fall 3, want at most 3", n)
	}
}

func TestAHoldDownThatRanItsCourseBeforeTheRegionWentStaleBringsTheEndpointBackHoweverLateTimeIsLetPass(t *testing.T) {
	p := testPolicy()
	p.HoldDown, p.StaleAfter = 3*time.Second, 4*time.Second
	// Down, healthy again from 4s, silent after: the hold-down ends at 7s, the region goes stale
	// after 8s.
	var e Endpoint
	for i, ok := range []bool{false, false, false, true, true} {
		e.Observe(Result{ID: fmt.Sprint(i), Region: "a", At: t0.Add(time.Duration(i) * time.Second), OK: ok}, p)
	}
	d, ok := e.Expire(t0.Add(20*time.Second), p)
	if !ok || d.To != events.StatusUp || !d.At.Equal(t0.Add(7*time.Second)) {
		t.Errorf("time let pass to 20s at once decided %v %+v, want up at 7s as when it passes second by second", ok, d)
	}
}

func TestAHoldDownThatRanItsCourseBetweenTwoRegionsGoingStaleBringsTheEndpointBackHoweverLateTimeIsLetPass(t *testing.T) {
	p := testPolicy()
	p.HoldDown, p.StaleAfter = 5*time.Second, 4*time.Second
	// Down in both regions, healthy again in both from 4s; b falls silent after 4s (stale after
	// 8s), a after 7s (stale after 11s): the hold-down ends at 9s, between the two.
	var rs []Result
	for i := range 8 {
		at := t0.Add(time.Duration(i) * time.Second)
		rs = append(rs, Result{ID: fmt.Sprint("a", i), Region: "a", At: at, OK: i >= 3})
		if i <= 4 {
			rs = append(rs, Result{ID: fmt.Sprint("b", i), Region: "b", At: at, OK: i >= 3})
		}
	}
	end := t0.Add(30 * time.Second)

	// Tick by tick, as the decider: time passes before each result and to the end.
	var ticked Endpoint
	tick := t0
	for _, r := range rs {
		for ; !tick.After(r.At); tick = tick.Add(100 * time.Millisecond) {
			ticked.Expire(tick, p)
		}
		ticked.Observe(r, p)
	}
	for ; !tick.After(end); tick = tick.Add(100 * time.Millisecond) {
		ticked.Expire(tick, p)
	}
	if ticked.Status != events.StatusUp {
		t.Fatalf("tick by tick the endpoint is %s, want up", ticked.Status)
	}

	// At once: the results, then time let pass to the end until nothing changes.
	var once Endpoint
	for _, r := range rs {
		once.Observe(r, p)
	}
	for range 10 {
		if _, ok := once.Expire(end, p); !ok {
			break
		}
	}
	if once.Status != ticked.Status {
		t.Errorf("time let pass at once leaves the endpoint %s, tick by tick %s", once.Status, ticked.Status)
	}
}

// Two probers of a region that both ran one window's check during a hand-over publish two
// results, under two ids: they count once, and a result of another region in that window, or
// of that region in the next, counts.
func TestARegionsResultsOfOneWindowCountOnce(t *testing.T) {
	p := testPolicy()
	var e Endpoint
	fold := func(id, region string, window int64, ok bool) {
		t.Helper()
		e.Observe(Result{ID: id, Region: region, At: t0.Add(time.Duration(window) * p.Interval), OK: ok, Window: window}, p)
	}
	run := func(region string) int {
		if r := e.find(region); r != nil {
			return r.Run
		}
		return 0
	}
	fold("p1-1", "a", 1, false)
	fold("p2-1", "a", 1, false) // the same window again, from the region's other prober
	fold("p1-2", "a", 2, false)
	fold("p2-1-late", "a", 1, false) // a hand-over's late copy, after the next window's
	if got := run("a"); got != 2 {
		t.Errorf("region a's streak is %d results after windows 1, 1, 2, 1, want 2", got)
	}
	if e.Status == events.StatusDown {
		t.Error("two windows' failures took the endpoint down with fall 3")
	}
	fold("b-1", "b", 1, false) // another region's window 1
	if got := run("b"); got != 1 {
		t.Errorf("region b's streak is %d results after its window 1, want 1", got)
	}
	fold("p1-3", "a", 3, false)
	if e.Status != events.StatusDown {
		t.Errorf("three windows' failures left the endpoint %q, want down", e.Status)
	}
	// A result that names no window (an older prober's) is counted.
	fold("old-1", "c", 0, true)
	fold("old-2", "c", 0, true)
	if got := run("c"); got != 2 {
		t.Errorf("region c's streak is %d results without windows, want 2", got)
	}
}
