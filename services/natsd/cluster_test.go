package natsd_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats-server/v2/server"
)

func TestDeploymentClusterAServerWithoutTheClustersRouteCredentialsCannotJoinIt(t *testing.T) {
	nats1 := startClusterNode(t, "nats-1", "")
	// nats-2 as deployments/nats/nats.conf has it, its routes pointing at nats-1.
	nats2 := startClusterNode(t, "nats-2", nats1.ClusterAddr().String())
	eventstest.Eventually(t, 10*time.Second, func() bool { return nats1.NumRemotes() > 0 && nats2.NumRemotes() > 0 },
		"nats-2, configured as the deployment has it, did not join nats-1")
	// A server of anyone who can reach the route port, knowing the cluster's name and nothing else.
	var logs serverLog
	rogue, err := server.NewServer(&server.Options{ServerName: "rogue", Host: "127.0.0.1", Port: -1, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "detour", Host: "127.0.0.1", Port: -1},
		Routes:  []*url.URL{{Scheme: "nats", Host: nats1.ClusterAddr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	rogue.SetLogger(&logs, false, false)
	rogue.Start()
	t.Cleanup(rogue.Shutdown)
	eventstest.Eventually(t, 10*time.Second, func() bool { return nats1.NumRemotes() > 1 || logs.has("Authorization Violation") },
		"the rogue server was neither let in nor refused")
	if nats1.NumRemotes() > 1 {
		t.Error("a server without the cluster's credentials joined it as a route: it relays any subject of any account, past every user's permissions")
	}
}

// startClusterNode runs deployments/nats/nats.conf (with accounts.conf, without JetStream) as
// node name on loopback ports, its routes pointing at route (host:port) in place of nats-1, or at
// nothing.
func startClusterNode(t *testing.T, name, route string) *server.Server {
	t.Helper()
	dir := t.TempDir()
	conf, err := os.ReadFile(filepath.Join("..", "..", "deployments", "nats", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := os.ReadFile(filepath.Join("..", "..", "deployments", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(conf)
	for _, r := range [][2]string{
		{"server_name: $NATS_NAME", "server_name: " + name},
		{"listen: 0.0.0.0:4222", "listen: 127.0.0.1:-1"},
		{"http: 0.0.0.0:8222\n", ""},
		{"listen: 0.0.0.0:6222", "listen: 127.0.0.1:-1"},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("deployments/nats/nats.conf: no %q", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	// Routes only: a JetStream node alone waits for its peers before it takes clients.
	js := regexp.MustCompile(`(?s)jetstream \{.*?\n\}\n`)
	if !js.MatchString(s) {
		t.Fatal("deployments/nats/nats.conf: no jetstream block")
	}
	s = js.ReplaceAllString(s, "")
	routes := regexp.MustCompile(`routes: \[(nats://[^,\]]*nats-1:6222)[^\]]*\]`)
	m := routes.FindStringSubmatch(s)
	if m == nil {
		t.Fatal("deployments/nats/nats.conf: no routes to nats-1:6222")
	}
	if route == "" {
		s = strings.Replace(s, m[0], "routes: []", 1)
	} else {
		s = strings.Replace(s, m[0], "routes: ["+strings.Replace(m[1], "nats-1:6222", route, 1)+"]", 1)
	}
	for file, body := range map[string]string{"nats.conf": s, "accounts.conf": string(accounts)} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("deployments/nats/nats.conf: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatalf("%s not ready in 10s", name)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// serverLog keeps what a NATS server logs.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) add(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

func (l *serverLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (l *serverLog) Noticef(format string, v ...any) { l.add(format, v...) }
func (l *serverLog) Warnf(format string, v ...any)   { l.add(format, v...) }
func (l *serverLog) Fatalf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Errorf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Debugf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Tracef(format string, v ...any)  { l.add(format, v...) }
