package dnsupdater

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/detourdev/detour/dnsupdater/zone"
)

// snapshotFile is the name of the last-known-good snapshot inside the data directory.
const snapshotFile = "dns-snapshot.json"

// snapshotVersion is written in every snapshot; a snapshot of another version is ignored.
const snapshotVersion = 1

// snapshot is the last state the server answered from: the last event of every STATE subject
// and the zones' serials. With it a server starts answering before NATS is reachable.
type snapshot struct {
	Version int               `json:"version"`
	Serials map[string]uint32 `json:"serials"`
	LastSeq uint64            `json:"last_seq"`
	Events  []storedEvent     `json:"events"`
	// Digests hold, per zone, the digest of the content served at its serial.
	Digests map[string]string `json:"digests,omitempty"`
	// zones are the projected zones the digests are taken from, by the writer.
	zones []*zone.Zone
}

// snapshot returns the projector's state to save.
func (p *projector) snapshot() *snapshot {
	s := &snapshot{Version: snapshotVersion, Serials: map[string]uint32{}, LastSeq: p.view.LastSeq(), zones: p.current}
	for z, serial := range p.serials {
		s.Serials[z] = serial
	}
	for _, e := range p.latest {
		s.Events = append(s.Events, e)
	}
	slices.SortFunc(s.Events, func(a, b storedEvent) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return s
}

// restore folds a snapshot into a fresh projector. Events it cannot apply are skipped: they
// were applied once, and the stream will deliver them again.
func (p *projector) restore(s *snapshot) {
	for _, e := range s.Events {
		_, _ = p.apply(e.Subject, e.Seq, e.Event)
	}
	for z, serial := range s.Serials {
		p.serials[z] = serial
	}
	for z, d := range s.Digests {
		p.restored[z] = d
	}
}

// loadSnapshot reads the snapshot in dir; it returns nil when there is none.
func loadSnapshot(dir string) (*snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode snapshot %s: %w", filepath.Join(dir, snapshotFile), err)
	}
	if s.Version != snapshotVersion {
		return nil, fmt.Errorf("decode snapshot %s: version %d, want %d", filepath.Join(dir, snapshotFile), s.Version, snapshotVersion)
	}
	return &s, nil
}

// saveSnapshot writes s to dir atomically: a temporary file, synced, renamed over the old one.
func saveSnapshot(dir string, s *snapshot) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if s.Digests == nil {
		s.Digests = map[string]string{}
		for _, z := range s.zones {
			s.Digests[z.Name] = z.Digest()
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(dir, snapshotFile+".*")
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, snapshotFile)); err != nil {
		return fmt.Errorf("replace snapshot: %w", err)
	}
	return nil
}
