// Package eventstest runs an in-process JetStream server on a random loopback port, with
// Detour's streams created, for component tests of every module.
package eventstest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running test server with one client connection.
type Server struct {
	Server *server.Server
	URL    string
	Conn   *nats.Conn
	JS     jetstream.JetStream
}

// Start runs JetStream on 127.0.0.1 with its store in a temporary directory, creates Detour's
// streams in memory, and stops everything when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		tb.Fatalf("new nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server did not become ready in 10s")
	}
	tb.Cleanup(s.Shutdown)
	nc := Connect(tb, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Memory: true}); err != nil {
		tb.Fatalf("ensure streams: %v", err)
	}
	return &Server{Server: s, URL: s.ClientURL(), Conn: nc, JS: js}
}

// Connect opens another connection to url, closed when the test ends.
func Connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Name(tb.Name()))
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Stream returns the named stream's handle.
func (s *Server) Stream(tb testing.TB, name string) jetstream.Stream {
	tb.Helper()
	st, err := s.JS.Stream(context.Background(), name)
	if err != nil {
		tb.Fatalf("stream %s: %v", name, err)
	}
	return st
}

// Eventually polls cond every 5ms until it holds or the deadline passes, then fails the test
// with msg.
func Eventually(tb testing.TB, within time.Duration, cond func() bool, msg string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: "+msg, append([]any{within}, args...)...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run runs role in a goroutine until the returned stop is called or the test ends. Stop cancels
// the role's context, waits up to 10 s for it to return, and fails the test if it returned an
// error (a role must return nil when its context ends) or did not stop. Calling stop twice is
// harmless.
func Run(tb testing.TB, name string, role func(ctx context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- role(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s returned %v, want nil after its context ended", name, err)
				}
			case <-time.After(10 * time.Second):
				tb.Errorf("%s did not stop within 10s", name)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// Config parses a configuration document as `detour check` would, failing the test on any problem.
func Config(tb testing.TB, doc string) *config.Config {
	tb.Helper()
	c, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		tb.Fatalf("parse config: %v", err)
	}
	return c
}
