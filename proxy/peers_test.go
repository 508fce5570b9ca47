package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

func TestTheEdgesOwnHeartbeatDropsADeadSecondaryAndTakesItBack(t *testing.T) {
	for _, mode := range []string{"http", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			addr := freeAddr(t, "127.0.0.1")
			_, port, _ := net.SplitHostPort(addr)
			ps := newPeers("edge-west", dnsServer(t, map[string]string{"localhost.": "127.0.0.1"}), 20*time.Millisecond, zerolog.New(zerolog.NewTestWriter(t)))
			p := ps.get("localhost.", "127.0.0.1", mustAtoi(t, port), mode)
			if !p.alive.Load() {
				t.Fatal("a new secondary should be presumed alive until its heartbeats fail")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { ps.run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			eventstest.Eventually(t, 2*time.Second, func() bool { return !p.alive.Load() }, "nothing listening: the secondary to be dropped")

			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get(HeaderPing) == "edge-west" {
					w.Header().Set(HeaderEdge, "edge-east")
					w.WriteHeader(http.StatusNoContent)
				}
			}))
			srv.Listener = ln
			srv.Start()
			t.Cleanup(srv.Close)
			eventstest.Eventually(t, 2*time.Second, p.alive.Load, "the secondary answering again")
		})
	}
}

func TestAnHTTPListenerThatIsNotAnEdgeFailsThePing(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(plain.Close)
	_, port, _ := net.SplitHostPort(plain.Listener.Addr().String())
	ps := newPeers("edge-west", dnsServer(t, map[string]string{"localhost.": "127.0.0.1"}), time.Second, zerolog.New(zerolog.NewTestWriter(t)))
	p := ps.get("localhost.", "127.0.0.1", mustAtoi(t, port), "http")
	err := ps.ping(context.Background(), p, p.dialAddr())
	if err == nil || err.Error() != "ping "+p.dialAddr()+": answered 200 OK without naming an edge" {
		t.Fatalf("ping of a plain web server: %v, want it refused", err)
	}
}

func TestAPeerHostnameResolvesThroughTheConfiguredServer(t *testing.T) {
	resolver := dnsServer(t, map[string]string{"edge-east.demo.test.": "127.0.0.23"})
	ps := newPeers("edge-west", resolver, time.Second, zerolog.New(zerolog.NewTestWriter(t)))
	addrs, ttl, err := ps.lookup(context.Background(), "edge-east.demo.test.")
	if err != nil || len(addrs) != 1 || addrs[0].String() != "127.0.0.23" || ttl != 5*time.Second {
		t.Fatalf("lookup = %v, %s, %v; want [127.0.0.23] for the record's 5s TTL", addrs, ttl, err)
	}
	_, _, err = ps.lookup(context.Background(), "edge-north.demo.test.")
	if err == nil || err.Error() != "resolve edge-north.demo.test. at "+resolver+": no A or AAAA records" {
		t.Fatalf("lookup of an unknown name: %v", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
