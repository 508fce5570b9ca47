package replay

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/decide"
	"github.com/detourdev/detour/services/drill"
)

// Settings are the thresholds a what-if decides with instead of the configured ones; a field
// that was not given keeps each app's own.
type Settings struct {
	Fall, Rise           int
	Quorum               float64
	HoldDown, StaleAfter time.Duration
	// set names the fields given, in the order ParseSettings read them.
	set []string
}

// ParseSettings reads "fall=5,rise=3,quorum=0.67,hold_down=30s,stale_after=10s" (any subset).
func ParseSettings(s string) (Settings, error) {
	var out Settings
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Settings{}, fmt.Errorf("%q: want key=value", kv)
		}
		var err error
		switch k {
		case "fall", "rise":
			var n int
			n, err = strconv.Atoi(v)
			if err == nil && (n < 1 || n > 1000) {
				err = fmt.Errorf("want 1 to 1000")
			}
			if k == "fall" {
				out.Fall = n
			} else {
				out.Rise = n
			}
		case "quorum":
			out.Quorum, err = strconv.ParseFloat(v, 64)
			if err == nil && !(out.Quorum > 0 && out.Quorum <= 1) { // NaN included
				err = fmt.Errorf("want a share in (0, 1]")
			}
		case "hold_down", "stale_after":
			var d time.Duration
			d, err = time.ParseDuration(v)
			switch {
			case err == nil && k == "stale_after" && d <= 0:
				err = fmt.Errorf("want a positive duration")
			case err == nil && d < 0:
				err = fmt.Errorf("want a duration of 0 or more")
			case err == nil && d > time.Duration(config.MaxHoldTime):
				err = fmt.Errorf("want at most %s, as in the configuration", config.MaxHoldTime)
			}
			if k == "hold_down" {
				out.HoldDown = d
			} else {
				out.StaleAfter = d
			}
		default:
			return Settings{}, fmt.Errorf("unknown setting %q: want fall, rise, quorum, hold_down or stale_after", k)
		}
		if err != nil {
			return Settings{}, fmt.Errorf("%s: %q: %v", k, v, err)
		}
		for _, prev := range out.set {
			if prev == k {
				return Settings{}, fmt.Errorf("%s given twice", k)
			}
		}
		out.set = append(out.set, k)
	}
	if len(out.set) == 0 {
		return Settings{}, fmt.Errorf("no setting given: want e.g. fall=5,rise=3")
	}
	return out, nil
}

// String is the settings as ParseSettings reads them.
func (s Settings) String() string {
	var parts []string
	for _, k := range s.set {
		switch k {
		case "fall":
			parts = append(parts, "fall="+strconv.Itoa(s.Fall))
		case "rise":
			parts = append(parts, "rise="+strconv.Itoa(s.Rise))
		case "quorum":
			parts = append(parts, "quorum="+strconv.FormatFloat(s.Quorum, 'g', -1, 64))
		case "hold_down":
			parts = append(parts, "hold_down="+s.HoldDown.String())
		case "stale_after":
			parts = append(parts, "stale_after="+s.StaleAfter.String())
		}
	}
	return strings.Join(parts, ",")
}

// apply returns p with the given settings in place of its own.
func (s Settings) apply(p decide.Policy) decide.Policy {
	for _, k := range s.set {
		switch k {
		case "fall":
			p.Fall = s.Fall
		case "rise":
			p.Rise = s.Rise
		case "quorum":
			p.Quorum = s.Quorum
		case "hold_down":
			p.HoldDown = s.HoldDown
		case "stale_after":
			p.StaleAfter = s.StaleAfter
		}
	}
	return p
}

// Change is one endpoint transition, recorded or re-decided.
type Change struct {
	At     time.Time     `json:"at"`
	From   events.Status `json:"from"`
	To     events.Status `json:"to"`
	Cause  string        `json:"cause"`
	Reason string        `json:"reason"`
}

// Pair is a recorded transition beside the what-if one it corresponds to; either may be nil (the
// what-if would not have made it, or would have made one that was not recorded).
type Pair struct {
	App      string  `json:"app"`
	Pool     string  `json:"pool"`
	Endpoint string  `json:"endpoint"`
	To       string  `json:"to"`
	Recorded *Change `json:"recorded,omitempty"`
	WhatIf   *Change `json:"what_if,omitempty"`
	// Shift is WhatIf.At − Recorded.At when both happened: negative is earlier.
	Shift Millis `json:"shift_ms"`
}

// Verdict names how a pair differs: same, earlier, later, gone (would not happen) or new.
func (p Pair) Verdict() string {
	switch {
	case p.WhatIf == nil:
		return "gone"
	case p.Recorded == nil:
		return "new"
	case p.Shift < 0:
		return "earlier"
	case p.Shift > 0:
		return "later"
	}
	return "same"
}

// Comparison is the outcome of a what-if.
type Comparison struct {
	Settings string `json:"settings"`
	// Results counts the results re-decided.
	Results uint64 `json:"results"`
	Pairs   []Pair `json:"pairs"`
}

// WhatIf re-runs the decider's fold (decide.Endpoint) with other settings over records given in
// stored order, as Read delivers them, and pairs its transitions with the recorded ones. Given
// the records of CONFIG (Window.Config), it follows the configuration versions as the deciders
// do: each version decides from when CONFIG stored it.
type WhatIf struct {
	cfg      *config.Config
	settings Settings
	from, to time.Time
	// endpoints are the endpoints of cfg, current those in configuration order; order is every
	// endpoint decided so far, one a version removed or moved included, in the order first met.
	endpoints map[epKey]*wiEndpoint
	current   []*wiEndpoint
	order     []*wiEndpoint
	results   uint64
	// probed is set once a probe record was folded: a version stored before it only replaces
	// the configuration.
	probed bool
	// recorded is the status STATE last recorded on every endpoint, and overrides the overrides
	// in force, by the tokens of their subject, for the endpoints a version adds.
	recorded  map[epKey]events.Status
	overrides map[epKey]overrideIn
	// drills are the drills in force, whose simulated failures the decider honoured.
	drills *drill.View
}

// overrideIn is an override in force and the id of the event that set it.
type overrideIn struct {
	o  events.Override
	id string
}

type wiEndpoint struct {
	key      epKey
	address  string
	policy   decide.Policy
	st       decide.Endpoint
	started  bool
	recorded events.Status
	// rec and sim are the recorded and re-decided transitions within the window.
	rec, sim []Change
}

// NewWhatIf prepares a what-if over cfg's endpoints with settings s; transitions outside
// [from, to] (zero: unbounded) are folded but not compared.
func NewWhatIf(cfg *config.Config, s Settings, from, to time.Time) *WhatIf {
	w := &WhatIf{settings: s, from: from, to: to, drills: drill.NewView(),
		recorded: map[epKey]events.Status{}, overrides: map[epKey]overrideIn{}}
	w.configure(cfg, time.Time{})
	return w
}

// configure makes cfg the configuration decided from at on, as the decider's reconfigure does:
// an endpoint that stays (same app, pool, endpoint and address) keeps what it knew and takes its
// app's new thresholds; one the version adds or moves starts from what STATE recorded for it,
// held by the overrides and drills in force, once probes are being folded.
func (w *WhatIf) configure(cfg *config.Config, at time.Time) {
	// Time passes under the version replaced until at: the deadlines that fell before it are
	// decided with its thresholds, as the deciders' ticks decide them.
	for _, e := range w.current {
		w.expire(e, at)
	}
	old := w.endpoints
	w.cfg, w.endpoints, w.current = cfg, map[epKey]*wiEndpoint{}, nil
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		pol := w.settings.apply(decide.PolicyFor(a))
		for j := range a.Pools {
			for k := range a.Pools[j].Endpoints {
				ec := &a.Pools[j].Endpoints[k]
				key := epKey{a.Name, a.Pools[j].Name, ec.Name}
				e := old[key]
				if e == nil || e.address != ec.Address {
					e = &wiEndpoint{key: key, address: ec.Address}
					w.order = append(w.order, e)
					if w.probed {
						e.policy = pol
						w.adopt(e, at)
					}
				}
				e.policy = pol
				w.endpoints[key] = e
				w.current = append(w.current, e)
			}
		}
	}
}

// adopt starts an endpoint a version added while probes were being folded, as the decider's
// adopt does: the overrides in force on its pool and on it, and a drill's failure, hold it; it
// starts from the status STATE recorded; the status they make, when STATE does not record it, is
// a transition dated at.
func (w *WhatIf) adopt(e *wiEndpoint, at time.Time) {
	var dec decide.Decision
	var decided bool
	for _, scope := range []decide.Scope{decide.ScopePool, decide.ScopeEndpoint} {
		target := epKey{e.key.app, e.key.pool, e.key.endpoint}
		if scope == decide.ScopePool {
			target.endpoint = events.OverrideWholePool
		}
		if in, ok := w.overrides[target]; ok {
			if d, ok := e.st.SetOverride(scope, in.o, in.id, at, e.policy); ok {
				dec, decided = d, true
			}
		}
	}
	if id, _, ok := w.drills.Endpoint(e.key.app, e.key.pool, e.key.endpoint); ok {
		if d, ok := e.st.SetDrill(w.drills.Override(e.key.app, e.key.pool, e.key.endpoint), w.drills.Drill(id).StepID, at, e.policy); ok {
			dec, decided = d, true
		}
	}
	e.recorded = w.recorded[e.key]
	e.started = true
	e.st.Restore(e.recorded)
	if decided && e.st.Status != e.recorded {
		dec.From = e.recorded
		w.decided(e, dec)
	}
}

// version folds a configuration version stored on CONFIG; one that does not parse is skipped,
// as the deciders refuse it and keep the version they run.
func (w *WhatIf) version(r *Record) {
	if cfg, ok := storedVersion(r); ok {
		w.configure(cfg, r.Stored)
	}
}

// storedVersion is the configuration version a CONFIG record stores; ok is false for a record
// that is none, or one that does not parse (the deciders refuse it).
func storedVersion(r *Record) (cfg *config.Config, ok bool) {
	var a events.ConfigApplied
	if r.Err != nil || r.Subject != events.SubjectConfigDoc || r.Env.Type != events.TypeConfigApplied || r.Env.Payload(&a) != nil {
		return nil, false
	}
	cfg, err := config.ParseStored(fmt.Sprintf("configuration version %d", r.Seq), []byte(a.Document))
	return cfg, err == nil
}

// Add folds one record.
func (w *WhatIf) Add(r *Record) {
	if r.Err != nil {
		return
	}
	if r.Stream == events.StreamConfig {
		w.version(r)
		return
	}
	if r.Stream == events.StreamProbes {
		w.probed = true
		region := probeRegion(r.Subject)
		for i := range r.Results {
			res := &r.Results[i]
			e := w.endpoints[epKey{res.App, res.Pool, res.Endpoint}]
			if e == nil || res.Region != region || !w.cfg.RegionAllowed(region) || w.drills.Region(region) {
				continue
			}
			w.results++
			w.start(e)
			w.expire(e, r.Stored)
			if dec, ok := e.st.Observe(decide.Result{ID: res.ID, Region: region, At: r.Stored, OK: res.OK, Window: res.Window}, e.policy); ok {
				w.decided(e, dec)
			}
		}
		return
	}
	if r.Stream == events.StreamDrills {
		w.drill(r)
		return
	}
	if r.Stream != events.StreamState {
		return
	}
	env := &r.Env
	switch env.Type {
	case events.TypeOverrideSet, events.TypeOverrideCleared:
		// As the decider: the subject names what is overridden, and an unknown action is skipped.
		var o events.Override
		target := events.SplitSubject(r.Subject, "detour.state.override")
		if len(target) != 3 || env.Payload(&o) != nil {
			return
		}
		if env.Type == events.TypeOverrideCleared {
			o.Action = ""
		} else if o.Action != events.ActionForceUp && o.Action != events.ActionForceDown && o.Action != events.ActionDrain {
			return
		}
		scope := decide.ScopeEndpoint
		if target[2] == events.OverrideWholePool {
			scope = decide.ScopePool
		}
		if o.Action == "" {
			delete(w.overrides, epKey{target[0], target[1], target[2]})
		} else {
			w.overrides[epKey{target[0], target[1], target[2]}] = overrideIn{o, env.ID}
		}
		for _, e := range w.current {
			if e.key.app != target[0] || e.key.pool != target[1] || (scope == decide.ScopeEndpoint && e.key.endpoint != target[2]) {
				continue
			}
			w.start(e)
			w.expire(e, r.Stored)
			if dec, ok := e.st.SetOverride(scope, o, env.ID, r.Stored, e.policy); ok {
				w.decided(e, dec)
			}
		}
		return
	}
	to, ok := events.TransitionStatus(env.Type)
	if !ok {
		return
	}
	var t events.Transition
	if env.Payload(&t) != nil || t.Endpoint == "" {
		return
	}
	w.recorded[epKey{t.App, t.Pool, t.Endpoint}] = to
	e := w.endpoints[epKey{t.App, t.Pool, t.Endpoint}]
	if e == nil {
		return
	}
	e.recorded = to
	if w.within(env.Time) {
		e.rec = append(e.rec, Change{At: env.Time, From: t.From, To: to, Cause: env.Cause, Reason: t.Reason})
	}
}

// drill folds a DRILLS event and puts or lifts its simulated failures, as the decider does.
func (w *WhatIf) drill(r *Record) {
	if changed, err := w.drills.Apply(r.Subject, r.Seq, r.Stored, r.Env); err != nil || !changed {
		return
	}
	for _, e := range w.current {
		want := w.drills.Override(e.key.app, e.key.pool, e.key.endpoint)
		if (want == nil) == (e.st.Drill == nil) && (want == nil || *want == *e.st.Drill) {
			continue
		}
		w.start(e)
		w.expire(e, r.Stored)
		if dec, ok := e.st.SetDrill(want, r.Env.ID, r.Stored, e.policy); ok {
			w.decided(e, dec)
		}
	}
}

// start restores, until an endpoint's first result, the status STATE recorded for it then, as a
// decider starting cold does: before its first result, an override, a drill or its first result
// change it from there, as they changed it on the live deciders.
func (w *WhatIf) start(e *wiEndpoint) {
	if !e.started || len(e.st.Regions) == 0 {
		e.started = true
		e.st.Restore(e.recorded)
	}
}

// expire lets time pass on a started endpoint until at, as the decider's ticks do between the
// events it folds: staleness and hold-down deadlines, in the order they fell.
func (w *WhatIf) expire(e *wiEndpoint, at time.Time) {
	for e.started {
		dec, ok := e.st.Expire(at, e.policy)
		if !ok {
			return
		}
		w.decided(e, dec)
	}
}

func (w *WhatIf) decided(e *wiEndpoint, d decide.Decision) {
	if w.within(d.At) {
		e.sim = append(e.sim, Change{At: d.At, From: d.From, To: d.To, Cause: d.Cause, Reason: d.Reason})
	}
}

func (w *WhatIf) within(at time.Time) bool {
	return (w.from.IsZero() || !at.Before(w.from)) && (w.to.IsZero() || !at.After(w.to))
}

// Compare lets time pass to end (staleness, hold-down) and pairs the recorded transitions of each
// endpoint with the what-if's.
func (w *WhatIf) Compare(end time.Time) Comparison {
	c := Comparison{Settings: w.settings.String(), Results: w.results, Pairs: []Pair{}}
	for _, e := range w.current {
		w.expire(e, end)
	}
	for _, e := range w.order {
		for _, p := range align(e.rec, e.sim) {
			p.App, p.Pool, p.Endpoint = e.key.app, e.key.pool, e.key.endpoint
			c.Pairs = append(c.Pairs, p)
		}
	}
	return c
}

// cell is the best alignment of two sequences: most pairs, then least total time between them.
type cell struct {
	matches int
	cost    time.Duration
}

func (a cell) better(b cell) bool {
	return a.matches > b.matches || (a.matches == b.matches && a.cost < b.cost)
}

func (a cell) plus(b cell) cell { return cell{a.matches + b.matches, a.cost + b.cost} }

// align pairs two sequences of transitions of one endpoint: as many pairs of equal target
// status as can be made in order, and among those the closest in time. Unpaired transitions
// stand alone, in time order.
func align(rec, sim []Change) []Pair {
	var paired [][2]int
	pairUp(rec, sim, 0, 0, &paired)
	var out []Pair
	i, j := 0, 0
	// alone adds the unpaired transitions before rec[ui] and sim[uj], in time order.
	alone := func(ui, uj int) {
		for i < ui || j < uj {
			if i < ui && (j == uj || !sim[j].At.Before(rec[i].At)) {
				out = append(out, Pair{To: string(rec[i].To), Recorded: &rec[i]})
				i++
			} else {
				out = append(out, Pair{To: string(sim[j].To), WhatIf: &sim[j]})
				j++
			}
		}
	}
	for _, p := range paired {
		alone(p[0], p[1])
		out = append(out, Pair{To: string(rec[i].To), Recorded: &rec[i], WhatIf: &sim[j], Shift: Millis(sim[j].At.Sub(rec[i].At))})
		i, j = i+1, j+1
	}
	alone(len(rec), len(sim))
	return out
}

// pairUp appends to out the pairs (index in rec + ri, index in sim + si) of a best alignment of
// rec and sim, in order. It holds a few rows of len(sim) cells at a time (Hirschberg's
// divide and conquer): a best alignment splits, at the middle of rec, into best alignments of
// the halves with the parts of sim before and after some point, which the best score of each
// half over each point finds.
func pairUp(rec, sim []Change, ri, si int, out *[][2]int) {
	switch {
	case len(rec) == 0 || len(sim) == 0:
		return
	case len(rec) == 1:
		best := -1
		for j := range sim {
			if sim[j].To == rec[0].To && (best < 0 || absDuration(sim[j].At.Sub(rec[0].At)) < absDuration(sim[best].At.Sub(rec[0].At))) {
				best = j
			}
		}
		if best >= 0 {
			*out = append(*out, [2]int{ri, si + best})
		}
		return
	}
	mid := len(rec) / 2
	before, after := prefixScores(rec[:mid], sim), suffixScores(rec[mid:], sim)
	k := 0
	for j := 1; j <= len(sim); j++ {
		if before[j].plus(after[j]).better(before[k].plus(after[k])) {
			k = j
		}
	}
	pairUp(rec[:mid], sim[:k], ri, si, out)
	pairUp(rec[mid:], sim[k:], ri+mid, si+k, out)
}

// prefixScores returns, for each j, the best alignment of rec with sim[:j].
func prefixScores(rec, sim []Change) []cell {
	prev, cur := make([]cell, len(sim)+1), make([]cell, len(sim)+1)
	for i := range rec {
		cur[0] = cell{}
		for j := 1; j <= len(sim); j++ {
			best := prev[j]
			if cur[j-1].better(best) {
				best = cur[j-1]
			}
			if rec[i].To == sim[j-1].To {
				if c := prev[j-1].plus(cell{1, absDuration(sim[j-1].At.Sub(rec[i].At))}); c.better(best) {
					best = c
				}
			}
			cur[j] = best
		}
		prev, cur = cur, prev
	}
	return prev
}

// suffixScores returns, for each j, the best alignment of rec with sim[j:].
func suffixScores(rec, sim []Change) []cell {
	m := len(sim)
	prev, cur := make([]cell, m+1), make([]cell, m+1)
	for i := len(rec) - 1; i >= 0; i-- {
		cur[m] = cell{}
		for j := m - 1; j >= 0; j-- {
			best := prev[j]
			if cur[j+1].better(best) {
				best = cur[j+1]
			}
			if rec[i].To == sim[j].To {
				if c := prev[j+1].plus(cell{1, absDuration(sim[j].At.Sub(rec[i].At))}); c.better(best) {
					best = c
				}
			}
			cur[j] = best
		}
		prev, cur = cur, prev
	}
	return prev
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
