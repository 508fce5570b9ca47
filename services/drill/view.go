package drill

import (
	"cmp"
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

// Drill states, as a Summary gives them.
const (
	StateInForce    = "in_force"
	StateRolledBack = "rolled_back"
	StateScored     = "scored"
)

// Summary is one drill run as DRILLS tells it, in force or ended: GET /v1/drills lists them.
type Summary struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	By    string   `json:"by"`
	Apps  []string `json:"apps"`
	Steps int      `json:"steps"`
	// Started and RollbackAt are on the stream's clock, as the controllers that roll the drill
	// back count them (see Apply), not on its runner's.
	Started    time.Time `json:"started"`
	RollbackAt time.Time `json:"rollback_at"`
	// State is in_force, rolled_back or scored.
	State string `json:"state"`
	// Step is the step in force (or the last one put in force), and Failures its simulated failures.
	Step     string           `json:"step,omitempty"`
	Failures []events.Failure `json:"failures"`
	// RolledBack is why and by whom: "requested by api/ops".
	RolledBack string `json:"rolled_back,omitempty"`
	// Pass is the scorecard's verdict, once scored.
	Pass *bool `json:"pass,omitempty"`
	// Seq is the stream sequence of the drill's start: a later one is a newer drill.
	Seq uint64 `json:"-"`
}

// View is the drills in force, and a summary of every drill, folded from the DRILLS stream. It
// does no I/O.
type View struct {
	drills map[string]*Active
	ended  map[string]bool
	runs   map[string]*Summary
}

// NewView returns a view with no drill.
func NewView() *View {
	return &View{drills: map[string]*Active{}, ended: map[string]bool{}, runs: map[string]*Summary{}}
}

// Apply folds one DRILLS event stored at seq on subject at stored, and reports whether the
// failures in force changed. A drill's lease and max_duration are counted from when DRILLS stored
// its events, not from the times its runner's clock gave them. Events of a drill that ended
// change nothing but its scorecard's verdict; an event that is not a drill event, or names
// another drill than its subject, is an error.
func (v *View) Apply(subject string, seq uint64, stored time.Time, e events.Envelope) (bool, error) {
	tok := events.SplitSubject(subject, "detour.drill")
	if len(tok) == 2 && tok[0] == "claim" {
		return false, nil // an app's claim: it puts no failure in force
	}
	if len(tok) != 1 {
		return false, fmt.Errorf("%w: %s is not a drill subject", events.ErrMalformed, subject)
	}
	id := tok[0]
	if e.Type == events.TypeDrillScored {
		var sc struct {
			Pass bool `json:"pass"`
		}
		if r := v.runs[id]; r != nil && e.Payload(&sc) == nil {
			r.State, r.Pass, r.Failures = StateScored, &sc.Pass, []events.Failure{}
		}
		return false, nil
	}
	if v.ended[id] {
		return false, nil
	}
	r := v.runs[id]
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
			v.runs[id] = &Summary{ID: id, Name: s.Name, By: s.By, Apps: s.Apps, Steps: s.Steps, Started: stored,
				RollbackAt: s.RollbackAt, State: StateInForce, Failures: []events.Failure{}, Seq: seq}
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
		if r.State == StateInForce {
			r.Step, r.Failures = s.Step, append([]events.Failure{}, s.Failures...)
		}
		return changed, nil
	case events.TypeDrillRenewed:
		if d != nil {
			d.Seq, d.Renewed = max(d.Seq, seq), later(d.Renewed, stored)
		}
		return false, nil
	case events.TypeDrillRolledBack:
		v.ended[id] = true
		delete(v.drills, id)
		if r != nil && r.State == StateInForce {
			r.State, r.Failures = StateRolledBack, []events.Failure{}
			var rb events.DrillRolledBack
			if e.Payload(&rb) == nil {
				r.RolledBack = rb.Reason + " by " + rb.By
			}
		}
		return d != nil && len(d.Failures) > 0, nil
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

// Runs returns the summaries of the drills: those in force first, then the others, newest first,
// at most limit.
func (v *View) Runs(limit int) []Summary {
	out := make([]Summary, 0, len(v.runs))
	for _, r := range v.runs {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Summary) int {
		if (a.State == StateInForce) != (b.State == StateInForce) {
			if a.State == StateInForce {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Seq, a.Seq)
	})
	return out[:min(len(out), limit)]
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
// folds it (decide.Endpoint.SetDrill), or nil. ID reads the drill's id back from it.
func (v *View) Override(app, pool, endpoint string) *events.Override {
	id, f, ok := v.Endpoint(app, pool, endpoint)
	if !ok {
		return nil
	}
	return &events.Override{App: app, Pool: pool, Endpoint: endpoint, Action: events.ActionForceDown,
		Reason: "drill " + id + simulatedFailure + f.String(), By: "drill/" + id}
}

// ID returns the id of the drill whose simulated failure o is (Override), or "" when o is none.
func ID(o *events.Override) string {
	if o == nil {
		return ""
	}
	if id, ok := strings.CutPrefix(o.By, "drill/"); ok {
		return id
	}
	return ""
}

// simulatedFailure follows the drill's id in the reason of a transition its simulated failure
// made (Override).
const simulatedFailure = ": simulated failure of "

// Of returns the id of the drill whose simulated failure made the status t records, or "" when
// the status is not a drill's (it says what the probes or an operator said): t.Drill, or, for a
// transition from before that mark, the drill its reason names in Override's wording.
func Of(t events.Transition) string {
	if t.Drill != "" {
		return t.Drill
	}
	rest, ok := strings.CutPrefix(t.Reason, "drill ")
	if !ok {
		return ""
	}
	id, failure, ok := strings.Cut(rest, simulatedFailure)
	if !ok || !events.ValidToken(id) || failure == "" {
		return ""
	}
	return id
}
