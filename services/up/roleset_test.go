package up_test

import (
	"fmt"
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

// seen records when messages last came on a subject.
type seen struct {
	mu   sync.Mutex
	n    int
	last time.Time
}

// watch counts the messages on subject until the test ends.
func watch(t *testing.T, nc *nats.Conn, subject string) *seen {
	t.Helper()
	s := &seen{}
	sub, err := nc.Subscribe(subject, func(*nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.n++
		s.last = time.Now()
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
	return s.n > 0 && s.last.After(at)
}

// quiet reports whether no message came for d.
func (s *seen) quiet(d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.last) > d
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

func TestAFileThatAddsARegionAndAnEdgeStartsTheirProberAndEdgeAndOneThatRemovesThemStopsThem(t *testing.T) {
	backend, err := demo.StartBackend("main", "127.0.0.12:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close() })
	listen := stacktest.FreePort(t, "127.0.0.1")
	base := fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms}
    pools: [{name: main, endpoints: [{address: %q}]}]
`, backend.Addr())
	withEU := "regions: [eu]\n" + base
	withUSAndEdge := "regions: [eu, us]\n" + base + fmt.Sprintf(`edges:
  - name: edge-a
    region: eu
    hostname: edge-a.demo.test
    address: 127.0.0.1
    apps: [{app: shop, pool: main, listen: %q}]
`, listen)
	path := filepath.Join(t.TempDir(), "detour.yaml")
	reload := make(chan struct{}) // a send returns once the watcher took it: after the last one's work
	write := func(doc string) {
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
	if err := os.WriteFile(path, []byte(withEU), 0o600); err != nil {
		t.Fatal(err)
	}
	st := startStack(t, up.Options{ConfigPath: path, Reload: reload, DNSAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	nc, _ := stacktest.Connect(t, st)
	eu, us, heartbeats := watch(t, nc, "detour.probe.eu.>"), watch(t, nc, "detour.probe.us.>"), watch(t, nc, "detour.heartbeat.edge-a")
	start := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return eu.since(start) }, "eu's prober checks shop")

	// The file adds the us region and edge-a: their prober and edge start.
	added := time.Now()
	write(withUSAndEdge)
	eventstest.Eventually(t, 5*time.Second, func() bool { return us.since(added) }, "a prober of the added us region checks shop")
	eventstest.Eventually(t, 5*time.Second, func() bool { return heartbeats.since(added) && answers(listen) },
		"the added edge-a heartbeats and listens on %s", listen)

	// The file removes them again: they stop, and eu's prober goes on.
	write(withEU)
	eventstest.Eventually(t, 5*time.Second, func() bool { return !answers(listen) }, "the removed edge-a's listener to close")
	eventstest.Eventually(t, 10*time.Second, func() bool { return us.quiet(time.Second) && heartbeats.quiet(2500*time.Millisecond) },
		"the us prober's results (every 250ms) and edge-a's heartbeats (every 1s) to stop")
	removed := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return eu.since(removed) }, "eu's prober to go on checking shop")
}
