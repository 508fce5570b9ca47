package events_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func TestProvisionStreamsCreatesWhatIsMissingWithTheConfiguredStorage(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	short, err := events.ProvisionStreams(ctx, srv.JS, events.StreamOptions{})
	if err != nil || len(short) != 0 {
		t.Fatalf("provision on an empty server: shortfalls %v, error %v", short, err)
	}
	for _, name := range []string{"PROBES", "STATE", "CONFIG", "REJECTIONS", "DNS", "ROUTES", "DRILLS", "KV_detour_probers"} {
		info := srv.Stream(t, name).CachedInfo()
		if info.Config.Storage != jetstream.FileStorage || info.Config.Replicas != 1 {
			t.Errorf("%s: storage %v with %d replicas, want files with 1", name, info.Config.Storage, info.Config.Replicas)
		}
	}
	if _, err := srv.JS.KeyValue(ctx, events.BucketProbers); err != nil {
		t.Fatalf("the probers' bucket is not usable as a bucket: %v", err)
	}
}

func TestProvisionStreamsReportsStreamsWithFewerReplicasThanConfigured(t *testing.T) {
	srv := eventstest.Start(t) // every stream with one replica
	short, err := events.ProvisionStreams(context.Background(), srv.JS, events.StreamOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range short {
		if s.Replicas != 1 || s.Configured != 3 {
			t.Errorf("%s: reported %d of %d replicas, want 1 of 3", s.Stream, s.Replicas, s.Configured)
		}
		names = append(names, s.Stream)
	}
	if got := strings.Join(names, " "); got != "PROBES STATE CONFIG REJECTIONS DNS ROUTES DRILLS ALERTS KV_detour_probers" {
		t.Fatalf("shortfalls: got %q, want every stream and the bucket", got)
	}
	if r := srv.Stream(t, "STATE").CachedInfo().Config.Replicas; r != 1 {
		t.Fatalf("provision changed STATE's replicas to %d; only apply may", r)
	}
}

func TestStateRefusesDeleteAndPurge(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	e, _ := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{To: events.StatusDown})
	ack, err := events.Append(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "a"), e, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := srv.Stream(t, events.StreamState)
	if err := st.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Error("a transition was deleted from STATE")
	}
	if err := st.Purge(ctx); err == nil {
		t.Error("STATE was purged")
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("STATE holds %d transitions, want 1", info.State.Msgs)
	}
}

func TestProbesDiscardsItsOldestResultsAtItsByteBoundAndRefusesOversizedMessages(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	const bound = 1 << 20
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true, ProbeMaxBytes: bound}); err != nil {
		t.Fatal(err)
	}
	subject := events.ProbeSubject("west", "shop", "west", "a")
	if _, err := srv.JS.Publish(ctx, subject, make([]byte, events.MaxProbeMessage+1)); err == nil {
		t.Fatal("a message over MaxProbeMessage was stored")
	}
	chunk := make([]byte, 64<<10)
	for range 40 { // 2.5 MiB in all
		if _, err := srv.JS.Publish(ctx, subject, chunk); err != nil {
			t.Fatalf("publish within the bound: %v", err)
		}
	}
	info, err := srv.Stream(t, events.StreamProbes).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > bound || info.State.LastSeq != 40 {
		t.Fatalf("PROBES holds %d bytes up to seq %d, want at most %d bytes and the newest result (40)", info.State.Bytes, info.State.LastSeq, bound)
	}
	// STATE keeps accepting transitions: its storage is its own.
	e, _ := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{To: events.StatusDown})
	if _, err := events.Append(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "a"), e, 0); err != nil {
		t.Fatalf("append to STATE after PROBES filled: %v", err)
	}
}

func TestEnsureStreamsUpgradesStreamsCreatedByAnEarlierVersion(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	if _, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamState, Subjects: []string{events.SubjectState},
		Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	// The probers' bucket as nats.go makes a bucket, allowing roll-ups, with a member in it.
	kv, err := srv.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.BucketProbers, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "us-west.p1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	c := srv.Stream(t, events.StreamState).CachedInfo().Config
	if !c.DenyDelete || !c.DenyPurge || c.MaxBytes != events.DefaultStateReserve {
		t.Fatalf("STATE after ensure: deny_delete %v, deny_purge %v, max_bytes %d", c.DenyDelete, c.DenyPurge, c.MaxBytes)
	}
	// The bucket now refuses a roll-up of all its keys, and keeps its member.
	if c := srv.Stream(t, events.StreamProbers).CachedInfo().Config; c.AllowRollup || c.Storage != jetstream.FileStorage {
		t.Errorf("probers' bucket after ensure: allow_rollup %v, storage %v", c.AllowRollup, c.Storage)
	}
	m := nats.NewMsg("$KV." + events.BucketProbers + ".us-east.p1")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := srv.JS.PublishMsg(ctx, m); err == nil {
		t.Error("the probers' bucket took a roll-up of all its keys after ensure")
	}
	if _, err := kv.Get(ctx, "us-west.p1"); err != nil {
		t.Errorf("us-west.p1 after ensure and a roll-up: %v", err)
	}
}

func TestEnsureStreamsKeepsTheLargerReserveAnOperatorGaveSTATE(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	o := events.StreamOptions{Memory: true, StateReserve: 1 << 20}
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	// STATE outgrew its reserve: the operator raises it with the nats CLI (no configuration
	// field sets it), and the transitions of the next 2 MiB are stored.
	c := srv.Stream(t, events.StreamState).CachedInfo().Config
	c.MaxBytes = 4 << 20
	if _, err := srv.JS.UpdateStream(ctx, c); err != nil {
		t.Fatal(err)
	}
	store := func(reason string) error {
		e, _ := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{To: events.StatusDown, Reason: reason})
		_, err := events.Publish(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "a"), e)
		return err
	}
	for range 200 {
		if err := store(strings.Repeat("x", 10000)); err != nil {
			t.Fatal(err)
		}
	}
	// The next detour apply (or detour up start).
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	if got := srv.Stream(t, events.StreamState).CachedInfo().Config.MaxBytes; got != 4<<20 {
		t.Errorf("STATE's max_bytes after ensure: %d, want the operator's %d", got, 4<<20)
	}
	if err := store("after the apply"); err != nil {
		t.Fatalf("append to STATE after ensure: %v", err)
	}
}

// A region with more workers than the probers' bucket holds (events.ProbersPerRegion for each
// probing region) keeps its new ones out: the operator raises the bound with the nats CLI, and
// the next detour apply keeps it, raising it only for more regions.
func TestEnsureStreamsKeepsTheLargerBoundAnOperatorGaveTheProbersBucket(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	o := events.StreamOptions{Memory: true, Regions: 1}
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	c := srv.Stream(t, events.StreamProbers).CachedInfo().Config
	c.MaxMsgs, c.MaxBytes = 3*events.ProbersPerRegion, 3*c.MaxBytes
	if _, err := srv.JS.UpdateStream(ctx, c); err != nil {
		t.Fatal(err)
	}
	// The next detour apply (or detour up start).
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	if got := srv.Stream(t, events.StreamProbers).CachedInfo().Config; got.MaxMsgs != c.MaxMsgs || got.MaxBytes != c.MaxBytes {
		t.Errorf("the probers' bucket after ensure: max_msgs %d, max_bytes %d; want the operator's %d and %d", got.MaxMsgs, got.MaxBytes, c.MaxMsgs, c.MaxBytes)
	}
	more := events.ProbersStream(events.StreamOptions{Memory: true, Regions: 4})
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true, Regions: 4}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Stream(t, events.StreamProbers).CachedInfo().Config; got.MaxMsgs != more.MaxMsgs || got.MaxBytes != more.MaxBytes {
		t.Errorf("the probers' bucket after ensure for 4 regions: max_msgs %d, max_bytes %d; want %d and %d", got.MaxMsgs, got.MaxBytes, more.MaxMsgs, more.MaxBytes)
	}
}

// An operator may have hardened an earlier version's CONFIG, denying deletes and purges, which
// JetStream lets no update cancel: detour apply keeps the denials, and still gives the
// rejections' subjects to REJECTIONS, where it failed and applied nothing.
func TestEnsureStreamsKeepsTheDenialsAnOperatorSetOnAStream(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	o := events.StreamOptions{Memory: true}
	for _, sc := range events.Streams(o) {
		switch sc.Name {
		case events.StreamRejections:
			continue
		case events.StreamConfig:
			sc.Subjects, sc.DenyDelete, sc.DenyPurge = []string{events.SubjectConfig}, true, true
		}
		if _, err := srv.JS.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatalf("ensure over a CONFIG denying deletes and purges: %v", err)
	}
	if c := srv.Stream(t, events.StreamConfig).CachedInfo().Config; !c.DenyDelete || !c.DenyPurge || !slices.Equal(c.Subjects, []string{events.SubjectConfigDocs}) {
		t.Errorf("CONFIG after ensure: deny_delete %v, deny_purge %v, subjects %v; want both denials kept and the documents' subjects", c.DenyDelete, c.DenyPurge, c.Subjects)
	}
	if ack, err := srv.JS.Publish(ctx, "detour.config.rejected.dns.dns-1", []byte(`{}`)); err != nil || ack.Stream != events.StreamRejections {
		t.Errorf("a rejection after ensure: %v, stored in %v; want %s", err, ack, events.StreamRejections)
	}
}

// JetStream reserves each stream's max_bytes on the servers' store when the stream is made or
// changed. An earlier version bounded PROBES and STATE only; this one bounds CONFIG, REJECTIONS,
// DNS and the probers' bucket too, which a store sized for the earlier bounds cannot reserve:
// detour apply's refusal names the stream, its bound and the server setting to raise, where it
// passed on JetStream's bare "insufficient memory resources available".
// createEarlierStreams creates the streams of the version before REJECTIONS: every one as this
// version makes it, but CONFIG holding every configuration subject, and CONFIG, DNS and the
// probers' bucket without bounds.
func createEarlierStreams(t *testing.T, js jetstream.JetStream, o events.StreamOptions) {
	t.Helper()
	for _, sc := range append(events.Streams(o), events.ProbersStream(o)) {
		switch sc.Name {
		case events.StreamRejections:
			continue
		case events.StreamConfig:
			sc.Subjects = []string{events.SubjectConfig}
		}
		switch sc.Name {
		case events.StreamConfig, events.StreamDNS, events.StreamProbers, events.StreamRoutes, events.StreamDrills, events.StreamAlerts:
			sc.MaxBytes, sc.MaxMsgs, sc.MaxMsgSize = -1, -1, -1
		}
		switch sc.Name {
		case events.StreamRoutes:
			sc.MaxMsgsPerSubject = 1000
		case events.StreamDrills:
			sc.MaxAge = 0
		}
		if _, err := js.CreateStream(context.Background(), sc); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEnsureStreamsNamesTheBoundAStoreSizedForAnEarlierVersionCannotReserve(t *testing.T) {
	o := events.StreamOptions{Memory: true}
	var earlier int64 // what the earlier version's streams reserved: PROBES's and STATE's bounds
	for _, sc := range events.Streams(o) {
		if sc.Name == events.StreamProbes || sc.Name == events.StreamState {
			earlier += sc.MaxBytes
		}
	}
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true, MaxMemoryStore: earlier + 1<<20})
	ctx := context.Background()
	createEarlierStreams(t, srv.JS, o)
	err := events.EnsureStreams(ctx, srv.JS, o)
	for _, want := range []string{"ensure stream CONFIG", "16 MiB", "raise max_memory_store"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ensure on a store sized for the earlier bounds: %v; want it to say %q", err, want)
		}
	}
}

func TestProbeBytesHoldsTheRetentionAtTheRateWithinTheDefaultCap(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		want int64
	}{
		{0, events.DefaultProbeMaxBytes},
		{1, events.MinProbeMaxBytes},                 // 44 MB a day is under the floor
		{100, 100 * 86400 * events.ProbeResultBytes}, // 4.4 GB
		{12000, events.CapProbeMaxBytes},             // 530 GB would be reserved
		{1e30, events.CapProbeMaxBytes},
	} {
		if got := events.ProbeBytes(tc.rate, 24*time.Hour); got != tc.want {
			t.Errorf("rate %v/s: got %d bytes, want %d", tc.rate, got, tc.want)
		}
	}
}

func TestTheDefaultBoundOfProbesIsNotShortAtAFractionalRate(t *testing.T) {
	// detour apply of the demo with a third app (16.4 results/s) warned "PROBES fills in 24h0m0s,
	// before its max_age 24h0m0s": the default bound, truncated to whole bytes, fell short of the
	// day by a fraction of a millisecond.
	for _, rate := range []float64{16.4, 1.0 / 3, 48, 100.7, 2000.3} {
		maxBytes := events.ProbeBytes(rate, 24*time.Hour)
		b := events.ProbeBound{MaxBytes: maxBytes, MaxAge: 24 * time.Hour, Rate: rate, Fill: events.ProbeFill(maxBytes, rate)}
		if maxBytes > events.MinProbeMaxBytes && maxBytes < events.CapProbeMaxBytes && b.Short() {
			t.Errorf("rate %v/s: the default %d bytes fill in %s, short of max_age %s", rate, maxBytes, b.Fill, b.MaxAge)
		}
	}
}

func TestReportProbeBoundsWarnsWhenTheRateFillsTheStreamBeforeItsAge(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	// 64 MiB at 10,000 results a second (5 MB/s) fills in 13 s, long before a day.
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true, ProbeMaxBytes: 64 << 20, ProbeRate: 10000}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		rate float64
		want string
	}{
		{10000, `{"level":"warn","stream":"PROBES","max_bytes":67108864,"max_age":86400000,"probe_rate":10000,"fills_in":13107,` +
			`"message":"probe results stream fills before max_age: results are kept for fills_in, not max_age (set streams.probes.max_bytes or max_age)"}`},
		{1, `{"level":"info","stream":"PROBES","max_bytes":67108864,"max_age":86400000,"probe_rate":1,"fills_in":131072000,"message":"probe results stream bounded"}`},
		{0, `{"level":"info","stream":"PROBES","max_bytes":67108864,"max_age":86400000,"probe_rate":0,"message":"probe results stream bounded"}`},
	} {
		var b strings.Builder
		if err := events.ReportProbeBounds(ctx, srv.JS, tt.rate, zerolog.New(&b)); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(b.String()); got != tt.want {
			t.Errorf("rate %v/s logged\n%s\nwant\n%s", tt.rate, got, tt.want)
		}
	}
}

// unreadable is a JetStream client that cannot read one stream's definition: its STREAM.INFO
// goes unanswered, as while the stream's group elects a leader.
type unreadable struct {
	jetstream.JetStream
	name string
}

func (u unreadable) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if name == u.name {
		return nil, nats.ErrTimeout
	}
	return u.JetStream.Stream(ctx, name)
}

func TestEnsureStreamsChangesNoStreamWhoseDefinitionItCannotRead(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	const before, after = 64 << 20, 128 << 20
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true, ProbeMaxBytes: before}); err != nil {
		t.Fatal(err)
	}
	err := events.EnsureStreams(ctx, unreadable{srv.JS, events.StreamProbes}, events.StreamOptions{Memory: true, ProbeMaxBytes: after})
	if err == nil || !strings.Contains(err.Error(), "ensure stream "+events.StreamProbes) {
		t.Fatalf("ensure with PROBES unreadable: %v, want an error naming PROBES", err)
	}
	if c := srv.Stream(t, events.StreamProbes).CachedInfo().Config; c.MaxBytes != before || c.Storage != jetstream.MemoryStorage {
		t.Fatalf("PROBES after a refused ensure: max_bytes %d, storage %s; want %d in memory, unchanged", c.MaxBytes, c.Storage, int64(before))
	}
}

// A stream an earlier version made without a byte bound may hold more than the bound this one
// gives it, and JetStream cuts a stream that discards its oldest messages to a lower max_bytes at
// once: DNS's history and CONFIG's versions are bounded at what they hold, nothing discarded
// until new messages come. CONFIG gives the rejections' subjects up to REJECTIONS, keeping the
// rejections it holds, and the probers' bucket, which refuses new records rather than discarding,
// keeps every record past its new bound.
func TestEnsureStreamsBoundsAnEarlierVersionsStreamsWithoutDiscardingWhatTheyHold(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	o := events.StreamOptions{Memory: true, DNSMaxBytes: 1 << 20, Regions: 1}
	createEarlierStreams(t, srv.JS, o)
	publish := func(subject string, data []byte) *jetstream.PubAck {
		t.Helper()
		ack, err := srv.JS.Publish(ctx, subject, data)
		if err != nil {
			t.Fatalf("publish on %s: %v", subject, err)
		}
		return ack
	}
	doc := publish(events.SubjectConfigDoc, []byte(`{}`))
	rejection := publish("detour.config.rejected.dns.dns-1", []byte(`{}`))
	version := make([]byte, 64<<10)
	for range 32 { // 2 MiB of zone versions
		publish(events.ZoneSubject("demo.test.", "dns-1"), version)
	}
	for i := range 1500 {
		publish(fmt.Sprintf("$KV.%s.us-west.p%d", events.BucketProbers, i), []byte(`{}`))
	}
	info := func(name string) *jetstream.StreamInfo {
		t.Helper()
		i, err := srv.Stream(t, name).Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	held := info(events.StreamDNS).State

	// detour apply provisions the missing streams first: REJECTIONS, whose subjects the earlier
	// CONFIG holds, waits for EnsureStreams.
	if _, err := events.ProvisionStreams(ctx, srv.JS, o); err != nil {
		t.Fatalf("provision before ensure: %v", err)
	}
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	if dns := info(events.StreamDNS); dns.State.Msgs != held.Msgs || dns.State.FirstSeq != held.FirstSeq || dns.Config.MaxBytes != int64(held.Bytes) {
		t.Errorf("DNS after ensure: %d versions from %d, max_bytes %d; want the %d from %d it held, bound at its %d bytes",
			dns.State.Msgs, dns.State.FirstSeq, dns.Config.MaxBytes, held.Msgs, held.FirstSeq, held.Bytes)
	}
	cfg := info(events.StreamConfig)
	if cfg.State.Msgs != 2 || cfg.Config.MaxBytes <= 0 || !slices.Equal(cfg.Config.Subjects, []string{events.SubjectConfigDocs}) {
		t.Errorf("CONFIG after ensure: %d messages, max_bytes %d, subjects %v; want its version and the rejection, bound, holding the documents only",
			cfg.State.Msgs, cfg.Config.MaxBytes, cfg.Config.Subjects)
	}
	for _, seq := range []uint64{doc.Sequence, rejection.Sequence} {
		if _, err := srv.Stream(t, events.StreamConfig).GetMsg(ctx, seq); err != nil {
			t.Errorf("CONFIG's message %d after ensure: %v", seq, err)
		}
	}
	if ack := publish("detour.config.rejected.dns.dns-1", []byte(`{}`)); ack.Stream != events.StreamRejections {
		t.Errorf("a rejection after ensure went to %s, want %s", ack.Stream, events.StreamRejections)
	}
	if kv := info(events.StreamProbers); kv.State.Msgs != 1500 || kv.Config.MaxMsgs != events.ProbersPerRegion {
		t.Errorf("the probers' bucket after ensure: %d records, max_msgs %d; want the 1500 it held, bound at %d", kv.State.Msgs, kv.Config.MaxMsgs, events.ProbersPerRegion)
	}
	publish("$KV."+events.BucketProbers+".us-west.p1", []byte(`{}`))
	if _, err := srv.JS.Publish(ctx, "$KV."+events.BucketProbers+".us-west.new", []byte(`{}`)); err == nil {
		t.Error("the probers' bucket, past its bound, took a new record")
	}
	for _, name := range []string{events.StreamRoutes, events.StreamDrills, events.StreamAlerts} {
		if c := info(name).Config; c.MaxBytes <= 0 || c.MaxMsgSize <= 0 {
			t.Errorf("%s after ensure: max_bytes %d, max_msg_size %d; want both bound", name, c.MaxBytes, c.MaxMsgSize)
		}
	}
	if c := info(events.StreamRoutes).Config; c.MaxMsgsPerSubject != 1000 {
		t.Errorf("ROUTES after ensure keeps %d routes of each app, want the earlier version's 1000 (never fewer than it kept)", c.MaxMsgsPerSubject)
	}
	// A bound an operator raised stays.
	raised := info(events.StreamRoutes).Config
	raised.MaxBytes *= 2
	if _, err := srv.JS.UpdateStream(ctx, raised); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	if c := info(events.StreamRoutes).Config; c.MaxBytes != raised.MaxBytes {
		t.Errorf("ROUTES after an operator raised its max_bytes to %d and an ensure: %d", raised.MaxBytes, c.MaxBytes)
	}
	// From there, DNS discards its oldest versions as new ones come, and an ensure again
	// changes nothing.
	publish(events.ZoneSubject("demo.test.", "dns-1"), version)
	if dns := info(events.StreamDNS); dns.State.FirstSeq != held.FirstSeq+1 {
		t.Errorf("DNS after a new version past its bound: first version %d, want %d", dns.State.FirstSeq, held.FirstSeq+1)
	}
	before := info(events.StreamDNS).Config.MaxBytes
	if err := events.EnsureStreams(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	if dns := info(events.StreamDNS); dns.Config.MaxBytes != before || dns.State.FirstSeq != held.FirstSeq+1 {
		t.Errorf("DNS after a second ensure: max_bytes %d, first version %d; want %d and %d", dns.Config.MaxBytes, dns.State.FirstSeq, before, held.FirstSeq+1)
	}
}

// TestRoutesDrillsAndAlertsKeepWithinTheirBoundsWhatTheRolesReadAtStart: ROUTES, DRILLS and
// ALERTS had no byte bound (ROUTES kept 1000 routes of each edge's app, DRILLS everything), so a
// long-running cluster, or a controller's credentials, filled the store, and with it STATE's
// room. Each now discards its oldest past a byte bound and refuses a message over its size;
// ROUTES keeps RoutesPerSubject routes of each edge's app, the last one (what an edge and the
// controller read at start) with them however often another app's route changes; DRILLS and
// ALERTS keep 90 days, far more than a drill lasts (its max_duration).
func TestRoutesDrillsAndAlertsKeepWithinTheirBoundsWhatTheRolesReadAtStart(t *testing.T) {
	t.Parallel()
	srv := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, data []byte) *jetstream.PubAck {
		t.Helper()
		ack, err := srv.JS.Publish(ctx, subject, data)
		if err != nil {
			t.Fatalf("publish on %s: %v", subject, err)
		}
		return ack
	}
	routes := srv.Stream(t, events.StreamRoutes)
	stable := publish(events.AppRouteSubject("edge-a", "shop"), []byte(`{"stable":true}`))
	flapping := events.AppRouteSubject("edge-b", "shop")
	for i := range events.RoutesPerSubject + 50 {
		publish(flapping, fmt.Appendf(nil, `{"change":%d}`, i))
	}
	info, err := routes.Info(ctx, jetstream.WithSubjectFilter(events.SubjectRoutes))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[flapping]; n != events.RoutesPerSubject {
		t.Errorf("ROUTES holds %d routes of %s after %d, want the last %d", n, flapping, events.RoutesPerSubject+50, events.RoutesPerSubject)
	}
	if m, err := routes.GetLastMsgForSubject(ctx, events.AppRouteSubject("edge-a", "shop")); err != nil || m.Sequence != stable.Sequence {
		t.Errorf("the last route of edge-a's shop after edge-b's changed %d times: %v, %v; want seq %d", events.RoutesPerSubject+50, m, err, stable.Sequence)
	}
	for _, bound := range []struct {
		stream, subject string
		age             time.Duration
	}{
		{events.StreamRoutes, "detour.routes.edge-c.app%d", 0},
		{events.StreamDrills, "detour.drill.d%d", events.DrillsRetention},
		{events.StreamAlerts, "detour.alert.g%d", events.AlertsRetention},
	} {
		st := srv.Stream(t, bound.stream)
		c := st.CachedInfo().Config
		if c.MaxBytes <= 0 || c.MaxMsgSize <= 0 || c.MaxAge != bound.age || c.Discard != jetstream.DiscardOld {
			t.Errorf("%s: max_bytes %d, max_msg_size %d, max_age %s, discard %v; want a byte and a size bound, max_age %s, the oldest discarded",
				bound.stream, c.MaxBytes, c.MaxMsgSize, c.MaxAge, c.Discard, bound.age)
			continue
		}
		if _, err := srv.JS.Publish(ctx, fmt.Sprintf(bound.subject, 0), make([]byte, c.MaxMsgSize+1)); err == nil {
			t.Errorf("%s stored a message over its max_msg_size %d", bound.stream, c.MaxMsgSize)
		}
		chunk := make([]byte, 64<<10)
		n := int(c.MaxBytes/int64(len(chunk))) + 8
		var last *jetstream.PubAck
		for i := range n {
			last = publish(fmt.Sprintf(bound.subject, i), chunk)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Bytes > uint64(c.MaxBytes) || info.State.LastSeq != last.Sequence || info.State.FirstSeq <= 1 {
			t.Errorf("%s after %d messages of 64 KiB: %d bytes from seq %d to %d; want at most %d, the oldest discarded, the newest (%d) kept",
				bound.stream, n, info.State.Bytes, info.State.FirstSeq, info.State.LastSeq, c.MaxBytes, last.Sequence)
		}
	}
}
