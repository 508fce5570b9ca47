package prober

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func member(name string, activeFrom time.Time) Member {
	return Member{Region: "us-west", Name: name, ActiveFrom: activeFrom, TTLMillis: 1500, Started: activeFrom}
}

func TestRosterLiveMembers(t *testing.T) {
	type sight struct {
		m     Member
		at    time.Time
		leave bool
	}
	tests := []struct {
		name string
		self Member
		// ownBeats: the events say when self's heartbeats were stored.
		ownBeats bool
		events   []sight
		at       time.Time
		want     string
	}{
		{
			name:     "a worker takes no checks before its own start instant",
			ownBeats: true,
			self:     member("p1", t0.Add(time.Second)),
			events:   []sight{{m: member("p1", t0.Add(time.Second)), at: t0}},
			at:       t0.Add(999 * time.Millisecond),
			want:     "",
		},
		{
			name:     "a worker takes checks from its start instant while its heartbeats are stored",
			ownBeats: true,
			self:     member("p1", t0),
			events:   []sight{{m: member("p1", t0), at: t0.Add(time.Hour)}},
			at:       t0.Add(time.Hour + time.Second),
			want:     "p1",
		},
		{
			name:     "a worker whose heartbeats are not stored takes no checks",
			ownBeats: true,
			self:     member("p1", t0),
			at:       t0,
			want:     "",
		},
		{
			name:     "a worker whose heartbeats stopped being stored stops after its ttl",
			ownBeats: true,
			self:     member("p1", t0),
			events:   []sight{{m: member("p1", t0), at: t0}},
			at:       t0.Add(1500 * time.Millisecond),
			want:     "",
		},
		{
			name:   "a member heard from within its ttl is live",
			self:   member("p1", t0),
			events: []sight{{m: member("p2", t0), at: t0}},
			at:     t0.Add(1499 * time.Millisecond),
			want:   "p1,p2",
		},
		{
			name:   "a member silent for its ttl is dead",
			self:   member("p1", t0),
			events: []sight{{m: member("p2", t0), at: t0}},
			at:     t0.Add(1500 * time.Millisecond),
			want:   "p1",
		},
		{
			name:   "a joining member takes checks only from its start instant",
			self:   member("p1", t0),
			events: []sight{{m: member("p2", t0.Add(time.Second)), at: t0}},
			at:     t0.Add(999 * time.Millisecond),
			want:   "p1",
		},
		{
			name:   "a joining member is live from its start instant on",
			self:   member("p1", t0),
			events: []sight{{m: member("p2", t0.Add(time.Second)), at: t0.Add(500 * time.Millisecond)}},
			at:     t0.Add(time.Second),
			want:   "p1,p2",
		},
		{
			name:   "a member that left is gone at once",
			self:   member("p1", t0),
			events: []sight{{m: member("p2", t0), at: t0}, {m: member("p2", t0), leave: true}},
			at:     t0,
			want:   "p1",
		},
		{
			name:   "a worker never removes itself",
			self:   member("p1", t0),
			events: []sight{{m: member("p1", t0), leave: true}},
			at:     t0,
			want:   "p1",
		},
		{
			name: "members are listed in name order",
			self: member("p2", t0),
			events: []sight{
				{m: member("p3", t0), at: t0}, {m: member("p1", t0), at: t0},
			},
			at:   t0,
			want: "p1,p2,p3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRoster(tt.self, 500*time.Millisecond)
			if !tt.ownBeats {
				r.Seen(tt.self, tt.at) // its own heartbeat was just stored
			}
			for _, e := range tt.events {
				if e.leave {
					r.Gone(e.m.Name)
				} else {
					r.Seen(e.m, e.at)
				}
			}
			if got := strings.Join(r.Live(tt.at), ","); got != tt.want {
				t.Errorf("Live = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRosterAnswersFollowTimeAndChangesAfterACachedAnswer(t *testing.T) {
	r := NewRoster(member("p1", t0), 500*time.Millisecond)
	r.Seen(member("p1", t0), t0.Add(time.Hour))
	r.Seen(member("p2", t0), t0)
	steps := []struct {
		at   time.Time
		seen string
		want string
	}{
		{at: t0, want: "p1,p2"},
		{at: t0.Add(time.Second), want: "p1,p2"},
		{at: t0.Add(2 * time.Second), want: "p1"},
		{at: t0.Add(2 * time.Second), seen: "p2", want: "p1,p2"},
		{at: t0.Add(2 * time.Second), seen: "p3", want: "p1,p2,p3"},
		{at: t0, want: "p1,p2,p3"},
		{at: t0.Add(4 * time.Second), want: "p1"},
	}
	for i, s := range steps {
		if s.seen != "" {
			r.Seen(member(s.seen, t0), s.at)
		}
		if got := strings.Join(r.Live(s.at), ","); got != s.want {
			t.Fatalf("step %d: Live(%s) = %q, want %q", i, s.at.Sub(t0), got, s.want)
		}
	}
}

// While none of its own records come back (JetStream stores nothing, or its watch reads
// nothing), a worker keeps the others' leases as they stood a heartbeat after the last one came
// back, for up to BlindGrace: the others are probably as cut off from the store as it is.
func TestRosterHoldsTheOthersLeasesWhileItsOwnRecordsDoNotComeBack(t *testing.T) {
	const hb = 500 * time.Millisecond // member()'s TTL is 1.5 s
	type step = rosterStep
	tests := []struct {
		name  string
		steps []step
	}{
		{"while its records come back, the others' silence counts", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 500 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1000 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1499 * time.Millisecond, want: "p1,p2"},
			{at: 1500 * time.Millisecond, want: "p1"},
		}},
		{"a member silent since its records stopped coming back stays live for the grace and its lease", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 1500 * time.Millisecond, want: "p1,p2"},
			{at: 10 * time.Second, want: "p1,p2"},
			{at: BlindGrace, want: "p1,p2"},
			{at: BlindGrace + time.Second - 1, want: "p1,p2"},
			{at: BlindGrace + time.Second, want: "p1"},
		}},
		{"a member heard from meanwhile is live", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 14 * time.Second, seen: "p2", want: "p1,p2"},
			{at: BlindGrace + time.Second, want: "p1,p2"},
			{at: BlindGrace + 1500*time.Millisecond, want: "p1"},
		}},
		{"when its records come back, the time they did not is not counted", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 500 * time.Millisecond, sent: true, want: "p1,p2"},
			{at: 5 * time.Second, echo: true, want: "p1,p2"},
			{at: 5500 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 5999 * time.Millisecond, want: "p1,p2"},
			{at: 6 * time.Second, want: "p1"},
		}},
		{"a member gone silent before is not brought back", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 500 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1000 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1500 * time.Millisecond, want: "p1"},
			{at: 10 * time.Second, want: "p1"},
		}},
		{"a store that stores one record every grace holds a dead member no longer than one grace", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 500 * time.Millisecond, sent: true, want: "p1,p2"},
			{at: 14 * time.Second, echo: true, want: "p1,p2"},
			{at: 14500 * time.Millisecond, sent: true, want: "p1,p2"},
			{at: 28 * time.Second, echo: true, want: "p1"},
			{at: 28500 * time.Millisecond, sent: true, want: "p1"},
			{at: 42 * time.Second, echo: true, want: "p1"},
		}},
		{"past the grace the silence counts again", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 500 * time.Millisecond, sent: true, want: "p1,p2"},
			{at: 20 * time.Second, echo: true, want: "p1"},
			{at: 20 * time.Second, seen: "p2", want: "p1,p2"},
		}},
		// This worker stalls (descheduled, its host paused): it sends nothing, so nothing can
		// come back. A member that died meanwhile is not kept for as long as this worker stalled:
		// of the time before it sent again, its TTL less a heartbeat (1 s) counts as blind.
		{"a worker that stalls longer than its ttl counts no more than its ttl less a heartbeat of it", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 5 * time.Second, sent: true, want: "p1,p2"},
			{at: 5010 * time.Millisecond, echo: true, want: "p1"},
		}},
		{"a heartbeat a little later than the ttl counts its lateness up to the ttl less a heartbeat", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 2 * time.Second, sent: true, want: "p1,p2"},
			{at: 2010 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 2509 * time.Millisecond, want: "p1,p2"},
			{at: 2510 * time.Millisecond, want: "p1"},
		}},
		{"a heartbeat late by less than the ttl less a heartbeat counts as blind time, which may hide an outage", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: time.Second, sent: true, want: "p1,p2"},
			{at: 2 * time.Second, echo: true, want: "p1,p2"},
			{at: 2500 * time.Millisecond, sent: true, echo: true, want: "p1,p2"},
			{at: 2999 * time.Millisecond, want: "p1,p2"},
			{at: 3 * time.Second, want: "p1"},
		}},
		// Cut off from NATS, this worker's records fail: when it hears again, a member that
		// died meanwhile has the rest of its lease (its TTL less a heartbeat) and no more.
		{"a member that died while this worker was cut off has the rest of its lease from when it hears again", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 500 * time.Millisecond, sent: true, want: "p1,p2"},
			{at: 3 * time.Second, echo: true, want: "p1,p2"},
			{at: 3500 * time.Millisecond, sent: true, echo: true, want: "p1,p2"},
			{at: 3999 * time.Millisecond, want: "p1,p2"},
			{at: 4 * time.Second, want: "p1"},
		}},
		{"a member whose records wait unread behind this worker's stall is kept until its own record comes back", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 5 * time.Second, want: "p1,p2"},
			{at: 5 * time.Second, sent: true, want: "p1,p2"},
			{at: 5001 * time.Millisecond, seen: "p2", echo: true, want: "p1,p2"},
			{at: 5500 * time.Millisecond, sent: true, echo: true, want: "p1,p2"},
			{at: 6 * time.Second, sent: true, echo: true, want: "p1,p2"},
			{at: 6500 * time.Millisecond, sent: true, echo: true, want: "p1,p2"},
			{at: 6501 * time.Millisecond, want: "p1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { playRoster(t, hb, tt.steps) })
	}
}

func TestRosterEndsTheLeasesOfABucketCreatedAgainWithinTwoHeartbeats(t *testing.T) {
	const hb = 500 * time.Millisecond // member()'s TTL is 1.5 s
	type step = rosterStep
	tests := []struct {
		name  string
		steps []step
	}{
		{"an old record claiming a minute is gone two heartbeats after", []step{
			{at: 0, echo: true, seen: "p3", want: "p1,p3"},
			{at: 100 * time.Millisecond, recreated: true, want: "p1,p3"},
			{at: 500 * time.Millisecond, echo: true, want: "p1,p3"},
			{at: 1000 * time.Millisecond, echo: true, want: "p1,p3"},
			{at: 1099 * time.Millisecond, want: "p1,p3"},
			{at: 1100 * time.Millisecond, want: "p1"},
		}},
		{"a member that writes into the new bucket lives on without a gap", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 100 * time.Millisecond, recreated: true, want: "p1,p2"},
			{at: 500 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 600 * time.Millisecond, seen: "p2", want: "p1,p2"},
			{at: 1000 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1500 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 2000 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 2099 * time.Millisecond, want: "p1,p2"},
			{at: 2100 * time.Millisecond, want: "p1"},
		}},
		{"a lease ending sooner than two heartbeats keeps its end", []step{
			{at: 0, echo: true, seen: "p2", want: "p1,p2"},
			{at: 500 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1000 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1200 * time.Millisecond, recreated: true, want: "p1,p2"},
			{at: 1499 * time.Millisecond, want: "p1,p2"},
			{at: 1500 * time.Millisecond, want: "p1"},
		}},
		{"an old record is held like any while this worker's own records do not come back, up to the grace", []step{
			{at: 0, echo: true, seen: "p3", want: "p1,p3"},
			{at: 100 * time.Millisecond, recreated: true, want: "p1,p3"},
			{at: 10 * time.Second, want: "p1,p3"},
			{at: 100*time.Millisecond + BlindGrace, want: "p1,p3"},
			{at: 600*time.Millisecond + BlindGrace, want: "p1"},
		}},
		{"an old record held before keeps to the grace in all since it was heard from", []step{
			{at: 0, echo: true, seen: "p3", want: "p1,p3"},
			{at: 500 * time.Millisecond, sent: true, want: "p1,p3"},
			{at: 10 * time.Second, echo: true, want: "p1,p3"},
			{at: 10100 * time.Millisecond, recreated: true, want: "p1,p3"},
			// Ended at 11.1 s, held for the 5.5 s of the grace left since it was heard from.
			{at: 16599 * time.Millisecond, want: "p1,p3"},
			{at: 16600 * time.Millisecond, want: "p1"},
		}},
		{"the new bucket's first record, read at the instant it was found, is not cut short", []step{
			{at: 0, echo: true, want: "p1"},
			{at: 100 * time.Millisecond, recreated: true, seen: "p2", echo: true, want: "p1,p2"},
			{at: 600 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1100 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1599 * time.Millisecond, echo: true, want: "p1,p2"},
			{at: 1600 * time.Millisecond, want: "p1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { playRoster(t, hb, tt.steps) })
	}
}

// rosterStep is one instant of a Roster table test: what happened at at, and the members that
// must be live then.
type rosterStep struct {
	at        time.Duration
	seen      string // this member's record came at at; p3's claims a TTL of a minute
	sent      bool   // this worker sent one of its records at at
	echo      bool   // this worker's own record came back at at
	recreated bool   // the watch found the bucket created again at at
	want      string
}

// playRoster plays steps on the roster of p1, whose own heartbeats are answered throughout, with
// heartbeats every hb.
func playRoster(t *testing.T, hb time.Duration, steps []rosterStep) {
	t.Helper()
	long := member("p3", t0)
	long.TTLMillis = time.Minute.Milliseconds()
	r := NewRoster(member("p1", t0), hb)
	r.Seen(member("p1", t0), t0.Add(time.Hour))
	for i, s := range steps {
		at := t0.Add(s.at)
		if s.recreated {
			r.Recreated(at)
		}
		switch s.seen {
		case "":
		case "p3":
			r.Seen(long, at)
		default:
			r.Seen(member(s.seen, t0), at)
		}
		if s.sent {
			r.Sent(at)
		}
		if s.echo {
			r.Echoed(at)
		}
		if got := strings.Join(r.Live(at), ","); got != s.want {
			t.Fatalf("step %d: Live(%s) = %q, want %q", i, s.at, got, s.want)
		}
	}
}

func TestDecodeMemberNamesTheFieldThatIsWrong(t *testing.T) {
	good := member("p1", t0)
	enc := func(m Member) string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	with := func(f func(*Member)) string {
		m := good
		f(&m)
		return enc(m)
	}
	tests := []struct {
		name, in, wantErr string
	}{
		{"a well-formed record decodes", enc(good), ""},
		{"not json", "{", "decode member record"},
		{"a region that is not a token", with(func(m *Member) { m.Region = "us west" }), "member record: region:"},
		{"a missing name", with(func(m *Member) { m.Name = "" }), "member record: name: must not be empty"},
		{"a ttl of zero", with(func(m *Member) { m.TTLMillis = 0 }), "member record: ttl_ms: want 1 to 3600000, got 0"},
		{"a ttl beyond an hour", with(func(m *Member) { m.TTLMillis = 1 << 62 }), "member record: ttl_ms: want 1 to 3600000"},
		{"no start instant", with(func(m *Member) { m.ActiveFrom = time.Time{} }), "member record: active_from: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMember([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil || m.Key() != "us-west.p1" || m.TTL() != 1500*time.Millisecond {
					t.Fatalf("DecodeMember = %+v, %v; want the record", m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeMember error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzDecodeMember(f *testing.F) {
	f.Add([]byte(`{"region":"us-west","name":"p1","active_from":"2026-01-02T03:04:05Z","ttl_ms":1500}`))
	f.Add([]byte(`{"region":"","name":"p1"}`))
	f.Add([]byte(`{"ttl_ms":-1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{0xff, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMember(b)
		if err != nil {
			return
		}
		// Anything accepted must be usable: a valid key and a positive ttl.
		if m.TTL() <= 0 || strings.Count(m.Key(), ".") != 1 || m.ActiveFrom.IsZero() {
			t.Fatalf("accepted an unusable record %+v from %q", m, b)
		}
	})
}

func TestAHeartbeatMayTakeUntilTheLastRecordExpires(t *testing.T) {
	for _, tt := range []struct{ heartbeat, ttl, want time.Duration }{
		{333 * time.Millisecond, time.Second, 667 * time.Millisecond}, // the defaults at 1 s checks: two heartbeats
		{time.Second, time.Second, time.Second},                       // never less than a heartbeat
		{100 * time.Millisecond, 150 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := putBudget(tt.heartbeat, tt.ttl); got != tt.want {
			t.Errorf("putBudget(%s, %s) = %s, want %s", tt.heartbeat, tt.ttl, got, tt.want)
		}
	}
}

// stallingKV stores nothing once stalled: each Put waits until its context ends, as a Put does
// while the bucket's Raft group elects a leader after a JetStream node died.
type stallingKV struct {
	jetstream.KeyValue
	stalled    atomic.Bool
	puts, gets atomic.Int64
}

func (kv *stallingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.gets.Add(1)
	return kv.KeyValue.Get(ctx, key)
}

func (kv *stallingKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	kv.puts.Add(1)
	if !kv.stalled.Load() {
		return kv.KeyValue.Put(ctx, key, value)
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// Update is a worker's Put over its own last record (membership.store), and stalls as Put does.
func (kv *stallingKV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	kv.puts.Add(1)
	if !kv.stalled.Load() {
		return kv.KeyValue.Update(ctx, key, value, last)
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// heartbeatingWorker starts a worker p1 whose record is stored once, runs its heartbeat with hb
// and ttl until the test ends, and returns its membership and bucket.
func heartbeatingWorker(t *testing.T, hb, ttl time.Duration) (*membership, *stallingKV, *eventstest.Server) {
	t.Helper()
	srv := eventstest.Start(t)
	m, kv := heartbeatingWorkerAt(t, srv.URL, hb, ttl)
	return m, kv, srv
}

// heartbeatingWorkerAt is heartbeatingWorker on the server at url.
func heartbeatingWorkerAt(t *testing.T, url string, hb, ttl time.Duration) (*membership, *stallingKV) {
	t.Helper()
	js, err := jetstream.New(eventstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	bucket, err := js.KeyValue(ctx, MembersBucket)
	if err != nil {
		t.Fatal(err)
	}
	kv := &stallingKV{KeyValue: bucket}
	self := Member{Region: "us-west", Name: "p1", TTLMillis: ttl.Milliseconds()}
	m := &membership{kv: kv, self: self, clock: realClock{}, log: zerolog.Nop(),
		roster: NewRoster(self, hb), changed: make(chan struct{}, 1), ready: make(chan struct{})}
	m.self.Started, m.self.ActiveFrom = time.Now(), time.Now()
	if err := m.announce(ctx); err != nil {
		t.Fatal(err)
	}
	w := &worker{o: Options{JS: js, Clock: realClock{}, Heartbeat: hb, MemberTTL: ttl}, log: zerolog.Nop(),
		members: m, pub: &publisher{}}
	hbCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.heartbeat(hbCtx) }()
	t.Cleanup(func() { stop(); <-done })
	return m, kv
}

// notLiveAhead samples, every millisecond for span, whether m counts p1 live ahead of each
// sample, and returns when into span it did not. It leaves out, and logs, the samples for which
// this process itself got no CPU for most of margin, in all, when p1 should have renewed its
// lease (between ttl before the instant asked about and the sample): no lease outlives that, and
// on a machine with a load of 25 this process stopped for over 300 ms. Shorter stalls count
// together: a renewal takes several goroutines in turn (the heartbeat's timer, the flush, the
// server in this process, the reader of its answer), and two stalls of 120 ms delay it as much
// as one of 240 ms. When it leaves out more than half of the samples, the test is skipped,
// saying so.
func notLiveAhead(t *testing.T, m *membership, ahead, span, ttl, margin time.Duration) []time.Duration {
	t.Helper()
	long := margin * 3 / 4
	stalls := watchStalls(t, 30*time.Millisecond)
	var missed []time.Time
	samples := 0
	start := time.Now()
	sample := time.NewTicker(time.Millisecond)
	defer sample.Stop()
	for now := range sample.C {
		if now.Sub(start) > span {
			break
		}
		samples++
		if !slices.Contains(m.live(now.Add(ahead)), "p1") {
			missed = append(missed, now)
		}
	}
	var gaps, excused []time.Duration
	for _, at := range missed {
		into := at.Sub(start).Round(time.Millisecond)
		if stalls.stalled(at.Add(ahead-ttl), at) >= long {
			excused = append(excused, into)
		} else {
			gaps = append(gaps, into)
		}
	}
	if len(excused) > 0 || len(gaps) > 0 {
		t.Logf("samples at %v not judged; this process stalled for %v", excused, stalls.list())
	}
	// A test that judged too few samples has not shown the worker live: it says so rather
	// than pass.
	if 2*len(excused) > samples {
		t.Skipf("%d of %d samples not judged: this process stalled for most of the span", len(excused), samples)
	}
	return gaps
}

func TestAWorkerKeepsTakingChecksWhileItsBucketElectsALeader(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, 300 * time.Millisecond
	m, kv, _ := heartbeatingWorker(t, hb, ttl)
	// The bucket stores nothing for ten TTLs while the server answers: the worker is live at
	// every instant, so no check of its schedule finds it gone.
	kv.stalled.Store(true)
	if gaps := notLiveAhead(t, m, 0, 10*ttl, ttl, ttl-hb); len(gaps) > 0 {
		t.Fatalf("the worker counted itself gone at %d of its samples while NATS answered (first at %s into the stall)", len(gaps), gaps[0])
	}
}

func TestAWorkerWhoseBucketStallsRenewsItsOwnLeaseEveryHeartbeat(t *testing.T) {
	// While its record cannot be stored, a worker still counts itself live for MemberTTL from
	// each heartbeat its server answers, as when the records are stored: a worker descheduled
	// for most of MemberTTL (here all but four heartbeats) keeps its checks.
	const hb, ttl, ahead = 100 * time.Millisecond, 1500 * time.Millisecond, 1100 * time.Millisecond
	m, kv, _ := heartbeatingWorker(t, hb, ttl)
	kv.stalled.Store(true)
	if gaps := notLiveAhead(t, m, ahead, 2*ttl, ttl, ttl-ahead-hb); len(gaps) > 0 {
		t.Fatalf("the worker would count itself gone %s after %d of its samples while NATS answered (first at %s into the stall)", ahead, len(gaps), gaps[0])
	}
}

func TestAWorkerWhoseServerAnswersLaterThanAHeartbeatKeepsItsLease(t *testing.T) {
	// Under load the server's answer may come later than a heartbeat, though well within the
	// TTL: the worker is not cut off, so it stays live at every instant, its record stored or not.
	// These are the defaults at checks of 300 ms or less.
	const hb, ttl, delay = 100 * time.Millisecond, time.Second, 300 * time.Millisecond
	srv := eventstest.Start(t)
	link := eventstest.NewSlowLink(t, srv.URL)
	m, kv := heartbeatingWorkerAt(t, link.URL, hb, ttl)
	kv.stalled.Store(true)
	link.Delay(0, delay)
	if gaps := notLiveAhead(t, m, 0, 3*ttl, ttl, ttl-delay); len(gaps) > 0 {
		t.Fatalf("the worker counted itself gone at %d of its samples while NATS answered within %s (first at %s into the stall)", len(gaps), delay, gaps[0])
	}
}

func TestAWorkerWhoseServerAnswersLaterThanManyHeartbeatsKeepsItsLease(t *testing.T) {
	// A server answering later than the few heartbeats a worker awaits at once, though well
	// within a long TTL, still renews the lease as its answers come: the worker stays live at
	// every instant.
	const hb, ttl, delay = 100 * time.Millisecond, 2 * time.Second, 1200 * time.Millisecond
	srv := eventstest.Start(t)
	link := eventstest.NewSlowLink(t, srv.URL)
	m, kv := heartbeatingWorkerAt(t, link.URL, hb, ttl)
	kv.stalled.Store(true)
	link.Delay(0, delay)
	if gaps := notLiveAhead(t, m, 0, 2*ttl, ttl, ttl-delay); len(gaps) > 0 {
		t.Fatalf("the worker counted itself gone at %d of its samples while NATS answered within %s (first at %s into the stall)", len(gaps), delay, gaps[0])
	}
}

// A worker cut off from NATS counts itself gone once the lease from the last heartbeat its
// server answered runs out, about when the others take its checks, and not live again while cut
// off: renewing its own lease at every heartbeat must not let it run checks they took over.
func TestAWorkerCutOffFromNATSCountsItselfGoneWithinItsTTL(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, 300 * time.Millisecond
	m, _, srv := heartbeatingWorker(t, hb, ttl)
	srv.Stop()
	cut := time.Now()
	for slices.Contains(m.live(time.Now()), "p1") {
		if time.Since(cut) > ttl+time.Second {
			t.Fatalf("the worker still counts itself live %s after its server stopped", time.Since(cut))
		}
		time.Sleep(time.Millisecond)
	}
	for end := time.Now().Add(5 * ttl); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if slices.Contains(m.live(time.Now()), "p1") {
			t.Fatalf("the worker counts itself live again %s after its server stopped", time.Since(cut))
		}
	}
}

// A worker cut off from NATS with a long TTL (detour prober --member-ttl 1h) waits for the
// answer to each heartbeat for most of that TTL. Its goroutines and pending pings stay a handful
// however many heartbeats go unanswered, rather than growing by one each heartbeat for the hour.
func TestAWorkerCutOffFromNATSWithALongTTLHoldsAFewHeartbeatsOpenAtMost(t *testing.T) {
	const hb, ttl, most = 10 * time.Millisecond, time.Hour, 20
	const span = 100 * hb
	_, _, srv := heartbeatingWorker(t, hb, ttl)
	srv.Stop()
	base, peak := runtime.NumGoroutine(), 0
	defer func() { t.Logf("at most %d more goroutines after its server stopped", peak) }()
	for end := time.Now().Add(span); time.Now().Before(end); time.Sleep(hb) {
		n := runtime.NumGoroutine() - base
		peak = max(peak, n)
		if n > most {
			t.Fatalf("the worker holds %d more goroutines %s after its server stopped, at %s heartbeats; want at most %d", n, span-time.Until(end).Round(time.Millisecond), hb, most)
		}
	}
}

// watchingWorker starts a worker p1 connected to url, as the roles connect (reconnecting for
// ever): it watches the region's records, stores its own once, and heartbeats with hb and ttl
// until the test ends.
func watchingWorker(t *testing.T, url string, hb, ttl time.Duration) *membership {
	t.Helper()
	js, err := jetstream.New(eventstest.ConnectRetrying(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	t.Cleanup(func() { cancel(); bg.Wait() })
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	defer acancel()
	kv, err := js.KeyValue(actx, MembersBucket)
	if err != nil {
		t.Fatal(err)
	}
	self := Member{Region: "us-west", Name: "p1", TTLMillis: ttl.Milliseconds()}
	m := &membership{kv: kv, self: self, clock: realClock{}, log: zerolog.Nop(),
		roster: NewRoster(self, hb), changed: make(chan struct{}, 1), ready: make(chan struct{})}
	bg.Go(func() { m.follow(ctx, js) })
	select {
	case <-m.ready:
	case <-actx.Done():
		t.Fatal("the watch did not catch up within 30 s")
	}
	m.mu.Lock()
	m.self.Started, m.self.ActiveFrom = time.Now(), time.Now()
	m.mu.Unlock()
	if err := m.announce(actx); err != nil {
		t.Fatal(err)
	}
	w := &worker{o: Options{JS: js, Clock: realClock{}, Heartbeat: hb, MemberTTL: ttl}, log: zerolog.Nop(),
		members: m, pub: &publisher{}}
	bg.Go(func() { w.heartbeat(ctx) })
	return m
}

// heartbeatAs stores name's record in the region every hb, as a live worker does, until the
// returned function kills it: it stops writing without deleting its record.
func heartbeatAs(t *testing.T, kv jetstream.KeyValue, name string, hb, ttl time.Duration) (kill func()) {
	t.Helper()
	b, err := json.Marshal(Member{Region: "us-west", Name: name, ActiveFrom: time.Now(), TTLMillis: ttl.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(hb)
		defer tick.Stop()
		for {
			pctx, pcancel := context.WithTimeout(ctx, ttl)
			_, _ = kv.Put(pctx, "us-west."+name, b)
			pcancel()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	kill = func() { cancel(); <-done }
	t.Cleanup(kill)
	return kill
}

// A worker cut off from NATS cannot hear the others: a member that died meanwhile counts
// against it from when it hears again, as the others' silence does after JetStream stored
// nothing. The member is counted gone within its TTL of this worker hearing again, not kept
// for BlindGrace.
func TestAMemberThatDiedWhileThisWorkerWasCutOffIsGoneWithinItsTTLOfReconnecting(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, 500 * time.Millisecond
	srv, _, kv, _ := membersBucket(t)
	link := eventstest.NewSlowLink(t, srv.URL)
	m := watchingWorker(t, link.URL, hb, ttl)
	kill := heartbeatAs(t, kv, "p2", hb, ttl)
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Contains(m.live(time.Now()), "p2") }, "p1 to see p2")

	// p1 is cut off for three TTLs. p2 writes on for half of it, records p1 cannot read, then
	// dies.
	link.Sever()
	time.Sleep(3 * ttl / 2) // the cut-off itself
	kill()
	time.Sleep(3 * ttl / 2)
	link.Mend()
	// p1 hears again when its server answers it: it counts itself live again.
	eventstest.Eventually(t, 10*time.Second, func() bool { return slices.Contains(m.live(time.Now()), "p1") }, "p1 to reconnect")
	back := time.Now()
	eventstest.Eventually(t, 10*time.Second, func() bool { return !slices.Contains(m.live(time.Now()), "p2") }, "p1 to count p2 gone")
	gone := time.Since(back)
	t.Logf("p1 counted p2 gone %s after it heard again", gone.Round(time.Millisecond))
	// Its TTL, and a second for this worker's first records after it to be stored on a loaded
	// machine: well short of BlindGrace.
	if gone > ttl+time.Second {
		t.Fatalf("p2, dead since half-way through p1's cut-off, counted live %s after p1 heard again (ttl %s)", gone.Round(time.Millisecond), ttl)
	}
}

// A bucket deleted and created again holds none of the old records: a worker ends the leases
// it had from the old bucket within two heartbeats of its watch reading the new one, rather than
// keep a member that died meanwhile for as long as its record claimed.
func TestAWorkerEndsTheOldLeasesOfABucketDeletedAndCreatedAgain(t *testing.T) {
	t.Parallel() // waits heartbeats of a second, with margins of seconds
	// A heartbeat longer than the watch takes to read the new bucket (checks of 3 s or more):
	// no record read from the bucket, for a watch lagging behind the records stored, drops p2.
	const hb, ttl = time.Second, 3 * time.Second
	srv, js, kv, ctx := membersBucket(t)
	m := watchingWorker(t, srv.URL, hb, ttl)
	// p2 claims a minute of life with each record, and dies; p3 heartbeats on.
	b, err := json.Marshal(Member{Region: "us-west", Name: "p2", ActiveFrom: time.Now(), TTLMillis: time.Minute.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "us-west.p2", b); err != nil {
		t.Fatal(err)
	}
	heartbeatAs(t, kv, "p3", hb, ttl)
	sees := func(want ...string) func() bool {
		return func() bool { return slices.Equal(m.live(time.Now()), want) }
	}
	eventstest.Eventually(t, 5*time.Second, sees("p1", "p2", "p3"), "p1 to see p2 and p3")

	if err := js.DeleteKeyValue(ctx, MembersBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := events.ProvisionStreams(ctx, js, events.StreamOptions{Memory: true}, events.StreamProbers); err != nil {
		t.Fatal(err)
	}
	recreated := time.Now()
	eventstest.Eventually(t, 10*time.Second, sees("p1", "p3"), "p1 to count p2, dead, gone after its bucket was created again")
	t.Logf("p1 counted p2 gone %s after the bucket was created again", time.Since(recreated).Round(time.Millisecond))
}

// A member that heartbeats on writes its next record into a bucket created again within a
// heartbeat: it stays live throughout, where dropping it until then had every worker of the
// region count itself alone for up to a heartbeat and run the region's checks twice or more.
func TestAMemberThatHeartbeatsOnStaysLiveWhenItsBucketIsCreatedAgain(t *testing.T) {
	t.Parallel() // waits heartbeats of a second, with margins of seconds
	const hb, ttl = time.Second, 3 * time.Second
	srv, js, kv, ctx := membersBucket(t)
	m := watchingWorker(t, srv.URL, hb, ttl)
	heartbeatAs(t, kv, "p3", hb, ttl)
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Contains(m.live(time.Now()), "p3") }, "p1 to see p3")

	if err := js.DeleteKeyValue(ctx, MembersBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := events.ProvisionStreams(ctx, js, events.StreamOptions{Memory: true}, events.StreamProbers); err != nil {
		t.Fatal(err)
	}
	recreated := time.Now()
	// Long enough for the watch to read the new bucket and for p3 to write into it twice.
	for time.Since(recreated) < 3*hb {
		if live := m.live(time.Now()); !slices.Contains(live, "p3") {
			t.Fatalf("p3, heartbeating on, counted gone %s after its bucket was created again (live: %v)",
				time.Since(recreated).Round(time.Millisecond), live)
		}
		time.Sleep(time.Millisecond)
	}
}

// A worker whose watch reads nothing (its consumer lost, on a node that died with another
// worker) while JetStream stores its records goes on counting the others' silence: its records
// are stored, so the others' would be too. A worker that died meanwhile has its checks taken
// over within its TTL rather than held for BlindGrace, when no one would run the share of them
// that the live workers hash onto this one; one that lives on stays live, its records read from
// the bucket.
func TestAWorkerWhoseWatchReadsNothingWhileItsRecordsAreStoredCountsTheOthersSilence(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, time.Second
	m, kv, _ := heartbeatingWorker(t, hb, ttl) // its watch is not running: none of its records come back
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(name string) {
		b, err := json.Marshal(Member{Region: "us-west", Name: name, ActiveFrom: time.Now().Add(-time.Hour), TTLMillis: ttl.Milliseconds()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.KeyValue.Put(ctx, "us-west."+name, b); err != nil {
			t.Fatal(err)
		}
	}
	put("p2") // its last record: it dies at once
	put("p3")
	now := time.Now()
	m.mu.Lock()
	m.roster.Echoed(now) // this worker's record came back once, then the watch lost its consumer
	for _, name := range []string{"p2", "p3"} {
		m.roster.Seen(Member{Region: "us-west", Name: name, ActiveFrom: now.Add(-time.Hour), TTLMillis: ttl.Milliseconds()}, now)
	}
	m.mu.Unlock()
	for slices.Contains(m.live(time.Now()), "p2") {
		// Its TTL, and time for heartbeats a loaded machine delays (each counts as blind time
		// from a heartbeat after the last one stored): well short of BlindGrace.
		if time.Since(now) > ttl+BlindGrace/2 {
			t.Fatalf("p2, silent while the bucket stored this worker's records, still live %s after its last record (ttl %s)", time.Since(now), ttl)
		}
		put("p3") // p3 heartbeats on
		time.Sleep(hb)
	}
	if live := m.live(time.Now()); !slices.Contains(live, "p3") {
		t.Fatalf("p3, whose records the bucket stored every heartbeat, not live: %v", live)
	}
}

// A worker whose watch delivers its records reads none from the bucket: each heartbeat's record
// comes back before the next one is stored, though rarely before its own Put returns.
func TestAWorkerWhoseWatchDeliversReadsNoRecordFromTheBucket(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, time.Second
	m, kv, srv := heartbeatingWorker(t, hb, ttl)
	js, err := jetstream.New(eventstest.Connect(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.follow(ctx, js) }()
	t.Cleanup(func() { cancel(); <-done })
	b, err := json.Marshal(Member{Region: "us-west", Name: "p2", ActiveFrom: time.Now(), TTLMillis: time.Hour.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.KeyValue.Put(ctx, "us-west.p2", b); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Contains(m.live(time.Now()), "p2") }, "p2 seen through the watch")
	stalls := watchStalls(t, hb/2)
	from, before, puts := time.Now(), kv.gets.Load(), kv.puts.Load()
	eventstest.Eventually(t, 10*time.Second, func() bool { return kv.puts.Load() >= puts+20 }, "twenty more heartbeats")
	n := kv.gets.Load() - before
	// A stall of half a heartbeat may delay an echo past the next record: no fault of the watch.
	if n > 0 && stalls.within(from, time.Now(), hb/2) {
		t.Logf("%d records read while this process stalled for %v", n, stalls.list())
	} else if n > 0 {
		t.Fatalf("over 20 heartbeats with its watch delivering, the worker read %d records from the bucket, want none", n)
	}
}

// heldKV holds each Put until the test releases it, as nats.go holds a request sent while the
// connection is down in its reconnect buffer and sends it when NATS is back.
type heldKV struct {
	jetstream.KeyValue
	sent, release chan struct{}
}

func (kv *heldKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	kv.sent <- struct{}{}
	<-kv.release
	return kv.KeyValue.Put(ctx, key, value)
}

// Update is a worker's Put over its own last record (membership.store), and is held as Put is.
func (kv *heldKV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	kv.sent <- struct{}{}
	<-kv.release
	return kv.KeyValue.Update(ctx, key, value, last)
}

// A record sent while all of NATS was down is stored only when NATS is back: its
// acknowledgement ends the others' hold when it arrives, not when the record was sent, or part of
// the outage would count against the others as silence while none of them could be heard, and a
// worker that reconnects a little after this one would be counted gone.
func TestARecordStoredAfterAnOutageEndsTheHoldWhenItIsAcknowledged(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, time.Second
	_, _, bucket, ctx := membersBucket(t)
	p2 := Member{Region: "us-west", Name: "p2", ActiveFrom: t0, TTLMillis: ttl.Milliseconds()}
	b, err := json.Marshal(p2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Put(ctx, p2.Key(), b); err != nil { // p2's last record before the outage
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now()}
	kv := &heldKV{KeyValue: bucket, sent: make(chan struct{}, 1), release: make(chan struct{})}
	self := Member{Region: "us-west", Name: "p1", TTLMillis: ttl.Milliseconds(), Started: t0, ActiveFrom: t0}
	m := &membership{kv: kv, self: self, clock: clock, log: zerolog.Nop(),
		roster: NewRoster(self, hb), changed: make(chan struct{}, 1), ready: make(chan struct{})}
	m.roster.Echoed(clock.Now()) // p1's record came back, and p2's with it
	m.roster.Seen(p2, clock.Now())
	m.watched = clock.Now()

	// NATS goes down. The next heartbeat's record is sent and fails; near the outage's end
	// another is sent, and waits in the reconnect buffer until NATS is back, 300 ms later.
	clock.advance(hb)
	m.roster.Sent(clock.Now())
	clock.advance(2*time.Second - hb)
	acked := make(chan error, 1)
	go func() { acked <- m.announce(ctx) }()
	<-kv.sent
	clock.advance(300 * time.Millisecond)
	close(kv.release)
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	back := clock.Now()
	// A heartbeat came meanwhile: its record is sent as soon as the first is stored, and from
	// then on each heartbeat's record is stored at once. p2, whose lease had TTL less a
	// heartbeat to run when this worker's records stopped coming back, has as long from now.
	heartbeats := func(d time.Duration) {
		for end := clock.Now().Add(d); clock.Now().Before(end); {
			clock.advance(hb)
			if err := m.announce(ctx); err != nil {
				t.Fatal(err)
			}
			<-kv.sent
		}
	}
	if err := m.announce(ctx); err != nil {
		t.Fatal(err)
	}
	<-kv.sent
	heartbeats(ttl - 2*hb)
	clock.advance(hb / 2)
	if live := m.live(clock.Now()); !slices.Contains(live, "p2") {
		t.Fatalf("p2 counted gone %s after this worker's first record after the outage was stored: %v", clock.Now().Sub(back), live)
	}
	// p2 is dead: its silence counts from when this worker can hear again.
	heartbeats(hb)
	if live := m.live(clock.Now()); slices.Contains(live, "p2") {
		t.Fatalf("p2, silent since the outage, still live %s after it: %v", clock.Now().Sub(back), live)
	}
}

// A member that said when it stops taking checks is live until then and not from then, however
// its records of the same start come in after; a start of its name anew takes checks again.
func TestRosterDropsAStoppingMemberAtTheInstantItNamed(t *testing.T) {
	r := NewRoster(member("p1", t0), 100*time.Millisecond)
	r.Seen(member("p1", t0), t0)
	p2 := member("p2", t0)
	r.Seen(p2, t0)
	stopping := p2
	stopping.ActiveUntil = t0.Add(300 * time.Millisecond)
	r.Seen(stopping, t0.Add(100*time.Millisecond))
	r.Seen(p2, t0.Add(150*time.Millisecond)) // sent before the one saying it stops, stored after
	for _, c := range []struct {
		at   time.Duration
		want []string
	}{
		{299 * time.Millisecond, []string{"p1", "p2"}},
		{300 * time.Millisecond, []string{"p1"}},
		{time.Second, []string{"p1"}},
	} {
		if got := r.Live(t0.Add(c.at)); !slices.Equal(got, c.want) {
			t.Errorf("live at %s: %v, want %v", c.at, got, c.want)
		}
	}
	r.Seen(member("p1", t0), t0.Add(2*time.Second))
	r.Seen(member("p2", t0.Add(2*time.Second)), t0.Add(2*time.Second))
	if got := r.Live(t0.Add(2 * time.Second)); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Errorf("live after p2 started again: %v, want [p1 p2]", got)
	}
}

// A stopping worker counts itself as taking its checks after the instant it named until a
// record saying so is stored, as the others, who have not read it, count it; from then it does
// not. It dropped itself at once, so that with the record late neither it nor the others ran
// its windows from that instant.
func TestAStoppingWorkerCountsItselfLiveUntilTheRecordSayingItStopsIsStored(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, time.Second
	_, _, bucket, ctx := membersBucket(t)
	clock := &fakeClock{now: time.Now()}
	t0 := clock.Now()
	kv := &heldKV{KeyValue: bucket, sent: make(chan struct{}, 1), release: make(chan struct{})}
	self := Member{Region: "us-west", Name: "p1", TTLMillis: ttl.Milliseconds(), Started: t0, ActiveFrom: t0}
	m := &membership{kv: kv, self: self, clock: clock, log: zerolog.Nop(),
		roster: NewRoster(self, hb), changed: make(chan struct{}, 1), ready: make(chan struct{})}
	m.stillHere(t0)
	until := t0.Add(hb)
	stored := m.retire(until)
	acked := make(chan error, 1)
	go func() { acked <- m.announce(ctx) }()
	<-kv.sent
	m.stillHere(t0.Add(hb / 2)) // its server answers a heartbeat meanwhile
	if live := m.live(until); !slices.Equal(live, []string{"p1"}) {
		t.Fatalf("before the record saying it stops was stored, live at that instant: %v, want [p1]", live)
	}
	select {
	case <-stored:
		t.Fatal("stored before the record was")
	default:
	}
	close(kv.release)
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	<-stored
	if live := m.live(until); len(live) != 0 {
		t.Fatalf("once the record saying it stops was stored, live at that instant: %v, want none", live)
	}
	if live := m.live(until.Add(-time.Millisecond)); !slices.Equal(live, []string{"p1"}) {
		t.Fatalf("once the record was stored, live just before the instant: %v, want [p1]", live)
	}
}

// A record naming when a member stops holds the member's records of the same start that follow
// to it for its TTL only, the most a record sent before it can be stored after. One record
// forged under a live worker's key (any worker of the region may write it), naming an instant
// past, held it to that for as long as it ran: the others counted it gone and ran its checks
// beside it, every window, until it was restarted.
func TestAForgedRecordNamingWhenAMemberStopsHoldsItsLaterRecordsForATTLAtMost(t *testing.T) {
	r := NewRoster(member("p1", t0), 100*time.Millisecond)
	r.Seen(member("p1", t0), t0)
	p2 := member("p2", t0) // 1.5 s TTL
	r.Seen(p2, t0)
	forged := p2
	forged.ActiveUntil = t0.Add(time.Millisecond)
	r.Seen(forged, t0.Add(100*time.Millisecond))
	for at := 200 * time.Millisecond; at <= 5*time.Second; at += 100 * time.Millisecond {
		r.Seen(p2, t0.Add(at)) // p2 heartbeats on, never stopping
		r.Seen(member("p1", t0), t0.Add(at))
	}
	if got := r.Live(t0.Add(5 * time.Second)); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Fatalf("live 4.9 s after a record forged under p2's key: %v, want [p1 p2]", got)
	}
}

// rollingMember is worker p1 of us-west, started at started, on bucket kv.
func rollingMember(kv jetstream.KeyValue, started time.Time) *membership {
	self := Member{Region: "us-west", Name: "p1", TTLMillis: time.Second.Milliseconds(), Started: started, ActiveFrom: started}
	return &membership{kv: kv, self: self, clock: &fakeClock{now: started}, log: zerolog.Nop(),
		roster: NewRoster(self, 100*time.Millisecond), changed: make(chan struct{}, 1), ready: make(chan struct{})}
}

// recordUnder is the record under key in kv, or the zero Member when there is none.
func recordUnder(t *testing.T, ctx context.Context, kv jetstream.KeyValue, key string) Member {
	t.Helper()
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Member{}
	}
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeMember(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// countedBucket opens MEMBERS on a connection of its own, whose requests the test counts.
func countedBucket(t *testing.T, ctx context.Context, srv *eventstest.Server) (*nats.Conn, jetstream.KeyValue) {
	t.Helper()
	nc := eventstest.Connect(t, srv.URL)
	own, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := own.KeyValue(ctx, MembersBucket)
	if err != nil {
		t.Fatal(err)
	}
	return nc, kv
}

// storeOwn has m store its own record under its key, as its heartbeat does.
func storeOwn(t *testing.T, ctx context.Context, m *membership) (uint64, error) {
	t.Helper()
	b, err := json.Marshal(m.self)
	if err != nil {
		t.Fatal(err)
	}
	return m.store(ctx, m.self.Key(), b, m.self.Started, m.revision)
}

// announceInTurn stores the record of each worker of ms, in turn.
func announceInTurn(t *testing.T, ctx context.Context, ms ...*membership) {
	t.Helper()
	for _, m := range ms {
		if err := m.announce(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A rolling restart that keeps a worker's name starts the new worker, which writes its record,
// before the old one stops: the old one deletes its record only where it is the last written
// under the key. It deleted the new worker's, and the region counted the new worker gone, its
// checks unrun, until its next heartbeat. The new worker's own record it deletes when it stops.
func TestAStoppingWorkerLeavesTheRecordOfANewWorkerOfItsNameInPlace(t *testing.T) {
	_, _, bucket, ctx := membersBucket(t)
	now := time.Now()
	old, successor := rollingMember(bucket, now), rollingMember(bucket, now.Add(time.Second))
	announceInTurn(t, ctx, old, successor)
	if err := old.leave(); err != nil {
		t.Fatalf("the old worker left: %v", err)
	}
	if got := recordUnder(t, ctx, bucket, successor.self.Key()).Started; !got.Equal(successor.self.Started) {
		t.Fatalf("once the old worker left, the record under %s is of the worker started at %v, want the new one's (%v)",
			successor.self.Key(), got, successor.self.Started)
	}
	if err := successor.leave(); err != nil {
		t.Fatalf("the new worker left: %v", err)
	}
	if got := recordUnder(t, ctx, bucket, successor.self.Key()).Started; !got.IsZero() {
		t.Fatalf("once the new worker left, the record of the worker started at %v is in place, want none", got)
	}
}

// In a rolling restart that keeps the name, the old worker runs on after the new one stored its
// record: its heartbeats, and the record saying when it stops, were stored over the new one's,
// which it then deleted as its own. The region counted the new worker stopping at the old one's
// instant, then gone, its checks unrun by it, until its next heartbeat. The old one stores its
// records only over its own.
func TestAWorkerWhoseNameANewWorkerTookStoresNoRecordOverTheNewOnes(t *testing.T) {
	_, _, bucket, ctx := membersBucket(t)
	now := time.Now()
	old, successor := rollingMember(bucket, now), rollingMember(bucket, now.Add(time.Second))
	announceInTurn(t, ctx, old, successor, old)
	if got := recordUnder(t, ctx, bucket, successor.self.Key()).Started; !got.Equal(successor.self.Started) {
		t.Fatalf("after the old worker's heartbeat, the record under %s is of the worker started at %v, want the new one's (%v)",
			successor.self.Key(), got, successor.self.Started)
	}
	stopped := old.retire(now.Add(2 * time.Second))
	announceInTurn(t, ctx, old)
	select {
	case <-stopped:
	default:
		t.Fatal("the old worker's record saying it stops was neither stored nor given up")
	}
	if err := old.leave(); err != nil {
		t.Fatalf("the old worker left: %v", err)
	}
	if r := recordUnder(t, ctx, bucket, successor.self.Key()); !r.Started.Equal(successor.self.Started) || !r.ActiveUntil.IsZero() {
		t.Fatalf("once the old worker stopped and left, the record under %s is of the worker started at %v, stopping at %v; want the new one's (%v), not stopping",
			successor.self.Key(), r.Started, r.ActiveUntil, successor.self.Started)
	}
}

// A worker stopped while its first record was being stored does not know whether it was: it
// deletes the record under its key where that is its own, and leaves a new worker's in place.
func TestAWorkerStoppedWhileJoiningDeletesItsRecordOnlyWhereItIsItsOwn(t *testing.T) {
	_, _, bucket, ctx := membersBucket(t)
	now := time.Now()
	joining := rollingMember(bucket, now)
	b, err := json.Marshal(joining.self)
	if err != nil {
		t.Fatal(err)
	}
	// Stored, its acknowledgement lost to the stop.
	if _, err := bucket.Put(ctx, joining.self.Key(), b); err != nil {
		t.Fatal(err)
	}
	if err := joining.leave(); err != nil {
		t.Fatalf("left: %v", err)
	}
	if got := recordUnder(t, ctx, bucket, joining.self.Key()).Started; !got.IsZero() {
		t.Fatalf("the record of the worker that left while joining is in place, want none")
	}
	if _, err := bucket.Put(ctx, joining.self.Key(), b); err != nil {
		t.Fatal(err)
	}
	successor := rollingMember(bucket, now.Add(time.Second))
	announceInTurn(t, ctx, successor)
	if err := joining.leave(); err != nil {
		t.Fatalf("left: %v", err)
	}
	if got := recordUnder(t, ctx, bucket, successor.self.Key()).Started; !got.Equal(successor.self.Started) {
		t.Fatalf("once the joining worker left, the record under %s is of the worker started at %v, want the new one's (%v)",
			successor.self.Key(), got, successor.self.Started)
	}
}

// purgeRecord removes m's record from the members bucket, as its lease running out does.
func purgeRecord(t *testing.T, ctx context.Context, js jetstream.JetStream, m *membership) {
	t.Helper()
	st, err := js.Stream(ctx, events.StreamProbers)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+MembersBucket+"."+m.self.Key())); err != nil {
		t.Fatal(err)
	}
}

// A worker whose record is gone from the bucket (no heartbeat stored for a minute, so that it
// expired; the bucket deleted and created again) stores its next one in three requests: the
// update of its last revision, refused, a read finding no record, and a create that only a key
// holding no record accepts, where a put took the key from whatever worker of this name held it
// by then. A create before the read saved one request here, and cost two at each heartbeat that
// finds another's record (TestAnOldWorkerFindsItsKeyTakenByANewWorkerOfItsNameInTwoRequests).
func TestAWorkerWhoseRecordIsGoneStoresItsNextInThreeRequests(t *testing.T) {
	srv, js, _, ctx := membersBucket(t)
	nc, kv := countedBucket(t, ctx, srv)
	m := rollingMember(kv, time.Now())
	announceInTurn(t, ctx, m)
	purgeRecord(t, ctx, js, m)
	before := nc.Stats().OutMsgs
	rev, err := storeOwn(t, ctx, m)
	if err != nil || rev == 0 {
		t.Fatalf("stored the record over its gone key: revision %d, %v", rev, err)
	}
	if n := nc.Stats().OutMsgs - before; n != 3 {
		t.Errorf("storing the record over its gone key took %d requests, want 3", n)
	}
	if got := recordUnder(t, ctx, kv, m.self.Key()).Started; !got.Equal(m.self.Started) {
		t.Errorf("the record under %s is of the worker started at %v, want %v", m.self.Key(), got, m.self.Started)
	}
}

// hungFirstGetKV answers the first Get as a replica of the bucket whose node hangs does when a
// direct get draws it (NATS hands each to a replica at random): it waits until its context
// ends. Every read after it is answered.
type hungFirstGetKV struct {
	jetstream.KeyValue
	drawn atomic.Bool
}

func (kv *hungFirstGetKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if kv.drawn.CompareAndSwap(false, true) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return kv.KeyValue.Get(ctx, key)
}

// A worker whose record is gone (expired while it was cut off, the bucket created again) reads
// its key before it stores the next. While one replica of the bucket hangs, the read drew it one
// time in three and waited out the heartbeat's whole budget: the record was not stored at that
// heartbeat, and the worker stayed out of its region for another. The read is sent again while
// no replica has answered, as the worker's other reads of the bucket are.
func TestAWorkerWhoseRecordIsGoneStoresItsNextAtOnceWhileAReplicaHangs(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, time.Second
	_, js, bucket, ctx := membersBucket(t)
	kv := &hungFirstGetKV{KeyValue: bucket}
	m := rollingMember(kv, time.Now())
	announceInTurn(t, ctx, m)
	purgeRecord(t, ctx, js, m)
	hctx, cancel := context.WithTimeout(ctx, putBudget(hb, ttl))
	defer cancel()
	began := time.Now()
	rev, err := storeOwn(t, hctx, m)
	took := time.Since(began)
	if err != nil || rev == 0 {
		t.Fatalf("the record over its gone key not stored within the heartbeat's budget of %s: revision %d, %v", putBudget(hb, ttl), rev, err)
	}
	if took > putBudget(hb, ttl)/2 {
		t.Errorf("storing the record over its gone key took %s, want well within the heartbeat's budget of %s", took.Round(time.Millisecond), putBudget(hb, ttl))
	}
	if got := recordUnder(t, ctx, bucket, m.self.Key()).Started; !got.Equal(m.self.Started) {
		t.Errorf("the record under %s is of the worker started at %v, want %v", m.self.Key(), got, m.self.Started)
	}
}

// During a rolling restart that keeps a worker's name, the old worker goes on heartbeating while
// it finishes its checks, and the new one holds the key: each heartbeat of the old one finds the
// record there another's in two requests (its update, refused, and a read), and leaves it. A
// create tried before the read took two more (a create, refused, and the read of the record it
// found), so four for each of those heartbeats, and for each heartbeat of a worker running twice
// under one name.
func TestAnOldWorkerFindsItsKeyTakenByANewWorkerOfItsNameInTwoRequests(t *testing.T) {
	srv, _, bucket, ctx := membersBucket(t)
	nc, kv := countedBucket(t, ctx, srv)
	now := time.Now()
	old, successor := rollingMember(kv, now), rollingMember(bucket, now.Add(time.Second))
	announceInTurn(t, ctx, old, successor)
	before := nc.Stats().OutMsgs
	rev, err := storeOwn(t, ctx, old)
	if err != nil || rev != 0 {
		t.Fatalf("the old worker stored its record over the new one's: revision %d, %v", rev, err)
	}
	if n := nc.Stats().OutMsgs - before; n != 2 {
		t.Errorf("finding its key held by the new worker of its name took the old one %d requests, want 2", n)
	}
	if got := recordUnder(t, ctx, bucket, old.self.Key()).Started; !got.Equal(successor.self.Started) {
		t.Errorf("the record under %s is of the worker started at %v, want the new one's (%v)", old.self.Key(), got, successor.self.Started)
	}
}

// A worker of this name started since took the key and left, deleting its record: the key
// holds its delete marker (the bucket keeps one record a key), and the old worker's next
// heartbeat stores its record there, as over a key that holds nothing.
func TestAnOldWorkerStoresItsRecordOverTheDeletedRecordOfANewWorkerOfItsName(t *testing.T) {
	_, _, bucket, ctx := membersBucket(t)
	now := time.Now()
	old, successor := rollingMember(bucket, now), rollingMember(bucket, now.Add(time.Second))
	announceInTurn(t, ctx, old, successor)
	if err := successor.leave(); err != nil {
		t.Fatal(err)
	}
	rev, err := storeOwn(t, ctx, old)
	if err != nil || rev == 0 {
		t.Fatalf("stored the record over the deleted key: revision %d, %v", rev, err)
	}
	if got := recordUnder(t, ctx, bucket, old.self.Key()).Started; !got.Equal(old.self.Started) {
		t.Errorf("the record under %s is of the worker started at %v, want the old one's (%v)", old.self.Key(), got, old.self.Started)
	}
}

// A worker whose own lease lapsed counts the others as they stood then, but not past the
// instant a stopping one named: the checks that one hands over at that instant are this
// worker's, as for the others who count it live.
func TestAWorkerWhoseOwnLeaseLapsedTakesOverFromAMemberThatStops(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	r := NewRoster(Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: 1000}, 100*time.Millisecond)
	r.Seen(Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: 1000}, t0)
	r.Seen(Member{Region: "us-west", Name: "p2", ActiveFrom: t0, TTLMillis: 1000}, t0.Add(900*time.Millisecond))
	r.Seen(Member{Region: "us-west", Name: "p3", ActiveFrom: t0, TTLMillis: 1000, ActiveUntil: t0.Add(1500 * time.Millisecond)}, t0.Add(900*time.Millisecond))
	// p1's lease lapses at 1 s; p3 stops at 1.5 s, p2's lease runs to 1.9 s.
	if got, want := r.Shards(t0.Add(1200*time.Millisecond), false), []string{"p1", "p2", "p3"}; !slices.Equal(got, want) {
		t.Errorf("at 1.2 s p1 shares its checks with %v, want %v", got, want)
	}
	if got, want := r.Shards(t0.Add(1600*time.Millisecond), false), []string{"p1", "p2"}; !slices.Equal(got, want) {
		t.Errorf("at 1.6 s, past p3's active_until, p1 shares its checks with %v, want %v", got, want)
	}
	// p4 joins at 1.7 s, its record read at 1.2 s: p1 hands it its share, as the others do.
	r.Seen(Member{Region: "us-west", Name: "p4", ActiveFrom: t0.Add(1700 * time.Millisecond), TTLMillis: 1000}, t0.Add(1200*time.Millisecond))
	if got, want := r.Shards(t0.Add(1800*time.Millisecond), false), []string{"p1", "p2", "p4"}; !slices.Equal(got, want) {
		t.Errorf("at 1.8 s, past p4's active_from, p1 shares its checks with %v, want %v", got, want)
	}
}
