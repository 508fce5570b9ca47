package prober

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// MembersBucket is the JetStream key-value bucket where probers announce themselves, one key per
// worker: "<region>.<name>". Its values are Member records as JSON.
const MembersBucket = events.BucketProbers

// maxMemberTTL bounds the ttl a record may claim; a worker silent for longer is dead.
const maxMemberTTL = time.Hour

// BlindGrace bounds how long a worker that sees none of its own records come back or stored
// (JetStream cannot store them) keeps the others' leases as they stood: past
// it, their silence counts again, and a worker that died meanwhile has its checks taken over. It
// outlasts a Raft election after a JetStream node died (4 to 9 s) and the watch's recovery.
const BlindGrace = 15 * time.Second

// Member is one prober's heartbeat record.
type Member struct {
	Region string `json:"region"`
	Name   string `json:"name"`
	// ActiveFrom is when the worker starts taking checks; others hand them over at that instant.
	ActiveFrom time.Time `json:"active_from"`
	// ActiveUntil, set by a worker that is stopping, is when it stops taking checks; others take
	// them over at that instant, while it finishes the checks it has in flight (zero: none).
	ActiveUntil time.Time `json:"active_until,omitzero"`
	// TTLMillis is how long the record stays valid after each heartbeat.
	TTLMillis int64 `json:"ttl_ms"`
	// Started is when the worker started, for operators.
	Started time.Time `json:"started"`
}

// TTL returns the record's validity as a duration.
func (m Member) TTL() time.Duration { return time.Duration(m.TTLMillis) * time.Millisecond }

// Key is the member's key in MembersBucket.
func (m Member) Key() string { return m.Region + "." + m.Name }

// DecodeMember parses and checks a heartbeat record.
func DecodeMember(b []byte) (Member, error) {
	var m Member
	if err := json.Unmarshal(b, &m); err != nil {
		return Member{}, fmt.Errorf("decode member record: %w", err)
	}
	switch {
	case events.CheckToken(m.Region) != nil:
		return Member{}, fmt.Errorf("member record: region: %w", events.CheckToken(m.Region))
	case events.CheckToken(m.Name) != nil:
		return Member{}, fmt.Errorf("member record: name: %w", events.CheckToken(m.Name))
	case m.TTLMillis <= 0 || m.TTLMillis > maxMemberTTL.Milliseconds():
		return Member{}, fmt.Errorf("member record: ttl_ms: want 1 to %d, got %d", maxMemberTTL.Milliseconds(), m.TTLMillis)
	case m.ActiveFrom.IsZero():
		return Member{}, errors.New("member record: active_from: missing")
	}
	return m, nil
}

// sighting is a member and when this worker last heard from it.
type sighting struct {
	Member
	LastSeen time.Time
	// held is the blind time already added to LastSeen since the member was last heard from:
	// all of it, over however many blind spells, stays within BlindGrace.
	held time.Duration
	// named is when the last record naming the member's ActiveUntil arrived (zero: none).
	named time.Time
}

// Roster is one worker's view of its region's members. It is pure: the shell feeds it records
// and the times they arrived.
//
// The others' silence counts against them only while this worker sees its own records come back
// through its watch, which carries theirs, or stored (a watch that reads nothing while the store
// stores is this worker's fault, not the others'): from a heartbeat after the last, the
// others' leases stand still, for up to BlindGrace in all since each was heard from (however
// often a flapping store lets one record through), as when JetStream cannot store (a bucket
// electing a leader, no quorum) while NATS answers and every worker would otherwise count itself
// alone and run every check of the region. When one of its records comes back, the time it sent
// none for longer than its TTL less a heartbeat is taken off: that was this worker's own stall,
// not the store's.
type Roster struct {
	self      string
	heartbeat time.Duration
	seen      map[string]sighting
	// ttl is this worker's own TTL.
	ttl time.Duration
	// echo is when this worker's own record last came back through its watch or was stored,
	// and sent when it first sent one after that (zero: none yet).
	echo, sent time.Time
	cache      []string
	// cache is the answer for instants in [validFrom, valid).
	validFrom, valid time.Time
	cached           bool
}

// NewRoster starts a view of self's region, whose members heartbeat every heartbeat. Self is
// live, like any member, from its ActiveFrom for its TTL after each heartbeat that was stored or
// that its NATS server answered: a worker cut off from NATS stops probing when the others take
// its checks over.
func NewRoster(self Member, heartbeat time.Duration) *Roster {
	return &Roster{self: self.Name, heartbeat: heartbeat, ttl: self.TTL(), seen: map[string]sighting{}}
}

// Sent records that this worker sent one of its records at at, to be stored.
func (r *Roster) Sent(at time.Time) {
	if r.sent.IsZero() && !at.Before(r.echo) {
		r.sent = at
	}
}

// Echoed records that this worker's own record came back through its watch at at, or that the
// store's acknowledgement of one arrived at at: up to then the store stored the region's
// records. Where none came back for longer than this worker's TTL, the time it saw none, from a
// heartbeat after the last, is added to the others' leases, up to BlindGrace in all since each
// was last heard from. One that came back within its TTL came as from a store that stores (a
// heartbeat, then up to putBudget for the answer), in time for a live member's record to renew
// its lease: a member silent meanwhile was silent of its own accord. Counted as blind too, every
// acknowledgement later than a heartbeat after the one before (a store answering now at once,
// now most of a heartbeat late) stretched a dead member's lease by its lateness, 3 s to 4.4 s.
// Of the time before this worker sent its next record, at most its TTL less a heartbeat counts
// so (the most a heartbeat may be late and the worker stay live for the others): a worker that
// stalled for longer (descheduled, its host paused) was gone itself, and a member that died
// meanwhile is not kept for as long as this worker stalled. Within that bound a stall still
// counts, as it may hide an outage in which a live member could not be heard either.
func (r *Roster) Echoed(at time.Time) {
	if !at.After(r.echo) {
		return
	}
	sent := r.sent
	if sent.IsZero() {
		sent = at // none sent since the last came back
	}
	late := sent.Add(r.heartbeat - r.ttl)
	for name, s := range r.seen {
		if name == r.self || !at.After(r.echo.Add(r.ttl)) {
			continue
		}
		if from, until := r.held(s); until.After(from) && at.After(from) {
			if late.After(from) {
				from = late
			}
			if until.After(at) {
				until = at
			}
			if add := until.Sub(from); add > 0 {
				s.LastSeen, s.held = s.LastSeen.Add(add), s.held+add
				r.seen[name] = s
			}
		}
	}
	r.echo, r.sent = at, time.Time{}
	r.cached = false
}

// held returns the span over which s's lease stands still: from a heartbeat after this worker's
// last record came back (or from s's last sighting, if later) for as long as no record comes
// back, up to BlindGrace after the last and up to BlindGrace in all for s. Empty before any
// record came back.
func (r *Roster) held(s sighting) (from, until time.Time) {
	if r.echo.IsZero() {
		return time.Time{}, time.Time{}
	}
	from = r.echo.Add(r.heartbeat)
	if s.LastSeen.After(from) {
		from = s.LastSeen
	}
	until = r.echo.Add(BlindGrace)
	if left := from.Add(BlindGrace - s.held); left.Before(until) {
		until = left
	}
	return from, until
}

// expires returns when s's lease runs out: its TTL after it was last heard from, the time it
// stands still (held) added for the others.
func (r *Roster) expires(name string, s sighting) time.Time {
	e := s.LastSeen.Add(s.TTL())
	if name == r.self {
		return e
	}
	if from, until := r.held(s); until.After(from) && e.After(from) {
		e = e.Add(until.Sub(from))
	}
	return e
}

// Seen records a heartbeat of m that arrived at at. A member that said when it stops taking
// checks is held to it by the records of the same start that follow within its TTL, which may
// have been sent before it said so and stored after (a stopping worker's own records say so
// from then on); no longer, so that a record forged under a live worker's key holds it to an
// instant it never named for a TTL, not for as long as it runs.
func (r *Roster) Seen(m Member, at time.Time) {
	named := time.Time{}
	if !m.ActiveUntil.IsZero() {
		named = at
	} else if s, ok := r.seen[m.Name]; ok && s.Started.Equal(m.Started) && at.Before(s.named.Add(m.TTL())) {
		m.ActiveUntil, named = s.ActiveUntil, s.named
	}
	r.seen[m.Name] = sighting{Member: m, LastSeen: at, named: named}
	r.cached = false
}

// Recreated records that the watch found the bucket deleted and created again at at: the
// others' records were the old bucket's. Each of their leases ends two heartbeats after at, or
// sooner as it stood (held, as any, while this worker's own records do not come back): a member
// that lives on writes its next record into the new bucket within a heartbeat and stays live
// without a gap, and one that died meanwhile is not kept for as long as its old record claimed.
func (r *Roster) Recreated(at time.Time) {
	end := at.Add(2 * r.heartbeat)
	for name, s := range r.seen {
		if name == r.self {
			continue
		}
		if r.expires(name, s).After(end) {
			s.LastSeen = end.Add(-s.TTL())
			r.seen[name] = s
		}
	}
	r.cached = false
}

// Has reports whether the roster holds a record of name, live or not.
func (r *Roster) Has(name string) bool {
	_, ok := r.seen[name]
	return ok
}

// Gone records that m left (its record was deleted).
func (r *Roster) Gone(name string) {
	if name == r.self {
		return
	}
	delete(r.seen, name)
	r.cached = false
}

// Live returns the sorted names of the members that take checks at t: active by then and not
// past the instant they stop at, and heard from within their TTL (for the others, on the clock
// of their leases). The slice is shared: callers must not change it.
func (r *Roster) Live(t time.Time) []string {
	if r.cached && !t.Before(r.validFrom) && t.Before(r.valid) {
		return r.cache
	}
	live := r.cache[:0:0]
	valid := time.Time{}
	later := func(at time.Time) {
		if valid.IsZero() || at.Before(valid) {
			valid = at
		}
	}
	for name, s := range r.seen {
		if s.ActiveFrom.After(t) {
			later(s.ActiveFrom)
			continue
		}
		expires := r.expires(name, s)
		if !s.ActiveUntil.IsZero() && s.ActiveUntil.Before(expires) {
			expires = s.ActiveUntil
		}
		if !expires.After(t) {
			continue
		}
		later(expires)
		live = append(live, name)
	}
	slices.Sort(live)
	r.cache, r.cached, r.validFrom, r.valid = live, true, t, valid
	if valid.IsZero() {
		r.valid = t.Add(time.Hour)
	}
	return live
}

// Shards returns the sorted names of the members this worker shares its checks with at t: the
// live ones (Live), and this worker itself whenever its own records say it takes checks at t
// (from its ActiveFrom, until its ActiveUntil), its lease live or not. A running worker whose
// lease lapsed (its heartbeats starved, its server slow to answer) read a view without itself,
// empty when alone, and ran none of its checks until it renewed the lease, so the windows
// meanwhile went without a result: checked twice beats not checked. While its lease is lapsed,
// the others it counted when it lapsed still count, each until the instant it named to stop at,
// beside those live at t: a worker cut off from NATS hears from none of them, whose leases it holds for BlindGrace
// only, and would then run every check of the region, as would every worker of a region cut
// off at once. Alone, it counts only itself, as a worker that cannot read its region's records
// yet does. The slice may be shared: callers must not change it.
func (r *Roster) Shards(t time.Time, alone bool) []string {
	s, ok := r.seen[r.self]
	active := ok && !s.ActiveFrom.After(t) && (s.ActiveUntil.IsZero() || t.Before(s.ActiveUntil))
	switch {
	case alone && active:
		return []string{r.self}
	case alone:
		return nil
	}
	live := r.Live(t)
	if !active || slices.Contains(live, r.self) {
		return live
	}
	with := append(slices.Clone(live), r.self)
	if lapsed := r.expires(r.self, s); lapsed.Before(t) {
		for _, name := range r.Live(lapsed) {
			until := r.seen[name].ActiveUntil
			if (until.IsZero() || t.Before(until)) && !slices.Contains(with, name) {
				with = append(with, name)
			}
		}
	}
	slices.Sort(with)
	return with
}

// membership is the shell around a Roster: it heartbeats this worker's record into the bucket
// and watches the region's records.
type membership struct {
	kv jetstream.KeyValue
	// js names the region's keys (list) while the watch has not read them.
	js    jetstream.JetStream
	self  Member
	clock Clock
	log   zerolog.Logger

	mu      sync.Mutex
	roster  *Roster
	changed chan struct{}
	// ready is closed once the records present when the watch began are in the roster.
	ready chan struct{}
	// alone is set while this worker joined without those records (ready was late): it shards
	// its checks as if it were alone in its region (Roster.Shards) until they are read.
	alone bool
	// unwatched is set with alone, for as long as the watch has not read those records: the
	// worker reads them from the bucket instead (readUnwatched).
	unwatched bool
	// twinWarned is set once another worker's record was seen under this worker's name.
	twinWarned bool
	// watched is when this worker's own record last came back through its watch, acked when
	// the last record the bucket acknowledged was sent.
	watched, acked time.Time
	// revision is the bucket's revision of the last record of this worker's it acknowledged
	// (0: none), which leave deletes.
	revision uint64
	// stopping, once the worker stops (retire), is closed when it counts itself as stopping at
	// ownUntil (retired).
	stopping chan struct{}
	ownUntil time.Time
}

// waitMembersBucket opens MembersBucket, trying again every half second while JetStream cannot
// be reached or the bucket does not exist yet (logged once). The worker never creates the bucket:
// detour apply and detour up do, and a prober role allowed to creates it at start (services/cli's
// provision), with the configured replicas. It returns an error only when ctx ends.
func waitMembersBucket(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) (jetstream.KeyValue, error) {
	warned := false
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := js.KeyValue(actx, MembersBucket)
		cancel()
		if err == nil {
			if warned {
				log.Info().Msg("membership bucket reachable")
			}
			return kv, nil
		}
		if !warned {
			log.Warn().Err(err).Msg("waiting for the membership bucket")
			warned = true
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (m *membership) live(t time.Time) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.roster.Live(t)
}

// shards returns the members this worker shares its checks with at t (Roster.Shards).
func (m *membership) shards(t time.Time) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.roster.Shards(t, m.alone)
}

// announce writes this worker's record; once stored, this worker counts itself live for its TTL.
func (m *membership) announce(ctx context.Context) error {
	m.mu.Lock()
	b, err := json.Marshal(m.self)
	stopping := !m.self.ActiveUntil.IsZero()
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode member record: %w", err)
	}
	sent := m.clock.Now()
	m.mu.Lock()
	m.roster.Sent(sent)
	key, started, last := m.self.Key(), m.self.Started, m.revision
	m.mu.Unlock()
	rev, err := m.store(ctx, key, b, started, last)
	if err != nil {
		return err
	}
	m.stillHere(sent)
	if stopping {
		m.retired()
	}
	if rev == 0 {
		return nil // a new worker of this name took the key: its record stays
	}
	// Stored: the bucket stores the others' records too, so their silence counts against them
	// even while this worker's watch reads nothing (its consumer lost while JetStream stores),
	// where holding their leases would leave a dead worker's checks unrun for BlindGrace. While
	// the watch lags, their records are read from the bucket instead. The store is known to
	// work when the answer comes, not when the record was sent: one sent while NATS was down
	// waited in the reconnect buffer, and the others could not be heard meanwhile either.
	stored := m.clock.Now()
	m.mu.Lock()
	m.revision = rev
	m.roster.Echoed(stored)
	// The watch lags when the record stored before this one has not come back: this one's
	// echo may well come after its acknowledgement.
	lagging := m.watched.Before(m.acked)
	m.acked = sent
	var others []string
	if lagging {
		for name := range m.roster.seen {
			if name != m.self.Name {
				others = append(others, name)
			}
		}
	}
	m.mu.Unlock()
	m.readOthers(ctx, others)
	return nil
}

// store writes b, this worker's record, under key, over the record of its own last stored (the
// revision last, 0 for none: the first record takes the key whoever held it), or, where another
// came since, over the one there if it is of this worker's start (a record whose acknowledgement
// was lost) or the key holds none. A worker started since under the same name (a rolling
// restart) holds the key: store returns revision 0 and writes nothing, where this worker's
// heartbeats, and its record saying when it stops, were stored over the new one's, which the
// region counted stopping at this one's instant, then gone once this one left.
func (m *membership) store(ctx context.Context, key string, b []byte, started time.Time, last uint64) (uint64, error) {
	if last == 0 {
		rev, err := m.kv.Put(ctx, key, b)
		if err != nil {
			return 0, fmt.Errorf("put member record %s: %w", key, err)
		}
		return rev, nil
	}
	rev, err := m.kv.Update(ctx, key, b, last)
	switch {
	case err == nil:
		return rev, nil
	case !errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, fmt.Errorf("put member record %s: %w", key, err)
	}
	// Most often a worker started since under this name holds the key (a rolling restart, or
	// two workers of one name): a read tells so and ends there, at each heartbeat of the old
	// worker. Where the key holds no record (this worker's expired after a minute unstored, the
	// bucket was created again), a create, which only such a key accepts, stores this one
	// without taking the key from a worker of this name started since the read.
	there, own, err := m.recordThere(ctx, key, started)
	switch {
	case err != nil:
		return 0, err
	case own:
		return m.store(ctx, key, b, started, there)
	case there != 0:
		return 0, nil // another's
	}
	rev, err = m.kv.Create(ctx, key, b)
	switch {
	case err == nil:
		return rev, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, nil // taken since the read: this worker's next heartbeat tries again
	}
	return 0, fmt.Errorf("create member record %s: %w", key, err)
}

// recordThere reads the record under key: its revision (0: the key holds none), and whether it
// is of the worker started at started (a record that does not decode is not). The read is
// hedged (get): a plain one that drew a hung replica waited out the heartbeat's budget, and the
// record was not stored at that heartbeat.
func (m *membership) recordThere(ctx context.Context, key string, started time.Time) (uint64, bool, error) {
	e, err := m.get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("read member record %s: %w", key, err)
	}
	r, err := DecodeMember(e.Value())
	return e.Revision(), err == nil && r.Started.Equal(started), nil
}

// join stores the worker's first record, starting it joinDelay after each attempt, and tries
// again every heartbeat until it is stored or ctx ends (it then returns ctx's error). Until then
// the worker takes no checks. A record being stored when ctx ends is waited for (up to
// firstStoreBudget), not given up: sent, it may still be stored, and a worker that left at once
// looked for it before it landed, so that it stayed in the bucket, live for the region for its
// TTL, its share of the checks unrun meanwhile. Once its answer came, leave deletes it by its
// revision. The bucket refuses a record for a new key when it is full
// (events.ProbersStream: a flood of keys, or more workers than its bound): the worker says so
// once, naming the way out, and joins as soon as a record expires or the bound is raised; the
// first refusal of another kind (JetStream electing the bucket's leader) is a warning.
func (m *membership) join(ctx context.Context, heartbeat, joinDelay time.Duration) error {
	refused := false
	for {
		m.mu.Lock()
		m.self.ActiveFrom = m.clock.Now().Add(joinDelay)
		m.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), firstStoreBudget)
		err := m.announce(actx)
		cancel()
		switch {
		case err == nil && ctx.Err() != nil:
			return ctx.Err() // stored as the worker stopped: leave deletes it
		case err == nil:
			if refused {
				m.log.Info().Msg("member record stored; joining the region")
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !refused && bucketFull(err):
			m.log.Error().Err(err).Str("bucket", MembersBucket).
				Msg("membership bucket full: this worker takes no checks until a record expires or the bucket's bound is raised (nats stream edit " + events.StreamProbers + " --max-msgs); trying again every heartbeat")
		case !refused:
			m.log.Warn().Err(err).Msg("member record not stored; trying again every heartbeat")
		}
		refused = true
		tick, stop := m.clock.NewTimer(heartbeat)
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-tick:
		}
	}
}

// firstStoreBudget bounds the wait for the answer to a worker's first record, stopped or not:
// nats.go's default for a request without a deadline, which it waited before. A stopped worker
// then leaves within it and leave's 2 s, under the 10 s docker stop waits.
const firstStoreBudget = 5 * time.Second

// bucketFull reports whether err is the bucket's refusal of a record for a new key because it
// holds all the records, or bytes, it may (JetStream's "maximum messages exceeded", a store
// failure).
func bucketFull(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeStoreFailed &&
		(api.Description == "maximum messages exceeded" || api.Description == "maximum bytes exceeded")
}

// errCodeStoreFailed is JetStream's error code for a message a stream did not store.
const errCodeStoreFailed = 10077

// readOthers reads the records of the members named from the bucket, for a worker whose watch
// does not deliver its own records though the bucket stores them (its consumer is being created
// again, after a node died or JetStream came back): a live member stays live, and one that
// stopped writing is dated from its last record, as the watch would have it.
func (m *membership) readOthers(ctx context.Context, names []string) {
	for _, name := range names {
		e, err := m.get(ctx, m.self.Region+"."+name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			m.mu.Lock()
			gone := m.roster.Has(name)
			m.roster.Gone(name)
			m.mu.Unlock()
			if gone {
				m.tell()
			}
			continue
		}
		if err != nil {
			return
		}
		rec, err := DecodeMember(e.Value())
		if err != nil || rec.Key() != e.Key() {
			continue
		}
		seen := m.clock.Now()
		if e.Created().Before(seen) {
			seen = e.Created()
		}
		m.mu.Lock()
		// Never earlier than the watch had it, nor back from a deletion it delivered meanwhile.
		if s, ok := m.roster.seen[name]; ok && seen.After(s.LastSeen) {
			m.roster.Seen(rec, seen)
		}
		m.mu.Unlock()
	}
}

// readUnwatched reads the region's records from the bucket (list) for a worker that joined
// without them, until its watch has read them; the first time it does, this worker stops
// counting itself alone, and each time it finds the members that joined since. A worker
// whose view was not read within a heartbeat of its start (the node holding its consumer hangs,
// and the watch waits for it) joined and ran every check of its region for as long as the watch
// waited, with no end of its own: a region restarted beside such a node ran each check once per
// worker meanwhile.
func (m *membership) readUnwatched(ctx context.Context) {
	m.mu.Lock()
	unwatched := m.unwatched
	m.mu.Unlock()
	if !unwatched || !m.list(ctx) {
		return
	}
	m.mu.Lock()
	alone := m.alone
	m.alone = false
	m.mu.Unlock()
	if alone {
		m.log.Info().Msg("membership view read from the bucket while its watch waits: checking this worker's share of the region")
		m.tell()
	}
}

// list adds to the roster the region's members it lacks, read from the bucket as the watch reads
// them when it begins (each dated from when its record was stored, so a stale one is not taken
// for live): the stream's leader names the region's keys (stream info, filtered to them) and any
// replica answers a direct get of each, neither of them needing a consumer. The members already
// in the roster are renewed from the bucket by readOthers. It reports whether every key was
// read.
func (m *membership) list(ctx context.Context) bool {
	prefix := "$KV." + MembersBucket + "." + m.self.Region + "."
	s, err := m.js.Stream(ctx, events.StreamProbers)
	if err != nil {
		return false
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+"*"))
	if err != nil {
		return false
	}
	for subject := range info.State.Subjects {
		name := strings.TrimPrefix(subject, prefix)
		m.mu.Lock()
		known := name == m.self.Name || m.roster.Has(name)
		m.mu.Unlock()
		if known {
			continue
		}
		e, err := m.get(ctx, m.self.Region+"."+name)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue // deleted: its last message is the deletion
		case err != nil:
			return false
		}
		rec, err := DecodeMember(e.Value())
		if err != nil || rec.Key() != e.Key() {
			continue
		}
		seen := m.clock.Now()
		if e.Created().Before(seen) {
			seen = e.Created()
		}
		m.mu.Lock()
		if !m.roster.Has(name) {
			m.roster.Seen(rec, seen)
		}
		m.mu.Unlock()
	}
	return true
}

// get reads the record under key by direct gets, sending the read again while no replica has
// answered (events.Hedged): NATS hands each to a replica at random, a hung one's too, and a
// read that drew it waited out the heartbeat's budget, the records after it unread, so that the
// members read from the bucket while the watch waited dropped out one by one.
func (m *membership) get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	return events.Hedged(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return m.kv.Get(ctx, key) })
}

// tell wakes the heartbeat to log the changed members.
func (m *membership) tell() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// stillHere counts this worker live from sent, as a stored record would: its NATS server
// answered at sent, so the worker is not cut off, whether or not the bucket stores its record.
// A record stored late, sent before the last answer, does not move that back.
func (m *membership) stillHere(sent time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.roster.seen[m.self.Name]; ok && !sent.After(s.LastSeen) {
		return
	}
	m.roster.Seen(m.own(), sent)
}

// retire has this worker's records say it stops taking checks at until: the others take them
// over then, once a record saying so (announce) reaches them. The returned channel is closed
// when one is stored, or when retired gives up storing one: from then this worker counts
// itself as stopping at until too, where before it the others count it live.
func (m *membership) retire(until time.Time) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.self.ActiveUntil = until
	m.stopping = make(chan struct{})
	return m.stopping
}

// retired has this worker count itself as stopping at the instant its records say, once one of
// them is stored or storing one was given up; it closes the channel retire returned.
func (m *membership) retired() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping == nil || !m.own().ActiveUntil.IsZero() {
		return
	}
	m.ownUntil = m.self.ActiveUntil
	if s, ok := m.roster.seen[m.self.Name]; ok {
		m.roster.Seen(m.own(), s.LastSeen)
	}
	close(m.stopping)
}

// own is this worker's record as its own roster has it: stopping only once a record saying so
// was stored (retired).
func (m *membership) own() Member {
	o := m.self
	o.ActiveUntil = m.ownUntil
	return o
}

// leave deletes this worker's record so the others take its checks at once, where the record
// under its key is its own: the revision it stored last, or, where it knows none (stopped while
// its first record was being stored) or a record came since (one stored after its last
// acknowledgement was lost), the record there if it is of this worker's start. A worker started
// since under the same name (a rolling restart) stored its own over it, and keeps it.
func (m *membership) leave() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m.mu.Lock()
	key, started, rev := m.self.Key(), m.self.Started, m.revision
	m.mu.Unlock()
	if rev != 0 {
		switch err := m.kv.Delete(ctx, key, jetstream.LastRevision(rev)); {
		case err == nil:
			return nil
		case !errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			return fmt.Errorf("delete member record %s: %w", key, err)
		}
	}
	there, own, err := m.recordThere(ctx, key, started)
	switch {
	case err != nil:
		return err
	case there == 0:
		return nil
	case !own:
		m.log.Info().Str("key", key).Uint64("revision", there).
			Msg("member record is another worker's of this name (a restart); left in place")
		return nil
	}
	// A revision that no longer matches is a record stored between the read and the deletion:
	// another worker's.
	if err := m.kv.Delete(ctx, key, jetstream.LastRevision(there)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("delete member record %s: %w", key, err)
	}
	return nil
}

// follow feeds the region's records into the roster until ctx ends, through an events.Follower
// on the bucket's stream: a lost JetStream node or a full outage is survived and logged once, and
// the records written meanwhile are read when the follower is back.
func (m *membership) follow(ctx context.Context, js jetstream.JetStream) {
	prefix := "$KV." + MembersBucket + "."
	f := events.Follower{JS: js, Stream: events.StreamProbers, Log: m.log, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + m.self.Region + ".*"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	initial := true
	f.Run(ctx, func(d events.Delivery) {
		if d.Recreated {
			m.recreated()
		}
		if d.Msg != nil {
			op := jetstream.KeyValuePut
			switch d.Msg.Headers().Get("KV-Operation") {
			case "DEL":
				op = jetstream.KeyValueDelete
			case "PURGE":
				op = jetstream.KeyValuePurge
			}
			m.apply(record{key: strings.TrimPrefix(d.Subject, prefix), op: op, value: d.Data, created: d.Stamp}, initial)
		}
		if d.CaughtUp {
			initial = false
			m.mu.Lock()
			alone := m.alone
			m.alone, m.unwatched = false, false
			close(m.ready)
			m.mu.Unlock()
			if alone {
				m.log.Info().Msg("membership view read: checking this worker's share of the region")
				m.tell()
			}
		}
	})
}

// recreated ends the leases of the others' records within two heartbeats, for a bucket that was
// deleted and created again (Roster.Recreated).
func (m *membership) recreated() {
	m.mu.Lock()
	m.roster.Recreated(m.clock.Now())
	m.mu.Unlock()
	m.log.Info().Msg("membership bucket created again: the old records expire within two heartbeats")
}

// record is one stored change of a member's key.
type record struct {
	key     string
	op      jetstream.KeyValueOp
	value   []byte
	created time.Time
}

func (m *membership) apply(e record, initial bool) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.op {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		name := e.key[len(m.self.Region)+1:]
		if !m.roster.Has(name) {
			return
		}
		m.roster.Gone(name)
	default:
		rec, err := DecodeMember(e.value)
		if err != nil {
			m.log.Warn().Err(err).Str("key", e.key).Msg("ignored malformed member record")
			return
		}
		if rec.Region != m.self.Region || rec.Key() != e.key {
			m.log.Warn().Str("key", e.key).Str("record_region", rec.Region).Str("record_name", rec.Name).
				Msg("ignored member record stored under another key")
			return
		}
		if rec.Name == m.self.Name {
			if !m.self.Started.IsZero() && rec.Started.Equal(m.self.Started) {
				m.watched = now
				m.roster.Echoed(now) // the others' records, stored before it, came too
				return
			}
			// Another worker's record under our name, or ours from an earlier start: both would
			// run the same checks.
			if !initial && !m.twinWarned {
				m.twinWarned = true
				m.log.Warn().Time("other_started", rec.Started).
					Msg("another prober runs under this name in this region: checks run twice until one is renamed")
			}
			return
		}
		seen := now
		// A record present when the watch began may be from a worker that died since: date it
		// from when it was written, so a stale one is not taken for live.
		if initial && e.created.Before(now) {
			seen = e.created
		}
		known := m.roster.Has(rec.Name)
		m.roster.Seen(rec, seen)
		if known {
			return // a refresh: nothing to tell
		}
	}
	m.tell()
}
