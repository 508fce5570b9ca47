package dnsupdater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/atomicfile"
	"github.com/rs/zerolog"
)

// serialsFile is the name, inside the data directory, of the serials reserved ahead of those
// served. The snapshot is written at most once a second, in the background; this small file
// is written before a serial beyond its marks is served, so that a restart after a crash
// (whose snapshot may hold an earlier serial) takes a later serial than any served, never one
// a secondary already holds for other content.
const serialsFile = "dns-serials.json"

// serialsVersion is written in every serials file; a file of another version is ignored.
const serialsVersion = 1

// reserveAhead is how far past the serial it serves, or the clock when that is later, a server
// reserves: a restart after a crash starts up to this far ahead of the clock (more only after
// versions faster than one a second had taken the serial ahead of it), where a secondary that
// also lists another Detour server as master ignores that one's changes.
const reserveAhead = 60

// renewWithin is how close the next serial of a zone may come to its mark before the marks are
// renewed in the background, off the path that serves a version: versions up to one a second
// (serials following the clock) and a quiet server alike find their serial covered, and the
// write before serving is left to a burst that outruns the renewal.
const renewWithin = reserveAhead / 2

// renewEvery is how often the renewer looks at the clock when no version asks it to: a quiet
// server's marks fall behind the clock, and the next version would wait for a write.
const renewEvery = renewWithin / 2 * time.Second

// lostReservation is how far past its snapshot's serials a server starts when its serials file
// is lost or damaged: the snapshot may lack the versions of the second before a crash, as many
// as a storm of transitions makes, and the served ones run up to reserveAhead past those.
const lostReservation = 3600

// serialMarks is the serials file.
type serialMarks struct {
	Version int `json:"version"`
	// Reserved holds, per zone, a serial that no serial served is after (RFC 1982). A clean
	// stop sets it to the serial its last snapshot holds.
	Reserved map[string]uint32 `json:"reserved"`
}

// serialReserver keeps the serials file ahead of the serials served. The refresher (and New,
// before it) covers each version before serving it; the renewer moves the marks ahead in the
// background; the snapshot writer releases them once both have stopped.
//
// The invariant, that no serial served is after the mark the file on disk holds for its zone,
// so that a crash at any moment leaves a file covering every serial served:
//   - cover returns (and the version is served) only once reserved covers every serial of
//     the version, writing the file first when it does not;
//   - reserved takes marks only once a file holding them has been synced, file and
//     directory, and renamed into place (atomically: a crash leaves the old file or the new);
//   - every write but release's holds each mark of reserved as it is when the write starts
//     (writes go one at a time, and only they change reserved), or a later one; so reserved
//     only moves ahead, and no file written after reserved took a mark holds an earlier one;
//   - release moves marks back only once the refresher has stopped: nothing more is served.
//
// So the file on disk, whichever write a crash left, covers every serial cover let through.
// A renewal the refresher does not wait for never uncovers one: lost in a crash, it leaves the
// file it would have replaced, whose marks reserved held when the serials were served.
type serialReserver struct {
	dir string
	now func() time.Time
	// renew asks the renewer (buffered, one) to move the marks ahead.
	renew chan struct{}
	// writing is held through each write of the file, so that one starts from what the last
	// wrote.
	writing sync.Mutex
	mu      sync.Mutex // guards reserved and served, never held through a write
	// reserved is what the last write that succeeded put in the file (or what the file read
	// at start held).
	reserved map[string]uint32
	// served is the serial of each zone of the last version covered.
	served map[string]uint32
}

func newSerialReserver(dir string, now func() time.Time) *serialReserver {
	return &serialReserver{dir: dir, now: now, renew: make(chan struct{}, 1)}
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
// zone beyond its mark, the file is written at once (see reserve). When a zone's next serial
// comes within renewWithin of its mark, the renewer is asked to move the marks ahead, and
// cover does not wait for it.
func (r *serialReserver) cover(zones []*zone.Zone) error {
	if r == nil {
		return nil
	}
	served := make(map[string]uint32, len(zones))
	for _, z := range zones {
		served[z.Name] = z.Serial
	}
	r.mu.Lock()
	r.served = served
	beyond, soon := r.due(served, r.now())
	r.mu.Unlock()
	if beyond {
		return r.reserve(served)
	}
	if soon {
		select {
		case r.renew <- struct{}{}:
		default:
		}
	}
	return nil
}

// due reports whether a serial of served is beyond the marks reserved, and whether a zone's
// next serial at now comes within renewWithin of its mark. r.mu is held.
func (r *serialReserver) due(served map[string]uint32, now time.Time) (beyond, soon bool) {
	for name, serial := range served {
		mark, ok := r.reserved[name]
		if !ok || serialAfter(serial, mark) {
			return true, true
		}
		if serialAfter(NextSerial(serial, now)+renewWithin, mark) {
			soon = true
		}
	}
	return false, soon
}

// renewLoop moves the marks ahead whenever cover asks, or the clock takes a zone's next serial
// within renewWithin of its mark, until ctx ends.
func (r *serialReserver) renewLoop(ctx context.Context, log zerolog.Logger) {
	if r == nil {
		return
	}
	tick := time.NewTicker(renewEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.renew:
		case <-tick.C:
		}
		if err := r.renewDue(); err != nil {
			log.Error().Err(err).Msg("serials not renewed; the next version waits for their write")
		}
	}
}

// renewDue moves the marks ahead if a zone's next serial comes within renewWithin of its mark.
func (r *serialReserver) renewDue() error {
	r.mu.Lock()
	served := r.served
	_, soon := r.due(served, r.now())
	r.mu.Unlock()
	if !soon {
		return nil
	}
	return r.reserve(served)
}

// reserve writes the file with the mark of each zone of served moved to reserveAhead past its
// serial, or past the clock when that is later (so that a quiet zone's next serial, the time,
// is covered too), unless its mark is later already.
func (r *serialReserver) reserve(served map[string]uint32) error {
	r.writing.Lock()
	defer r.writing.Unlock()
	now := uint32(r.now().Unix())
	r.mu.Lock()
	next := maps.Clone(r.reserved)
	r.mu.Unlock()
	if next == nil {
		next = map[string]uint32{}
	}
	moved := false
	for name, serial := range served {
		from := serial
		if serialAfter(now, from) {
			from = now
		}
		if mark, ok := next[name]; !ok || serialAfter(from+reserveAhead, mark) {
			next[name], moved = from+reserveAhead, true
		}
	}
	if !moved {
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
	r.writing.Lock()
	defer r.writing.Unlock()
	r.mu.Lock()
	next := maps.Clone(r.reserved)
	r.mu.Unlock()
	if next == nil {
		next = map[string]uint32{}
	}
	maps.Copy(next, serials)
	return r.write(next)
}

// write replaces the serials file with marks, and has reserved hold them once it is synced.
// r.writing is held.
func (r *serialReserver) write(marks map[string]uint32) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("reserve serials: create data dir: %w", err)
	}
	b, err := json.Marshal(serialMarks{Version: serialsVersion, Reserved: marks})
	if err != nil {
		return fmt.Errorf("reserve serials: %w", err)
	}
	if err := atomicfile.Write(r.dir, serialsFile, atomicfile.Bytes(b)); err != nil {
		return fmt.Errorf("reserve serials: %w", err)
	}
	r.mu.Lock()
	r.reserved = marks
	r.mu.Unlock()
	return nil
}
