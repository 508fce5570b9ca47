package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The edge keeps the last route table it applied on disk, so that an edge restarted while NATS
// is away routes as it did before instead of from the configuration alone.

// tablePath is where the edge's route table snapshot lives in dir.
func tablePath(dir, edge string) string { return filepath.Join(dir, "routes-"+edge+".json") }

// saveTable stores the route table message b as the snapshot, replacing the previous one
// atomically. A failure is logged: the edge goes on routing.
func (e *edge) saveTable(b []byte) {
	if e.dataDir == "" {
		return
	}
	if err := writeFileAtomic(tablePath(e.dataDir, e.name), b); err != nil {
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
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
