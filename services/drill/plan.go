package drill

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/proxy/route"
	"github.com/detourdev/detour/services/decide"
	"github.com/nats-io/nats.go/jetstream"
)

// Plan is what a drill would do, step by step, computed with the code the live path runs: the
// DNS server's answer selection (zone.Decide) and the controller's route tables (route.Compute)
// over the recorded state with the steps' failures applied.
type Plan struct {
	Name string `json:"name"`
	// Apps are the apps the drill touches.
	Apps []string `json:"apps"`
	// Before is what the apps answer and the edges route now.
	Before StepPlan   `json:"before"`
	Steps  []StepPlan `json:"steps"`
	// Refused lists every safety rule the drill breaks; a refused drill does not run.
	Refused []string `json:"refused,omitempty"`
}

// StepPlan is the expected outcome of the failures in force after one step.
type StepPlan struct {
	Index    int              `json:"index"`
	Step     string           `json:"step"`
	RTO      time.Duration    `json:"rto_ns"`
	Failures []events.Failure `json:"failures"`
	// Answers and Routes are the expected answers of every app and routes of every edge.
	Answers []Observation `json:"answers"`
	Routes  []Observation `json:"routes"`
}

// Observation is what one app answers ("shop.demo.test." → "127.0.0.12") or one edge routes
// one app to ("edge-a www" → "east (1/1 serving)").
type Observation struct {
	What   string `json:"what"`
	Answer string `json:"answer"`
}

// Votes are the probing regions' views of each endpoint, by its STATE subject, as its latest
// transition recorded them.
type Votes map[string][]events.Vote

// MakePlan previews drill f over configuration c, the recorded state v, the regions' votes and
// the drills in force. Without votes (nil) a region step predicts no change.
func MakePlan(f *File, c *config.Config, v *state.View, votes Votes, active *View) (Plan, error) {
	if err := f.Check(c); err != nil {
		return Plan{}, err
	}
	p := Plan{Name: f.Name, Apps: touched(f, c)}
	p.Before = expect(c, v, votes, nil)
	p.Before.Index, p.Before.Step = -1, "before the drill"
	var failures []events.Failure
	for i, s := range f.Steps {
		failures = append(failures, s.Failure)
		sp := expect(c, v, votes, failures)
		sp.Index, sp.Step, sp.RTO = i, "fail "+s.Failure.String(), s.RTO.D()
		p.Steps = append(p.Steps, sp)
		sim := simulate(c, v, votes, failures)
		for _, name := range p.Apps {
			a := c.App(name)
			var verdicts []string
			available := 0
			for j := range a.Pools {
				pool := &a.Pools[j]
				serving := len(sim.ServingEndpoints(a.Name, pool))
				need := max(1, pool.MinAvailable.Need(len(pool.Endpoints)))
				if serving >= need {
					available++
				}
				verdicts = append(verdicts, fmt.Sprintf("%s: %d of %d serving, need %d", pool.Name, serving, len(pool.Endpoints), need))
			}
			if available == 0 {
				p.Refused = append(p.Refused, fmt.Sprintf("steps[%d] (fail %s) leaves app %s with no pool at its min_available (%s)",
					i, s.Failure, a.Name, strings.Join(verdicts, "; ")))
			}
		}
	}
	for _, d := range active.Active() {
		for _, app := range d.Started.Apps {
			if slices.Contains(p.Apps, app) {
				p.Refused = append(p.Refused, fmt.Sprintf("app %s is already in drill %s (%s, by %s) until it rolls back",
					app, d.Started.ID, d.Started.Name, d.Started.By))
			}
		}
	}
	return p, nil
}

// touched lists the apps a drill's failures may change, in configuration order: an app whose
// pool or endpoint fails, every app for a region, and the apps an edge fronts or is an ingress of.
func touched(f *File, c *config.Config) []string {
	var out []string
	for _, a := range c.Apps {
		for _, s := range f.Steps {
			x := s.Failure
			hit := x.App == a.Name || x.Kind == events.FailRegion || slices.Contains(a.Ingress, x.Edge) || a.PrimaryEdge == x.Edge && x.Edge != ""
			if e := c.Edge(x.Edge); e != nil && e.App(a.Name) != nil {
				hit = true
			}
			if hit && !slices.Contains(out, a.Name) {
				out = append(out, a.Name)
			}
		}
	}
	return out
}

// simulate returns the state view v with failures applied: the endpoints of a failed pool and
// failed endpoints down (unless an override holds them, as in the decider), failed edges down,
// and each endpoint as the decider's own fold (decide.Endpoint) decides it once the failed
// regions' votes went stale and the other regions' votes stand.
func simulate(c *config.Config, v *state.View, votes Votes, failures []events.Failure) *state.View {
	sim := state.NewView()
	var seq uint64
	put := func(subject, typ string, data any) {
		seq++
		e, err := events.New(typ, "drill-plan", time.Unix(0, int64(seq)), data)
		if err == nil {
			_, _ = sim.Apply(subject, seq, e)
		}
	}
	failed := func(app, pool, ep string) bool {
		return slices.ContainsFunc(failures, func(f events.Failure) bool {
			return f.App == app && f.Pool == pool && (f.Kind == events.FailPool || f.Endpoint == ep)
		})
	}
	overrides := v.Overrides() // an override wins over the votes: they change nothing
	status := map[events.Status]string{events.StatusUp: events.TypeEndpointUp, events.StatusDown: events.TypeEndpointDown, events.StatusDrained: events.TypeEndpointDrained}
	for _, a := range c.Apps {
		for _, p := range a.Pools {
			for _, e := range p.Endpoints {
				s := v.Endpoint(a.Name, p.Name, e.Name)
				_, own := overrides[events.OverrideSubject(a.Name, p.Name, e.Name)]
				_, pool := overrides[events.OverrideSubject(a.Name, p.Name, "")]
				if rv := votes[events.EndpointStateSubject(a.Name, p.Name, e.Name)]; len(rv) > 0 && !own && !pool {
					s = withoutRegions(s, rv, failures, decide.PolicyFor(&a))
				}
				if failed(a.Name, p.Name, e.Name) && !own && !pool {
					s = events.StatusDown // an override wins over a drill's failure
				}
				if typ, ok := status[s]; ok {
					put(events.EndpointStateSubject(a.Name, p.Name, e.Name), typ, events.Transition{})
				}
			}
		}
	}
	for subject, o := range v.Overrides() {
		put(subject, events.TypeOverrideSet, o)
	}
	for _, e := range c.Edges {
		s := v.Edge(e.Name)
		if slices.ContainsFunc(failures, func(f events.Failure) bool { return f.Kind == events.FailEdge && f.Edge == e.Name }) {
			s = events.StatusDown
		}
		switch s {
		case events.StatusUp:
			put(events.EdgeStateSubject(e.Name), events.TypeEdgeUp, events.Transition{})
		case events.StatusDown:
			put(events.EdgeStateSubject(e.Name), events.TypeEdgeDown, events.Transition{})
		}
	}
	return sim
}

// withoutRegions is what the decider decides for an endpoint recorded at status with the
// regions' votes rv once the failed regions stop voting (their results are dropped, so they go
// stale): the status itself when no failed region voted.
func withoutRegions(status events.Status, rv []events.Vote, failures []events.Failure, p decide.Policy) events.Status {
	now := time.Now()
	var e decide.Endpoint
	dropped := false
	for _, vote := range rv {
		last := now
		if slices.ContainsFunc(failures, func(f events.Failure) bool { return f.Kind == events.FailRegion && f.Region == vote.Region }) {
			last, dropped = now.Add(-p.StaleAfter-time.Second), true
		}
		e.Regions = append(e.Regions, decide.Region{Name: vote.Region, Status: vote.Status, OK: vote.Status == events.StatusUp, Run: 1, Last: last, IDs: []string{"recorded"}})
	}
	if !dropped {
		return status
	}
	slices.SortFunc(e.Regions, func(a, b decide.Region) int { return strings.Compare(a.Name, b.Name) })
	e.Restore(status)
	e.Expire(now, p)
	return e.Status
}

// expect computes every app's answer and every edge's routes with failures in force.
func expect(c *config.Config, v *state.View, votes Votes, failures []events.Failure) StepPlan {
	sim := simulate(c, v, votes, failures)
	sp := StepPlan{Failures: slices.Clone(failures)}
	for i := range c.Apps {
		a := &c.Apps[i]
		sp.Answers = append(sp.Answers, Observation{What: config.Canonical(a.FQDN), Answer: AnswerText(zone.Decide(c, a, sim))})
	}
	for _, e := range c.Edges {
		t, err := route.Compute(c, sim, e.Name, "")
		if err != nil {
			continue
		}
		for _, r := range t.Apps {
			sp.Routes = append(sp.Routes, Observation{What: e.Name + " " + r.App, Answer: RouteText(r)})
		}
	}
	return sp
}

// AnswerText is an answer as a DNS client sees it: "CNAME target." or the sorted A records.
func AnswerText(a zone.AppAnswer) string {
	if a.CNAME != "" {
		return "CNAME " + config.Canonical(a.CNAME)
	}
	var ips []string
	for _, ip := range a.V4.Addresses() {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	if len(ips) == 0 {
		return "(no records)"
	}
	return strings.Join(ips, " ")
}

// RouteText is where an edge sends an app's traffic: its local pool, or its secondary edge.
func RouteText(r events.AppRoute) string {
	if r.Available {
		serving := 0
		for _, e := range r.Endpoints {
			if e.Serving() {
				serving++
			}
		}
		return "local " + r.Pool + " (" + strconv.Itoa(serving) + "/" + strconv.Itoa(len(r.Endpoints)) + " serving)"
	}
	if r.Secondary != nil && r.Secondary.Status != events.StatusDown {
		return "secondary " + r.Secondary.Edge
	}
	return "nowhere: local " + r.Pool + " unavailable"
}

// PlanFor reads the recorded state and the drills in force, both at once, and plans f.
func PlanFor(ctx context.Context, js jetstream.JetStream, c *config.Config, f *File) (Plan, error) {
	var (
		v              *state.View
		votes          Votes
		active         *View
		stateErr, dErr error
		wg             sync.WaitGroup
	)
	wg.Go(func() { v, votes, stateErr = ReadState(ctx, js, c) })
	wg.Go(func() { active, dErr = ReadDrills(ctx, js) })
	wg.Wait()
	if err := cmp.Or(stateErr, dErr); err != nil {
		return Plan{}, err
	}
	return MakePlan(f, c, v, votes, active)
}

// WriteText writes the plan: every step's answers and routes, and the safety rules it breaks.
func (p Plan) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "drill %s touches %s\n", p.Name, strings.Join(p.Apps, ", "))
	for _, sp := range append([]StepPlan{p.Before}, p.Steps...) {
		fmt.Fprintf(w, "%s", sp.Step)
		if sp.RTO > 0 {
			fmt.Fprintf(w, " (rto %s)", sp.RTO)
		}
		fmt.Fprintln(w, ":")
		for _, a := range sp.Answers {
			fmt.Fprintf(w, "  answer %s %s\n", a.What, a.Answer)
		}
		for _, r := range sp.Routes {
			fmt.Fprintf(w, "  route  %s → %s\n", r.What, r.Answer)
		}
	}
	for _, r := range p.Refused {
		fmt.Fprintf(w, "REFUSED: %s\n", r)
	}
	return nil
}
