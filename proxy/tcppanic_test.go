package proxy

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/rs/zerolog"
)

// panickyConn is an instance's connection whose reads (or writes) panic, as a bug in what the
// relay of a connection calls would.
type panickyConn struct {
	net.Conn
	onRead bool
	// writing, when not nil, is closed as a write begins.
	writing chan struct{}
}

func (c *panickyConn) Read(p []byte) (int, error) {
	if c.onRead {
		panic("boom reading")
	}
	return c.Conn.Read(p)
}

func (c *panickyConn) Write(p []byte) (int, error) {
	if !c.onRead {
		if c.writing != nil {
			close(c.writing)
		}
		panic("boom writing")
	}
	return c.Conn.Write(p)
}

// endingConn is an instance's connection whose writes panic, and whose reads find the end of
// its answer once a write is under way: the relay's read of the instance then waits for that
// write (splice) while the write panics.
type endingConn struct {
	panickyConn
}

func (c *endingConn) Read([]byte) (int, error) {
	<-c.writing
	return 0, io.EOF
}

// A panic while a TCP connection is relayed, in either direction (each has its own goroutine),
// ends that connection, not the edge: it is logged with its stack, the client's connection is
// reset and the instance's closed, as the front does for an HTTP connection.
func TestAPanicRelayingATCPConnectionClosesBothSidesAndNotTheEdge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		onRead bool
		ending bool
	}{{"reading the instance", true, false}, {"writing to the instance", false, false},
		// The write to the instance held the relay's lock on its writes when it panicked, and
		// the read that found the instance's end waited for that lock for good: the
		// connection was never ended, its goroutines and descriptors held.
		{"writing to the instance as its answer ends", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedBuffer
			log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), &logs))
			e := &edge{name: "edge-west", log: log, peers: newPeers("edge-west", "", time.Second, log)}
			a := newApp(e, config.EdgeApp{App: "shop", Mode: config.ModeTCP, PassiveFall: 3, PassiveCooldown: config.Duration(time.Second),
				MaxConns: 10, MaxConnsPerClient: 10, Timeouts: config.EdgeTimeouts{Connect: config.Duration(time.Second), TCPIdle: config.Duration(time.Hour)}})
			a.setRoute(events.AppRoute{App: "shop", Pool: "west", Available: true,
				Endpoints: []events.RouteEndpoint{{Name: "w1", Address: "127.0.0.11:8081", Status: events.StatusUp, Weight: 1}}})
			client, accepted := tcpPair(t)
			toInstance, instance := tcpPair(t)
			dial := func(context.Context, string, string) (net.Conn, error) {
				if tc.ending {
					return &endingConn{panickyConn{Conn: toInstance, writing: make(chan struct{})}}, nil
				}
				return &panickyConn{Conn: toInstance, onRead: tc.onRead}, nil
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				s := &tcpServer{app: a}
				s.handle(context.Background(), accepted, dial, dial, func(net.Conn) func() { return func() {} })
			}()
			_, _ = client.Write([]byte("hi\n"))
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the connection was still relayed 5s after the panic, want it ended at once")
			}
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := client.Read(make([]byte, 64)); !isReset(err) {
				t.Errorf("the client read %d bytes and %v after the panic, want its connection reset (an aborted stream)", n, err)
			}
			_ = instance.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				// The instance may have received the client's line before the panic.
				if _, err := instance.Read(make([]byte, 64)); err != nil {
					if isTimeout(err) {
						t.Error("the instance's connection was still open after the panic, want it closed")
					}
					break
				}
			}
			if n := strings.Count(logs.String(), `"message":"connection panicked"`); n != 1 || !strings.Contains(logs.String(), "boom") {
				t.Errorf("%d lines say the connection panicked, want 1 with the panic's value:\n%s", n, logs.String())
			}
		})
	}
}

// A write to the instance that panicked failed as surely as one told of a reset: the read that
// then finds the instance's end resets the client. It half-closed it, a clean end the client
// took for the whole stream, whenever it ran before the panic's handler reset both sides (the
// "as its answer ends" case above, one run in two); here it runs after the panic, always.
func TestAReadFindingTheEndAfterAWritePanickedResetsTheClient(t *testing.T) {
	var st spliceState
	st.last.Store(time.Now().UnixNano())
	toInstance, _ := tcpPair(t)
	func() {
		defer func() { _ = recover() }()
		_ = writeHeld(&st.toB, &panickyConn{Conn: toInstance}, []byte("hi\n"), time.Hour, &st)
		t.Fatal("the write did not panic")
	}()
	client, accepted := tcpPair(t)
	ended := &endingConn{panickyConn{Conn: toInstance, writing: make(chan struct{})}}
	close(ended.writing)
	splice(accepted, ended, time.Hour, &st, &st.toA, &st.toB)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 64)); !isReset(err) {
		t.Errorf("the client read %d bytes and %v once the instance's answer ended after the write to it panicked, want its connection reset (an aborted stream)", n, err)
	}
}
