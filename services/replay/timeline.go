package replay

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
)

// Filter selects what a timeline shows. Every event is folded whatever the filter, so phases are
// complete; the filter only drops items from the result.
type Filter struct {
	// From and To bound the items' times; zero is unbounded.
	From, To time.Time
	// App and Endpoint keep the items of one app and one endpoint (its name or address token);
	// pool transitions, answers and route tables are kept when a kept transition caused them,
	// with App the steps of the drills that touch it, and with Endpoint the overrides and
	// transitions of its pools and the drills' steps.
	App, Endpoint string
	// Region keeps the probe items of one probing region (transitions, answers and routes stay).
	Region string
}

// Timeline is the history of an incident in the order it happened.
type Timeline struct {
	Filter Filter `json:"filter"`
	Items  []Item `json:"items"`
	// Records counts the stream messages folded, Results the probe results among them, and
	// Malformed those that could not be decoded (skipped).
	Records   uint64 `json:"records"`
	Results   uint64 `json:"results"`
	Malformed uint64 `json:"malformed"`
	// Unknown counts the events of types this version does not know (a later version's), skipped,
	// dated within the filter's From and To.
	Unknown uint64 `json:"unknown"`
}

// Builder folds records, in the order the streams stored them, into a timeline. It does no I/O.
type Builder struct {
	filter Filter
	items  []Item
	// endpoints holds each endpoint's probe streaks per region, keyed app/pool/endpoint.
	endpoints map[epKey]*epStreaks
	// transitions maps a transition's event id to its item, to attach answers and routes to it.
	transitions map[string]int
	// manual are the ids of overrides and drill events: transitions they cause have no probe phase.
	manual map[string]bool
	// drillApps are the apps each drill touches, by its id.
	drillApps map[string][]string
	records   uint64
	results   uint64
	malformed uint64
	unknown   uint64
}

type epKey struct{ app, pool, endpoint string }

type epStreaks struct{ regions []streak }

// streak is the current run of equal results of one region on one endpoint.
type streak struct {
	region string
	ok     bool
	start  time.Time
}

// NewBuilder returns a builder whose timeline keeps what f selects.
func NewBuilder(f Filter) *Builder {
	return &Builder{filter: f, endpoints: map[epKey]*epStreaks{}, transitions: map[string]int{}, manual: map[string]bool{}, drillApps: map[string][]string{}}
}

// Build folds records, in the order Read delivers them, into a timeline.
func Build(records []Record, f Filter) Timeline {
	b := NewBuilder(f)
	for i := range records {
		b.Add(&records[i])
	}
	return b.Timeline()
}

// Add folds one record.
func (b *Builder) Add(r *Record) {
	b.records++
	if r.Err != nil {
		b.malformed++
		return
	}
	if r.Stream == events.StreamProbes {
		region := probeRegion(r.Subject)
		for i := range r.Results {
			b.probe(r, region, &r.Results[i])
		}
		return
	}
	e := &r.Env
	it := Item{Time: e.Time, Stored: r.Stored, Stream: r.Stream, Seq: r.Seq, ID: e.ID, Cause: e.Cause}
	switch {
	case e.Type == events.TypeOverrideSet || e.Type == events.TypeOverrideCleared:
		var o events.Override
		if e.Payload(&o) != nil {
			b.malformed++
			return
		}
		it.Kind, it.App, it.Pool, it.Endpoint, it.Action, it.By, it.Reason = KindOverride, o.App, o.Pool, o.Endpoint, o.Action, o.By, o.Reason
		if e.Type == events.TypeOverrideCleared {
			it.Action = "cleared"
		}
		b.manual[e.ID] = true
		b.items = append(b.items, it)
	case e.Type == events.TypeZoneChanged:
		var z events.ZoneChanged
		if e.Payload(&z) != nil {
			b.malformed++
			return
		}
		it.Kind, it.Zone, it.Serial, it.Changes = KindAnswer, z.Zone, z.Serial, z.Changes
		it.Reason = answerSummary(z.Changes)
		b.attach(&it, func(p *Phases) {
			if p.Answered.IsZero() {
				p.Answered, p.Serial = e.Time, z.Serial
			}
		})
		b.items = append(b.items, it)
	case e.Type == events.TypeRoutesComputed || e.Type == events.TypeRouteComputed:
		var t events.RouteTable
		var one events.EdgeRoute
		switch {
		case e.Type == events.TypeRouteComputed && e.Payload(&one) == nil:
			if one.RefreshOf != 0 {
				return // the route did not change: stored again so that ROUTES keeps it
			}
			t = one.Table()
		case e.Type == events.TypeRoutesComputed && e.Payload(&t) == nil:
		default:
			b.malformed++
			return
		}
		it.Kind, it.Edge, it.Edges, it.Reason = KindRoutes, t.Edge, []string{t.Edge}, routesSummary(t)
		b.attach(&it, func(p *Phases) {
			p.Switched = latest(p.Switched, e.Time)
			if !slices.Contains(p.Edges, t.Edge) {
				p.Edges = append(p.Edges, t.Edge)
			}
		})
		b.items = append(b.items, it)
	case e.Type == events.TypeDrillClaimed || e.Type == events.TypeDrillReleased:
		return // which drill holds an app: its start and rollback are on the timeline
	case strings.HasPrefix(e.Type, "detour.drill."):
		it.Kind, it.Drill = KindDrill, lastToken(r.Subject)
		var started events.DrillStarted
		if e.Type == events.TypeDrillStarted && e.Payload(&started) == nil {
			b.drillApps[it.Drill] = started.Apps
		}
		b.manual[e.ID] = true
		it.Action, it.Reason = drillSummary(e)
		b.items = append(b.items, it)
	default:
		to, ok := events.TransitionStatus(e.Type)
		if !ok {
			if !untold[e.Type] && b.filter.within(e.Time) {
				b.unknown++
			}
			return
		}
		var t events.Transition
		if e.Payload(&t) != nil {
			b.malformed++
			return
		}
		it.Kind, it.App, it.Pool, it.Endpoint, it.Edge = KindTransition, t.App, t.Pool, t.Endpoint, t.Edge
		it.From, it.To, it.Reason, it.Votes, it.Drill = t.From, to, t.Reason, t.Votes, drill.Of(t)
		p := &Phases{Threshold: e.Time, Appended: r.Stored}
		if t.Endpoint != "" && !b.manual[e.Cause] {
			p.FirstProbe = b.streakStart(epKey{t.App, t.Pool, t.Endpoint}, to == events.StatusUp, e.Time)
		}
		p.compute()
		it.Phases = p
		if parent, ok := b.transitions[e.Cause]; ok && it.App == "" {
			it.App = b.items[parent].App
		}
		b.transitions[e.ID] = len(b.items)
		b.items = append(b.items, it)
	}
}

// untold are the types of the streams read that the timeline knows and does not show.
var untold = map[string]bool{
	events.TypeHoldDownStarted: true, events.TypeHoldDownCancelled: true,
	events.TypeZonePushed: true, events.TypeZonePushFailed: true,
	events.TypeConfigApplied: true, events.TypeConfigRejected: true,
}

// attach applies set to the phases of the transition that caused it and of every transition
// that one derives from (a pool's transition derives from its endpoint's), and names the app.
func (b *Builder) attach(it *Item, set func(*Phases)) {
	for id, hops := it.Cause, 0; hops < 8; hops++ {
		i, ok := b.transitions[id]
		if !ok {
			return
		}
		t := &b.items[i]
		set(t.Phases)
		t.Phases.compute()
		if it.App == "" {
			it.App = t.App
		}
		id = t.Cause
	}
}

// probe folds one result and adds an item when a region's view of the endpoint turns.
func (b *Builder) probe(r *Record, region string, res *events.ProbeResult) {
	if res.Region != region {
		return // the decider believes a result only for its subject's region
	}
	b.results++
	k := epKey{res.App, res.Pool, res.Endpoint}
	ep := b.endpoints[k]
	if ep == nil {
		ep = &epStreaks{}
		b.endpoints[k] = ep
	}
	var s *streak
	for i := range ep.regions {
		if ep.regions[i].region == res.Region {
			s = &ep.regions[i]
			break
		}
	}
	if s == nil {
		ep.regions = append(ep.regions, streak{region: res.Region, ok: true})
		s = &ep.regions[len(ep.regions)-1]
		if res.OK {
			s.start = r.Stored
			return
		}
	} else if s.ok == res.OK {
		return
	}
	s.ok, s.start = res.OK, r.Stored
	it := Item{Time: r.Stored, Stored: r.Stored, Kind: KindProbeFailed, Stream: r.Stream, Seq: r.Seq, ID: res.ID,
		App: res.App, Pool: res.Pool, Endpoint: res.Endpoint, Region: res.Region}
	if res.OK {
		it.Kind, it.Reason = KindProbePassed, "passed"
	} else {
		it.Reason = res.ErrorClass
		if res.Error != "" {
			it.Reason += ": " + res.Error
		}
	}
	b.items = append(b.items, it)
}

// streakStart is the earliest start, at or before at, of the regions' current streaks of
// results whose outcome is ok.
func (b *Builder) streakStart(k epKey, ok bool, at time.Time) time.Time {
	var first time.Time
	if ep := b.endpoints[k]; ep != nil {
		for _, s := range ep.regions {
			if s.ok == ok && !s.start.After(at) && (first.IsZero() || s.start.Before(first)) {
				first = s.start
			}
		}
	}
	return first
}

// Timeline returns the items the filter keeps, in order.
func (b *Builder) Timeline() Timeline {
	t := Timeline{Filter: b.filter, Items: []Item{}, Records: b.records, Results: b.results, Malformed: b.malformed, Unknown: b.unknown}
	// The pools the filter's endpoint is in, whose overrides hold it.
	pools := map[epKey]bool{}
	for i := range b.items {
		if it := &b.items[i]; b.filter.Endpoint != "" && it.Endpoint == b.filter.Endpoint {
			pools[epKey{it.App, it.Pool, ""}] = true
		}
	}
	for i := range b.items {
		if b.keep(&b.items[i], pools) {
			t.Items = append(t.Items, b.items[i])
		}
	}
	return t
}

// within reports whether at is between f's From and To.
func (f *Filter) within(at time.Time) bool {
	return (f.From.IsZero() || !at.Before(f.From)) && (f.To.IsZero() || !at.After(f.To))
}

// keepsEndpoint reports whether f keeps the endpoint named endpoint of app.
func (f *Filter) keepsEndpoint(app, endpoint string) bool {
	return (f.App == "" || app == f.App) && (f.Endpoint == "" || endpoint == f.Endpoint)
}

func (b *Builder) keep(it *Item, pools map[epKey]bool) bool {
	f := &b.filter
	switch {
	case !f.within(it.Time):
		return false
	case f.App != "" && it.Kind == KindDrill && !slices.Contains(b.drillApps[it.Drill], f.App):
		return false
	case f.App != "" && it.Kind != KindDrill && it.App != f.App:
		return false
	case f.Endpoint != "" && !b.follows(it, pools):
		return false
	case f.Region != "" && it.Region != "" && it.Region != f.Region:
		return false
	}
	return true
}

// follows reports whether an item is part of the filter's endpoint's story: its probe results,
// transitions and overrides, the overrides and transitions of its pools (one another endpoint's
// transition completed is its pool's all the same), the answers and route tables those
// transitions caused, and the drills' steps.
func (b *Builder) follows(it *Item, pools map[epKey]bool) bool {
	switch {
	case it.Kind == KindDrill:
		return true
	case it.Kind == KindProbeFailed || it.Kind == KindProbePassed || it.Endpoint != "":
		return it.Endpoint == b.filter.Endpoint
	case it.Kind == KindOverride:
		return pools[epKey{it.App, it.Pool, ""}]
	case it.Kind == KindTransition && pools[epKey{it.App, it.Pool, ""}]:
		return true
	}
	for id, hops := it.Cause, 0; hops < 8; hops++ {
		i, ok := b.transitions[id]
		if !ok {
			return false
		}
		switch t := &b.items[i]; {
		case t.Endpoint != "":
			return t.Endpoint == b.filter.Endpoint
		case pools[epKey{t.App, t.Pool, ""}]:
			return true
		}
		id = b.items[i].Cause
	}
	return false
}

// probeRegion returns the region token of a PROBES subject (detour.probe.<region>.…), or "".
func probeRegion(subject string) string {
	rest, ok := strings.CutPrefix(subject, "detour.probe.")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		return rest[:i]
	}
	return rest
}

func lastToken(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// answerSummary is a zone change as one line: "shop.demo.test. A 127.0.0.11 → 127.0.0.12".
func answerSummary(changes []events.RecordChange) string {
	var parts []string
	for _, c := range changes {
		before, after := strings.Join(c.Before, ","), strings.Join(c.After, ",")
		if before == "" {
			before = "(none)"
		}
		if after == "" {
			after = "(none)"
		}
		parts = append(parts, c.Name+" "+c.Type+" "+before+" → "+after)
	}
	return strings.Join(parts, "; ")
}

// routesSummary is a route table as one line: where each app's traffic goes.
func routesSummary(t events.RouteTable) string {
	var parts []string
	for _, a := range t.Apps {
		serving := 0
		for _, e := range a.Endpoints {
			if e.Serving() {
				serving++
			}
		}
		s := a.App + " → " + a.Pool + " (" + strconv.Itoa(serving) + "/" + strconv.Itoa(len(a.Endpoints)) + " serving)"
		if !a.Available {
			s = a.App + " → pool " + a.Pool + " unavailable"
			if a.Secondary != nil {
				s += ", secondary " + a.Secondary.Edge
				if a.Secondary.Status == events.StatusDown {
					s += " (down)"
				}
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func formatMillis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

// drillSummary names a drill event's action (its type without prefix and version) and its
// reason, as far as the payload says one.
func drillSummary(e *events.Envelope) (action, reason string) {
	action = strings.TrimSuffix(strings.TrimPrefix(e.Type, "detour.drill."), ".v1")
	var p struct {
		Step   string `json:"step"`
		Reason string `json:"reason"`
	}
	if e.Payload(&p) == nil {
		reason = strings.TrimPrefix(strings.Join([]string{p.Step, p.Reason}, ": "), ": ")
		reason = strings.TrimSuffix(reason, ": ")
	}
	return action, reason
}
