package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/detourdev/detour/events"
)

// The edge keeps the routes it applied on disk, as one route table, so that an edge restarted
// while NATS is away routes as it did before instead of from the configuration alone.

// tablePath is where the edge's route table snapshot lives in dir.
func tablePath(dir, edge string) string { return filepath.Join(dir, "routes-"+edge+".json") }

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
		err = writeFileAtomic(tablePath(e.dataDir, e.name), env.Encode())
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

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".routes-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	// Synced before the rename: otherwise a power cut after it may leave the name on a file
	// whose bytes never reached the disk (empty, or partly written), which an edge starting
	// without NATS ignores, routing from the configuration alone rather than its last routes.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
