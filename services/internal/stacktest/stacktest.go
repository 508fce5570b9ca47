// Package stacktest runs a whole Detour stack (up.Start on embedded JetStream) from a
// configuration document for the tests of the packages that read what it records (replay,
// drill, up), and connects to its NATS with the credentials it generated.
package stacktest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/up"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Start writes doc to a file, runs the stack from it until the test ends (the test fails if the
// stack stops with an error) and returns the stack, a JetStream handle on its server and the
// configuration file's path.
func Start(t *testing.T, doc string) (*up.Stack, jetstream.JetStream, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "detour.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := up.Start(ctx, up.Options{ConfigPath: path, DNSAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := st.Wait(); err != nil {
			t.Errorf("stack stopped with %v", err)
		}
	})
	_, js := Connect(t, st)
	return st, js, path
}

// Connect connects to st's NATS server with the credentials it generated, until the test ends.
func Connect(t *testing.T, st *up.Stack) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	creds, err := st.NATSCredentials.Option()
	if err != nil {
		t.Fatal(err)
	}
	return eventstest.ConnectJS(t, st.NATSURL, creds)
}

// FreePort returns an address on host whose port is free now.
func FreePort(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
