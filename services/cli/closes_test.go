package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats-server/v2/server"
)

// An operator's command closes its NATS connection as it returns (flushing what it still had to
// send), where each left it open until the process exited: run in process, as a tool embedding
// the commands does, every command left a connection on the server.
func TestOperatorCommandsCloseTheirNATSConnection(t *testing.T) {
	s := startBare(t)
	v1 := writeFile(t, "v1.yaml", planDoc)
	d := writeFile(t, "drill.yaml", "name: d\nsteps: [{fail: pool shop/west, rto: 2s}]\n")
	for _, args := range [][]string{
		{"apply", v1},
		{"plan", v1},
		{"config", "get"},
		{"config", "history"},
		{"override", "set", "shop", "west", "--action", "drain", "--reason", "maintenance"},
		{"override", "list"},
		{"override", "clear", "shop", "west", "--reason", "done"},
		{"drill", "plan", d},
		{"events", "--stream", "CONFIG"},
		{"replay", "--from", "1m"},
	} {
		if code, out, errOut := run(append(args, "--nats", s.URL)...); code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	open := func() []string {
		c, err := s.Server.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, ci := range c.Conns {
			if strings.HasPrefix(ci.Name, "detour-") {
				names = append(names, ci.Name)
			}
		}
		return names
	}
	var left []string
	eventstest.Eventually(t, 10*time.Second, func() bool { left = open(); return len(left) == 0 },
		"the commands' connections closed; open: %v", &left)
}
