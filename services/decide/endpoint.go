package decide

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
)

// Result is one probe result as the decider folds it.
type Result struct {
	// ID names the result in the transitions it completes.
	ID string
	// Region is the probing region that ran the check.
	Region string
	// At is when the check ran.
	At time.Time
	// OK is whether the check passed.
	OK bool
	// Window is the check's window the result is from (events.ProbeResult.Window); 0: not said.
	Window int64
}

// Scope says whether an override was set on the endpoint itself or on its whole pool.
type Scope int

// The scopes of an override. An endpoint's own override wins over its pool's.
const (
	ScopeEndpoint Scope = iota
	ScopePool
)

// Region is one probing region's view of an endpoint.
type Region struct {
	Name string
	// Status is the region's view after hysteresis: up, down, or unknown before its first fall or
	// rise results and after it went stale.
	Status events.Status
	// OK and Run are the outcome and length of the current streak of equal results, and
	// Since is when its first result ran.
	OK    bool
	Run   int
	Since time.Time
	// Last is when the region's latest result ran.
	Last time.Time
	// IDs are the ids of the latest results of the streak, at most max(fall, rise).
	IDs []string
	// Windows are the windows of the region's last two results that said theirs, the latest
	// first: a result of either again is the same check, which a second prober of the region ran
	// during a hand-over.
	Windows [2]int64
}

// Endpoint is everything the decider knows about one endpoint. The zero value is an endpoint
// nothing is known about yet.
type Endpoint struct {
	// Regions are the probing regions that reported on the endpoint, sorted by name.
	Regions []Region
	// Probed is the status the probes decide: quorum of the voting regions, then hold-down.
	Probed events.Status
	// HealthySince is when the voting regions turned healthy while the endpoint was down and
	// hold-down keeps it there; zero otherwise.
	HealthySince time.Time
	healthyCause string
	// resumeSince and resumeCause are a hold-down STATE recorded as under way (Resume): the next
	// to begin begins there instead, unless the voting regions turned unhealthy first.
	resumeSince time.Time
	resumeCause string
	// Own and Pool are the overrides in force on the endpoint and on its pool, or nil.
	Own, Pool *events.Override
	// Drill is the simulated failure a drill puts on the endpoint, or nil; overrides win over it.
	Drill *events.Override
	// drillMade is set while the last change reported was a drill's (Decision.Drill), so that
	// the probes or an override keeping the status once the drill no longer sets it re-state it.
	drillMade bool
	// Status is the effective status: the override in force, else Probed.
	Status events.Status
}

// Decision is a change of an endpoint's effective status, with its cause.
type Decision struct {
	From, To events.Status
	// At is when the change happened: the time of the result, override or deadline that made it.
	At time.Time
	// Cause is the id of the event that completed the change: a probe result or an override.
	Cause string
	// Reason is a short sentence naming the trigger and the vote.
	Reason string
	// Results are the ids of the results that completed the threshold, oldest first.
	Results []string
	// StreakSince is, with Results, when the first result of the streak that completed the
	// threshold ran; zero for a change an override, a drill, staleness or hold-down made.
	StreakSince time.Time
	// Votes are the voting regions' views when the change was made.
	Votes []events.Vote
	// Drill is the drill's simulated failure that made the status (To), when no override wins
	// over it; nil when the probes or an override made it.
	Drill *events.Override
}

// Restore sets the status the endpoint last had in STATE, as a decider starting cold reads it,
// so that probes replayed afterwards continue from there (hold-down included). Call it after the
// overrides in force were set: the status of one of them stays in force, so that a STATE that
// lacks its transition (set while no decider ran) is told it.
func (e *Endpoint) Restore(s events.Status) {
	if o := e.override(); o != nil {
		e.Status = overrideStatus(o.Action)
		return
	}
	e.Status = s
	if s == events.StatusUp || s == events.StatusDown {
		e.Probed = s
	}
}

// Resume notes that STATE records a hold-down of the endpoint under way since since, begun by
// the result cause, for a decider starting cold that reads back less than a hold-down of probes:
// the hold-down its results begin again is dated from since, as the decider that recorded it
// dated it. The voting regions turning unhealthy, or every one going stale, forgets it, as they
// cancel a hold-down. A hold-down is under way only while the probes say down: the endpoint's
// probed status is down from then on, also where Restore left it unknown (an override in force,
// whose status is the one STATE records). Call it after Restore; it does nothing to an endpoint
// the probes say is up.
func (e *Endpoint) Resume(since time.Time, cause string) {
	if e.Probed != events.StatusUp {
		e.Probed, e.resumeSince, e.resumeCause = events.StatusDown, since, cause
	}
}

// HoldDown returns when the hold-down under way began and the id of the result that began it, or
// a zero time: one resumed (Resume) that no result has begun again or cancelled yet is under way.
func (e *Endpoint) HoldDown() (time.Time, string) {
	if e.HealthySince.IsZero() && !e.resumeSince.IsZero() {
		return e.resumeSince, e.resumeCause
	}
	return e.HealthySince, e.healthyCause
}

// Counted reports whether r is counted already: the region's latest result (redelivered), or
// of one of the region's last two windows (the same check, run by two of its probers during a
// hand-over).
func (e *Endpoint) Counted(r Result) bool {
	reg := e.find(r.Region)
	return reg != nil && (len(reg.IDs) > 0 && reg.IDs[len(reg.IDs)-1] == r.ID ||
		r.Window != 0 && (reg.Windows[0] == r.Window || reg.Windows[1] == r.Window))
}

// Observe folds one result into the endpoint and reports the change of its effective status, if
// the result caused one. Regions silent for longer than StaleAfter before r.At stop voting first.
// A result Counted already changes nothing.
func (e *Endpoint) Observe(r Result, p Policy) (Decision, bool) {
	if e.Counted(r) {
		return Decision{}, false
	}
	stale, staleCause, staleAt := e.expireRegions(r.At, p)
	reg := e.region(r.Region)
	if r.Window != 0 {
		reg.Windows = [2]int64{r.Window, reg.Windows[0]}
	}
	if r.At.After(reg.Last) {
		reg.Last = r.At
	}
	if reg.Run == 0 || reg.OK != r.OK {
		reg.OK, reg.Run, reg.IDs, reg.Since = r.OK, 0, reg.IDs[:0], r.At
	}
	reg.Run++
	// At least one id goes; more when the thresholds were lowered during the streak.
	if n := len(reg.IDs) - p.streak() + 1; n > 0 {
		reg.IDs = reg.IDs[:copy(reg.IDs, reg.IDs[n:])]
	}
	reg.IDs = append(reg.IDs, r.ID)

	var note string
	var results []string
	switch {
	case r.OK && reg.Status != events.StatusUp && reg.Run >= p.Rise:
		reg.Status = events.StatusUp
		note = fmt.Sprintf("%s: %d consecutive successes (rise %d)", reg.Name, reg.Run, p.Rise)
		results = slices.Clone(reg.IDs[len(reg.IDs)-min(p.Rise, len(reg.IDs)):])
	case !r.OK && reg.Status != events.StatusDown && reg.Run >= p.Fall:
		reg.Status = events.StatusDown
		note = fmt.Sprintf("%s: %d consecutive failures (fall %d)", reg.Name, reg.Run, p.Fall)
		results = slices.Clone(reg.IDs[len(reg.IDs)-min(p.Fall, len(reg.IDs)):])
	}
	switch {
	case note != "" && len(stale) > 0:
		note += "; " + staleNote(stale, p)
	case note == "" && len(stale) > 0:
		return e.settle(staleAt, p, staleCause, staleNote(stale, p), nil)
	case note == "" && e.HealthySince.IsZero():
		return Decision{}, false // no vote changed: the common case
	case note == "":
		note = "still healthy"
	}
	d, ok := e.settle(r.At, p, r.ID, note, results)
	if ok && results != nil {
		d.StreakSince = reg.Since
	}
	return d, ok
}

// Expire lets time pass until now: regions silent for longer than StaleAfter stop voting, and a
// hold-down that has run its course brings the endpoint back. It reports the change, if any; a
// caller that let much time pass at once calls it again until it reports none.
func (e *Endpoint) Expire(now time.Time, p Policy) (Decision, bool) {
	// The deadlines pass in time order, however late Expire is called: a hold-down that ran its
	// course before a voting region went stale brings the endpoint back first, and regions go
	// stale one deadline at a time, each settled as when time passes tick by tick.
	for {
		if end := e.HealthySince.Add(p.HoldDown); !e.HealthySince.IsZero() && !now.Before(end) && !e.staleBy(end, p) {
			return e.settle(now, p, e.healthyCause, "", nil)
		}
		var first time.Time // the first deadline of a region stale by now
		for i := range e.Regions {
			r := &e.Regions[i]
			if d := r.Last.Add(p.StaleAfter); r.Run != 0 && now.After(d) && (first.IsZero() || d.Before(first)) {
				first = d
			}
		}
		if first.IsZero() {
			return Decision{}, false
		}
		stale, cause, at := e.expireRegions(first.Add(time.Nanosecond), p)
		if len(stale) == 0 {
			continue
		}
		if d, ok := e.settle(at, p, cause, staleNote(stale, p), nil); ok {
			return d, true
		}
	}
}

// staleBy reports whether a voting region is stale at at.
func (e *Endpoint) staleBy(at time.Time, p Policy) bool {
	for i := range e.Regions {
		r := &e.Regions[i]
		if r.Run != 0 && r.Status != events.StatusUnknown && at.Sub(r.Last) > p.StaleAfter {
			return true
		}
	}
	return false
}

// SetOverride records the override o (Action "" clears it) made on the endpoint or its pool by
// the event cause at at, and reports the change of the effective status, if any.
func (e *Endpoint) SetOverride(scope Scope, o events.Override, cause string, at time.Time, p Policy) (Decision, bool) {
	var in *events.Override
	if o.Action != "" {
		in = &o
	}
	what := "override"
	if scope == ScopePool {
		what = "pool override"
		e.Pool = in
	} else {
		e.Own = in
	}
	var note string
	if in != nil {
		note = fmt.Sprintf("%s %s by %s: %s", what, o.Action, o.By, o.Reason)
	} else {
		note = fmt.Sprintf("%s cleared by %s: %s", what, o.By, o.Reason)
	}
	return e.decide(at, p, cause, note, nil)
}

// Explain describes the endpoint's current effective status as a decision made at at, for a
// decider that finds STATE disagreeing with what the streams say (a replica died mid-change).
func (e *Endpoint) Explain(from events.Status, at time.Time, p Policy, cause, note string) Decision {
	return Decision{From: from, To: e.Status, At: at, Cause: cause,
		Reason: note + "; " + e.tally(p), Votes: e.votes(), Drill: e.drilled()}
}

// LastResult returns the id of the newest result the endpoint holds, or "".
func (e *Endpoint) LastResult() string {
	var id string
	var at time.Time
	for i := range e.Regions {
		r := &e.Regions[i]
		if len(r.IDs) > 0 && !r.Last.Before(at) {
			id, at = r.IDs[len(r.IDs)-1], r.Last
		}
	}
	return id
}

// ExpiresAt returns the earliest time at which Expire could change the endpoint: when the first
// voting region goes stale, or its hold-down runs its course. Before it, Expire changes nothing
// and reports nothing, so a caller holding thousands of endpoints need not call it; ok is false
// when only a result or an override can change the endpoint.
func (e *Endpoint) ExpiresAt(p Policy) (at time.Time, ok bool) {
	for i := range e.Regions {
		r := &e.Regions[i]
		if r.Run == 0 {
			continue
		}
		// Stale once now.Sub(r.Last) > StaleAfter: from a nanosecond past r.Last + StaleAfter.
		if when := r.Last.Add(p.StaleAfter + time.Nanosecond); !ok || when.Before(at) {
			at, ok = when, true
		}
	}
	if !e.HealthySince.IsZero() {
		if when := e.HealthySince.Add(p.HoldDown); !ok || when.Before(at) {
			at, ok = when, true
		}
	}
	return at, ok
}

// expireRegions resets the regions silent for longer than StaleAfter at now. It returns the names
// of those that were voting, the id of the last result of the latest of them, and when it went
// stale.
func (e *Endpoint) expireRegions(now time.Time, p Policy) (stale []string, cause string, at time.Time) {
	for i := range e.Regions {
		r := &e.Regions[i]
		if r.Run == 0 || now.Sub(r.Last) <= p.StaleAfter {
			continue
		}
		if r.Status != events.StatusUnknown {
			stale = append(stale, r.Name)
			if when := r.Last.Add(p.StaleAfter); when.After(at) || cause == "" {
				at, cause = when, r.IDs[len(r.IDs)-1]
			}
		}
		r.Status, r.Run, r.IDs = events.StatusUnknown, 0, r.IDs[:0]
	}
	return stale, cause, at
}

func staleNote(regions []string, p Policy) string {
	return strings.Join(regions, ", ") + ": no result for over stale_after " + p.StaleAfter.String()
}

// find returns the named region, or nil.
func (e *Endpoint) find(name string) *Region {
	for i := range e.Regions {
		if e.Regions[i].Name == name {
			return &e.Regions[i]
		}
	}
	return nil
}

// region returns the named region, adding it in name order if it is new.
func (e *Endpoint) region(name string) *Region {
	i, found := slices.BinarySearchFunc(e.Regions, name, func(r Region, n string) int { return strings.Compare(r.Name, n) })
	if !found {
		e.Regions = slices.Insert(e.Regions, i, Region{Name: name})
	}
	return &e.Regions[i]
}

// settle recomputes Probed from the votes and hold-down, then the effective status.
func (e *Endpoint) settle(at time.Time, p Policy, cause, note string, results []string) (Decision, bool) {
	up, voting := e.count()
	switch {
	case voting == 0:
		// No region has a view: keep the last decision (static stability), restart any hold-down.
		e.HealthySince, e.healthyCause, e.resumeSince = time.Time{}, "", time.Time{}
	case !Healthy(up, voting, p.Quorum):
		e.Probed = events.StatusDown
		e.HealthySince, e.healthyCause, e.resumeSince = time.Time{}, "", time.Time{}
	case e.Probed == events.StatusDown && p.HoldDown > 0:
		switch {
		case !e.HealthySince.IsZero():
		case !e.resumeSince.IsZero():
			// Before at when the results read back begin after it; after at when they lack the
			// vote that kept the endpoint unhealthy until then: either way, as STATE recorded it.
			e.HealthySince, e.healthyCause = e.resumeSince, e.resumeCause
		default:
			e.HealthySince, e.healthyCause = at, cause
		}
		e.resumeSince = time.Time{}
		if at.Sub(e.HealthySince) < p.HoldDown {
			return Decision{}, false
		}
		at, cause = e.HealthySince.Add(p.HoldDown), e.healthyCause
		note = "healthy for the hold_down of " + p.HoldDown.String()
		e.Probed = events.StatusUp
		e.HealthySince, e.healthyCause = time.Time{}, ""
	default:
		e.Probed = events.StatusUp
		e.HealthySince, e.healthyCause, e.resumeSince = time.Time{}, "", time.Time{}
	}
	return e.decide(at, p, cause, note, results)
}

// decide turns a change of the effective status into a Decision.
func (e *Endpoint) decide(at time.Time, p Policy, cause, note string, results []string) (Decision, bool) {
	to := e.Probed
	if o := e.override(); o != nil {
		to = overrideStatus(o.Action)
	}
	from := e.Status
	if to == events.StatusUnknown && e.drillMade {
		// Nothing decides the endpoint once the drill no longer does (no result yet): the
		// status stays the drill's, which its first results re-state or change.
		return Decision{}, false
	}
	e.Status = to
	drill := e.drilled()
	restated := to == from && e.drillMade && drill == nil
	if to == from && !restated || to == events.StatusUnknown {
		return Decision{}, false
	}
	e.drillMade = drill != nil
	reason := note
	if restated && e.override() == nil {
		reason = DrillOutlived + ": " + e.failing(p)
	}
	if e.override() == nil {
		reason += "; " + e.tally(p)
	}
	return Decision{From: from, To: to, At: at, Cause: cause, Reason: reason, Results: results, Votes: e.votes(), Drill: drill}, true
}

// drilled is the drill's simulated failure when it is what sets the status, else nil.
func (e *Endpoint) drilled() *events.Override {
	if e.Own == nil && e.Pool == nil {
		return e.Drill
	}
	return nil
}

func (e *Endpoint) override() *events.Override {
	if e.Own != nil {
		return e.Own
	}
	if e.Pool != nil {
		return e.Pool
	}
	return e.Drill
}

func overrideStatus(action string) events.Status {
	switch action {
	case events.ActionForceUp:
		return events.StatusUp
	case events.ActionDrain:
		return events.StatusDrained
	}
	return events.StatusDown
}

// Healthy reports whether up of voting regions meet the quorum: up ≥ quorum × voting, so a tie
// counts as healthy.
func Healthy(up, voting int, quorum float64) bool {
	return float64(up) >= quorum*float64(voting)-1e-9
}

// Voting is how many regions have a view of the endpoint now: reached fall or rise and not gone
// stale.
func (e *Endpoint) Voting() int {
	_, voting := e.count()
	return voting
}

func (e *Endpoint) count() (up, voting int) {
	for i := range e.Regions {
		switch e.Regions[i].Status {
		case events.StatusUp:
			up++
			voting++
		case events.StatusDown:
			voting++
		}
	}
	return up, voting
}

func (e *Endpoint) votes() []events.Vote {
	var out []events.Vote
	for i := range e.Regions {
		if s := e.Regions[i].Status; s != events.StatusUnknown {
			out = append(out, events.Vote{Region: e.Regions[i].Name, Status: s})
		}
	}
	return out
}

// failing names the current streak of each region that sees the endpoint down: "eu: 3
// consecutive failures, us: 1 consecutive successes (rise 2)"; "no region sees it down" when
// none does (staleness or a hold-down keeps it down).
func (e *Endpoint) failing(p Policy) string {
	var b strings.Builder
	for i := range e.Regions {
		if r := &e.Regions[i]; r.Status == events.StatusDown {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.Name + ": ")
			if r.OK {
				b.WriteString(strconv.Itoa(r.Run) + " consecutive successes (rise " + strconv.Itoa(p.Rise) + ")")
			} else {
				b.WriteString(strconv.Itoa(r.Run) + " consecutive failures")
			}
		}
	}
	if b.Len() == 0 {
		return "no region sees it down"
	}
	return b.String()
}

// tally is the vote as a sentence: "2 of 3 voting regions see it up (quorum 0.5); not voting: eu".
func (e *Endpoint) tally(p Policy) string {
	up, voting := e.count()
	var b strings.Builder
	b.WriteString(strconv.Itoa(up))
	b.WriteString(" of ")
	b.WriteString(strconv.Itoa(voting))
	b.WriteString(" voting regions see it up (quorum ")
	b.WriteString(strconv.FormatFloat(p.Quorum, 'g', -1, 64))
	b.WriteString(")")
	sep := "; not voting: "
	for i := range e.Regions {
		if e.Regions[i].Status == events.StatusUnknown {
			b.WriteString(sep)
			b.WriteString(e.Regions[i].Name)
			sep = ", "
		}
	}
	return b.String()
}
