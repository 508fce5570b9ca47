package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/proxy/route"
	"github.com/rs/zerolog"
)

// app is the runtime of one app behind the edge: its current route, its place in the rotation,
// the passive health of its instances, and its secondary edge.
type app struct {
	edge   *edge
	name   string
	cfg    config.EdgeApp
	pol    *policy
	log    zerolog.Logger
	route  atomic.Pointer[appRoute]
	turn   atomic.Uint64
	health sync.Map // instance address -> *instanceHealth
	now    func() time.Time
	// transport reaches local instances, peerTransport secondary edges (HTTP mode only).
	transport, peerTransport *http.Transport
	// pool and peerPool hold the fast path's connections to instances and to secondary edges.
	pool, peerPool *connPool
	// metrics, when set, counts the app's requests.
	metrics *appMetrics
	// failures rate-limits the log lines of the requests the edge answered 502, of the
	// connections it refused over max_conns_per_client, and of its listener pausing at a
	// max_conns.
	failures *logs.Repeats
	// conns counts the client connections the app's listener holds (see admit).
	conns connLimits
}

// instanceHealth is what the edge saw of one local instance: its failed requests in a row,
// until when it is skipped, and whether it is out of rotation (ejected) since a failure. An
// ejected instance is tried again once its cooldown ends; it is back in rotation when a request
// to it succeeds or the route table says it recovered, and ejected again for another cooldown
// when that try fails.
type instanceHealth struct {
	fails   atomic.Int32
	until   atomic.Int64 // unix nanoseconds
	ejected atomic.Bool
}

// appRoute is a route with what requests derive from it, computed once per table.
type appRoute struct {
	events.AppRoute
	secondary *peer
	retry     map[string]bool
}

func newApp(e *edge, ea config.EdgeApp) *app {
	return &app{
		edge: e, name: ea.App, cfg: ea, pol: newPolicy(ea), now: time.Now,
		log:      e.log.With().Str("app", ea.App).Str("mode", ea.Mode).Logger(),
		failures: logs.NewRepeats(failureLogWindow),
		conns:    connLimits{all: connGate{limit: ea.MaxConns}, clients: map[netip.Addr]int{}},
	}
}

// setRoute makes r the app's route from the next request on; requests in flight finish on the
// route they started with.
func (a *app) setRoute(r events.AppRoute) {
	ar := &appRoute{AppRoute: r, retry: a.pol.retriable(r.RetryMethods)}
	if s := r.Secondary; s != nil {
		ar.secondary = a.edge.peers.get(s.Hostname, s.Address, s.Port, a.cfg.Mode)
	}
	prev := a.route.Swap(ar)
	if prev == nil {
		return
	}
	if prev.Available != r.Available {
		ev := a.log.Info().Str("pool", r.Pool).Bool("available", r.Available)
		if r.Secondary != nil {
			ev = ev.Str("secondary", r.Secondary.Edge)
		}
		ev.Msg("local pool availability changed")
	}
	for _, ep := range r.Endpoints {
		i := slices.IndexFunc(prev.Endpoints, func(p events.RouteEndpoint) bool { return p.Address == ep.Address })
		if i >= 0 && !prev.Endpoints[i].Serving() && ep.Serving() {
			// The decider saw it recover: stop skipping it now rather than when the cooldown ends.
			// Only a return from down or drained says so; unknown → up may be older news than
			// the failure that ejected it.
			if h, ok := a.health.LoadAndDelete(ep.Address); ok && h.(*instanceHealth).ejected.Load() {
				a.log.Info().Str("endpoint", ep.Name).Str("address", ep.Address).Str("reason", "route table").
					Msg("instance back in rotation")
			}
		}
	}
}

// plan returns the targets of one request or connection.
func (a *app) plan(r *appRoute, forwarded bool) []route.Target {
	c := route.Choice{Turn: a.turn.Add(1) - 1, Skip: a.skip, Forwarded: forwarded}
	if r.secondary != nil {
		c.SecondaryAddr = r.secondary.dialAddr()
		c.SecondaryAlive = r.secondary.alive.Load()
	}
	return route.Plan(&r.AppRoute, c)
}

func (a *app) skip(addr string) bool {
	h, ok := a.health.Load(addr)
	return ok && a.now().UnixNano() < h.(*instanceHealth).until.Load()
}

// forward sends one request (or connection) to the targets of plan in turn, at most
// maxAttempts, through try, until one answers or the policy stops it, and returns the last
// error. try returns nil once it answered the client, whatever happened then, and an error,
// having answered nothing, when its target failed; at.retryStatus tells it whether an answer
// whose status retry_on names goes to the next target (try then returns a statusError) rather
// than to the client (retryAnswer), and try calls a.answered when a response head arrives.
// retriable is whether the method may be sent twice, replayable whether the request still can
// be: none of its body was read and no interim answer reached the client, after which the
// request is never sent to another target, as nginx's proxy_next_upstream passes a request on
// only while nothing was sent to the client; once gone reports the client went away, a failure
// is not held against the target and ends the request.
func (a *app) forward(gone func() bool, r *appRoute, plan []route.Target, retriable bool, replayable func() bool,
	try func(at *attempt) error) error {
	n := min(len(plan), maxAttempts)
	err := errNoTarget
	for i, t := range plan[:n] {
		at := &attempt{t: t, i: i, start: a.metrics.start(),
			retryStatus: i < n-1 && !t.Secondary && len(a.pol.onStatus) > 0 && a.pol.next(badStatus, retriable, replayable())}
		err = try(at)
		if !at.answered {
			a.metrics.attempted(i, t.Secondary, at.start, 0)
		}
		if err == nil {
			a.succeeded(r, at)
			return nil
		}
		if gone() {
			return err
		}
		f := classify(err)
		a.failed(r, t, f, err)
		if !a.pol.next(f, retriable, replayable()) {
			break
		}
	}
	return err
}

// attempt is one try of a request on a target.
type attempt struct {
	t           route.Target
	i           int // 0 for the first
	retryStatus bool
	start       time.Time
	answered    bool
	code        int // the answer's status, once answered (0 for a TCP connection)
}

// retryAnswer reports whether at's answer, with code, goes to the next target rather than to
// the client: retry_on names code, and the request is still replayable, as forward's
// replayable reports (an interim answer may have reached the client since the attempt began).
func (a *app) retryAnswer(at *attempt, code int, replayable bool) bool {
	return at.retryStatus && a.pol.retryStatus(code) && replayable
}

// answered records that the head of an answer with code arrived for at.
func (a *app) answered(at *attempt, code int) {
	at.answered, at.code = true, code
	a.metrics.attempted(at.i, at.t.Secondary, at.start, code)
}

// statusError is the failure of an attempt answered with a status retry_on names.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("the instance answered %d", e.code) }

// succeeded ends the run of failures of at's target, and puts it back in rotation when it was
// ejected. A secondary that answered, other than with a 5xx, is used again as one whose
// heartbeat answers (peers.pingAll), as a request it failed takes it out at once (failed):
// tried as the last resort while its heartbeats failed (it was not listening yet when this
// edge started, say), it would otherwise stay behind an ejected instance until its next
// heartbeat. A 5xx (its own 502, having reached no instance either) shows no such thing: the
// heartbeats still decide, so a secondary that fails them does not take requests from an
// instance that may have recovered.
func (a *app) succeeded(r *appRoute, at *attempt) {
	t := at.t
	if t.Secondary {
		if r.secondary != nil && at.code < 500 && !r.secondary.alive.Swap(true) {
			a.log.Info().Str("secondary", r.Secondary.Edge).Str("address", t.Addr).Msg("secondary edge answers requests again")
		}
		return
	}
	v, ok := a.health.Load(t.Addr)
	if !ok {
		return
	}
	h := v.(*instanceHealth)
	if h.fails.Load() != 0 {
		h.fails.Store(0)
	}
	if h.ejected.Load() && h.ejected.Swap(false) {
		h.until.Store(0)
		a.log.Info().Str("endpoint", t.Endpoint).Str("address", t.Addr).Str("reason", "answered").
			Msg("instance back in rotation")
	}
}

// failed records a failed attempt on t. A secondary is not used again until its heartbeat
// answers. A local instance that could not be connected to (refused, unreachable, connect
// timeout) is ejected for passive_cooldown at once, so the requests that follow go to the next
// target without paying for the same failure; one that failed passive_fall requests in a row
// otherwise (broken connections, timeouts, retry_on statuses) is ejected as well. Each ejection
// is counted; only the first of a run is logged, not those after a failed try.
func (a *app) failed(r *appRoute, t route.Target, f failure, err error) {
	if t.Secondary {
		if f != badStatus && r.secondary != nil && r.secondary.alive.Swap(false) {
			a.log.Warn().Str("secondary", r.Secondary.Edge).Str("address", t.Addr).Err(err).Msg("secondary edge unreachable")
		}
		return
	}
	v, _ := a.health.LoadOrStore(t.Addr, new(instanceHealth))
	h := v.(*instanceHealth)
	fails := int(h.fails.Add(1))
	if f != notSent && fails < a.pol.fall {
		return
	}
	h.fails.Store(0)
	now := a.now()
	if prev := h.until.Swap(now.Add(a.pol.cooldown).UnixNano()); now.UnixNano() < prev {
		return // already ejected: a request that was under way when it was
	}
	a.metrics.ejected()
	if !h.ejected.Swap(true) {
		a.log.Warn().Str("endpoint", t.Endpoint).Str("address", t.Addr).Int("failures", fails).
			Dur("cooldown", a.pol.cooldown).Err(err).Msg("instance ejected")
	}
}

// failureLogWindow is how often the edge logs the requests it answered 502 for one reason.
const failureLogWindow = 10 * time.Second

// logFailure logs why a request with method and path was answered 502, once per reason and
// failureLogWindow: the client's answer says nothing of it (failBody).
func (a *app) logFailure(method, path string, err error) {
	a.failures.Gate(a.log.Warn(), failureReason(err)).Str("method", method).Str("path", path).Err(err).Msg("request failed")
}

// failureReason names what made a request fail, for logFailure's rate limit.
func failureReason(err error) string {
	switch {
	case errors.Is(err, errLoop):
		return "loop"
	case errors.Is(err, errNoTarget):
		return "no target"
	}
	switch classify(err) {
	case notSent:
		return "not sent"
	case noAnswer:
		return "no answer"
	case timedOut:
		return "timed out"
	case badStatus:
		return "status"
	default:
		return "broken"
	}
}

// failBody is the body of an answer the edge gives itself with code: the status's text only.
// The reason (a dial error naming an instance's address, what was malformed in an answer)
// would tell any client the inside of the edge's network, so it is only logged (logFailure),
// as HAProxy and nginx answer a page of their own.
func failBody(code int) string { return http.StatusText(code) + "\n" }
