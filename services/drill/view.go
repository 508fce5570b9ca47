package drill

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
)

// Active is a drill that started and has not rolled back.
type Active struct {
	// Started is the drill's start, its RollbackAt moved onto the stream's clock (see Apply).
	Started events.DrillStarted
	// Seq is the stream sequence of the drill's last event, for an expected-sequence append.
	Seq uint64
	// Failures are the simulated failures in force, and StepID the id of the event that put them.
	Failures []events.Failure
	StepID   string
	// Renewed is when DRILLS stored the runner's last renewal of the lease (or the drill's start).
	Renewed time.Time
}

// View is the drills in force, folded from the DRILLS stream. It does no I/O.
type View struct {
	drills map[string]*Active
	ended  map[string]bool
}

// NewView returns a view with no drill.
func NewView() *View { return &View{drills: map[string]*Active{}, ended: map[string]bool{}} }

// Apply folds one DRILLS event stored at seq on subject at stored, and reports whether the
// failures in force changed. A drill's lease and max_duration are counted from when DRILLS stored
// its events, not from the times its runner's clock gave them. Events of a drill that ended
// change nothing; an event that is not a drill event, or names another drill than its subject, is
// an error.
func (v *View) Apply(subject string, seq uint64, stored time.Time, e events.Envelope) (bool, error) {
	tok := events.SplitSubject(subject, "detour.drill")
	if len(tok) == 2 && tok[0] == "claim" {
		return false, nil // an app's claim: it puts no failure in force
	}
	if len(tok) != 1 {
		return false, fmt.Errorf("%w: %s is not a drill subject", events.ErrMalformed, subject)
	}
	id := tok[0]
	if v.ended[id] {
		return false, nil
	}
	d := v.drills[id]
	switch e.Type {
	case events.TypeDrillStarted:
		var s events.DrillStarted
		if err := e.Payload(&s); err != nil {
			return false, err
		}
		if s.ID != id {
			return false, fmt.Errorf("%w: drill %q started on the subject of %q", events.ErrMalformed, s.ID, id)
		}
		if d == nil {
			s.RollbackAt = stored.Add(s.RollbackAt.Sub(e.Time))
			v.drills[id] = &Active{Started: s, Seq: seq, Renewed: stored}
		}
		return false, nil
	case events.TypeDrillStepStarted:
		var s events.DrillStep
		if err := e.Payload(&s); err != nil {
			return false, err
		}
		if d == nil {
			return false, nil // a step of a drill whose start is not known: not in force
		}
		d.Seq, d.Renewed = max(d.Seq, seq), later(d.Renewed, stored)
		changed := !slices.Equal(d.Failures, s.Failures)
		d.Failures, d.StepID = s.Failures, e.ID
		return changed, nil
	case events.TypeDrillRenewed:
		if d != nil {
			d.Seq, d.Renewed = max(d.Seq, seq), later(d.Renewed, stored)
		}
		return false, nil
	case events.TypeDrillRolledBack:
		v.ended[id] = true
		delete(v.drills, id)
		return d != nil && len(d.Failures) > 0, nil
	case events.TypeDrillScored:
		return false, nil
	}
	return false, fmt.Errorf("%w: %s is not a drill event", events.ErrMalformed, e.Type)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Grace counts every drill's lease again from from (unless renewed later): the runners could
// not renew before, as DRILLS did not store (it elected a leader, or NATS was away), so their
// silence says nothing of them.
func (v *View) Grace(from time.Time) {
	for _, d := range v.drills {
		d.Renewed = later(d.Renewed, from)
	}
}

// Active returns the drills in force, by id.
func (v *View) Active() []*Active {
	out := make([]*Active, 0, len(v.drills))
	for _, d := range v.drills {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *Active) int { return strings.Compare(a.Started.ID, b.Started.ID) })
	return out
}

// Drill returns the drill id in force, or nil.
func (v *View) Drill(id string) *Active { return v.drills[id] }

// Ended reports whether the drill id rolled back.
func (v *View) Ended(id string) bool { return v.ended[id] }

// Endpoint returns the drill and the failure that make an endpoint seen down, if any: a failure
// of the endpoint itself or of its pool.
func (v *View) Endpoint(app, pool, endpoint string) (string, events.Failure, bool) {
	for _, d := range v.Active() {
		for _, f := range d.Failures {
			if f.App == app && f.Pool == pool && (f.Kind == events.FailPool || (f.Kind == events.FailEndpoint && f.Endpoint == endpoint)) {
				return d.Started.ID, f, true
			}
		}
	}
	return "", events.Failure{}, false
}

// Region reports whether a drill has the results of a probing region ignored.
func (v *View) Region(region string) bool {
	for _, d := range v.drills {
		for _, f := range d.Failures {
			if f.Kind == events.FailRegion && f.Region == region {
				return true
			}
		}
	}
	return false
}

// Edge returns the drill that has an edge seen dead, if any.
func (v *View) Edge(edge string) (string, bool) {
	for _, d := range v.Active() {
		for _, f := range d.Failures {
			if f.Kind == events.FailEdge && f.Edge == edge {
				return d.Started.ID, true
			}
		}
	}
	return "", false
}

// DueRollback is a drill whose rollback is due, and why.
type DueRollback struct {
	ID     string
	Reason string
	// Seq is the drill's last stream sequence: the rollback is appended only if it still is.
	Seq uint64
}

// Due returns the drills whose rollback is due at now: past their rollback_at (max_duration), or
// not renewed for their lease (the runner died).
func (v *View) Due(now time.Time) []DueRollback {
	var out []DueRollback
	for _, d := range v.Active() {
		switch {
		case !now.Before(d.Started.RollbackAt):
			out = append(out, DueRollback{ID: d.Started.ID, Reason: "max_duration", Seq: d.Seq})
		case d.Started.LeaseMS > 0 && now.Sub(d.Renewed) > time.Duration(d.Started.LeaseMS)*time.Millisecond:
			out = append(out, DueRollback{ID: d.Started.ID, Reason: "runner_lost", Seq: d.Seq})
		}
	}
	return out
}

// Override is the simulated failure the drills in force put on an endpoint, as the decider
// folds it (decide.Endpoint.SetDrill), or nil.
func (v *View) Override(app, pool, endpoint string) *events.Override {
	id, f, ok := v.Endpoint(app, pool, endpoint)
	if !ok {
		return nil
	}
	return &events.Override{App: app, Pool: pool, Endpoint: endpoint, Action: events.ActionForceDown,
		Reason: "drill " + id + ": simulated failure of " + f.String(), By: "drill/" + id}
}
