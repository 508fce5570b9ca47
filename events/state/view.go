package state

import (
	"fmt"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// Entry is the latest status recorded on one STATE subject.
type Entry struct {
	Status events.Status
	// Since is when the status was entered.
	Since time.Time
	// Seq is the stream sequence of the event that recorded it.
	Seq uint64
	// EventID is that event's id.
	EventID string
}

// View is the latest entry of every STATE subject, and the overrides in force.
type View struct {
	entries   map[string]Entry
	overrides map[string]events.Override
	// lastSeq is the highest stream sequence applied.
	lastSeq uint64
}

// NewView returns an empty view.
func NewView() *View {
	return &View{entries: map[string]Entry{}, overrides: map[string]events.Override{}}
}

// Reset empties the view, as NewView returns it: the STATE stream was deleted and created again
// (events.Delivery.Recreated), its sequences started over, and the view is folded again from
// the new stream's first message. Apply alone would drop the new stream's events as old ones.
func (v *View) Reset() {
	v.entries, v.overrides, v.lastSeq = map[string]Entry{}, map[string]events.Override{}, 0
}

// LastSeq is the highest stream sequence the view has applied.
func (v *View) LastSeq() uint64 { return v.lastSeq }

// Apply folds one STATE event, stored at seq on subject, into the view. It reports whether the
// view changed; events at or below an already applied sequence of their subject change nothing,
// so applying an event twice is harmless. A hold-down event (events.TypeHoldDownStarted) changes
// nothing; an event that is not a state event is an error.
func (v *View) Apply(subject string, seq uint64, e events.Envelope) (bool, error) {
	if prev, ok := v.entries[subject]; ok && seq != 0 && seq <= prev.Seq {
		return false, nil
	}
	v.lastSeq = max(v.lastSeq, seq)
	switch e.Type {
	case events.TypeOverrideSet, events.TypeOverrideCleared:
		var o events.Override
		if err := e.Payload(&o); err != nil {
			return false, err
		}
		if e.Type == events.TypeOverrideSet {
			v.overrides[subject] = o
		} else {
			delete(v.overrides, subject)
		}
		v.entries[subject] = Entry{Since: e.Time, Seq: seq, EventID: e.ID}
		return true, nil
	case events.TypeHoldDownStarted, events.TypeHoldDownCancelled:
		return false, nil // the decider's own record: no status, no answer changes
	}
	to, ok := events.TransitionStatus(e.Type)
	if !ok {
		return false, fmt.Errorf("%w: %s is not a state event", events.ErrMalformed, e.Type)
	}
	prev := v.entries[subject]
	v.entries[subject] = Entry{Status: to, Since: e.Time, Seq: seq, EventID: e.ID}
	return prev.Status != to, nil
}

// Subject returns the entry last recorded on subject; ok is false if there is none.
func (v *View) Subject(subject string) (Entry, bool) {
	e, ok := v.entries[subject]
	return e, ok
}

// Endpoint is the decided status of an endpoint.
func (v *View) Endpoint(app, pool, endpoint string) events.Status {
	return v.entries[events.EndpointStateSubject(app, pool, endpoint)].Status
}

// Pool is the recorded status of a pool (as the decider appended it).
func (v *View) Pool(app, pool string) events.Status {
	return v.entries[events.PoolStateSubject(app, pool)].Status
}

// Edge is the recorded status of an edge.
func (v *View) Edge(edge string) events.Status {
	return v.entries[events.EdgeStateSubject(edge)].Status
}

// Override returns the override in force on an endpoint, or on its whole pool when endpoint is
// "". An endpoint's own override wins over its pool's.
func (v *View) Override(app, pool, endpoint string) (events.Override, bool) {
	if endpoint != "" {
		if o, ok := v.overrides[events.OverrideSubject(app, pool, endpoint)]; ok {
			return o, true
		}
	}
	o, ok := v.overrides[events.OverrideSubject(app, pool, "")]
	return o, ok
}

// Overrides returns every override in force, keyed by subject.
func (v *View) Overrides() map[string]events.Override {
	out := make(map[string]events.Override, len(v.overrides))
	for k, o := range v.overrides {
		out[k] = o
	}
	return out
}

// Serving reports whether an endpoint may be put in an answer: it is up (or not yet decided and
// so given the benefit of the doubt, as a fresh pool must answer before its first check).
func (v *View) Serving(app, pool, endpoint string) bool {
	switch v.Endpoint(app, pool, endpoint) {
	case events.StatusUp, events.StatusUnknown:
		return true
	}
	return false
}

// ServingEndpoints returns the endpoints of p that may be answered, in configuration order.
func (v *View) ServingEndpoints(app string, p *config.Pool) []*config.Endpoint {
	out := make([]*config.Endpoint, 0, len(p.Endpoints))
	for i := range p.Endpoints {
		if v.Serving(app, p.Name, p.Endpoints[i].Name) {
			out = append(out, &p.Endpoints[i])
		}
	}
	return out
}

// PoolAvailable reports whether at least min_available of p's endpoints are serving.
func (v *View) PoolAvailable(app string, p *config.Pool) bool {
	n := 0
	for i := range p.Endpoints {
		if v.Serving(app, p.Name, p.Endpoints[i].Name) {
			n++
		}
	}
	return n >= max(1, p.MinAvailable.Need(len(p.Endpoints)))
}
