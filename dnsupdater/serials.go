package dnsupdater

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/detourdev/detour/dnsupdater/zone"
)

// serialsFile is the name, inside the data directory, of the serials reserved ahead of those
// served. The snapshot is written at most once a second, in the background; this small file
// is written before a serial beyond its marks is served, so that a restart after a crash
// (whose snapshot may hold an earlier serial) takes a later serial than any served, never one
// a secondary already holds for other content.
const serialsFile = "dns-serials.json"

// serialsVersion is written in every serials file; a file of another version is ignored.
const serialsVersion = 1

// reserveAhead is how far past the serial it serves a server reserves, so that the file is
// written once per this many versions (or seconds, serials following the clock): a restart
// after a crash starts up to this far ahead of the clock.
const reserveAhead = 3600

// serialMarks is the serials file.
type serialMarks struct {
	Version int `json:"version"`
	// Reserved holds, per zone, a serial that no serial served is after (RFC 1982). A clean
	// stop sets it to the serial its last snapshot holds.
	Reserved map[string]uint32 `json:"reserved"`
}

// serialReserver keeps the serials file ahead of the serials served. Only the refresher (and
// New, before it) uses it.
type serialReserver struct {
	dir string
	// reserved is what the file holds.
	reserved map[string]uint32
}

// loadSerialMarks reads the serials file in dir: the serials reserved per zone, nil when there
// is none.
func loadSerialMarks(dir string) (map[string]uint32, error) {
	b, err := os.ReadFile(filepath.Join(dir, serialsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read serials: %w", err)
	}
	var m serialMarks
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode serials %s: %w", filepath.Join(dir, serialsFile), err)
	}
	if m.Version != serialsVersion {
		return nil, fmt.Errorf("decode serials %s: version %d, want %d", filepath.Join(dir, serialsFile), m.Version, serialsVersion)
	}
	return m.Reserved, nil
}

// reserved folds the serials a previous run reserved into the projector: a zone whose reserved
// serial is after the one its snapshot holds (a crash, or no snapshot) may have been served up
// to it, so its first projection takes a later serial, whatever its content.
func (p *projector) reserved(marks map[string]uint32) {
	for z, hw := range marks {
		if cur, ok := p.serials[z]; !ok || serialAfter(hw, cur) {
			p.serials[z] = hw
			delete(p.restored, z)
		}
	}
}

// cover makes sure the serials file reserves every zone's serial before it is served: for a
// zone beyond its mark, the file is written with the serial plus reserveAhead.
func (r *serialReserver) cover(zones []*zone.Zone) error {
	if r == nil {
		return nil
	}
	var next map[string]uint32
	for _, z := range zones {
		if hw, ok := r.reserved[z.Name]; ok && !serialAfter(z.Serial, hw) {
			continue
		}
		if next == nil {
			next = maps.Clone(r.reserved)
			if next == nil {
				next = map[string]uint32{}
			}
		}
		next[z.Name] = z.Serial + reserveAhead
	}
	if next == nil {
		return nil
	}
	return r.write(next)
}

// release sets the marks of the zones in serials to those serials: what a clean stop does once
// its last snapshot holds them, so that a start with the same content keeps its serial.
func (r *serialReserver) release(serials map[string]uint32) error {
	if r == nil {
		return nil
	}
	next := maps.Clone(r.reserved)
	if next == nil {
		next = map[string]uint32{}
	}
	maps.Copy(next, serials)
	return r.write(next)
}

// write replaces the serials file with marks.
func (r *serialReserver) write(marks map[string]uint32) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("reserve serials: create data dir: %w", err)
	}
	b, err := json.Marshal(serialMarks{Version: serialsVersion, Reserved: marks})
	if err != nil {
		return fmt.Errorf("reserve serials: %w", err)
	}
	if err := writeAtomically(r.dir, serialsFile, contents(b)); err != nil {
		return fmt.Errorf("reserve serials: %w", err)
	}
	r.reserved = marks
	return nil
}
