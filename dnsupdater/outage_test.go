package dnsupdater

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startFileNATS runs JetStream with file storage in dir, on 127.0.0.1 at port (-1: a free one).
func startFileNATS(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("new nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestServerCatchesUpWhenNATSReturns(t *testing.T) {
	dir := t.TempDir()
	ns := startFileNATS(t, dir, -1)
	port := ns.Addr().(*net.TCPAddr).Port
	nc, js := eventstest.ConnectJS(t, ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err := events.EnsureStreams(context.Background(), js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	conn := &eventstest.Server{JS: js}
	h := startServer(t, conn, eventstest.Config(t, demoConfig), "")
	answer := func() []string { return addrs(ask(t, h.srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)) }
	endpointDown(t, conn, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return slices.Equal(answer(), []string{"127.0.0.12"}) }, "failover before the outage")

	// NATS stops: the server keeps its answer. NATS comes back on the same port and store.
	ns.Shutdown()
	ns.WaitForShutdown()
	if got := answer(); !slices.Equal(got, []string{"127.0.0.12"}) {
		t.Fatalf("during the outage: want the last answer [127.0.0.12], got %v", got)
	}
	startFileNATS(t, dir, port)
	eventstest.Eventually(t, 10*time.Second, nc.IsConnected, "the client reconnects")
	eventstest.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.Stream(ctx, events.StreamState)
		return err == nil
	}, "JetStream serves STATE again")
	endpointUp(t, conn, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 15*time.Second, func() bool { return slices.Equal(answer(), []string{"127.0.0.11"}) },
		"a change stored after NATS returned reaches the answer")
}
