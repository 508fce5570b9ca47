// Package natsd runs the embedded NATS server with JetStream that `detour up` uses: one process,
// file storage under the data directory, the client port on loopback so the nats CLI can connect
// with the credentials generated on first start; anonymous clients are refused.
package natsd

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// Host to listen on. Default 127.0.0.1.
	Host string
	// Port for clients; 0 means 4222, -1 a free port.
	Port int
	// Credentials are the only identity let in. Required: the server refuses anonymous clients.
	Credentials Credentials
	// MonitorPort, when set, serves NATS's HTTP monitoring endpoints (/varz, /connz, /jsz) on
	// Host at this port, without credentials. Default none.
	MonitorPort int
}

// Start runs the server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	if o.Credentials.Public == "" {
		return nil, fmt.Errorf("configure embedded nats: credentials are required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = 4222
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "detour-embedded",
		Host:       o.Host, Port: o.Port,
		JetStream: true, StoreDir: o.StoreDir,
		NoLog: true, NoSigs: true,
		Nkeys:    []*server.NkeyUser{{Nkey: o.Credentials.Public}},
		HTTPHost: o.Host, HTTPPort: o.MonitorPort,
		// A failover must not wait on a slow disk sync; a crash loses at most the last second of
		// probe results, which the probers produce again.
		SyncInterval: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("configure embedded nats: %w", err)
	}
	// The server only logs why it gives up (its port taken, a store JetStream cannot use).
	fatal := make(chan string, 1)
	s.SetLogger(fatalLogger(fatal), false, false)
	s.Start()
	for deadline := time.Now().Add(10 * time.Second); !s.ReadyForConnections(50 * time.Millisecond); {
		select {
		case msg := <-fatal:
			s.Shutdown()
			return nil, fmt.Errorf("embedded nats on %s, files in %s: %s", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), o.StoreDir, msg)
		default:
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, fmt.Errorf("embedded nats on %s: not ready after 10s", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
		}
	}
	return s, nil
}

// fatalLogger passes on the first message of a server giving up, and drops every other one.
type fatalLogger chan string

func (l fatalLogger) Fatalf(format string, v ...any) {
	select {
	case l <- fmt.Sprintf(format, v...):
	default:
	}
}
func (fatalLogger) Noticef(string, ...any) {}
func (fatalLogger) Warnf(string, ...any)   {}
func (fatalLogger) Errorf(string, ...any)  {}
func (fatalLogger) Debugf(string, ...any)  {}
func (fatalLogger) Tracef(string, ...any)  {}
