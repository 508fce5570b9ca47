package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go/jetstream"
)

// watchRoutes follows the routes of the edge's apps through an events.Follower: the last one
// stored for each app, then every new one, each applied to its app as it arrives (every route is
// whole: no app ever serves half of one). Once nothing is pending the routes are saved as the
// snapshot, at most once per snapshotEvery and never on the path that applies them, and once more
// when the edge stops, so that the routes of its last second are not lost. While NATS
// is unreachable the edge keeps the routes it has; while its consumer cannot be replaced it
// reads the last route of each of its apps directly. The consumer is named for the edge's NATS
// user (events.ConsumerName), which may read that consumer only.
func (e *edge) watchRoutes(ctx context.Context, js jetstream.JetStream) {
	f := events.Follower{JS: js, Stream: events.StreamRoutes, Log: e.log, Bridge: events.BridgeLast, Last: e.routeSubjects,
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.EdgeRoutesSubjects(e.name)}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	save := make(chan struct{}, 1)
	done := make(chan struct{})
	saving, stopSaving := context.WithCancel(context.Background())
	go func() {
		defer close(done)
		e.saveRoutes(saving, save)
	}()
	unsaved := false
	defer func() {
		// Stopping: what was applied since the last save is saved now, not dropped with the wait.
		if unsaved {
			select {
			case save <- struct{}{}:
			default: // a save is already due
			}
		}
		stopSaving()
		<-done
	}()
	f.Run(ctx, func(d events.Delivery) {
		if d.Msg != nil {
			e.metrics.Lag("edge", events.StreamRoutes, d.Pending)
			if err := e.applyRoute(d.Subject, d.Data); err != nil {
				e.metrics.DecodeFailed("edge", events.StreamRoutes)
				e.malformed.Skip(e.log, err, d.Subject, d.Seq)
			} else {
				unsaved = true
			}
		}
		if unsaved && d.Pending == 0 {
			select {
			case save <- struct{}{}:
			default: // a save is already due
			}
			unsaved = false
		}
	})
}

// routeSubjects lists the route subjects of the edge's apps.
func (e *edge) routeSubjects() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.apps))
	for app := range e.apps {
		out = append(out, events.AppRouteSubject(e.name, app))
	}
	return out
}

// snapshotEvery is the shortest time between two saves of the snapshot: a storm of routes
// arriving one by one is saved once a second, not once per route.
const snapshotEvery = time.Second

// saveRoutes saves the snapshot when asked on save, at most once per snapshotEvery, until ctx
// ends; a save asked for meanwhile is made when the time comes, or when ctx ends.
func (e *edge) saveRoutes(ctx context.Context, save <-chan struct{}) {
	last := func() {
		select {
		case <-save:
			e.saveTable()
		default:
		}
	}
	for {
		select {
		case <-ctx.Done():
			last()
			return
		case <-save:
		}
		e.saveTable()
		select {
		case <-ctx.Done():
			last()
			return
		case <-time.After(snapshotEvery):
		}
	}
}

// applyRoute decodes a route stored on subject and switches its app to it. A route whose app is
// not its subject's is refused, as one for another edge is: applied, it would switch an app by
// a message stored under another's subject, which the next route of its own subject, or a
// restart that reads the last of each, would not undo or would undo.
func (e *edge) applyRoute(subject string, b []byte) error {
	r, err := decodeRoute(b, e.name)
	if err != nil {
		return err
	}
	if want := events.AppRouteSubject(e.name, r.Route.App); subject != want {
		return fmt.Errorf("decode route: %w: route.app: %q is stored on %s, not %s", events.ErrMalformed, r.Route.App, subject, want)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if a, ok := e.apps[r.Route.App]; ok {
		a.setRoute(r.Route)
	}
	e.routes[r.Route.App] = r.Route
	e.log.Debug().Str("app", r.Route.App).Uint64("state_seq", r.StateSeq).Msg("route applied")
	return nil
}

// decodeRoute parses a ROUTES message and checks that edge can use it.
func decodeRoute(b []byte, edge string) (events.EdgeRoute, error) {
	r, err := decodeFor(b, edge, events.TypeRouteComputed, "route", func(r events.EdgeRoute) string { return r.Edge })
	if err != nil {
		return r, err
	}
	if err := checkWeights("route", r.Route); err != nil {
		return events.EdgeRoute{}, fmt.Errorf("decode route: %w: %w", events.ErrMalformed, err)
	}
	return r, nil
}

// checkWeights returns an error naming the first instance of a, under path, whose weight is
// above config.MaxWeight, the most the configuration allows: summed over a pool, such weights
// can overflow to 0, by which the rotation over the instances divides.
func checkWeights(path string, a events.AppRoute) error {
	for j, e := range a.Endpoints {
		if e.Weight > config.MaxWeight {
			return fmt.Errorf("%s.endpoints[%d].weight: want at most %d, got %d", path, j, config.MaxWeight, e.Weight)
		}
	}
	return nil
}

// applyTable decodes a route table (the snapshot) and switches every app of it to its route.
func (e *edge) applyTable(b []byte) error {
	t, err := decodeTable(b, e.name)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range t.Apps {
		if a, ok := e.apps[r.App]; ok {
			a.setRoute(r)
		}
		e.routes[r.App] = r
	}
	return nil
}

// decodeTable parses a route table and checks that edge can use it.
func decodeTable(b []byte, edge string) (events.RouteTable, error) {
	t, err := decodeFor(b, edge, events.TypeRoutesComputed, "route table", func(t events.RouteTable) string { return t.Edge })
	if err != nil {
		return t, err
	}
	for i, a := range t.Apps {
		if err := checkWeights("apps["+strconv.Itoa(i)+"]", a); err != nil {
			return events.RouteTable{}, fmt.Errorf("decode route table: %w: %w", events.ErrMalformed, err)
		}
	}
	return t, nil
}

// decodeFor parses a ROUTES message of type typ (called what in errors), checks its payload,
// and that it is for edge (the mismatch names the last word of what: "table", "route").
func decodeFor[T interface{ Check() error }](b []byte, edge, typ, what string, edgeOf func(T) string) (T, error) {
	var v, zero T
	env, err := events.Decode(b)
	if err != nil {
		return zero, fmt.Errorf("decode %s: %w", what, err)
	}
	if env.Type != typ {
		return zero, fmt.Errorf("decode %s: %w: type %q is not %s", what, events.ErrMalformed, env.Type, typ)
	}
	if err := env.Payload(&v); err != nil {
		return zero, fmt.Errorf("decode %s: %w", what, err)
	}
	if err := v.Check(); err != nil {
		return zero, fmt.Errorf("decode %s: %w: %w", what, events.ErrMalformed, err)
	}
	if got := edgeOf(v); got != edge {
		noun := what
		if i := strings.LastIndexByte(what, ' '); i >= 0 {
			noun = what[i+1:]
		}
		return zero, fmt.Errorf("decode %s: %w: edge: %s is for %q, not %q", what, events.ErrMalformed, noun, got, edge)
	}
	return v, nil
}
