package dnsupdater

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/atomicfile"
)

// The last-known-good snapshot is a base file, the whole state at one moment, and a journal of
// the events folded since, one line per save: a save costs the events that changed since the
// one before, not the size of the state. When the journal outgrows the base, the base is
// written again and the journal started anew.
const (
	// snapshotFile is the name of the base inside the data directory.
	snapshotFile = "dns-snapshot.json"
	// journalFile is the name of the journal inside the data directory.
	journalFile = "dns-snapshot.journal"
)

// snapshotVersion is written in every base; a base of another version is ignored.
const snapshotVersion = 1

// minJournal is the size a journal may reach before the base is written again, whatever the
// base's size.
const minJournal = 1 << 20

// snapshot is the last state the server answered from: the last event of every STATE subject
// and the zones' serials. With it a server starts answering before NATS is reachable.
type snapshot struct {
	Version int `json:"version"`
	// Generation names the base: journal lines of another generation were written after an
	// older base and are not read.
	Generation uint64            `json:"generation,omitempty"`
	Serials    map[string]uint32 `json:"serials"`
	LastSeq    uint64            `json:"last_seq"`
	// StateCreated is when the STATE stream the events come from was created (see
	// events.Follower.Created); zero when unknown.
	StateCreated time.Time     `json:"state_created,omitzero"`
	Events       []storedEvent `json:"events"`
	// Digests hold, per zone, the digest of the content served at its serial.
	Digests map[string]string `json:"digests,omitempty"`
	// zones are the projected zones the digests are taken from, by the writer.
	zones []*zone.Zone
	// damaged, when set, tells of a whole journal line that could not be read: the lines from
	// it on were not folded.
	damaged error
}

// journalLine is one line of the journal: the events folded since the line before (or the
// base), and the serials and stream position after them.
type journalLine struct {
	Generation   uint64            `json:"generation"`
	Serials      map[string]uint32 `json:"serials"`
	LastSeq      uint64            `json:"last_seq"`
	StateCreated time.Time         `json:"state_created,omitzero"`
	Events       []storedEvent     `json:"events"`
}

// snapshotSave is what the refresher hands the snapshot writer: the whole state (full), or the
// events changed since the save before. Saves not yet written merge, the later winning.
type snapshotSave struct {
	full bool
	// final is the save of a server stopping: the base is written again if anything changed
	// since it, so that it holds the digests of the serials last served.
	final   bool
	serials map[string]uint32
	lastSeq uint64
	// created is when the STATE stream the events come from was created.
	created time.Time
	events  map[string]storedEvent
	// zones are the zones projected at the save, whose digests a base records.
	zones []*zone.Zone
}

// save returns what changed since the last save (every subject when full, or after a reset),
// and forgets it.
// Short of a full save it hands over the changes' map itself rather than a copy: the follower
// waits while the refresher saves (projMu), and copying the thousands of events a storm folds
// in a second held it up to 80 ms on a loaded machine.
func (p *projector) save(full bool) *snapshotSave {
	full, p.rebase = full || p.rebase, false
	s := &snapshotSave{full: full, serials: maps.Clone(p.serials), lastSeq: p.view.LastSeq(), created: p.created, zones: p.current}
	if full {
		s.events = maps.Clone(p.latest)
		clear(p.unsaved)
	} else {
		s.events, p.unsaved = p.unsaved, map[string]storedEvent{}
	}
	return s
}

// merge folds later, a save taken after s, into s.
func (s *snapshotSave) merge(later *snapshotSave) *snapshotSave {
	if later.full {
		later.final = later.final || s.final
		return later
	}
	s.final = s.final || later.final
	for subject, e := range later.events {
		s.events[subject] = e
	}
	s.serials, s.lastSeq, s.created, s.zones = later.serials, later.lastSeq, later.created, later.zones
	return s
}

// snapshot returns the projector's whole state, as a base holds it.
func (p *projector) snapshot() *snapshot {
	s := p.save(true)
	return &snapshot{Version: snapshotVersion, Serials: s.serials, LastSeq: s.lastSeq, StateCreated: s.created, Events: sortedEvents(s.events), zones: s.zones}
}

// sortedEvents lists events in stream order.
func sortedEvents(events map[string]storedEvent) []storedEvent {
	out := slices.Collect(maps.Values(events))
	slices.SortFunc(out, bySeq)
	return out
}

// bySeq orders stored events by their stream sequence.
func bySeq(a, b storedEvent) int {
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// restore folds a snapshot into a fresh projector. Events it cannot apply are skipped: they
// were applied once, and the stream will deliver them again.
func (p *projector) restore(s *snapshot) {
	for _, e := range s.Events {
		_, _ = p.apply(e.Subject, e.Seq, e.Event, nil)
	}
	clear(p.unsaved)
	p.created = s.StateCreated
	for z, serial := range s.Serials {
		p.serials[z] = serial
	}
	for z, d := range s.Digests {
		p.restored[z] = d
	}
}

// restoreSnapshot loads the snapshot and the serials file of the data dir into the projector.
// A damaged file must not keep the server from starting: STATE rebuilds the state, and a
// zone without a reserved serial takes one after its snapshot's and a reservation (or the
// clock).
func (s *Server) restoreSnapshot() {
	s.serials = newSerialReserver(s.o.DataDir, s.now)
	snap, err := loadSnapshot(s.o.DataDir)
	if err != nil {
		s.log.Warn().Err(err).Msg("last-known-good snapshot ignored")
	}
	if snap != nil && snap.damaged != nil {
		s.log.Warn().Err(snap.damaged).Msg("last-known-good snapshot journal damaged; starting from the lines before")
	}
	if snap != nil {
		s.proj.restore(snap)
		s.log.Info().Int("events", len(snap.Events)).Uint64("stream_seq", snap.LastSeq).Msg("loaded last-known-good snapshot")
	}
	marks, err := loadSerialMarks(s.o.DataDir)
	if err != nil {
		s.log.Warn().Err(err).Msg("reserved serials ignored")
	}
	// The reserver holds only what the file holds: a serial it takes as covered is on disk.
	s.serials.reserved = marks
	if marks == nil && snap != nil && len(snap.Serials) > 0 {
		// The serials file is lost or damaged: the server may have served past its snapshot's
		// serials, by the versions of the second before a crash and a reservation, so every
		// zone starts past that.
		marks = make(map[string]uint32, len(snap.Serials))
		for z, serial := range snap.Serials {
			marks[z] = serial + lostReservation
		}
		s.log.Warn().Str("file", filepath.Join(s.o.DataDir, serialsFile)).Msg("no reserved serials beside the snapshot; every zone takes a serial past its snapshot's and a reservation")
	}
	s.proj.reserved(marks)
	s.knowsServed = snap != nil || marks != nil
}

// loadSnapshot reads the snapshot in dir, its base and the journal lines written after it; it
// returns nil when there is none.
func loadSnapshot(dir string) (*snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	var journal io.Reader = bytes.NewReader(nil)
	f, err := os.Open(filepath.Join(dir, journalFile))
	switch {
	case err == nil:
		defer f.Close()
		journal = f
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read snapshot journal: %w", err)
	}
	s, err := decodeSnapshot(b, journal)
	if err != nil {
		return nil, fmt.Errorf("decode snapshot %s: %w", filepath.Join(dir, snapshotFile), err)
	}
	return s, nil
}

// decodeSnapshot decodes a base and folds into it the lines of its journal. A journal line
// cut short (a crash while it was written) ends the journal.
func decodeSnapshot(base []byte, journal io.Reader) (*snapshot, error) {
	var s snapshot
	if err := json.Unmarshal(base, &s); err != nil {
		return nil, err
	}
	if s.Version != snapshotVersion {
		return nil, fmt.Errorf("version %d, want %d", s.Version, snapshotVersion)
	}
	if s.Serials == nil {
		s.Serials = map[string]uint32{}
	}
	readJournal(&s, journal)
	return &s, nil
}

// readJournal folds the lines of r that follow s's base into s: each line's events replace
// those of their subjects, its serials and stream position those of s. It stops at the first
// line cut short (a crash while it was written), of another base (written before it), or not
// decoded, which it records in s.damaged. A zone whose serial a line moved keeps no digest: the
// base's stood for its own serial.
func readJournal(s *snapshot, r io.Reader) {
	latest := make(map[string]storedEvent, len(s.Events))
	keep := func(e storedEvent) {
		if old, ok := latest[e.Subject]; !ok || e.Seq > old.Seq {
			latest[e.Subject] = e
		}
	}
	for _, e := range s.Events {
		keep(e)
	}
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil {
			break // the end, or a line cut short
		}
		var l journalLine
		if err := json.Unmarshal(line, &l); err != nil {
			s.damaged = fmt.Errorf("%s line %d: %w", journalFile, n, err)
			break
		}
		if l.Generation != s.Generation || s.Generation == 0 {
			break
		}
		for _, e := range l.Events {
			keep(e)
		}
		for z, serial := range l.Serials {
			if serial != s.Serials[z] {
				delete(s.Digests, z)
			}
			s.Serials[z] = serial
		}
		s.LastSeq = max(s.LastSeq, l.LastSeq)
		if !l.StateCreated.IsZero() {
			s.StateCreated = l.StateCreated
		}
	}
	s.Events = sortedEvents(latest)
}

// snapshotWriter writes the saves the refresher hands it into the data directory. It holds
// what the files hold: the state of the base and the lines after it, each event's JSON made
// once, when a line first carries it (the message STATE stored, shared with the projector), so
// that a new base costs copying them, not encoding the state. One goroutine owns it.
type snapshotWriter struct {
	dir string
	// minJournal is the size the journal may reach before the base is written again,
	// whatever the base's size (minJournal when 0).
	minJournal int
	generation uint64
	events     map[string]encodedEvent
	serials    map[string]uint32
	lastSeq    uint64
	created    time.Time
	// baseSize and journalSize are the bytes of the base and of the journal.
	baseSize, journalSize int
	journal               *os.File
	// failed says that a save was not written whole: the journal may lack its line (or hold
	// part of it), so a line appended now would restore a state that never was, without the
	// failed save's changes. The next save writes a new base, which holds them.
	failed bool
}

// encodedEvent is a stored event as the files hold it: {"subject":…,"seq":…,"event":event}.
type encodedEvent struct {
	subject string
	seq     uint64
	// event is the event's JSON on one line.
	event []byte
}

// write records s: as a line of the journal, or as a new base when s is full, when the writer
// has written no base yet, when a save before failed, or when the line would make the journal
// larger than the base (and minJournal).
func (w *snapshotWriter) write(s *snapshotSave) (err error) {
	gen := w.generation
	defer func() {
		if err != nil && w.generation == gen { // a new base written meanwhile holds it all
			w.failed = true
		}
	}()
	unchanged := !s.full && len(s.events) == 0 && maps.Equal(s.serials, w.serials) && s.lastSeq == w.lastSeq && s.created.Equal(w.created)
	if s.full || w.events == nil {
		w.events = make(map[string]encodedEvent, len(s.events))
	}
	changed, err := w.encode(s.events)
	if err != nil {
		return err
	}
	w.serials, w.lastSeq, w.created = s.serials, s.lastSeq, s.created
	switch {
	case s.full || w.generation == 0 || w.failed:
		return w.writeBase(s.zones)
	case s.final && unchanged && w.journalSize == 0:
		return nil // the base holds it all
	case s.final:
		return w.writeBase(s.zones)
	case unchanged:
		return nil
	}
	head, err := json.Marshal(journalHead{Generation: w.generation, Serials: s.serials, LastSeq: s.lastSeq, StateCreated: s.created})
	if err != nil {
		return fmt.Errorf("encode snapshot journal: %w", err)
	}
	line := withEvents(head, changed, '\n')
	if w.journalSize+len(line) > max(w.baseSize, cmp.Or(w.minJournal, minJournal)) {
		return w.writeBase(s.zones)
	}
	if w.journal == nil {
		f, err := os.OpenFile(filepath.Join(w.dir, journalFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("create snapshot journal: %w", err)
		}
		w.journal, w.journalSize = f, 0
	}
	if _, err := w.journal.Write(line); err != nil {
		return w.journalFailed(fmt.Errorf("write snapshot journal: %w", err), s.zones)
	}
	if err := w.journal.Sync(); err != nil {
		return w.journalFailed(fmt.Errorf("sync snapshot journal: %w", err), s.zones)
	}
	w.journalSize += len(line)
	return nil
}

// encode encodes events into the writer's state and returns them in stream order.
func (w *snapshotWriter) encode(events map[string]storedEvent) ([]encodedEvent, error) {
	out := make([]encodedEvent, 0, len(events))
	for subject, e := range events {
		enc, err := encodeStored(e)
		if err != nil {
			return nil, fmt.Errorf("encode snapshot event of %s: %w", subject, err)
		}
		w.events[subject] = enc
		out = append(out, enc)
	}
	slices.SortFunc(out, func(a, b encodedEvent) int { return cmp.Compare(a.seq, b.seq) })
	return out, nil
}

// encodeStored returns e as the files hold it. The event is the message the stream stored when
// e has it (raw), which decodes to e.Event as the stream's message did: encoding every event
// again was a tenth of the server's CPU in a region's failure, beside the answering. Without it
// e.Event is encoded; a message that spans lines is compacted, since a journal line is one save.
func encodeStored(e storedEvent) (encodedEvent, error) {
	event := e.raw
	if bytes.IndexByte(event, '\n') >= 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, event); err != nil {
			return encodedEvent{}, err
		}
		event = buf.Bytes()
	}
	if event == nil {
		b, err := json.Marshal(e.Event)
		if err != nil {
			return encodedEvent{}, err
		}
		event = b
	}
	return encodedEvent{subject: e.Subject, seq: e.Seq, event: event}, nil
}

// size is about the length of e's JSON.
func (e encodedEvent) size() int { return len(e.subject) + len(e.event) + 48 }

// appendTo appends e's JSON to out.
func (e encodedEvent) appendTo(out []byte) []byte {
	out = append(out, `{"subject":`...)
	if plainJSONString(e.subject) {
		out = append(append(append(out, '"'), e.subject...), '"')
	} else {
		quoted, _ := json.Marshal(e.subject) // a string always encodes
		out = append(out, quoted...)
	}
	out = append(out, `,"seq":`...)
	out = strconv.AppendUint(out, e.seq, 10)
	out = append(out, `,"event":`...)
	out = append(out, e.event...)
	return append(out, '}')
}

// plainJSONString reports whether s is written in JSON as it is between quotes: printable ASCII
// without a quote, a backslash or a character json.Marshal escapes.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// journalHead is a journal line without its events, and baseHead a base without its events:
// the encoded events are appended to them as they are.
type journalHead struct {
	Generation   uint64            `json:"generation"`
	Serials      map[string]uint32 `json:"serials"`
	LastSeq      uint64            `json:"last_seq"`
	StateCreated time.Time         `json:"state_created,omitzero"`
}

type baseHead struct {
	Version      int               `json:"version"`
	Generation   uint64            `json:"generation,omitempty"`
	Serials      map[string]uint32 `json:"serials"`
	LastSeq      uint64            `json:"last_seq"`
	StateCreated time.Time         `json:"state_created,omitzero"`
	Digests      map[string]string `json:"digests,omitempty"`
}

// withEvents returns the JSON object head with an "events" member holding events, followed
// by end.
func withEvents(head []byte, events []encodedEvent, end byte) []byte {
	n := len(head) + 16
	for _, e := range events {
		n += e.size() + 1
	}
	out := make([]byte, 0, n)
	out = append(out, head[:len(head)-1]...) // without its closing brace
	out = append(out, `,"events":[`...)
	for i, e := range events {
		if i > 0 {
			out = append(out, ',')
		}
		out = e.appendTo(out)
	}
	return append(out, ']', '}', end)
}

// chunkSize is about how much of a base streamWithEvents writes at a time.
const chunkSize = 64 << 10

// streamWithEvents writes to f what withEvents returns, a chunk of about chunkSize at a time,
// and returns its length: a base of 10,000 apps' events is 23 MB, which withEvents would build
// whole (and fault in) before writing it.
func streamWithEvents(f io.Writer, head []byte, events []encodedEvent, end byte) (int, error) {
	buf := make([]byte, 0, chunkSize+chunkSize/4)
	buf = append(buf, head[:len(head)-1]...) // without its closing brace
	buf = append(buf, `,"events":[`...)
	n := 0
	for i, e := range events {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = e.appendTo(buf)
		if len(buf) >= chunkSize {
			if _, err := f.Write(buf); err != nil {
				return n, err
			}
			n += len(buf)
			buf = buf[:0]
		}
	}
	buf = append(buf, ']', '}', end)
	_, err := f.Write(buf)
	return n + len(buf), err
}

// journalFailed answers a journal that could not be written: a line of it may be cut short,
// so the state is written as a new base, which leaves the journal behind.
func (w *snapshotWriter) journalFailed(err error, zones []*zone.Zone) error {
	if berr := w.writeBase(zones); berr != nil {
		return errors.Join(err, berr)
	}
	return err
}

// writeBase writes the writer's state as a new base of a new generation, with the digests of
// zones, and starts an empty journal after it.
func (w *snapshotWriter) writeBase(zones []*zone.Zone) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	gen := rand.Uint64() | 1 // never 0, which names no generation
	head, err := json.Marshal(baseHead{Version: snapshotVersion, Generation: gen, Serials: w.serials, LastSeq: w.lastSeq,
		StateCreated: w.created, Digests: digests(w.serials, zones)})
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	all := slices.AppendSeq(make([]encodedEvent, 0, len(w.events)), maps.Values(w.events))
	slices.SortFunc(all, func(a, b encodedEvent) int { return cmp.Compare(a.seq, b.seq) })
	size := 0
	if err := atomicfile.Write(w.dir, snapshotFile, func(f io.Writer) (err error) {
		size, err = streamWithEvents(f, head, all, '\n')
		return err
	}); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	// Lines of the old generation are not read after the new base; the journal is truncated
	// when the next line is written.
	if w.journal != nil {
		_ = w.journal.Close()
		w.journal = nil
	}
	w.generation, w.baseSize, w.journalSize, w.failed = gen, size, 0, false
	return nil
}

// digests are the digests of the zones whose serial is the one serials holds.
func digests(serials map[string]uint32, zones []*zone.Zone) map[string]string {
	out := map[string]string{}
	for _, z := range zones {
		if serial, ok := serials[z.Name]; ok && serial == z.Serial {
			out[z.Name] = z.Digest()
		}
	}
	return out
}

// close closes the journal.
func (w *snapshotWriter) close() {
	if w.journal != nil {
		_ = w.journal.Close()
		w.journal = nil
	}
}

// saveSnapshot writes s to dir atomically as the base: a temporary file, synced, renamed over
// the old one. It returns the base's size.
func saveSnapshot(dir string, s *snapshot) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create data dir: %w", err)
	}
	if s.Digests == nil {
		s.Digests = digests(s.Serials, s.zones)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(s); err != nil {
		return 0, fmt.Errorf("encode snapshot: %w", err)
	}
	if err := atomicfile.Write(dir, snapshotFile, atomicfile.Bytes(buf.Bytes())); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	return buf.Len(), nil
}
