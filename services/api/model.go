package api

import (
	"strings"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/drill"
)

// keepTransitions is how many of the latest transitions the API holds for /v1/transitions.
const keepTransitions = 10000

// Answer is what an app's name answers now.
type Answer struct {
	A     []string `json:"a,omitempty"`
	AAAA  []string `json:"aaaa,omitempty"`
	CNAME string   `json:"cname,omitempty"`
	// AllDown is set when no pool is available and when_all_down chose the answer.
	AllDown bool `json:"all_down,omitempty"`
}

// App is an app with its current answer and pools.
type App struct {
	Name   string `json:"name"`
	FQDN   string `json:"fqdn"`
	Policy string `json:"policy"`
	Answer Answer `json:"answer"`
	Pools  []Pool `json:"pools"`
}

// Pool is a pool with its recorded status and endpoints.
type Pool struct {
	Name      string     `json:"name"`
	Region    string     `json:"region,omitempty"`
	Status    string     `json:"status"`
	Available bool       `json:"available"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is an endpoint with its decided status and each region's vote at that decision.
type Endpoint struct {
	Name     string           `json:"name"`
	Address  string           `json:"address"`
	Status   string           `json:"status"`
	Since    *time.Time       `json:"since,omitempty"`
	Reason   string           `json:"reason,omitempty"`
	Votes    []events.Vote    `json:"votes,omitempty"`
	Override *events.Override `json:"override,omitempty"`
}

// Edge is an edge proxy with its recorded liveness.
type Edge struct {
	Name     string     `json:"name"`
	Region   string     `json:"region"`
	Hostname string     `json:"hostname"`
	Status   string     `json:"status"`
	Since    *time.Time `json:"since,omitempty"`
}

// Transition is one STATE event: a transition of an endpoint, pool or edge, an override, or a
// hold-down of an endpoint that began (To "started") or was cancelled ("cancelled").
type Transition struct {
	Seq      uint64        `json:"seq"`
	Time     time.Time     `json:"time"`
	Type     string        `json:"type"`
	Kind     string        `json:"kind"`
	App      string        `json:"app,omitempty"`
	Pool     string        `json:"pool,omitempty"`
	Endpoint string        `json:"endpoint,omitempty"`
	Edge     string        `json:"edge,omitempty"`
	From     string        `json:"from,omitempty"`
	To       string        `json:"to,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	By       string        `json:"by,omitempty"`
	Votes    []events.Vote `json:"votes,omitempty"`
	EventID  string        `json:"event_id"`
	Cause    string        `json:"cause,omitempty"`
	// Drill is, on a transition, the drill whose simulated failure made it (an endpoint's or an
	// edge's), or caused it (a pool's down marked with it); empty otherwise.
	Drill string `json:"drill,omitempty"`
}

// Status is everything the status page shows.
type Status struct {
	ConfigVersion uint64       `json:"config_version"`
	StateSeq      uint64       `json:"state_seq"`
	Apps          []App        `json:"apps"`
	Edges         []Edge       `json:"edges"`
	Transitions   []Transition `json:"transitions"`
	// Stale says why what the rest shows may be old: the API is not connected to NATS, so no
	// STATE event reaches it, or has not read STATE to its end yet; empty while it is current.
	Stale string `json:"stale,omitempty"`
}

// model is the API's projection of CONFIG and STATE. Only its owner's lock guards it.
type model struct {
	cfg        *config.Config
	cfgVersion uint64
	view       *state.View
	last       map[string]Transition // subject -> its latest transition, for reasons and votes
	history    []Transition          // oldest first; the last keepTransitions of it are shown
}

func newModel(cfg *config.Config, version uint64) *model {
	return &model{cfg: cfg, cfgVersion: version, view: state.NewView(), last: map[string]Transition{}}
}

// reset forgets every STATE event folded: the stream was deleted and created again, and its
// sequences start over (events.Delivery.Recreated).
func (m *model) reset() {
	m.view.Reset()
	m.last, m.history = map[string]Transition{}, nil
}

// apply folds one STATE event stored at seq on subject; ok is false for what is not a state event.
func (m *model) apply(subject string, seq uint64, e events.Envelope) bool {
	if _, err := m.view.Apply(subject, seq, e); err != nil {
		return false
	}
	t := Transition{Seq: seq, Time: e.Time, Type: e.Type, EventID: e.ID, Cause: e.Cause}
	switch {
	case strings.HasPrefix(subject, "detour.state.override."):
		var o events.Override
		if e.Payload(&o) != nil {
			return false
		}
		t.Kind, t.App, t.Pool, t.Endpoint, t.To, t.Reason, t.By = "override", o.App, o.Pool, o.Endpoint, o.Action, o.Reason, o.By
		if e.Type == events.TypeOverrideCleared {
			t.To = "cleared"
		}
	case strings.HasPrefix(subject, "detour.state.holddown."):
		var h events.HoldDown
		if e.Payload(&h) != nil {
			return false
		}
		t.Kind, t.App, t.Pool, t.Endpoint, t.Reason = "holddown", h.App, h.Pool, h.Endpoint, h.Reason
		t.To = "started"
		if e.Type == events.TypeHoldDownCancelled {
			t.To = "cancelled"
		}
	default:
		var tr events.Transition
		if e.Payload(&tr) != nil {
			return false
		}
		t.Kind = strings.SplitN(strings.TrimPrefix(subject, "detour.state."), ".", 2)[0]
		t.App, t.Pool, t.Endpoint, t.Edge = tr.App, tr.Pool, tr.Endpoint, tr.Edge
		t.From, t.To, t.Reason, t.Votes, t.Drill = string(tr.From), string(tr.To), tr.Reason, tr.Votes, drill.Of(tr)
	}
	m.last[subject] = t
	m.history = append(m.history, t)
	if len(m.history) >= 2*keepTransitions {
		// Dropped a keepTransitions at a time, not one a transition: moving the kept ones for
		// each made every transition past them cost as much as moving 10,000.
		n := copy(m.history, m.history[len(m.history)-keepTransitions:])
		clear(m.history[n:])
		m.history = m.history[:n]
	}
	return true
}

func (m *model) apps() []App {
	out := make([]App, 0, len(m.cfg.Apps))
	for i := range m.cfg.Apps {
		out = append(out, m.app(&m.cfg.Apps[i]))
	}
	return out
}

func (m *model) app(a *config.App) App {
	ans := zone.Decide(m.cfg, a, m.view)
	out := App{Name: a.Name, FQDN: strings.TrimSuffix(a.FQDN, "."), Policy: a.Policy,
		Answer: Answer{CNAME: strings.TrimSuffix(ans.CNAME, "."), AllDown: ans.AllDown}}
	for _, ip := range ans.V4.Addresses() {
		out.Answer.A = append(out.Answer.A, ip.String())
	}
	for _, ip := range ans.V6.Addresses() {
		out.Answer.AAAA = append(out.Answer.AAAA, ip.String())
	}
	for i := range a.Pools {
		p := &a.Pools[i]
		pv := Pool{Name: p.Name, Region: p.Region, Status: statusOf(m.view.Pool(a.Name, p.Name)), Available: m.view.PoolAvailable(a.Name, p)}
		for _, e := range p.Endpoints {
			subject := events.EndpointStateSubject(a.Name, p.Name, e.Name)
			ev := Endpoint{Name: e.Name, Address: e.Address, Status: statusOf(m.view.Endpoint(a.Name, p.Name, e.Name))}
			if entry, ok := m.view.Subject(subject); ok {
				since := entry.Since
				ev.Since = &since
			}
			if t, ok := m.last[subject]; ok {
				ev.Reason, ev.Votes = t.Reason, t.Votes
			}
			if o, ok := m.view.Override(a.Name, p.Name, e.Name); ok {
				ev.Override = &o
			}
			pv.Endpoints = append(pv.Endpoints, ev)
		}
		out.Pools = append(out.Pools, pv)
	}
	return out
}

func (m *model) edges() []Edge {
	out := make([]Edge, 0, len(m.cfg.Edges))
	for _, e := range m.cfg.Edges {
		ev := Edge{Name: e.Name, Region: e.Region, Hostname: strings.TrimSuffix(e.Hostname, "."), Status: statusOf(m.view.Edge(e.Name))}
		if entry, ok := m.view.Subject(events.EdgeStateSubject(e.Name)); ok {
			since := entry.Since
			ev.Since = &since
		}
		out = append(out, ev)
	}
	return out
}

// status is the page's snapshot, with the last n transitions, newest first.
func (m *model) status(n int) Status {
	return Status{ConfigVersion: m.cfgVersion, StateSeq: m.view.LastSeq(), Apps: m.apps(), Edges: m.edges(),
		Transitions: m.transitions(filter{}, 0, n)}
}

// filter selects transitions.
type filter struct {
	kind, app, pool, endpoint, edge, to string
}

func (f filter) match(t Transition) bool {
	return (f.kind == "" || t.Kind == f.kind) && (f.app == "" || t.App == f.app) && (f.pool == "" || t.Pool == f.pool) &&
		(f.endpoint == "" || t.Endpoint == f.endpoint) && (f.edge == "" || t.Edge == f.edge) && (f.to == "" || t.To == f.to)
}

// transitions returns up to limit matching transitions stored before seq before (0: the
// latest), newest first.
func (m *model) transitions(f filter, before uint64, limit int) []Transition {
	out := []Transition{}
	for i := len(m.history) - 1; i >= max(0, len(m.history)-keepTransitions) && len(out) < limit; i-- {
		t := m.history[i]
		if (before == 0 || t.Seq < before) && f.match(t) {
			out = append(out, t)
		}
	}
	return out
}

// statusOf names a status; an undecided one is "unknown".
func statusOf(s events.Status) string {
	if s == events.StatusUnknown {
		return "unknown"
	}
	return string(s)
}
