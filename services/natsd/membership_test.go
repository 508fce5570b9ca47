package natsd_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/prober"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// acceptCounter counts the connections each endpoint accepted: the checks run of it.
type acceptCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *acceptCounter) snapshot() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.n)
}

// endpoint is a healthy TCP endpoint on loopback that counts the checks of it.
func (a *acceptCounter) endpoint(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			a.n[name]++
			a.mu.Unlock()
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

// A prober's user writes the keys of its own region in the membership bucket, and NATS
// permissions look at subjects, never at headers: were the bucket to allow roll-ups, a message on
// one of its own keys carrying Nats-Rollup: all would purge every region's records. Running
// probers keep the members they saw (a purge tells no watcher), but one that starts before the
// others' next heartbeat finds no member, counts itself alone and runs every check of its region
// beside them. The bucket refuses roll-ups: us-east's prober leaves us-west's records alone, and
// a us-west prober restarted then shares the checks at once, each endpoint checked once a window.
func TestDeploymentIdentitiesAProbersRollUpLeavesAnotherRegionsMembersAndChecksAlone(t *testing.T) {
	const (
		endpoints = 8
		interval  = 100 * time.Millisecond
		// A heartbeat far longer than the join delay: a purged record stays purged while a
		// restarted prober joins.
		heartbeat = 3 * time.Second
		joinDelay = 100 * time.Millisecond
	)
	d := startDeployment(t)
	d.ensureStreams()
	accepts := &acceptCounter{n: map[string]int{}}
	var eps []string
	for i := range endpoints {
		name := fmt.Sprintf("w%d", i)
		eps = append(eps, fmt.Sprintf("{name: %s, address: %q}", name, accepts.endpoint(t, name)))
	}
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: %s, timeout: 90ms}
    pools:
      - {name: us-west, region: us-west, endpoints: [%s]}
      - {name: us-east, region: us-east, endpoints: [{name: e1, address: %q}]}
`, interval, strings.Join(eps, ", "), freeAddr(t))))
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	start := func(user string) (stop func()) {
		c := d.as(user)
		name := "p" + user[strings.LastIndex(user, "-")+1:]
		return eventstest.Run(t, user, func(ctx context.Context) error {
			return prober.Run(ctx, prober.Options{JS: c.js, Config: cfg, Region: "us-west", Name: name, Log: log,
				Heartbeat: heartbeat, MemberTTL: 3 * heartbeat, JoinDelay: joinDelay})
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	op := d.as("operator")
	kv, err := op.js.KeyValue(ctx, events.BucketProbers)
	if err != nil {
		t.Fatal(err)
	}
	has := func(key string) bool {
		_, err := kv.Get(ctx, key)
		return err == nil
	}
	start("prober-us-west-1")
	stopP2 := start("prober-us-west-2")
	eventstest.Eventually(t, 10*time.Second, func() bool { return has("us-west.p1") && has("us-west.p2") }, "us-west's two probers announce themselves")
	// p2 stops, deleting its record: p1 runs every check.
	stopP2()
	// Right after p1's heartbeat, us-east's prober writes its own key with a roll-up of the
	// whole bucket: p1's record would stay purged for a heartbeat.
	w, err := kv.Watch(ctx, "us-west.p1", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	select {
	case <-w.Updates():
	case <-ctx.Done():
		t.Fatal("no heartbeat of p1")
	}
	beat := time.Now()
	east := d.as("prober-us-east-1")
	m := nats.NewMsg("$KV." + events.BucketProbers + ".us-east.p1")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	m.Data = []byte("{}")
	if _, err := east.js.PublishMsg(ctx, m); err == nil {
		t.Error("us-east's prober rolled up the membership bucket")
	} else if !strings.Contains(err.Error(), "rollup not permitted") {
		t.Errorf("us-east's roll-up refused with %v, want JetStream's rollup not permitted", err)
	}
	if !has("us-west.p1") {
		t.Error("us-west's p1 lost its membership record to us-east's prober")
	}
	// p2 starts again before p1's next heartbeat: it must find p1 and share the checks.
	start("prober-us-west-2")
	var joined time.Time
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, err := kv.Get(ctx, "us-west.p2")
		if err != nil {
			return false
		}
		rec, err := prober.DecodeMember(e.Value())
		if err != nil {
			t.Fatalf("p2's record: %v", err)
		}
		joined = rec.ActiveFrom
		return true
	}, "p2 announces itself again")
	// Count the checks of a second from the window after p2 took its share, well before p1's
	// next heartbeat.
	from := joined.Add(2 * interval)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(from) }, "p2 active")
	before := accepts.snapshot()
	measure := 10 * interval
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Since(from) >= measure }, "a second passes")
	after := accepts.snapshot()
	took := time.Since(from)
	if time.Since(beat) > heartbeat-interval {
		t.Skipf("this machine took %v to count, past p1's next heartbeat", time.Since(beat))
	}
	checks := 0
	for name, n := range after {
		checks += n - before[name]
	}
	windows := float64(took) / float64(interval)
	if per := float64(checks) / windows; per > endpoints*1.25 {
		t.Errorf("us-west's %d endpoints were checked %.1f times a window after us-east's roll-up and p2's restart, want %d: p2 found no member and ran p1's checks too",
			endpoints, per, endpoints)
	}
}
