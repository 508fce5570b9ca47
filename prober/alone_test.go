package prober

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// hungWatch is a JetStream on which no consumer of the membership bucket's stream is ever
// created: each creation waits until it is given up, as one does while the node holding the
// consumer a worker's last run left hangs (TestAProberRestartedWhileAReplicaHangsChecksItsRegionSoon),
// for as long as that node hangs.
type hungWatch struct{ jetstream.JetStream }

func (j hungWatch) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := j.JetStream.Stream(ctx, name)
	if err != nil || name != events.StreamProbers {
		return s, err
	}
	return hungConsumers{s}, nil
}

type hungConsumers struct{ jetstream.Stream }

func (hungConsumers) CreateOrUpdateConsumer(ctx context.Context, _ jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestARegionRestartedWhileItsMembershipWatchHangsSharesItsChecksWithinABound: three workers
// of a region start at once and none of their membership watches reads anything, however long
// the test runs. Each joined a heartbeat after its start and ran every check of the region,
// as if alone, until its watch read the region's records: with the watch hung, for as long as
// it hung, each window of each check run three times. Each now reads the records from the
// bucket itself (the stream's leader lists the region's keys, any replica answers a direct get
// of each): from a bound after the start every window of every check is run by exactly one
// worker, the three share the checks, and no window before goes without a result.
func TestARegionRestartedWhileItsMembershipWatchHangsSharesItsChecksWithinABound(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three workers for several seconds")
	}
	const (
		workers   = 3
		endpoints = 12
		interval  = 300 * time.Millisecond // a heartbeat of 100 ms, a member TTL of 1 s
		judged    = 15                     // windows, 4.5 s
		bound     = 1500 * time.Millisecond
	)
	srv := eventstest.Start(t)
	checks := newCheckLog(t, eventstest.Connect(t, srv.URL), "us-west", interval)
	cfg, keys := droppingShop(t, endpoints, interval)

	began := time.Now()
	for i := range workers {
		js, err := jetstream.New(eventstest.Connect(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		startWorker(t, Options{JS: hungWatch{js}, Config: cfg, Region: "us-west", Name: fmt.Sprintf("p%d", i+1),
			Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel), BatchWindow: -1})
	}
	sharedWithin(t, checks, keys, began, interval, judged, bound, "p1", "p2", "p3")
}

// sharedWithin judges judged windows of the checks of keys from the first that starts 300 ms
// after began (a heartbeat's wait for the view, the join and a heartbeat's join delay at a
// 300 ms interval): each must have every check's result. It fails the test unless, from within
// bound of began, the workers share the checks: no window has more than a quarter of its checks
// run twice or more (a hand-over may run one twice; alone, each worker runs every one), but those
// a stall of this process excuses (a worker that stalls for its TTL less a heartbeat is dead to
// the others), and each of names that owns some of keys among them (Owner) ran some of them: a
// name's share may be empty (12 keys split three ways leave one of the three none about once in
// 40 sets of names), and then it ran none, counted or not.
func sharedWithin(t *testing.T, checks *checkLog, keys []string, began time.Time, interval time.Duration, judged int, bound time.Duration, names ...string) {
	t.Helper()
	first := Window(began.Add(300*time.Millisecond), interval) + 1
	last := first + int64(judged) - 1
	per := checks.covered("workers whose watches hang", keys, first, judged)
	checks.settle()
	extra := func(n int64) (runs int, twice []string) {
		for _, k := range keys {
			runs += len(checks.runs[k][n]) - 1
			if len(checks.runs[k][n]) > 1 {
				twice = append(twice, fmt.Sprintf("%s by %v", k, checks.runs[k][n]))
			}
		}
		return runs, twice
	}
	shared, after := last+1, 0
	for n := last; n >= first; n-- {
		runs, _ := extra(n)
		if runs > len(keys)/4 && !checks.stalls.during(n, interval, 900*time.Millisecond) {
			break
		}
		shared, after = n, after+runs
	}
	if shared > last-2 {
		_, twice := extra(last)
		t.Fatalf("%s after the start, window %d still had %d of %d checks run more than once: %v",
			SlotTime("", interval, 0, last).Sub(began).Round(time.Millisecond), last, len(twice), len(keys), twice)
	}
	took := SlotTime("", interval, 0, shared).Sub(began)
	owns := map[string]int{}
	for _, k := range keys {
		owns[Owner(k, names)]++
	}
	t.Logf("the checks shared from %s after the start, %d runs beyond one a window in the %d windows from then (ran: %v; keys owned: %v)",
		took.Round(time.Millisecond), after, last+1-shared, per, owns)
	if took > bound {
		t.Errorf("the checks were shared only from %s after the start, want within %s", took.Round(time.Millisecond), bound)
	}
	for _, name := range names {
		if owns[name] > 0 && per[name] == 0 {
			t.Errorf("%s ran none of the checks judged, though it owns %d of them: %v", name, owns[name], per)
		}
	}
}

// TestARegionRestartedAtOnceWhileAReplicaHangsSharesItsChecksWithinABound is the same region on
// a JetStream cluster: its three probers restarted at once while the node holding the
// membership consumers their last runs left hangs (TestAProberRestartedWhileAReplicaHangsChecksItsRegionSoon).
// Each watch waited 2 to 3 s for that node, every check run three times a window meanwhile.
func TestARegionRestartedAtOnceWhileAReplicaHangsSharesItsChecksWithinABound(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a JetStream cluster for several seconds")
	}
	const (
		restarted = 3
		endpoints = 12
		interval  = 300 * time.Millisecond
	)
	c := eventstest.StartCluster(t, 3)
	admin := c.Streams(t)
	hung := c.LeadingNone(t, admin, events.StreamProbers, events.StreamProbes)
	url := c.URLs[(hung+1)%len(c.Servers)]
	members, err := admin.Stream(context.Background(), events.StreamProbers)
	if err != nil {
		t.Fatal(err)
	}
	checks := newCheckLog(t, eventstest.Connect(t, url), "us-west", interval)
	cfg, keys := droppingShop(t, endpoints, interval)
	// run starts a prober connected as user, as the role connects (its consumers named for it).
	run := func(user string) func() {
		_, js := eventstest.ConnectJS(t, url, nats.CustomInboxPrefix(events.InboxPrefix(user)))
		return startWorker(t, Options{JS: js, Config: cfg, Region: "us-west", Name: user,
			Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel), BatchWindow: -1})
	}
	users := c.LeftOn(t, hung, restarted, members, "prober", "", run)
	// A prober that LeftOn stopped while its first record was being stored may have left it
	// (stored after it looked): the region counts it for its TTL, and its share goes unchecked
	// meanwhile, as a crashed worker's. Restart once every record is older than a TTL.
	kv, err := admin.KeyValue(context.Background(), MembersBucket)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool {
		keys, err := kv.ListKeys(context.Background())
		if err != nil {
			return false
		}
		fresh := false
		for key := range keys.Keys() {
			e, err := kv.Get(context.Background(), key)
			fresh = fresh || err == nil && time.Since(e.Created()) < time.Second
		}
		return !fresh
	}, "every member record older than a TTL")
	c.Silence(hung)
	began := time.Now()
	for _, user := range users {
		run(user)
	}
	sharedWithin(t, checks, keys, began, interval, 12, 1500*time.Millisecond, users...)
}

// droppingShop is a configuration of shop whose pool west holds n endpoints e00, e01, …, each a
// loopback listener that accepts and drops, checked over tcp every interval, and their keys.
func droppingShop(t *testing.T, n int, interval time.Duration) (*config.Config, []string) {
	t.Helper()
	var eps strings.Builder
	var keys []string
	for i := range n {
		fmt.Fprintf(&eps, "{name: e%02d, address: %q}, ", i, acceptAndDrop(t, "127.0.0.1:0").String())
		keys = append(keys, fmt.Sprintf("shop/west/e%02d", i))
	}
	return testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: %s, timeout: 200ms}
    pools:
      - name: west
        endpoints: [%s]
`, interval, eps.String())), keys
}
