package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// An edge left without max_conns derives it from the descriptors its process may open, as
// HAProxy's maxconn: half, for a client's and an instance's connection each, less a reserve,
// so that the defaults protect the descriptors however many apps the edge fronts.
func TestAnEdgesMaxConnsDefaultsToHalfItsFileLimitLessAReserve(t *testing.T) {
	for _, tc := range []struct {
		configured int
		files      uint64
		want       int
	}{
		{0, 1024, 384},               // a shell's hard limit: 256 kept back
		{0, 524288 - 1, 261631},      // systemd's, less the one Go keeps
		{0, 1 << 20, 523776},         // Docker's
		{0, 0, 523776},               // unknown (Windows): as Docker's
		{0, 1 << 62, 1_000_000},      // unlimited (macOS before its cap)
		{0, 3, 1},                    // never 0
		{5000, 1024, 5000},           // configured: the operator's
		{1_000_000, 1024, 1_000_000}, // configured over the file limit: the operator's
	} {
		if got := edgeMaxConns(tc.configured, tc.files); got != tc.want {
			t.Errorf("max_conns %d with a file limit of %d: %d, want %d", tc.configured, tc.files, got, tc.want)
		}
	}
}

// edgeLimitDoc configures edge-west with max_conns (the edge's) and two TCP apps, shop and
// blog, both relayed to echo.
func edgeLimitDoc(t *testing.T, maxConns int, echo, shopAddr, blogAddr string) *config.Config {
	t.Helper()
	// The edge's key follows its apps' flow sequence; the comment takes the closing bracket.
	return liveDoc(t, echo, echo, fmt.Sprintf("{app: shop, listen: %q, mode: tcp}, {app: blog, listen: %q, mode: tcp}]\n    max_conns: %d #",
		shopAddr, blogAddr, maxConns))
}

// relayed opens a connection to addr and reports whether a line sent on it came back from
// echoServer w1 within wait, leaving it open; the connection is returned either way.
func relayed(t *testing.T, addr string, wait time.Duration) (net.Conn, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, echoedWithin(c, wait)
}

// echoedWithin reports whether c, a line already sent or not, echoes "hi" from w1 within wait.
func echoedWithin(c net.Conn, wait time.Duration) bool {
	_ = c.SetDeadline(time.Now().Add(wait))
	_, _ = io.WriteString(c, "hi\n")
	got, _ := bufio.NewReader(c).ReadString('\n')
	return got == "w1 hi\n"
}

// startLimitedEdge runs edge-west on cfg and returns its log and the channel of its next
// configurations, once both its listeners relay.
func startLimitedEdge(t *testing.T, cfg *config.Config, shopAddr, blogAddr string) (*lockedBuffer, chan<- *config.Config) {
	t.Helper()
	ns := eventstest.Start(t)
	logs := &lockedBuffer{}
	configs := make(chan *config.Config)
	resolver := dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.21"})
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Edge: "edge-west", Resolver: resolver,
			Log: zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logs)), Configs: configs})
	})
	for _, addr := range []string{shopAddr, blogAddr} {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return false
			}
			defer c.Close()
			return echoedWithin(c, 5*time.Second)
		}, "%s relayed", addr)
	}
	return logs, configs
}

// An edge holding max_conns client connections, over all its listeners, accepts no more: the
// next one waits in the kernel's backlog, neither reset nor read, and is served as soon as a
// connection of any listener closes, so that a flood spread over many apps cannot take more
// descriptors than the edge has, and a burst (a prober's check among it) is served late rather
// than refused.
func TestAConnectionOverTheEdgesMaxConnsWaitsUntilAConnectionOfAnyListenerCloses(t *testing.T) {
	echo := echoServer(t, "w1").Addr().String()
	shopAddr, blogAddr := freeAddr(t, "127.0.0.21"), freeAddr(t, "127.0.0.21")
	logs, _ := startLimitedEdge(t, edgeLimitDoc(t, 2, echo, shopAddr, blogAddr), shopAddr, blogAddr)
	var held []net.Conn
	eventstest.Eventually(t, 5*time.Second, func() bool {
		// Once the start's checks closed, one connection of each app is relayed.
		for _, h := range held {
			_ = h.Close()
		}
		shop, okShop := relayed(t, shopAddr, 5*time.Second)
		blog, okBlog := relayed(t, blogAddr, 5*time.Second)
		held = []net.Conn{shop, blog}
		return okShop && okBlog
	}, "a connection of shop and one of blog relayed")

	waiting, ok := relayed(t, shopAddr, 300*time.Millisecond)
	if ok {
		t.Fatal("a third connection was relayed while the edge held max_conns 2, want it to wait")
	}
	if !strings.Contains(logs.String(), `"limit_of":"edge","limit":2,"message":"accepting paused: max_conns connections open"`) {
		t.Error("no line logged for the listener that paused")
	}
	_ = held[1].Close() // blog's frees the place shop's connection waits for
	if !echoedWithin(waiting, 5*time.Second) {
		t.Fatal("the connection waiting was not relayed once blog's closed")
	}
	if !echoedWithin(held[0], 5*time.Second) {
		t.Error("the connection held meanwhile no longer relays")
	}
}

// A version of the configuration lowering the edge's max_conns leaves the connections open,
// over it or not, and takes no new one until they fell under it; raising it serves the ones
// waiting at once.
func TestLoweringAnEdgesMaxConnsKeepsItsConnectionsAndTakesNoneUntilUnderIt(t *testing.T) {
	echo := echoServer(t, "w1").Addr().String()
	shopAddr, blogAddr := freeAddr(t, "127.0.0.21"), freeAddr(t, "127.0.0.21")
	logs, configs := startLimitedEdge(t, edgeLimitDoc(t, 3, echo, shopAddr, blogAddr), shopAddr, blogAddr)
	var held []net.Conn
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for _, h := range held {
			_ = h.Close()
		}
		held = nil
		all := true
		for _, addr := range []string{shopAddr, blogAddr, shopAddr} {
			c, ok := relayed(t, addr, 5*time.Second)
			held, all = append(held, c), all && ok
		}
		return all
	}, "three connections relayed")
	applied := func(n int) {
		t.Helper()
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return strings.Count(logs.String(), "edge configuration applied") == n
		}, "configuration %d applied", n)
	}
	configs <- edgeLimitDoc(t, 1, echo, shopAddr, blogAddr)
	applied(1)
	for i, h := range held {
		if !echoedWithin(h, 5*time.Second) {
			t.Fatalf("connection %d of 3 no longer relays once max_conns was lowered to 1, want it kept", i+1)
		}
	}
	waiting, ok := relayed(t, blogAddr, 300*time.Millisecond)
	if ok {
		t.Fatal("a connection was relayed while the edge held 3, max_conns 1")
	}
	_ = held[0].Close()
	_ = held[1].Close()
	if echoedWithin(waiting, 300*time.Millisecond) {
		t.Fatal("a connection was relayed while the edge held 1, max_conns 1")
	}
	configs <- edgeLimitDoc(t, 2, echo, shopAddr, blogAddr)
	applied(2)
	if !echoedWithin(waiting, 5*time.Second) {
		t.Fatal("the connection waiting was not relayed once max_conns was raised to 2")
	}
}
