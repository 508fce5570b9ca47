package decider

import (
	"bytes"
	"math"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/decide"
	"github.com/detourdev/detour/services/drill"
)

// appSlot, poolSlot and endpointSlot are the decider's view of the configuration: the pure state
// of each endpoint and what STATE last recorded for it.
type appSlot struct {
	cfg    *config.App
	policy decide.Policy
	pools  []*poolSlot
}

type poolSlot struct {
	app       *appSlot
	cfg       *config.Pool
	subject   string
	endpoints []*endpointSlot
	// status, seq and since are what STATE last recorded on subject, and when it happened.
	status events.Status
	seq    uint64
	since  time.Time
	// drilled is set while what STATE last recorded on subject is a down an endpoint's
	// transition a drill's simulated failure made caused (see restates): marked with the drill
	// (events.Transition.Drill), or, recorded before pools' transitions were marked, caused by
	// the drilled transition the endpoint still records last (drillCaused).
	drilled bool
	// overrideSeq is the stream sequence of the last pool override applied.
	overrideSeq uint64
	// retry holds a pool transition that could not be appended, to try again on the next tick.
	retry bool
	// contradicted is when STATE began to record a status its endpoints' do not imply; zero
	// while it does not.
	contradicted time.Time
	// next is the pool's transition in flight, if any (see sent); inFlight counts the appends in
	// flight of the pool and its endpoints, and recheck asks for the pool to be checked once
	// they have landed (another replica's transition came meanwhile).
	next     *sent
	inFlight int
	recheck  bool
	// sent follows the transitions this replica sent on the pool until one is counted.
	sent events.Sent[sentTransition]
	// keyed is set once an append of the pool was preempted (see decider.idKey).
	keyed bool
}

type endpointSlot struct {
	pool    *poolSlot
	cfg     *config.Endpoint
	subject string
	st      decide.Endpoint
	// status, seq, eventID, cause and since are what STATE last recorded on subject, what caused
	// it, and when this replica judges it happened (see ownDate), which its next decisions follow;
	// dated is the time the event bears, which the next transition appended follows (notBefore).
	status  events.Status
	seq     uint64
	eventID string
	cause   string
	since   time.Time
	dated   time.Time
	// drilled is the id of the drill whose simulated failure made what STATE last recorded on
	// subject (drill.Of), else "": that status is the drill's, not the probes'.
	drilled string
	// restoredDrill is set while st.Drill is the failure restoreDrill put back from drilled, not
	// one folded from DRILLS.
	restoredDrill bool
	// overrideSeq is the stream sequence of the last override of this endpoint applied.
	overrideSeq uint64
	// pending is the latest decision made before the decider went live, or one whose append
	// failed and is tried again on the next tick.
	pending *decide.Decision
	// contradicted is when STATE began to record a status the probes do not imply; zero while
	// it does not. dropped is the last decision not appended because STATE recorded an event
	// dated after it (see due), while that contradiction lasts: re-asserted, it is appended as
	// made, a failover timed as one.
	contradicted time.Time
	dropped      *decide.Decision
	// folded is, per region, the last result folded (see once).
	folded []foldedResult
	// next is the endpoint's transition in flight, if any (see sent).
	next *sent
	// sent follows the transitions this replica sent on the endpoint until one is counted.
	sent events.Sent[sentTransition]
	// keyed is set once an append of the endpoint was preempted (see decider.idKey).
	keyed bool
	// holdSubject records when the endpoint's hold-downs began (events.HoldDownSubject); hold is
	// what this replica knows of them.
	holdSubject string
	hold        holdDowns
	// i is the endpoint's place in index.endpoints and index.due.
	i int
}

// drillReason begins the JSON of the reason of a transition a drill's simulated failure made
// before transitions were marked (drill.Of), and drillMark begins the mark.
var drillReason, drillMark = []byte(`"reason":"drill `), []byte(`"drill":"`)

// foldedResult is the last result folded from one region: its prober time and id, and, while
// PROBES has not yet delivered past what was heard on the wire, the prober time of the newest
// result folded as heard.
type foldedResult struct {
	region   string
	at       time.Time
	id       string
	heardTil time.Time
}

// once reports whether r, from region, is to be folded, and notes it: a result PROBES delivers
// after its copy heard on the wire was folded is not folded again. A result heard is folded only
// when it is newer (by its prober's time) than every one folded from region; one PROBES delivers
// only when it is newer than those folded as heard, and PROBES delivering past them ends the
// check, so that without the wire results are folded as PROBES orders them, whatever the
// probers' clocks say.
func (s *endpointSlot) once(region string, r *events.ProbeResult, heard bool) bool {
	var f *foldedResult
	for i := range s.folded {
		if s.folded[i].region == region {
			f = &s.folded[i]
		}
	}
	if f == nil {
		s.folded = append(s.folded, foldedResult{region: region})
		f = &s.folded[len(s.folded)-1]
	}
	switch {
	case heard && (r.At.IsZero() || r.ID == f.id || !r.At.After(f.at)):
		return false
	case heard:
		f.heardTil = r.At
	case !f.heardTil.IsZero() && !r.At.After(f.heardTil):
		return false
	default:
		f.heardTil = time.Time{}
	}
	f.at, f.id = r.At, r.ID
	return true
}

// holdDowns is what a replica knows of an endpoint's hold-downs: what STATE last recorded on its
// hold-down subject, or this replica last appended there (holdRecord), and the hold-down this
// replica's own view had when it last looked (noteHoldDown), since heldSince, begun by the result
// heldCause: it records the changes of its own view only, never cancelling one another replica,
// ahead in the probes, recorded first. The zero value knows of none: a field added here is
// forgotten with the others when STATE is created again, and kept across a new version.
type holdDowns struct {
	holdRecord
	heldSince time.Time
	heldCause string
}

// holdRecord is the hold-down event STATE holds at seq on an endpoint's hold-down subject: a
// hold-down under way since since, begun by the result cause, or none (since zero); address and
// length are the address and the hold_down it names (length zero when it names none that
// parses); cancelled is the result that began the hold-down it records cancelled. A new event
// replaces the record whole.
type holdRecord struct {
	seq       uint64
	since     time.Time
	cause     string
	address   string
	length    time.Duration
	cancelled string
}

type nameKey struct{ app, pool, endpoint string }

// index is every app, pool and endpoint of the configuration, reachable by name and by subject.
type index struct {
	apps      []*appSlot
	endpoints []*endpointSlot
	// due is, per endpoint (in the order of endpoints), the stream time in Unix nanoseconds from
	// which a tick must look at it: its ExpiresAt, or math.MinInt64 while it holds a pending
	// decision; zero (looked at on the next tick) until the first tick computes it. A tick reads
	// this array rather than every slot, so an idle tick over a hundred thousand endpoints is a
	// scan of contiguous memory.
	due       []int64
	byName    map[nameKey]*endpointSlot
	bySubject map[string]*endpointSlot
	pools     map[string]*poolSlot
	// overrides maps an override subject to its endpoint, or to its pool for "_pool".
	epOverrides   map[string]*endpointSlot
	poolOverrides map[string]*poolSlot
	// holdDowns maps a hold-down subject to its endpoint.
	holdDowns map[string]*endpointSlot
	// replay is defaultReplay of the index's configuration, worked out once (decider.readBack).
	replay time.Duration
}

func newIndex(c *config.Config) *index {
	var pools, endpoints int
	for i := range c.Apps {
		for j := range c.Apps[i].Pools {
			pools++
			endpoints += len(c.Apps[i].Pools[j].Endpoints)
		}
	}
	// Sized up front: grown one insert at a time, the maps of 10,000 endpoints were rehashed
	// again and again (BenchmarkNewIndex).
	ix := &index{byName: make(map[nameKey]*endpointSlot, endpoints), bySubject: make(map[string]*endpointSlot, endpoints),
		pools: make(map[string]*poolSlot, pools), epOverrides: make(map[string]*endpointSlot, endpoints),
		poolOverrides: make(map[string]*poolSlot, pools), holdDowns: make(map[string]*endpointSlot, endpoints),
		apps: make([]*appSlot, 0, len(c.Apps)), endpoints: make([]*endpointSlot, 0, endpoints), replay: defaultReplay(c)}
	for i := range c.Apps {
		a := &appSlot{cfg: &c.Apps[i], policy: decide.PolicyFor(&c.Apps[i])}
		ix.apps = append(ix.apps, a)
		for j := range a.cfg.Pools {
			pc := &a.cfg.Pools[j]
			p := &poolSlot{app: a, cfg: pc, subject: events.PoolStateSubject(a.cfg.Name, pc.Name)}
			a.pools = append(a.pools, p)
			ix.pools[p.subject] = p
			ix.poolOverrides[events.OverrideSubject(a.cfg.Name, pc.Name, "")] = p
			for k := range pc.Endpoints {
				ec := &pc.Endpoints[k]
				s := &endpointSlot{pool: p, cfg: ec, subject: events.EndpointStateSubject(a.cfg.Name, pc.Name, ec.Name),
					holdSubject: events.HoldDownSubject(a.cfg.Name, pc.Name, ec.Name), i: len(ix.endpoints)}
				p.endpoints = append(p.endpoints, s)
				ix.endpoints = append(ix.endpoints, s)
				ix.byName[nameKey{a.cfg.Name, pc.Name, ec.Name}] = s
				ix.bySubject[s.subject] = s
				ix.epOverrides[events.OverrideSubject(a.cfg.Name, pc.Name, ec.Name)] = s
				ix.holdDowns[s.holdSubject] = s
			}
		}
	}
	ix.due = make([]int64, len(ix.endpoints))
	return ix
}

// rearm notes when a tick must next look at s: after anything that may have changed its
// deadlines (a result, an override, a drill, an expiry) or its pending decision.
func (ix *index) rearm(s *endpointSlot) {
	switch at, ok := s.st.ExpiresAt(s.pool.app.policy); {
	case s.pending != nil:
		ix.due[s.i] = math.MinInt64
	case ok:
		ix.due[s.i] = at.UnixNano()
	default:
		ix.due[s.i] = math.MaxInt64
	}
}

// verdict is the pool's availability from its endpoints' recorded statuses.
func (p *poolSlot) verdict() decide.PoolVerdict {
	statuses := make([]events.Status, len(p.endpoints))
	for i, s := range p.endpoints {
		statuses[i] = s.status
	}
	return decide.EvaluatePool(statuses, p.cfg.MinAvailable)
}

func (p *poolSlot) thresholds() events.Thresholds {
	t := p.app.policy.Thresholds()
	t.MinAvailable = p.cfg.MinAvailable.String()
	return t
}

// latest is the pool's endpoint with the newest recorded event, or nil when STATE holds none.
func (p *poolSlot) latest() *endpointSlot {
	var out *endpointSlot
	for _, s := range p.endpoints {
		if s.order() > 0 && (out == nil || s.order() > out.order()) {
			out = s
		}
	}
	return out
}

// order places the endpoint's last event among its pool's: its stream sequence or, while its
// transition is in flight, after every sequence acknowledged, in the order sent (which is the
// order STATE stores them in).
func (s *endpointSlot) order() uint64 {
	if s.next != nil {
		return 1<<62 + s.next.key
	}
	return s.seq
}

// record notes e, an event STATE holds on the endpoint's subject, unless a newer one is known; at
// is when this replica judges it happened (see ownTime).
func (s *endpointSlot) record(seq uint64, e events.Envelope, at time.Time) {
	if seq > s.seq {
		s.status, _ = events.TransitionStatus(e.Type)
		s.seq, s.eventID, s.cause, s.since, s.dated = seq, e.ID, e.Cause, at, e.Time
		s.drilled = ""
		var t events.Transition
		// Decoded only where the transition may be a drill's: a replica starting cold records
		// the last event of every endpoint.
		if s.status == events.StatusDown && (bytes.Contains(e.Data, drillMark) || bytes.Contains(e.Data, drillReason)) && e.Payload(&t) == nil {
			s.drilled = drill.Of(t)
		}
	}
}

// ownDate dates what STATE last recorded on the endpoint as this replica dates the result that
// caused it, id, which this replica folds at at after STATE delivered the event (another
// replica's copy: this replica's own is dated so already). Replicas date one result differently
// (one folds it as heard on the wire, dated when heard; the other as PROBES stored it), and this
// replica judges its next decisions, on its own clock, against what STATE last recorded (due):
// against another's copy dated later than this replica dates the results that follow, its next
// transition looked older than the change it follows, and was dropped. Every result this
// replica folds after the cause is newer than the change, whatever the other replica's clock.
// ownTime does the same for a copy of this replica's own append.
func (s *endpointSlot) ownDate(id string, at time.Time) {
	if s.next == nil && id != "" && id == s.cause {
		s.since = at
	}
}

// record notes an event STATE holds on the pool's subject, unless a newer one is known.
func (p *poolSlot) record(seq uint64, e events.Envelope) {
	if seq > p.seq {
		p.status, _ = events.TransitionStatus(e.Type)
		p.seq, p.since = seq, e.Time
		var t events.Transition
		p.drilled = p.status == events.StatusDown && (bytes.Contains(e.Data, drillMark) && e.Payload(&t) == nil && t.Drill != "" ||
			p.drillCaused(e.Cause))
	}
}

// drillCaused reports whether cause is the event an endpoint of the pool last recorded, and
// a drill's simulated failure made it (endpointSlot.drilled). An endpoint's transition is
// recorded before the pool's it causes; one that moved on since tells nothing, and an unmarked
// pool's down (recorded before pools' transitions carried the drill) is taken for its endpoints'.
func (p *poolSlot) drillCaused(cause string) bool {
	for _, s := range p.endpoints {
		if cause != "" && s.eventID == cause {
			return s.drilled != ""
		}
	}
	return false
}

// cause is the endpoint whose recorded event causes (and dates) the pool's transition to v:
// latest, the newest, unless latest is a drill's and v a down that stands with every endpoint a
// drill holds down counted as serving. That down is a real outage's, which the drill did not
// make: its cause is the newest event of an endpoint no drill holds down, and it carries no
// drill (its own checks failed first; the pool's append waited for NATS while a drill failed
// another endpoint).
func (p *poolSlot) cause(latest *endpointSlot, v decide.PoolVerdict) *endpointSlot {
	if v.Status != events.StatusDown || latest.drilled == "" {
		return latest
	}
	statuses := make([]events.Status, len(p.endpoints))
	var outage *endpointSlot
	for i, s := range p.endpoints {
		statuses[i] = s.status
		switch {
		case s.drilled != "":
			statuses[i] = events.StatusUp
		case s.order() > 0 && (outage == nil || s.order() > outage.order()):
			outage = s
		}
	}
	if outage == nil || decide.EvaluatePool(statuses, p.cfg.MinAvailable).Status != events.StatusDown {
		return latest
	}
	return outage
}

// restates reports whether the pool's transition to v re-states the down STATE records: a
// drill's simulated failure caused it (drilled), and no endpoint's last transition is a
// drill's any more, so the pool is down because of its endpoints' own checks (or overrides), an
// outage the drill's end leaves (decide.DrillOutlived).
func (p *poolSlot) restates(v decide.PoolVerdict) bool {
	if !p.drilled || p.status != events.StatusDown || v.Status != events.StatusDown {
		return false
	}
	for _, s := range p.endpoints {
		if s.drilled != "" {
			return false
		}
	}
	return true
}
