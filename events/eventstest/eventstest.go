// Package eventstest runs an in-process JetStream server on a random loopback port, with
// Detour's streams created, for component tests of every module.
package eventstest

import (
	"context"
	"net"
	"reflect"
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
	opts   server.Options
}

// Options choose what StartWith sets up.
type Options struct {
	// NoStreams starts the server without Detour's streams.
	NoStreams bool
	// Files stores the streams in files, so that they survive Stop and Restart; the connection
	// then reconnects for ever.
	Files bool
	// MaxPayload is the server's max_payload. Default NATS's, 1 MiB.
	MaxPayload int32
	// MaxMemoryStore is the server's max_memory_store, what the streams kept in memory may
	// reserve. Default JetStream's (most of the machine's memory).
	MaxMemoryStore int64
}

// Start runs JetStream on 127.0.0.1 with its store in a temporary directory, creates Detour's
// streams in memory, and stops everything when the test ends.
func Start(tb testing.TB) *Server { return StartWith(tb, Options{}) }

// StartWith runs JetStream as Start does, set up as o says.
func StartWith(tb testing.TB, o Options) *Server {
	tb.Helper()
	s := &Server{opts: server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
		NoLog: true, NoSigs: true, MaxPayload: o.MaxPayload, JetStreamMaxMemory: o.MaxMemoryStore,
	}}
	s.boot(tb)
	// Registered once, here, the server's shutdown comes after that of every role a test started
	// since, whatever server Restart put in its place: a restarted server shut down first left
	// the roles stopping against no server, each waiting out its timeouts.
	tb.Cleanup(func() { s.Server.Shutdown() })
	s.opts.Port = s.Server.Addr().(*net.TCPAddr).Port
	s.URL = s.Server.ClientURL()
	if o.Files {
		s.Conn = ConnectRetrying(tb, s.URL)
	} else {
		s.Conn = Connect(tb, s.URL)
	}
	js, err := events.NewJetStream(s.Conn) // as every role opens it
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	s.JS = js
	if o.NoStreams {
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Memory: !o.Files}); err != nil {
		tb.Fatalf("ensure streams: %v", err)
	}
	return s
}

func (s *Server) boot(tb testing.TB) {
	tb.Helper()
	o := s.opts
	ns, err := server.NewServer(&o)
	if err != nil {
		tb.Fatalf("new nats server: %v", err)
	}
	ns.Start()
	s.Server = ns
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server did not become ready in 10s")
	}
}

// Stop shuts the server down, as a crash of the only node would.
func (s *Server) Stop() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
}

// Restart starts the server again on the same port and store after Stop.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.boot(tb)
}

// StopJetStream shuts JetStream down while the server goes on answering, as a node does when
// JetStream cannot store (no quorum, a full disk): a publish to a stream gets no answer, a flush
// does. Its store stays on disk: Stop and Restart bring JetStream back.
func (s *Server) StopJetStream(tb testing.TB) {
	tb.Helper()
	if err := s.Server.ShutdownJetStream(); err != nil {
		tb.Fatalf("shut jetstream down: %v", err)
	}
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

// ConnectJS opens a connection to url with opts, closed when the test ends, and its JetStream.
func ConnectJS(tb testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// ConnectRetrying opens a connection to url that reconnects every 50ms for ever, as the roles'
// connections do, and is opened even while no server answers yet.
func ConnectRetrying(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Name(tb.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true))
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

// FromSource returns a copy of m, a message holding an event, with source as the event's source:
// the same event as another writer would have sent it.
func FromSource(m *nats.Msg, source string) (*nats.Msg, error) {
	e, err := events.Decode(m.Data)
	if err != nil {
		return nil, err
	}
	e.Source = source
	out := nats.NewMsg(m.Subject)
	out.Data = e.Encode()
	return out, nil
}

// Eventually polls cond every 5ms until it holds or the deadline passes, then fails the test
// with msg. An argument that points to what cond last saw (&got) is shown as the value it points
// to, unless that is a struct (whose String method may need the pointer).
func Eventually(tb testing.TB, within time.Duration, cond func() bool, msg string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			shown := []any{within}
			for _, a := range args {
				if v := reflect.ValueOf(a); v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() != reflect.Struct {
					a = v.Elem().Interface()
				}
				shown = append(shown, a)
			}
			tb.Fatalf("not within %s: "+msg, shown...)
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
