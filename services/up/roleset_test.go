package up_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/demo"
	"github.com/detourdev/detour/services/internal/stacktest"
	"github.com/detourdev/detour/services/up"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// seen records when the messages on a subject came.
type seen struct {
	mu sync.Mutex
	at []time.Time
}

// watch records the messages on subject until the test ends.
func watch(t *testing.T, nc *nats.Conn, subject string) *seen {
	t.Helper()
	s := &seen{}
	sub, err := nc.Subscribe(subject, func(*nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.at = append(s.at, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// since reports whether a message came after at.
func (s *seen) since(at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at) > 0 && s.at[len(s.at)-1].After(at)
}

// count reports how many messages came after at.
func (s *seen) count(at time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.at {
		if t.After(at) {
			n++
		}
	}
	return n
}

// quiet reports whether no message came for d.
func (s *seen) quiet(d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at) == 0 || time.Since(s.at[len(s.at)-1]) > d
}

// answers reports whether something accepts TCP connections on addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// roleDoc is a configuration of one app probed every 250ms from the regions given, and the
// edges given (YAML list items, indented as under edges:).
func roleDoc(backend, regions, edges string) string {
	doc := fmt.Sprintf(`regions: [%s]
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms}
    pools: [{name: main, endpoints: [{address: %q}]}]
`, regions, backend)
	if edges != "" {
		doc += "edges:\n" + edges
	}
	return doc
}

// edgeA is edge-a, listening on listen.
func edgeA(listen string) string {
	return fmt.Sprintf(`  - name: edge-a
    region: eu
    hostname: edge-a.demo.test
    address: 127.0.0.1
    apps: [{app: shop, pool: main, listen: %q}]
`, listen)
}

// roleStack starts Detour from the configuration file doc, with o's changes; write replaces the
// file and returns once the stack applied it.
func roleStack(t *testing.T, doc string, opts ...func(*up.Options)) (st *up.Stack, nc *nats.Conn, write func(doc string)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "detour.yaml")
	reload := make(chan struct{}) // a send returns once the watcher took it: after the last one's work
	write = func(doc string) {
		t.Helper()
		if err := os.WriteFile(path+".new", []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
		reload <- struct{}{}
		reload <- struct{}{} // returns once the file was applied
	}
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	o := up.Options{ConfigPath: path, Reload: reload, DNSAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
	for _, f := range opts {
		f(&o)
	}
	st = startStack(t, o)
	nc, _ = stacktest.Connect(t, st)
	return st, nc, write
}

// startBackend starts a demo backend on 127.0.0.12 until the test ends and returns its address.
func startBackend(t *testing.T) string {
	t.Helper()
	b, err := demo.StartBackend("main", "127.0.0.12:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.Addr()
}

func TestAFileThatAddsARegionAndAnEdgeStartsTheirProberAndEdgeAndOneThatRemovesThemStopsThem(t *testing.T) {
	backend := startBackend(t)
	listen := stacktest.FreePort(t, "127.0.0.1")
	_, nc, write := roleStack(t, roleDoc(backend, "eu", ""))
	eu, us, heartbeats := watch(t, nc, "detour.probe.eu.>"), watch(t, nc, "detour.probe.us.>"), watch(t, nc, "detour.heartbeat.edge-a")
	start := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return eu.since(start) }, "eu's prober checks shop")

	// The file adds the us region and edge-a: their prober and edge start.
	added := time.Now()
	write(roleDoc(backend, "eu, us", edgeA(listen)))
	eventstest.Eventually(t, 5*time.Second, func() bool { return us.since(added) }, "a prober of the added us region checks shop")
	eventstest.Eventually(t, 5*time.Second, func() bool { return heartbeats.since(added) && answers(listen) },
		"the added edge-a heartbeats and listens on %s", listen)

	// The file removes them again: they stop, and eu's prober goes on.
	write(roleDoc(backend, "eu", ""))
	eventstest.Eventually(t, 5*time.Second, func() bool { return !answers(listen) }, "the removed edge-a's listener to close")
	eventstest.Eventually(t, 10*time.Second, func() bool { return us.quiet(time.Second) && heartbeats.quiet(2500*time.Millisecond) },
		"the us prober's results (every 250ms) and edge-a's heartbeats (every 1s) to stop")
	removed := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return eu.since(removed) }, "eu's prober to go on checking shop")
}

func TestRegionsGivenToUpStandWhateverTheFileSays(t *testing.T) {
	backend := startBackend(t)
	_, nc, write := roleStack(t, roleDoc(backend, "eu, asia", ""), func(o *up.Options) { o.Regions = []string{"eu"} })
	eu, us := watch(t, nc, "detour.probe.eu.>"), watch(t, nc, "detour.probe.us.>")
	write(roleDoc(backend, "eu, asia, us", ""))
	applied := time.Now()
	// Four of eu's checks (every 250ms) came since: a prober of us, had one started, would have
	// sent one too.
	eventstest.Eventually(t, 5*time.Second, func() bool { return eu.count(applied) >= 4 }, "eu's prober to go on")
	if us.since(time.Time{}) {
		t.Error("a prober of us started though --regions fixed the regions to eu")
	}
	write(roleDoc(backend, "asia", ""))
	removed := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return eu.since(removed) }, "eu's prober, given to up, to go on once the file drops eu")
}

func TestAnEdgeAFileAddsThatCannotListenIsLoggedAndStartedAgainByTheNextVersion(t *testing.T) {
	backend := startBackend(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	listen := taken.Addr().String()
	logs := &eventstest.Logs{}
	st, _, write := roleStack(t, roleDoc(backend, "eu", ""), func(o *up.Options) {
		o.Log = zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.InfoLevel)
	})
	write(roleDoc(backend, "eu", edgeA(listen)))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return logs.Count("role started for a configuration version failed; the others run on") == 1
	}, "edge-a's failure to listen on %s logged", listen)
	if len(answer(t, st.DNSAddr)) != 1 {
		t.Errorf("the DNS server does not answer shop after edge-a failed: %v", answer(t, st.DNSAddr))
	}
	_ = taken.Close()
	write(roleDoc(backend, "eu", edgeA(listen)) + "# edge-a's address is free now\n")
	eventstest.Eventually(t, 5*time.Second, func() bool { return answers(listen) }, "edge-a, started again by the next version, listens on %s", listen)
	if sw := st.Edge("edge-a"); sw == nil || !sw.Running() {
		t.Error("the stack does not list edge-a as running")
	}
}
