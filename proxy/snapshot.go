package proxy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/atomicfile"
)

// The edge keeps the routes it applied on disk, as one route table, so that an edge restarted
// while NATS is away routes as it did before instead of from the configuration alone.

// tableFile is the name of the edge's route table snapshot in its data dir.
func tableFile(edge string) string { return "routes-" + edge + ".json" }

// tablePath is where the edge's route table snapshot lives in dir.
func tablePath(dir, edge string) string { return filepath.Join(dir, tableFile(edge)) }

// saveTable stores the routes applied, in configuration order, as the snapshot: a route table
// event, replacing the previous one atomically. A failure is logged: the edge goes on routing.
func (e *edge) saveTable() {
	if e.dataDir == "" {
		return
	}
	e.mu.RLock()
	t := events.RouteTable{Edge: e.name, Apps: make([]events.AppRoute, 0, len(e.order))}
	for _, a := range e.order {
		if r, ok := e.routes[a.name]; ok {
			t.Apps = append(t.Apps, r)
		}
	}
	e.mu.RUnlock()
	env, err := events.New(events.TypeRoutesComputed, "edge/"+e.name, time.Now(), t)
	if err == nil {
		err = atomicfile.Write(e.dataDir, tableFile(e.name), atomicfile.Bytes(env.Encode()))
	}
	if err != nil {
		e.log.Error().Err(err).Msg("route table snapshot not saved")
	}
}

// loadTable applies the snapshot, if there is one.
func (e *edge) loadTable() {
	if e.dataDir == "" {
		return
	}
	b, err := os.ReadFile(tablePath(e.dataDir, e.name))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		err = e.applyTable(b)
	}
	if err != nil {
		// A damaged snapshot must not keep the edge from starting: ROUTES replaces it.
		e.log.Warn().Err(err).Msg("route table snapshot ignored")
		return
	}
	e.log.Info().Msg("routing from the route table snapshot until NATS answers")
}
